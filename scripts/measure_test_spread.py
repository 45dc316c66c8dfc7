"""Reruns the measured tests over seeds x oneDNN settings and tabulates what they assert.

The tests that assert on a training trajectory or on float rounding take a seed offset
(`TF_DEPTHSEG_TEST_SEED`) and record each asserted quantity with its bound (see
tests/conftest.py; pytest marker `measured`). This script runs them once per seed and per
`TF_ENABLE_ONEDNN_OPTS` value, one pytest process at a time, and prints per quantity:
min / median / max over the runs, the bound, and the margin = (distance from the worst run
to the bound) / (max - min), i.e. how many times the observed spread fits between the worst
run and the bound, also on a log scale for positive quantities (those that vary by factors);
a row is marked LOW when both are under 3. docs/testing.md explains the table and keeps the
last figures.

    .venv/bin/python scripts/measure_test_spread.py                     # all measured tests
    .venv/bin/python scripts/measure_test_spread.py -k suw --seeds 0-2  # a subset
    .venv/bin/python scripts/measure_test_spread.py tests/test_models_overfit.py --onednn 0
    .venv/bin/python scripts/measure_test_spread.py --summarize_only    # table of saved runs

Measures are appended to --out (JSON lines; a rerun of the same test, seed and setting
replaces the older value in the table), the table is written next to it (.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(tempfile.gettempdir(), "tf_depthseg_test_spread", "measures.jsonl")
MIN_MARGIN = 3.0  # the worst run must be 3 spreads away from the bound


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,2,7' -> list of ints."""
    if "-" in text.strip("-"):
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",") if s.strip()]


def run_pytest(paths, keyword, seed, onednn, out, python):
    """One pytest process for one (seed, oneDNN) pair; returns {nodeid: (outcome, seconds)}."""
    env = dict(os.environ, TF_DEPTHSEG_TEST_SEED=str(seed), TF_ENABLE_ONEDNN_OPTS=onednn,
               TF_DEPTHSEG_MEASURE_FILE=out, TF_CPP_MIN_LOG_LEVEL="2",
               TF_DEPTHSEG_PROGRESS="0")
    with tempfile.TemporaryDirectory() as tmp:
        junit = os.path.join(tmp, "junit.xml")
        command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                   "-m", "measured", f"--junitxml={junit}", *paths]
        if keyword:
            command += ["-k", keyword]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if not os.path.exists(junit):  # pytest did not get to run anything
            sys.exit(f"pytest failed to start:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        outcomes = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            nodeid = case.get("classname").replace(".", "/") + ".py::" + case.get("name")
            failed = any(child.tag in ("failure", "error") for child in case)
            skipped = any(child.tag == "skipped" for child in case)
            outcomes[nodeid] = ("failed" if failed else "skipped" if skipped else "passed",
                                float(case.get("time", 0.0)))
    return outcomes


def load_rows(path):
    """Measure rows of `path`, the last one per (test, name, seed, oneDNN)."""
    latest = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    latest[(row["test"], row["name"], row["seed"], row["onednn"])] = row
    return list(latest.values())


def margin(values, below, above):
    """Spreads between the worst value and the bound (inf for a zero spread that passes)."""
    spread = max(values) - min(values)
    gap = below - max(values) if below is not None else min(values) - above
    if gap <= 0:
        return gap / spread if spread else -math.inf
    return gap / spread if spread else math.inf


def log_margin(values, below, above):
    """The margin on a log scale, for positive quantities that vary by factors (norms, loss
    ratios, rounding errors); None where a value or the bound is not positive."""
    bound = below if below is not None else above
    if min(values) <= 0 or bound <= 0:
        return None
    return margin([math.log(v) for v in values], below and math.log(below),
                  above and math.log(above))


def summarize(rows, outcomes=None) -> tuple[str, list]:
    """Markdown table (one row per test and quantity) and the same as dicts."""
    groups = {}
    for row in rows:
        groups.setdefault((row["test"], row["name"]), []).append(row)
    lines, table, current_file = [], [], None
    for (test, name), group in sorted(groups.items()):
        test_file, test_name = test.split("::", 1)
        if test_file != current_file:  # one table per test file
            current_file = test_file
            lines += ["" if lines else None, f"`{test_file}`", "",
                      "| test | quantity | bound | n | min | median | max | margin | log margin |",
                      "|---|---|---|---|---|---|---|---|---|"]
        values = [float(r["value"]) for r in group]
        below, above = group[-1]["below"], group[-1]["above"]
        entry = {"test": test, "name": name, "n": len(values), "min": min(values),
                 "median": statistics.median(values), "max": max(values),
                 "below": below, "above": above,
                 "settings": sorted({f"seed={r['seed']},onednn={r['onednn'] or 'default'}"
                                     for r in group})}
        bound = f"< {below:.4g}" if below is not None else (
            f"> {above:.4g}" if above is not None else "")
        entry["margin"] = margin(values, below, above) if bound else None
        entry["log_margin"] = log_margin(values, below, above) if bound else None
        entry["low"] = bool(bound) and max(
            m for m in (entry["margin"], entry["log_margin"], -math.inf) if m is not None
        ) < MIN_MARGIN
        shown = ["" if m is None else f"{m:.3g}" for m in (entry["margin"], entry["log_margin"])]
        cell = name.replace("|", "\\|")  # a '|' in a name would split the markdown cell
        lines.append(f"| {test_name} | {cell} | {bound} | {len(values)} | "
                     f"{entry['min']:.4g} | {entry['median']:.4g} | {entry['max']:.4g} | "
                     f"{shown[0]} | {shown[1]}{' **LOW**' if entry['low'] else ''} |")
        table.append(entry)
    if outcomes:
        lines += ["", "| test | runs | failed | median time (s) |", "|---|---|---|---|"]
        for test, results in sorted(outcomes.items()):
            failed = sum(outcome == "failed" for outcome, _ in results)
            seconds = statistics.median(t for _, t in results)
            lines.append(f"| {test.split('/')[-1]} | {len(results)} | {failed} | "
                         f"{seconds:.1f} |")
    return "\n".join(line for line in lines if line is not None), table


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=["tests"],
                        help="test files or node ids (default: all of tests/)")
    parser.add_argument("-k", dest="keyword", default="", help="pytest -k expression")
    parser.add_argument("--seeds", default="0-4", help="seed offsets: '0-4' or '0,3,5'")
    parser.add_argument("--onednn", default="1,0", help="TF_ENABLE_ONEDNN_OPTS values")
    parser.add_argument("--out", default=DEFAULT_OUT, help="measures file (JSON lines)")
    parser.add_argument("--summarize_only", action="store_true",
                        help="print the table of the runs already in --out")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    outcomes = {}
    if not args.summarize_only:
        settings = [(seed, onednn) for seed in parse_seeds(args.seeds)
                    for onednn in args.onednn.split(",")]
        for index, (seed, onednn) in enumerate(settings, 1):
            start = time.time()
            results = run_pytest(args.paths, args.keyword, seed, onednn, out, sys.executable)
            failed = sorted(t for t, (outcome, _) in results.items() if outcome == "failed")
            print(f"[{index}/{len(settings)}] seed={seed} TF_ENABLE_ONEDNN_OPTS={onednn}: "
                  f"{len(results)} tests, {len(failed)} failed, {time.time() - start:.0f} s"
                  + "".join(f"\n    FAILED {t}" for t in failed), flush=True)
            for test, result in results.items():
                outcomes.setdefault(test, []).append(result)
    text, table = summarize(load_rows(out), outcomes)
    print(text)
    base = os.path.splitext(out)[0]
    with open(base + ".md", "w") as f:
        f.write(text + "\n")
    with open(base + "_summary.json", "w") as f:
        json.dump(table, f, indent=1)
    print(f"\nmeasures: {out}\ntable: {base}.md")
    if any(e["low"] for e in table):
        print(f"some margins are below {MIN_MARGIN} spreads on both scales (marked LOW)")


if __name__ == "__main__":
    main()
