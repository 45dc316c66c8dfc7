"""What every command-line tool shares: flags, path resolution, logging, progress bars, errors.

Each tool in `tools/` is an absl app:

    from tf_depthseg import cli
    cli.define_common_flags()          # --config --workdir --set (experiment tools only)
    def main(argv): ...
    if __name__ == "__main__": cli.run(main, usage=__doc__)

`cli.run` puts the module docstring (what the tool does + an example) into `--help`, and turns
`BadInputError` / `ConfigError` into a one-paragraph message and exit code 2 instead of a
traceback: the message already names the file and the fix.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Optional

from absl import app, flags, logging

from tf_depthseg.errors import UserError
from tf_depthseg.utils import progress  # noqa: F401  (tools call cli.progress)

FLAGS = flags.FLAGS


def define_common_flags(config_required: bool = False) -> None:
    """Defines --config, --workdir and --set (repeatable dotted overrides)."""
    flags.DEFINE_string("config", None, "Experiment config: a path to configs/**/*.py, a "
                        "config name like 'suw/synthetic_suw', or a resolved config.json.")
    flags.DEFINE_string("workdir", None, "Output folder (checkpoints, logs, resolved config).")
    flags.DEFINE_multi_string("set", [], "Override a config value, e.g. --set train.steps=100 "
                              "--set model.sam_dilations=[1,2,4]. Repeatable.")
    flags.DEFINE_bool("smoke", False, "Use the config's tiny smoke variant (seconds, CPU).")
    if config_required:
        flags.mark_flag_as_required("config")


def resolve_path(path: Optional[str]) -> Optional[str]:
    """Absolute path, relative paths taken from where the user ran the command.

    `bazel run` starts binaries inside the runfiles tree and exports the user's directory as
    BUILD_WORKING_DIRECTORY; without this, `--workdir=out` would land inside bazel-bin.
    """
    if path is None or path == "":
        return path
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    base = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
    return os.path.normpath(os.path.join(base, path))


def run(main, usage: Optional[str] = None) -> None:
    """absl `app.run` with friendly errors for bad input and configs."""
    def usage_main(argv):
        try:
            return main(argv)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    if usage:
        # absl prints the main module's docstring for --help; keep that explicit.
        sys.modules["__main__"].__doc__ = usage
    app.run(usage_main)
