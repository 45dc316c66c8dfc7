#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (Python 3.11; root for apt). Used by both README
# commands. Creates .venv/ with the pinned requirements, installs this package into it
# (editable, with the console scripts), and installs Bazel from Debian (bazel-bootstrap) when no
# `bazel` is on PATH. A second run with everything present only compares a checksum (seconds).
#
#   bash scripts/setup.sh            # everything
#   bash scripts/setup.sh --no-bazel # Python only (the main job does not need Bazel)
set -euo pipefail
cd "$(dirname "$0")/.."
want_bazel=1
[[ "${1:-}" == "--no-bazel" ]] && want_bazel=0

say() { printf '[setup] %s\n' "$*" >&2; }

python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
# Exactly 3.11, as pyproject.toml's requires-python: requirements.txt is a 3.11 freeze.
if [[ -z "$python_bin" ]] || ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  say "Python 3.11 is required (found: ${python_bin:-none}). Install it, e.g."
  say "  apt-get install python3.11 python3.11-venv   (or pyenv install 3.11)"
  say "then re-run with PYTHON=/path/to/python3.11 bash scripts/setup.sh"
  exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $("$python_bin" --version)"
  "$python_bin" -m venv .venv
fi

# The stamp covers pyproject.toml too: a new console script or dependency there reinstalls.
stamp=.venv/.tf_depthseg_requirements.sha256
wanted=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  say "installing pinned requirements into .venv (TensorFlow CPU; a few minutes the first time)"
  if ! .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt; then
    say "pip could not install the requirements. With no access to PyPI, install them by hand:"
    say "  .venv/bin/pip install -r requirements.txt"
    exit 1
  fi
  .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
  say "console scripts: $(cd .venv/bin && echo depthseg-*)"
  echo "$wanted" > "$stamp"
else
  say ".venv is up to date"
fi

if [[ $want_bazel == 1 ]] && ! command -v bazel >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing Bazel from Debian (bazel-bootstrap)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq bazel-bootstrap >/dev/null
  else
    say "Bazel is missing and this user cannot apt-get. Run as root:"
    say "  apt-get update && apt-get install -y bazel-bootstrap"
    say "(any Bazel that still reads WORKSPACE files works too; see README)."
    exit 1
  fi
fi
say "ready"
