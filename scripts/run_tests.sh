#!/usr/bin/env bash
# The README's test command: the whole pytest suite, then the Bazel wiring (BUILD files in sync
# with the imports, `bazel build //...`, `bazel test //tests/...`). Fails if any part fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 TF_DEPTHSEG_PROGRESS=0
start=$SECONDS
.venv/bin/python scripts/gen_build_files.py --check
.venv/bin/python -m pytest -n 2 --durations=15 tests "$@"
echo "[tests] pytest finished in $((SECONDS - start)) s"
bazel build //...
bazel test //tests/...
echo "[tests] all done in $((SECONDS - start)) s"
