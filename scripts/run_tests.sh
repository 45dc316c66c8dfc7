#!/usr/bin/env bash
# The README's test command: the whole pytest suite, then the Bazel wiring (BUILD files in sync
# with the imports, `bazel build //...`, `bazel test //tests/...`). Every part runs even when an
# earlier one fails (a pytest failure must not hide a broken Bazel build); a one-line summary of
# each part ends the output, and the exit status is non-zero if any part failed.
#
#   bash scripts/run_tests.sh                 # everything (what `make test` and CI run)
#   bash scripts/run_tests.sh -k export       # extra arguments go to pytest
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 TF_DEPTHSEG_PROGRESS=0
start=$SECONDS
summary=()
failed=0

# part NAME COMMAND...: runs COMMAND, records "NAME: ok|FAILED (exit N), T s".
part() {
  local name=$1 began=$SECONDS status
  shift
  printf '\n[tests] === %s\n' "$name"
  "$@"
  status=$?
  if [[ $name == pytest* && $status == 5 ]]; then
    summary+=("$(printf '%-26s FAILED: no tests collected (exit 5), %d s' "$name" $((SECONDS - began)))")
    failed=1
  elif [[ $status == 0 ]]; then
    summary+=("$(printf '%-26s ok, %d s' "$name" $((SECONDS - began)))")
  else
    summary+=("$(printf '%-26s FAILED (exit %d), %d s' "$name" "$status" $((SECONDS - began)))")
    failed=1
  fi
}

part "pytest" .venv/bin/python -m pytest -n 2 --durations=15 tests "$@"
part "BUILD files in sync" .venv/bin/python scripts/gen_build_files.py --check
part "bazel build //..." bazel build //...
part "bazel test //tests/..." bazel test //tests/...

printf '\n[tests] summary (%d s in all)\n' $((SECONDS - start))
printf '[tests]   %s\n' "${summary[@]}"
if [[ $failed != 0 ]]; then
  echo "[tests] FAILED"
  exit 1
fi
echo "[tests] all passed"
