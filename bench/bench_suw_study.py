"""SUW-Learn study on synthetic drives: S, U, W, SU, SW, SUW (encoder-decoder) and S (hourglass)
at equal training budgets, evaluated on a held-out drive next to the constant-depth baseline.

Not a test. Pipeline, all through the project's own tools (subprocesses, as a user runs them):

  1. tools/make_synthetic --layout=kitti (drives with LiDAR-row depth and segmenter stand-ins:
     the generator's semantic and instance maps under predictions/),
  2. tools/convert_kitti (train / val / test drives; semantic masks stored with the records),
  3. tools/generate_weak_labels --strategy=same+diff (patch pairs 3x3..9x9) on train,
  4. for each variant, tools/train with configs/suw/synthetic_<variant>.py and the same
     steps, batch, image size and seed,
  5. tools/evaluate on the held-out test drive (+ constant median-depth baseline), both in
     metres (no scaling) and with per-image median scaling (U and W alone are scale-ambiguous).

Writes bench/results/bench_suw_study.json (everything, incl. learning curves) and, with
--plots_dir, docs/suw_study_curves.png and docs/suw_study_bars.png.

Example (about 35 minutes on 2 shared cores; docs/suw_study.md reports this run):
  .venv/bin/python bench/bench_suw_study.py --steps=150 --eval_every=50 --plots_dir=docs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("s", "u", "w", "su", "sw", "suw", "hourglass_s")
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def run(args, log_path, env=None):
    """Runs a tool module (`-m tools.x ...`) from the repo root; output to a log file."""
    command = [sys.executable, "-m"] + list(args)
    started = time.time()
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}; see {log_path}")
    return time.time() - started


def make_data(work, args, log, env):
    """Synthetic KITTI layout -> records -> weak pairs. Skipped when already there."""
    raw, records, weak = (os.path.join(work, d) for d in ("raw", "kitti", "kitti_weak"))
    timings = {}
    if not os.path.exists(os.path.join(raw, "splits", "eigen_test_files.txt")):
        timings["make_synthetic"] = run(
            ["tools.make_synthetic", "--layout=kitti", f"--output_dir={raw}",
             f"--num_drives={args.num_drives}", f"--frames_per_drive={args.frames}",
             "--height=128", "--width=416", f"--seed={args.seed}", "--num_workers=2"], log, env)
    if not os.path.exists(os.path.join(records, "manifest.json")) or not any(
            n.startswith("test-") for n in os.listdir(records)):
        timings["convert_kitti"] = run(
            ["tools.convert_kitti", f"--input_dir={raw}", f"--output_dir={records}",
             "--splits=train,val,test", "--num_shards=2",
             f"--semantic_dir={os.path.join(raw, 'predictions', 'semantic')}"], log, env)
    if not os.path.exists(os.path.join(weak, "manifest.json")):
        timings["generate_weak_labels"] = run(
            ["tools.generate_weak_labels", f"--input={records}/train-*.tfrecord",
             f"--output_dir={weak}", "--strategy=same+diff", "--pairs_per_rule=64"], log, env)
    return {"train": f"{weak}/train-*.tfrecord", "val": f"{records}/val-*.tfrecord",
            "test": f"{records}/test-*.tfrecord"}, timings


def train_variant(variant, patterns, work, args, log, env):
    workdir = os.path.join(work, "runs", variant)
    overrides = [f"data.train_pattern={patterns['train']}",
                 f"data.eval_pattern={patterns['val']}",
                 f"data.image_size=[{args.height},{args.width}]",
                 f"data.batch_size={args.batch_size}", "data.eval_batch_size=4",
                 "data.shuffle_buffer=256", f"train.steps={args.steps}",
                 f"train.eval_every={args.eval_every}", f"train.log_every={args.log_every}",
                 f"train.checkpoint_every={args.eval_every}", "train.image_summaries_every=0",
                 f"train.seed={args.seed}", f"optim.learning_rate={args.learning_rate}",
                 "optim.schedule=constant", "eval.max_examples=0"]
    if variant == "hourglass_s":
        overrides[overrides.index(f"optim.learning_rate={args.learning_rate}")] = (
            f"optim.learning_rate={args.hourglass_learning_rate}")
    command = ["tools.train", f"--config=suw/synthetic_{variant}", f"--workdir={workdir}"]
    command += [f"--set={o}" for o in overrides]
    seconds = run(command, log, env)
    return workdir, seconds


def evaluate(workdir, pattern, median_scaling, out, log, env, baselines=True):
    command = ["tools.evaluate", f"--workdir={workdir}", f"--split={pattern}",
               "--checkpoint=latest", f"--out={out}",
               f"--set=eval.median_scaling={'true' if median_scaling else 'false'}"]
    if baselines:
        command.append("--baselines")
    run(command, log, env)
    with open(out) as f:
        return json.load(f)["results"]


def plot(results, plots_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plots_dir, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for variant, entry in results["runs"].items():
        evals = entry["history"]["eval"]
        if evals:
            axes[0].plot([r["step"] for r in evals], [r["abs_rel"] for r in evals],
                         marker="o", ms=3, label=variant.upper().replace("HOURGLASS_S",
                                                                         "S (hourglass)"))
        train = [r for r in entry["history"]["train"] if r.get("total") is not None]
        if train:
            first = train[0]["total"] or 1.0
            axes[1].plot([r["step"] for r in train], [r["total"] / first for r in train],
                         label=variant)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("validation AbsRel (U, W: median-scaled)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[0].set_title("validation AbsRel during training")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("training loss / first logged value")
    axes[1].set_yscale("log")
    axes[1].set_title("training loss (relative)")
    fig.tight_layout()
    curves = os.path.join(plots_dir, "suw_study_curves.png")
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "metric", "test AbsRel, metres (no scaling)"),
                           (axes[1], "median_scaled", "test AbsRel, median-scaled")):
        names, values = [], []
        for variant, entry in results["runs"].items():
            names.append(variant.upper().replace("HOURGLASS_S", "S-hg"))
            values.append(entry[key]["abs_rel"])
        names.append("const")
        values.append(results["baseline"][key]["abs_rel"])
        ax.bar(names, values, color=["C0"] * (len(names) - 1) + ["C7"])
        ax.set_title(title)
        ax.set_ylabel("AbsRel (lower is better)")
    fig.tight_layout()
    bars = os.path.join(plots_dir, "suw_study_bars.png")
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return [curves, bars]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/suw_study", help="data and runs folder")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "bench_suw_study.json"))
    parser.add_argument("--plots_dir", default=None, help="write PNG figures here (docs/)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--num_drives", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--log_every", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=208)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--hourglass_learning_rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    os.makedirs(args.work, exist_ok=True)
    log = os.path.join(args.work, "study.log")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    patterns, data_seconds = make_data(args.work, args, log, env)
    results = {"settings": vars(args), "patterns": patterns, "data_seconds": data_seconds,
               "runs": {}}
    if os.path.exists(args.out):  # resume a partly finished study
        with open(args.out) as f:
            previous = json.load(f)
        if previous.get("settings", {}).get("steps") == args.steps:
            results["runs"] = previous.get("runs", {})
            if "baseline" in previous:
                results["baseline"] = previous["baseline"]
    for variant in args.variants.split(","):
        if variant in results["runs"]:
            continue
        workdir, seconds = train_variant(variant, patterns, args.work, args, log, env)
        metric = evaluate(workdir, patterns["test"], False,
                          os.path.join(workdir, "test_metric.json"), log, env)
        scaled = evaluate(workdir, patterns["test"], True,
                          os.path.join(workdir, "test_median_scaled.json"), log, env)
        name = next(n for n in metric if n != "constant_median")
        with open(os.path.join(workdir, "history.json")) as f:
            history = json.load(f)
        results["runs"][variant] = {
            "train_seconds": seconds, "workdir": workdir,
            "metric": {k: metric[name][k] for k in METRICS + ("num_images",)},
            "median_scaled": {k: scaled[name][k] for k in METRICS},
            "history": history}
        results["baseline"] = {
            "median_depth_m": metric["constant_median"]["median_depth_m"],
            "metric": {k: metric["constant_median"][k] for k in METRICS},
            "median_scaled": {k: scaled["constant_median"][k] for k in METRICS}}
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"{variant:12s} {seconds:6.0f} s  AbsRel {results['runs'][variant]['metric']['abs_rel']:.4f}"
              f" (median-scaled {results['runs'][variant]['median_scaled']['abs_rel']:.4f})",
              flush=True)
    if args.plots_dir:
        results["figures"] = plot(results, args.plots_dir)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print("\nvariant        AbsRel   RMSE     d1   | median-scaled AbsRel  RMSE    d1")
    rows = list(results["runs"].items()) + [("constant", results["baseline"])]
    for variant, entry in rows:
        m, s = entry["metric"], entry["median_scaled"]
        print(f"{variant:12s} {m['abs_rel']:7.4f} {m['rmse']:7.3f} {m['a1']:6.3f} | "
              f"{s['abs_rel']:7.4f} {s['rmse']:7.3f} {s['a1']:6.3f}")
    print("\n| variant | steps | train s | AbsRel | RMSE (m) | d1 | median-scaled AbsRel | "
          "median-scaled RMSE | median-scaled d1 |\n|---|---|---|---|---|---|---|---|---|")
    for variant, entry in rows:
        m, s = entry["metric"], entry["median_scaled"]
        seconds = f"{entry['train_seconds']:.0f}" if "train_seconds" in entry else "-"
        steps = args.steps if "train_seconds" in entry else "-"
        print(f"| {variant} | {steps} | {seconds} | {m['abs_rel']:.3f} | {m['rmse']:.2f} | "
              f"{m['a1']:.3f} | {s['abs_rel']:.3f} | {s['rmse']:.2f} | {s['a1']:.3f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
