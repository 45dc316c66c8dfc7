"""The import graph's rules (issue 13, "Done when"), read from the source with `ast` (nothing is
imported, so no TensorFlow): which rooms may not import which.

`import_violations(root, rules)` is the checker; the tests run it on the repository, on a copy
of the library with one planted violation, and on a tiny fake tree that exercises every import
form it understands.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import os
import shutil
from typing import Iterator, List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Rule:
    """Files matching `files` (glob relative to the root, `**` = any depth) may not import
    `forbidden` modules or anything inside them; `exempt` files are left out."""

    name: str
    files: str
    forbidden: Tuple[str, ...]
    why: str
    exempt: Tuple[str, ...] = ()


RULES = (
    Rule("library_is_not_a_tool", "tf_depthseg/**.py",
         ("tf_depthseg.cli", "tools", "absl.flags"),
         "library modules raise errors.UserError and read their arguments, never flags; "
         "cli.py and tools/ call them",
         # cli.py is the tools' own helper (flag definitions shared by tools, `cli.run`); it
         # lives in the package so that tools and console scripts can import it.
         exempt=("tf_depthseg/cli.py",)),
    Rule("models_do_not_import_losses", "tf_depthseg/models/**.py", ("tf_depthseg.losses",),
         "shared math (bins) lives in its own module, e.g. tf_depthseg/depth_bins.py"),
    Rule("data_does_not_import_its_producers", "tf_depthseg/data/**.py",
         ("tf_depthseg.converters", "tf_depthseg.labels", "tf_depthseg.synthetic"),
         "data/ is the input pipeline and records; the rooms that write records import it"),
    Rule("evaluation_does_not_import_training", "tf_depthseg/evaluation/**.py",
         ("tf_depthseg.training",),
         "tasks and tools/evaluate both use evaluation/, so it cannot depend on a task"),
    Rule("metrics_are_pure", "tf_depthseg/metrics/**.py",
         ("tf_depthseg.evaluation", "tf_depthseg.training", "tf_depthseg.data"),
         "metrics/ holds pure tensor / numpy functions; evaluation/ runs them over datasets"),
    # Tests run tools as subprocesses (`python -m tools.<tool>`); their logic is imported from
    # the library. No exception is needed: tests/test_cli.py checks every tool's flags by
    # running it with runpy in a child process (its HELP_DRIVER), not by importing it.
    Rule("tests_do_not_import_tools", "tests/**.py", ("tools",),
         "logic a test needs lives in tf_depthseg/; run the tool itself as a subprocess"),
)


def _module_name(relative_path: str) -> str:
    parts = relative_path[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    """Absolute module of a (possibly relative) `from` import in module `current`."""
    if not level:
        return module
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


# Calls that import the module named by their first (string) argument.
_DYNAMIC_IMPORTS = {("importlib", "import_module"), ("runpy", "run_module"),
                    (None, "__import__"), (None, "import_module")}


def imported_modules(path: str, relative_path: str) -> Iterator[Tuple[int, str]]:
    """(line, dotted name) of every module a file imports, anywhere in it (functions too).

    `from a import b` yields "a" and "a.b" (b may be a module or a name in a); relative imports
    are resolved; `importlib.import_module("m")`, `runpy.run_module("m")` and
    `__import__("m")` with a literal name count as imports of m.
    """
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    current = _module_name(relative_path)
    is_package = relative_path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, current, is_package)
            if base:
                yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
                key = (function.value.id, function.attr)
            elif isinstance(function, ast.Name):
                key = (None, function.id)
            else:
                continue
            first = node.args[0]
            if (key in _DYNAMIC_IMPORTS and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)):
                yield node.lineno, first.value


def _matches(relative_path: str, pattern: str) -> bool:
    # fnmatch's "*" crosses "/", so "a/**.py" means every .py file anywhere under a/.
    return fnmatch.fnmatchcase(relative_path, pattern.replace("**", "*"))


def python_files(root: str) -> List[str]:
    """Every .py file under root (relative, "/"-separated), skipping caches and venvs."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if not d.startswith((".", "__pycache__", "bazel-")))
        found.extend(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                     for name in sorted(files) if name.endswith(".py"))
    return found


def import_violations(root: str, rules: Sequence[Rule] = RULES) -> List[str]:
    """"path:line: imports module (rule: why)" for every import that breaks a rule."""
    violations = []
    for relative_path in python_files(root):
        applicable = [rule for rule in rules if _matches(relative_path, rule.files)
                      and relative_path not in rule.exempt]
        if not applicable:
            continue
        seen = set()
        for line, module in imported_modules(os.path.join(root, relative_path),
                                             relative_path):
            for rule in applicable:
                for forbidden in rule.forbidden:
                    if module == forbidden or module.startswith(forbidden + "."):
                        key = (line, forbidden, rule.name)
                        if key not in seen:  # "from a import b" yields a and a.b
                            seen.add(key)
                            violations.append(f"{relative_path}:{line}: imports {forbidden} "
                                              f"({rule.name}: {rule.why})")
    return violations


def test_the_repository_follows_the_import_rules():
    violations = import_violations(REPO)
    assert not violations, "\n".join(violations)


def test_every_rule_covers_files_of_the_repository():
    """A rule whose folder was renamed away would pass without checking anything."""
    files = python_files(REPO)
    for rule in RULES:
        covered = [f for f in files if _matches(f, rule.files) and f not in rule.exempt]
        assert len(covered) >= 2, (rule.name, covered)
        assert all(f in files for f in rule.exempt), rule.exempt


def test_a_violation_planted_in_a_copy_of_the_repository_is_found(tmp_path):
    """The same checker on a copy of the library and tests, with one import added inside a
    function of a real model module."""
    for folder in ("tf_depthseg", "tests"):
        shutil.copytree(os.path.join(REPO, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "BUILD"))
    assert import_violations(str(tmp_path)) == []
    target = tmp_path / "tf_depthseg" / "models" / "layers.py"
    lines = target.read_text().splitlines()
    target.write_text("\n".join(lines + ["", "def _planted():",
                                         "    from tf_depthseg.losses import depth",
                                         "    return depth", ""]))
    assert import_violations(str(tmp_path)) == [
        f"tf_depthseg/models/layers.py:{len(lines) + 3}: imports tf_depthseg.losses "
        "(models_do_not_import_losses: shared math (bins) lives in its own module, e.g. "
        "tf_depthseg/depth_bins.py)"]


FAKE_TREE = {
    # Violations (the line of each is the one with "# x").
    "tf_depthseg/models/net.py": "import os\n"
                                 "def f():\n"
                                 "    from tf_depthseg.losses import depth  # x\n",
    "tf_depthseg/models/head.py": "from ..losses.ranking import ranking_loss  # x\n",
    "tf_depthseg/training/loop.py": "from .. import cli  # x\n",
    "tf_depthseg/data/pipeline.py": "from tf_depthseg.data import records\n"
                                    "import tf_depthseg.synthetic.render as render  # x\n",
    "tf_depthseg/data/__init__.py": "from . import records\n"
                                    "from ..labels import weak_labels  # x\n",
    "tf_depthseg/converters/base.py": "from absl import app, flags  # x\n",
    "tf_depthseg/utils.py": "import absl.flags as f  # x\n"
                            "import tools.train  # x\n",
    "tf_depthseg/export/predict.py": "import importlib\n"
                                     "m = importlib.import_module('tools.predict')  # x\n",
    "tests/test_x.py": "import subprocess, sys\n"
                       "from tools import train  # x\n",
    "tests/test_y.py": "import runpy\n"
                       "runpy.run_module('tools.evaluate', run_name='__main__')  # x\n",
    # Allowed: the exemption, look-alike names, tools named in strings, data importing data.
    "tf_depthseg/cli.py": "from absl import flags\n",
    "tf_depthseg/models/suw.py": "from tf_depthseg import depth_bins, errors\n"
                                 "from tf_depthseg.errors import UserError\n"
                                 "from absl import app, logging\n"
                                 "import toolsmith\n"
                                 "losses = 'tf_depthseg.losses'\n",
    "tf_depthseg/data/records.py": "from tf_depthseg.data import schema\n"
                                   "from tf_depthseg import labels_doc\n",
    "tests/test_z.py": "import subprocess, sys\n"
                       "subprocess.run([sys.executable, '-m', 'tools.train'])\n"
                       "from test_helpers import run_tool\n",
}


def test_the_checker_on_a_fake_tree(tmp_path):
    expected = set()
    for relative_path, text in FAKE_TREE.items():
        path = tmp_path / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for number, line in enumerate(text.splitlines(), 1):
            if line.endswith("# x"):
                expected.add(f"{relative_path}:{number}")
    found = import_violations(str(tmp_path))
    assert {violation.split(": imports")[0] for violation in found} == expected, found
    assert len(found) == len(expected)  # one entry per violating import, not one per name
    by_place = {violation.split(": imports")[0]: violation for violation in found}
    assert "imports tf_depthseg.cli (library_is_not_a_tool" in by_place[
        "tf_depthseg/training/loop.py:1"]
    assert "imports tf_depthseg.losses" in by_place["tf_depthseg/models/head.py:1"]
    assert "imports tf_depthseg.labels (data_does_not" in by_place[
        "tf_depthseg/data/__init__.py:2"]
    assert "imports tools (tests_do_not_import_tools" in by_place["tests/test_y.py:2"]
