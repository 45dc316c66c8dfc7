"""What the studies under bench/ share: running the project's tools as a user does, a results
file that keeps each finished run (so a study resumes where it stopped), mean +- std over
seeds, and learning-curve bands.

A study is a grid of (variant, seed) runs, each trained and evaluated through `tools/*`
subprocesses into its own workdir. Its results file is rewritten atomically after every run,
so a killed study loses at most the run in progress (and `tools/train` resumes that one from
its last checkpoint on the next call).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tf_depthseg.utils import atomic_write_text  # noqa: E402


def tool_env() -> dict:
    """The environment for tool subprocesses: quiet TF, no progress bars in the logs."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")


def run_tool(args, log_path: str, env=None) -> float:
    """Runs `python -m <args>` from the repo root, output appended to log_path; seconds taken.

    Raises SystemExit naming the command and the log when the tool fails.
    """
    command = [sys.executable, "-m"] + [str(a) for a in args]
    started = time.time()
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=env if env is not None else tool_env())
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}; see {log_path}")
    return time.time() - started


class ResultStore:
    """A study's results JSON: {"settings": ..., "runs": {"<variant>/seed<k>": entry}}.

    Runs stored under other settings (the keys in `compare`, e.g. steps) measured something
    else: opening the file with different ones stops with SystemExit naming them, and the
    file is left alone (continue the study with its settings, or give another results file).
    """

    def __init__(self, path: str, settings: dict, compare=()):
        self.path = path
        self.data = {"settings": settings, "runs": {}}
        if os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
            old = previous.get("settings", {})
            differ = [k for k in compare if old.get(k) != settings.get(k)]
            if differ:
                raise SystemExit(
                    f"{path} holds a study with other settings: "
                    + ", ".join(f"{k} {old.get(k)!r} there, {settings.get(k)!r} now"
                                for k in differ)
                    + ". Give the stored settings to continue or report it, or --out=<another "
                    "file> for a new study (the file is left as it is).")
            self.data["runs"] = previous.get("runs", {})
            for key, value in previous.items():
                self.data.setdefault(key, value)

    @staticmethod
    def key(variant: str, seed: int) -> str:
        return f"{variant}/seed{seed}"

    def has(self, variant: str, seed: int) -> bool:
        return self.key(variant, seed) in self.data["runs"]

    def put(self, variant: str, seed: int, entry: dict) -> None:
        self.data["runs"][self.key(variant, seed)] = entry
        self.save()

    def save(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")

    def by_variant(self, variant: str) -> list:
        """The stored entries of one variant, in seed order."""
        prefix = variant + "/seed"
        return [entry for key, entry in sorted(self.data["runs"].items(),
                                               key=lambda kv: int(kv[0].rsplit("seed", 1)[1]))
                if key.startswith(prefix)]


def mean_std(values) -> tuple:
    """(mean, sample std with ddof=1; 0 for one value), NaN-free input expected."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_mean_std(values, scale: float = 1.0, digits: int = 1) -> str:
    """"m +- s (n)" with values multiplied by scale (e.g. 100 for mIoU in %)."""
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f} +- {std:.{digits}f} ({len(values)})"


def curve_band(ax, curves, label: str, color=None) -> None:
    """Plots the mean of several (steps, values) curves with a +-std band on a matplotlib axis.

    Curves are cut to the steps all of them have (a seed still running has fewer points).
    """
    if not curves:
        return
    common = sorted(set.intersection(*(set(steps) for steps, _ in curves)))
    if not common:
        return
    rows = [[dict(zip(steps, values))[s] for s in common] for steps, values in curves]
    stats = [mean_std(column) for column in zip(*rows)]
    means = [m for m, _ in stats]
    stds = [s for _, s in stats]
    line, = ax.plot(common, means, marker="o", ms=3, color=color,
                    label=f"{label} (n={len(curves)})")
    if len(curves) > 1:
        ax.fill_between(common, [m - s for m, s in zip(means, stds)],
                        [m + s for m, s in zip(means, stds)], color=line.get_color(),
                        alpha=0.2)
