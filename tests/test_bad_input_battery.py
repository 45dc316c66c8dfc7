"""Bad-input battery: every tool, given bad input, exits with a code and one clear line.

Each `Case` runs one tool in a subprocess the way a user does and checks:

* the exit code (2 for bad input) and that stderr has no Python traceback;
* exactly one `error:` line, containing every expected fragment (the file or key and the fix);
* nothing half-written: no temporary files are left behind, files that existed before the run
  are byte-for-byte unchanged (unless the case lists them in `may_change`), and new files
  appear only where the case allows (`may_create`).

Inputs are built in the case's own temporary folder by its `prepare(root, res)` function, which
returns the tool's arguments; `res` gives shared, lazily built resources (synthetic layouts,
converted records, a tiny trained run) that are copied, never modified, by cases.

Sections: data (converters, labelling tools, readers), training (train / evaluate / export /
checkpoints / config), cli (flags, paths). Add a case to the list of its section.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Names a writer gives its temporary files (atomic writes, checkpoint writers, shard writers).
TEMP_PATTERNS = (".tmp-*", "*.tmp", "*_temp*", "*.partial", "*.incomplete")


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad-input run. `prepare(root, res) -> argv` builds the input under `root`."""
    name: str
    tool: str                                   # module, e.g. "tools.convert_camvid"
    prepare: Callable[[str, "Resources"], Sequence[str]]
    fragments: Tuple[str, ...]                  # each must appear in the `error:` line
    code: int = 2
    may_change: Tuple[str, ...] = ()            # globs (relative to root) allowed to change
    may_create: Tuple[str, ...] = ()            # globs (relative to root) allowed to appear
    env: Tuple[Tuple[str, str], ...] = ()
    check: Callable[[str], None] = None         # extra assertions on root after the run


class Resources:
    """Shared inputs built once per test session on first use; cases copy them."""

    def __init__(self, base: str):
        self.base = base
        self._built: Dict[str, str] = {}

    def get(self, name: str) -> str:
        """Path of resource `name` (built by `build_<name>` the first time)."""
        if name not in self._built:
            path = os.path.join(self.base, name)
            if not os.path.exists(os.path.join(path, ".done")):
                shutil.rmtree(path, ignore_errors=True)
                os.makedirs(path)
                getattr(self, f"build_{name}")(path)
                open(os.path.join(path, ".done"), "w").close()
            self._built[name] = path
        return self._built[name]

    def copy(self, name: str, dest: str) -> str:
        """Copies resource `name` to `dest` (created) and returns `dest`."""
        shutil.copytree(self.get(name), dest, ignore=shutil.ignore_patterns(".done"))
        return dest

    # -- builders: one per resource ------------------------------------------------------------

    def build_camvid(self, path: str) -> None:
        """A tiny synthetic CamVid dataset root (SegNet layout: train/, trainannot/, train.txt)."""
        check(run_tool("tools.make_synthetic", [
            "--layout=camvid", f"--output_dir={path}", "--num_drives=2",
            "--frames_per_drive=3", "--height=48", "--width=64"], path))


def run_tool(module: str, args: Sequence[str], cwd: str, env=()) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
                       TF_DEPTHSEG_PROGRESS="0", **dict(env))
    return subprocess.run([sys.executable, "-m", module] + list(args), cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=600)


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _snapshot(root: str) -> Dict[str, str]:
    """Relative path -> sha256 of every file below `root`."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(os.path.basename(path), p)
               for p in patterns)


# -- data: converters, labelling tools, readers of records ----------------------------------------

def _camvid_missing_label(root: str, res: Resources) -> List[str]:
    data = res.copy("camvid", os.path.join(root, "in"))
    annot = os.path.join(data, "trainannot")
    os.remove(os.path.join(annot, sorted(os.listdir(annot))[0]))
    return [f"--input_dir={data}", f"--output_dir={root}/out", "--splits=train"]


DATA_CASES: List[Case] = [
    Case("camvid_missing_label", "tools.convert_camvid", _camvid_missing_label,
         ("trainannot", "label PNG not found", "--skip_bad")),
]

# -- training: train / evaluate / export / predict, checkpoints, config values --------------------

TRAINING_CASES: List[Case] = [
    Case("train_unknown_config_key", "tools.train",
         lambda root, res: ["--config=suw/synthetic_s", f"--workdir={root}/w",
                            "--set=train.stepz=3"],
         ("train.stepz", "Did you mean train.steps")),
]

# -- cli: flags, paths ----------------------------------------------------------------------------

CLI_CASES: List[Case] = [
    Case("train_without_config", "tools.train", lambda root, res: [f"--workdir={root}/w"],
         ("--config",)),
]

CASES = DATA_CASES + TRAINING_CASES + CLI_CASES


@pytest.fixture(scope="session")
def resources(tmp_path_factory) -> Resources:
    return Resources(str(tmp_path_factory.mktemp("battery_resources")))


def test_case_names_are_unique():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, resources: Resources, tmp_path):
    root = str(tmp_path)
    args = list(case.prepare(root, resources))
    before = _snapshot(root)
    result = run_tool(case.tool, args, root, case.env)
    output = f"--- args {args}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert result.returncode == case.code, output
    assert "Traceback" not in result.stderr, output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output
    # The message is printed once: no absl `E... ] <message>` duplicate of it.
    message = error_lines[0][len("error:"):].strip()
    duplicates = [line for line in result.stderr.splitlines()
                  if line is not error_lines[0] and message[:60] in line
                  and not line.startswith("error:")]
    assert not duplicates, output
    for fragment in case.fragments:
        assert fragment in error_lines[0], (fragment, output)
    after = _snapshot(root)
    leftovers = [p for p in after if _matches(p, TEMP_PATTERNS)]
    assert not leftovers, (leftovers, output)
    changed = [p for p in before if before[p] != after.get(p) and not _matches(p, case.may_change)]
    assert not changed, (changed, output)
    created = [p for p in after if p not in before and not _matches(p, case.may_create)]
    assert not created, (created, output)
    if case.check is not None:
        case.check(root)


def test_battery_is_broad_enough():
    """The issue asks for >= 40 cases across converters, labelling tools, train, evaluate,
    export and predict."""
    tools = {case.tool for case in CASES}
    assert len(CASES) >= 40, len(CASES)
    for wanted in ("tools.convert_", "tools.generate_weak_labels", "tools.align_object_masks",
                   "tools.train", "tools.evaluate", "tools.export", "tools.predict"):
        assert any(t.startswith(wanted) for t in tools), wanted
