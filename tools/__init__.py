"""Command-line tools (absl apps): `python -m tools.<name>`, the `depthseg-<name>` console
scripts or `bazel run //tools:<name>`."""

# Before any tool imports TensorFlow: cli sets the tools' TF_CPP_MIN_LOG_LEVEL default and
# filters TensorFlow's import-time log lines (see tf_depthseg/cli.py).
from tf_depthseg import cli  # noqa: F401
