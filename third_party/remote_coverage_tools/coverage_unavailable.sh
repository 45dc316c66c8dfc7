#!/usr/bin/env bash
# Offline stand-in for Bazel's remote coverage tools. `bazel test` only needs these labels to
# exist; `bazel coverage` would run them, and we say plainly that it is not supported here.
echo "bazel coverage is not supported in this offline workspace; use" \
     "'.venv/bin/python -m pytest --cov' style tooling instead." >&2
exit 1
