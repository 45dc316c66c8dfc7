"""What every command-line tool shares: flags, path resolution, quiet start-up, errors.

Each tool in `tools/` is an absl app with an entry function (the console script calls it):

    from tf_depthseg import cli
    cli.define_common_flags()          # --config --workdir --set --smoke (experiment tools)
    def main(argv): ...
    def run(): cli.run(main, usage=__doc__)
    if __name__ == "__main__": run()

`cli.run` puts the module docstring (what the tool does + an example) and every flag the tool
defines (here or through `cli.define_*_flags`) into `--help`, exits 0 after help, and turns
`UserError` and bad command lines into one `error: ...` line and exit code 2 instead of a
traceback: the message already names the file, flag or key and the fix.

Library modules (`tf_depthseg/**`) never import this module or absl flags: tools read the
flags here and pass plain values to the library.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging as std_logging
import os
import re
import shutil
import sys
import tempfile
from typing import List, Optional, Sequence

from absl import app, flags
from absl import logging as absl_logging

from tf_depthseg.errors import UserError

FLAGS = flags.FLAGS

# Console scripts are `<SCRIPT_PREFIX><tool name with - for _>` (pyproject.toml).
SCRIPT_PREFIX = "depthseg-"


# ---------------------------------------------------------------------------------------------
# Quiet TensorFlow start-up.
# ---------------------------------------------------------------------------------------------
# TensorFlow's C++ logging honours TF_CPP_MIN_LOG_LEVEL only for messages that go through its
# own logger; the oneDNN notice ("I0000 ... port.cc:153] oneDNN custom operations are on") is
# logged with Abseil's LOG before absl::InitializeLog, by each of two shared libraries, so every
# `import tensorflow` prints it twice with a "WARNING: All log messages before
# absl::InitializeLog() ..." line, whatever TF_CPP_MIN_LOG_LEVEL says (measured with TF 2.21;
# TF_ENABLE_ONEDNN_OPTS=0 would silence it but changes the numerics). So the tools default the
# level to 2 (warnings off, errors on) and apply it to those import-time lines too; a user's own
# TF_CPP_MIN_LOG_LEVEL wins (0 shows everything).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Abseil's log prefix: severity letter, MMDD, time (before InitializeLog "00:00:<unix time>"),
# thread id, file:line].
_ABSL_LOG_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_ABSL_PRE_INIT_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY_RANK = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def _min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_import_log(text: bytes, min_level: int) -> bytes:
    """Drops Abseil log lines below `min_level` (0 INFO .. 3 FATAL) and, when INFO is off,
    Abseil's pre-InitializeLog notice; everything else (Python warnings, errors) is kept."""
    kept = []
    for line in text.splitlines(keepends=True):
        match = _ABSL_LOG_LINE.match(line)
        if match and _SEVERITY_RANK[match.group(1)] < min_level:
            continue
        if min_level >= 1 and line.startswith(_ABSL_PRE_INIT_NOTICE):
            continue
        kept.append(line)
    return b"".join(kept)


@contextlib.contextmanager
def _filtered_stderr(min_level: int):
    """Sends file descriptor 2 to a temporary file for the block, then writes back what
    `filter_import_log` keeps (also when the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            os.write(2, filter_import_log(captured.read(), min_level))


class _QuietImportLoader(importlib.abc.Loader):
    """Runs the wrapped loader's `exec_module` with stderr filtered; the module keeps the
    original loader."""

    def __init__(self, loader, min_level: int):
        self._loader, self._min_level = loader, min_level

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self._loader
        with _filtered_stderr(self._min_level):
            self._loader.exec_module(module)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` the normal way (once) and wraps its loader in `_QuietImportLoader`,
    so the import stays lazy (`--help` never waits for TensorFlow) but is quiet."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:  # once: later look-ups (and threads) get the plain spec
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietImportLoader(spec.loader, _min_log_level())
        return spec


if "tensorflow" not in sys.modules and _min_log_level() >= 1:
    sys.meta_path.insert(0, _QuietTensorFlowImport())


class _LibraryInfoFilter(std_logging.Filter):
    """Drops INFO (and debug) records logged by TensorFlow's and Keras' Python code (e.g.
    "Sharding callback duration" at every checkpoint): TF_CPP_MIN_LOG_LEVEL >= 1 hides them
    like the C++ ones. Warnings and the tools' own INFO lines pass."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.levelno >= std_logging.WARNING:
            return True
        for name in ("tensorflow", "keras"):
            module = sys.modules.get(name)
            for folder in getattr(module, "__path__", ()):
                if record.pathname.startswith(os.path.join(folder, "")):
                    return False
        return True


# ---------------------------------------------------------------------------------------------
# Flags.
# ---------------------------------------------------------------------------------------------
def define_common_flags(config_required: bool = False) -> None:
    """Defines --config, --workdir, --set (repeatable dotted overrides) and --smoke."""
    flags.DEFINE_string("config", None, "Experiment config: a path to configs/**/*.py, a "
                        "config name like 'suw/synthetic_suw', or a resolved config.json.")
    flags.DEFINE_string("workdir", None, "Output folder (checkpoints, logs, resolved config).")
    flags.DEFINE_multi_string("set", [], "Override a config value, e.g. --set train.steps=100 "
                              "--set suw.sam_dilations=[1,2,4]. Repeatable.")
    flags.DEFINE_bool("smoke", False, "Use the config's tiny smoke variant (seconds, CPU).")
    if config_required:
        flags.mark_flag_as_required("config")


def define_relabel_flags(preview_what: str) -> None:
    """Defines the flags every tool that rewrites converted records with offline labels
    (tools/generate_weak_labels.py, tools/align_object_masks.py) shares: --split
    --preview_dir --num_previews --skip_bad --allow_incomplete. `preview_what` ends the
    --preview_dir help: what the pictures show."""
    flags.DEFINE_string("split", "train", "Split name for input files whose names are not "
                        "{split}-{i}-of-{n}.tfrecord.")
    flags.DEFINE_string("preview_dir", None, "Folder for pictures of the first --num_previews "
                        f"records: {preview_what}")
    flags.DEFINE_integer("num_previews", 8, "How many records --preview_dir shows.")
    flags.DEFINE_bool("skip_bad", False, "Quarantine records with unusable masks, and the "
                      "rest of a corrupt input file (listed in the output manifest), instead "
                      "of stopping.")
    flags.DEFINE_bool("allow_incomplete", False, "Read input splits whose conversion has not "
                      "finished (their finished shards only).")


def define_converter_flags(default_splits: Sequence[str], default_height: int,
                           default_width: int) -> None:
    """Defines the flags of every tools/convert_*.py: --input_dir --output_dir --splits
    --num_shards --num_workers --skip_bad --height --width --[no]resume (sizes: 0 = keep the
    native size)."""
    flags.DEFINE_string("input_dir", None, "Dataset root in its original layout.")
    flags.DEFINE_string("output_dir", None, "Folder for the TFRecord shards and manifest.json.")
    flags.DEFINE_list("splits", list(default_splits), "Splits to convert.")
    flags.DEFINE_integer("num_shards", 4, "Shards per split.")
    flags.DEFINE_integer("num_workers", max(1, (os.cpu_count() or 2) - 1),
                         "Worker processes (1 = convert in the main process).")
    flags.DEFINE_bool("skip_bad", False, "Quarantine corrupt or inconsistent samples (listed "
                      "in manifest.json) instead of stopping at the first one.")
    flags.DEFINE_integer("height", default_height, "Stored image height (0 = native).")
    flags.DEFINE_integer("width", default_width, "Stored image width (0 = native).")
    flags.DEFINE_bool("resume", True, "Keep shards finished by an earlier, interrupted run.")
    flags.mark_flags_as_required(["input_dir", "output_dir"])


def run_converter(module, options, source_name: str):
    """Runs `converters.base.run_converter` with the values of `define_converter_flags`."""
    from tf_depthseg.converters import base
    if FLAGS.num_shards < 1 or FLAGS.num_workers < 0:
        raise UserError("--num_shards must be >= 1 and --num_workers >= 0.")
    return base.run_converter(
        module, options, source_name, input_dir=resolve_path(FLAGS.input_dir),
        output_dir=resolve_path(FLAGS.output_dir), splits=FLAGS.splits,
        num_shards=FLAGS.num_shards, num_workers=FLAGS.num_workers, skip_bad=FLAGS.skip_bad,
        resume=FLAGS.resume)


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


def tool_command(tool: str) -> str:
    """The command that starts another tool the way this one was started: its console script,
    `bazel run //tools:<tool> --`, or `<this python> -m tools.<tool>`."""
    if os.path.basename(sys.argv[0]).startswith(SCRIPT_PREFIX):
        script = os.path.join(os.path.dirname(sys.argv[0]),
                              SCRIPT_PREFIX + tool.replace("_", "-"))
        if os.path.isfile(script):
            return script
    if os.environ.get("BUILD_WORKING_DIRECTORY"):
        return f"bazel run //tools:{tool} --"
    return f"{sys.executable} -m tools.{tool}"


@contextlib.contextmanager
def removed_on_failure(path: str):
    """Removes folder `path` if the block raises and `path` did not exist before it: a failed
    start (bad config, missing data) leaves no half-made output folder behind."""
    existed = os.path.lexists(path)
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------
# Running a tool.
# ---------------------------------------------------------------------------------------------
def _adopt_key_flags(tool_module: str) -> None:
    """Makes every flag the tool defined, directly or through `define_*_flags` here, a key flag
    of the program, so absl's `--help` (which lists the key flags of `sys.argv[0]`) shows them.

    absl files a flag under the module that called DEFINE: `sys.argv[0]` for `python -m tools.x`
    (module `__main__`), but `tools.x` under a console script and `tf_depthseg.cli` for the
    shared flags; without this, they appear only in `--helpfull`.
    """
    program = sys.argv[0]
    for module_name in (tool_module, __name__):
        for flag in FLAGS.get_key_flags_for_module(module_name):
            FLAGS.register_key_flag_for_module(program, flag)


def _parse_flags(argv: List[str]) -> List[str]:
    """absl's flag parsing with `error:` lines and exit 2 for bad command lines, and exit 0
    after --help / --helpfull (absl exits 1 after printing help)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        message = " ".join(str(error).split())
        # mark_flag_as_required's wording ("flag --x=None: Flag --x must have a value other
        # than None.") says less than it could.
        message = re.sub(r"flag --(\w+)=None: Flag --\1 must have a value other than None\.",
                         r"--\1 is required.", message)
        print(f"error: {message} (see --help for the flags)", file=sys.stderr)
        sys.exit(2)
    except SystemExit as stop:
        # Inside flag parsing, only the help flags exit, and absl makes them exit with 1.
        sys.exit(0 if stop.code == 1 else stop.code)


def run(main, usage: Optional[str] = None) -> None:
    """absl `app.run` with the tool's flags in --help and friendly errors."""
    def usage_main(argv):
        try:
            return main(argv)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    if usage:
        # absl prints the main module's docstring for --help; under a console script __main__
        # is the script wrapper, so set it explicitly.
        sys.modules["__main__"].__doc__ = usage
    _adopt_key_flags(main.__module__)
    if _min_log_level() >= 1:
        absl_logging.get_absl_handler().addFilter(_LibraryInfoFilter())
    app.run(usage_main, flags_parser=_parse_flags)
