"""Command-line tools (absl apps); run as `python -m tools.<name>` from the repo root."""
