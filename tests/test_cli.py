"""Every tool's command line: --help lists every flag the tool defines, console scripts exist
and run, TensorFlow starts quietly, and the small CLI helpers do what they say.

The --help runs are subprocesses (a tool defines its flags in the process-global absl registry,
and several tools define flags of the same name), run concurrently because each one that
imports TensorFlow takes 2-4 s.
"""

from __future__ import annotations

import concurrent.futures
import functools
import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib

import pytest

from tf_depthseg import cli
from tf_depthseg import config as config_lib
from tf_depthseg import errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "tools", "*.py"))
               if not p.endswith("__init__.py"))
ENV = dict(os.environ, PYTHONPATH=REPO, TF_DEPTHSEG_PROGRESS="0")
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the tools' own default applies

# What `python -m tools.<tool> --help` does (runpy runs the module as __main__ with argv[0] set
# to its file), then the absl registry: every flag with the module that defined it.
HELP_DRIVER = r"""
import contextlib, io, json, runpy, sys
from absl import flags
tool = sys.argv[1]
sys.argv = [tool, "--help"]
out, code = io.StringIO(), None
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module(tool, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
registry = {module: sorted(flag.name for flag in defined)
            for module, defined in flags.FLAGS.flags_by_module_dict().items()}
json.dump({"code": code, "help": out.getvalue(), "flags": registry,
           "imported_tensorflow": "tensorflow" in sys.modules}, sys.stdout)
"""

# Flags a user of these tools certainly sets: guards the discovery below against finding
# nothing (e.g. the shared flags of cli.define_*_flags, which live in another module).
MUST_LIST = {
    "train": {"config", "workdir", "set", "smoke"},
    "export": {"config", "workdir", "set", "smoke", "output_dir", "checkpoint"},
    "evaluate": {"workdir", "split", "baselines", "set"},
    "convert_kitti": {"input_dir", "output_dir", "splits", "height", "width", "num_shards",
                      "skip_bad", "depth_source"},
    "convert_camvid": {"input_dir", "output_dir", "height", "width"},
    "generate_weak_labels": {"input", "output_dir", "strategy"},
    "make_synthetic": {"layout", "output_dir"},
}


def _pool_map(function, items):
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(items, pool.map(function, items)))


def _run_help_driver(tool: str) -> dict:
    result = subprocess.run([sys.executable, "-c", HELP_DRIVER, f"tools.{tool}"], cwd=REPO,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    report["stderr"] = result.stderr
    tool_file = os.path.join("tools", f"{tool}.py")
    # Project flags: defined by the tool itself (filed under its path when run as __main__)
    # or by the library on its behalf (tf_depthseg.*); not absl's or TensorFlow's own.
    report["own_flags"] = sorted(
        {name for module, names in report["flags"].items()
         if module.endswith(tool_file) or module.startswith(("tf_depthseg", "tools."))
         for name in names})
    return report


@functools.lru_cache(maxsize=None)
def help_reports() -> dict:
    """tool -> {code, help, flags, imported_tensorflow, own_flags, stderr} of its --help."""
    return _pool_map(_run_help_driver, TOOLS)


def listed_flags(help_text: str) -> set:
    """Flag names absl's --help lists ("  --name: ..." or "  --[no]name: ...")."""
    return set(re.findall(r"^\s+(?:-\S+,)?--(?:\[no\])?(\w+):", help_text, re.MULTILINE))


def test_tools_are_found():
    assert {"train", "evaluate", "export", "predict", "convert_kitti",
            "generate_weak_labels"} <= set(TOOLS)


def test_every_tool_help_lists_every_flag_it_defines():
    reports = help_reports()
    for tool, report in reports.items():
        assert report["code"] == 0, (tool, report["code"], report["stderr"][-2000:])
        assert report["own_flags"], (tool, report["flags"])
        listed = listed_flags(report["help"])
        missing = set(report["own_flags"]) - listed
        assert not missing, (tool, sorted(missing), report["help"][-3000:])
        assert MUST_LIST.get(tool, set()) <= listed, (tool, MUST_LIST[tool] - listed)
        # absl's own flags (--logtostderr, --verbosity, ...) stay in --helpfull.
        assert "logtostderr" not in listed, tool
        # The docstring (what the tool does, an example) comes first.
        first_line = report["help"].lstrip().splitlines()[0]
        module_doc = open(os.path.join(REPO, "tools", f"{tool}.py")).read().split('"""')[1]
        assert first_line == module_doc.strip().splitlines()[0], (tool, first_line)
        # Quiet start: no TensorFlow C++ log lines (see test_tensorflow_logs_come_back_...).
        assert "InitializeLog" not in report["stderr"], (tool, report["stderr"][-2000:])
        assert not re.search(r"^[IW]\d{4} ", report["stderr"], re.MULTILINE), tool
    # The quiet-start check above means something only if some --help imported TensorFlow.
    assert any(report["imported_tensorflow"] for report in reports.values())


def _pyproject_scripts() -> dict:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_a_console_script_per_tool():
    wanted = {cli.SCRIPT_PREFIX + tool.replace("_", "-"): f"tools.{tool}:run"
              for tool in TOOLS}
    assert _pyproject_scripts() == wanted


def test_console_scripts_are_installed_and_print_the_same_help(tmp_path):
    try:
        distribution = importlib.metadata.distribution("tf_depthseg")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"tf_depthseg is not installed in {sys.prefix} (scripts/setup.sh installs "
                    "it with its console scripts)")
    scripts = _pyproject_scripts()
    installed = {entry.name: entry.value for entry in distribution.entry_points
                 if entry.group == "console_scripts"}
    assert installed == scripts, "stale install of tf_depthseg: rerun scripts/setup.sh"
    bin_dir = sysconfig.get_path("scripts")
    paths = {name: os.path.join(bin_dir, name) for name in scripts}
    missing = [path for path in paths.values() if not os.path.isfile(path)]
    assert not missing, missing

    def run_help(name):
        # From an unrelated folder: the scripts must not depend on the current directory.
        return subprocess.run([paths[name], "--help"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)

    results = _pool_map(run_help, sorted(scripts))
    reports = help_reports()
    for name, result in results.items():
        tool = scripts[name].split(":")[0].split(".")[1]
        assert result.returncode == 0, (name, result.stderr[-2000:])
        # The same text as `python -m tools.<tool> --help` but for the program name.
        assert result.stdout.splitlines()[0] == reports[tool]["help"].splitlines()[0], name
        assert listed_flags(result.stdout) == listed_flags(reports[tool]["help"]), name
        assert "InitializeLog" not in result.stderr, (name, result.stderr[-2000:])


def test_unknown_and_missing_flags_give_one_error_line():
    def run(args):
        return subprocess.run([sys.executable, "-m", "tools.predict"] + args, cwd=REPO,
                              env=ENV, capture_output=True, text=True, timeout=300)

    unknown, missing = run(["--modle=x"]), run(["--model=x"])
    for result in (unknown, missing):
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
    assert "Unknown command line flag 'modle'" in unknown.stderr
    assert "Did you mean: model" in unknown.stderr
    assert "--input is required" in missing.stderr
    assert "--output_dir is required" in missing.stderr


def test_tensorflow_logs_come_back_when_asked():
    """TF 2.21 prints Abseil INFO lines at import (the oneDNN notice, twice) whatever
    TF_CPP_MIN_LOG_LEVEL says; the tools drop them (no such line in any --help run above,
    several of which import TensorFlow), and TF_CPP_MIN_LOG_LEVEL=0 brings them back."""
    code = "from tf_depthseg import cli; import tensorflow as tf; print(tf.__version__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                            env=dict(ENV, TF_CPP_MIN_LOG_LEVEL="0"), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    if "InitializeLog" not in result.stderr:
        pytest.skip("this TensorFlow build prints no import-time log lines here")
    assert re.search(r"^I\d{4} ", result.stderr, re.MULTILINE), result.stderr[-3000:]


def test_filter_import_log_keeps_what_matters():
    text = (b"WARNING: All log messages before absl::InitializeLog() is called are written "
            b"to STDERR\n"
            b"I0000 00:00:1796150935.205572    9880 port.cc:153] oneDNN custom operations\n"
            b"W0000 00:00:1796150935.205572    9880 x.cc:1] a warning\n"
            b"E1201 18:55:19.684556   140491 y.cc:2] an error\n"
            b"/some/module.py:3: UserWarning: a Python warning\n")
    lines = text.splitlines(keepends=True)
    assert cli.filter_import_log(text, 0) == text
    assert cli.filter_import_log(text, 1) == b"".join(lines[2:])
    assert cli.filter_import_log(text, 2) == b"".join(lines[3:])
    assert cli.filter_import_log(text, 3) == lines[4]


def test_removed_on_failure(tmp_path):
    new = str(tmp_path / "new")
    with pytest.raises(errors.BadInputError):
        with cli.removed_on_failure(new):
            os.makedirs(os.path.join(new, "checkpoints"))
            open(os.path.join(new, "config.json"), "w").close()
            raise errors.BadInputError("no data")
    assert not os.path.exists(new)
    # A folder that existed before the start is the user's: kept.
    old = tmp_path / "old"
    old.mkdir()
    (old / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        with cli.removed_on_failure(str(old)):
            raise KeyboardInterrupt
    assert (old / "notes.txt").read_text() == "mine"
    # Success keeps what the block made.
    with cli.removed_on_failure(new):
        os.makedirs(new)
    assert os.path.isdir(new)


def test_tool_command(tmp_path, monkeypatch):
    monkeypatch.delenv("BUILD_WORKING_DIRECTORY", raising=False)
    monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "tools", "train.py")])
    assert cli.tool_command("evaluate") == f"{sys.executable} -m tools.evaluate"
    script = tmp_path / "depthseg-evaluate"
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "depthseg-train")])
    assert cli.tool_command("evaluate") == str(script)
    monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "tools", "train.py")])
    monkeypatch.setenv("BUILD_WORKING_DIRECTORY", str(tmp_path))
    assert cli.tool_command("evaluate") == "bazel run //tools:evaluate --"


def test_unknown_config_lists_every_config():
    names = sorted(os.path.relpath(p, os.path.join(REPO, "configs"))[:-3]
                   for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True)
                   if not os.path.basename(p).startswith("_"))
    assert len(names) >= 10
    with pytest.raises(errors.ConfigError) as caught:
        config_lib.load_config("suw/does_not_exist")
    message = str(caught.value)
    assert f"Known configs ({len(names)})" in message
    for name in names:
        folder, leaf = os.path.split(name)
        assert re.search(rf"\b{re.escape(folder)}/\{{[^}}]*\b{re.escape(leaf)}\b", message), name
    with pytest.raises(errors.ConfigError, match=r"Did you mean suw/synthetic_sw\b"):
        config_lib.load_config("suw/synthetic_sww")


def test_no_tracked_file_is_ignored():
    if shutil.which("git") is None or not os.path.isdir(os.path.join(REPO, ".git")):
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f".gitignore matches tracked files:\n{result.stdout}"
