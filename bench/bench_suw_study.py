"""SUW-Learn Table 3 at toy scale: S, U, W, SU, SW, SUW and the weak-label ablation (pixel vs
patch, same / diff / same+diff, random pairs from the ground truth), seeds x variants,
mean +- std on a held-out synthetic drive next to the constant-depth baseline.

Not a test. Everything goes through the project's own tools (subprocesses, as a user runs them):

  1. tools/make_synthetic --layout=kitti at the training size (64x208, 32 LiDAR rows: the
     demo's drives, so no resize touches the sparse depth), the generator's semantic and
     instance maps standing in for a segmenter;
  2. tools/convert_kitti (train / val / test drives, masks stored with the records);
  3. tools/generate_weak_labels, once per strategy a variant needs (same+diff, same, diff,
     random_gt), patch pairs 3x3..9x9; a "pixel" variant compares only the centre pixels
     (`suw.weak=pixel`), as the paper's pixel-based labels;
  4. for each seed and variant, tools/train with configs/suw/synthetic_<config>.py into
     <work>/runs/<variant>/seed<k> (same steps, batch, size, learning rate; seed k sets
     train.seed, the data stay the seed-0 drives);
  5. tools/evaluate on the test drive (last checkpoint) + the constant median-depth baseline,
     in metres and with per-image median scaling (U and W alone are scale-ambiguous).

Variants (the paper's Table 3 rows: S; SW pixel diff; SW patch same; SW patch diff; SW patch
same+diff; SW* pixel random-from-gt; plus its Table 2 combinations):
  s, u, w, su, sw, suw, hourglass_s   the configs of the same name (W: patch, same+diff)
  sw_pixel_diff, sw_patch_same, sw_patch_diff, sw_random_gt   SW with other weak labels

Results: bench/results/bench_suw_study.json (study.ResultStore: rewritten after every run, a
killed study resumes; runs stored under other settings are dropped). With --plots_dir:
suw_study_curves.png (validation AbsRel during training, mean +- std over seeds) and
suw_study_bars.png. Prints the table in the paper's form (AbsRel % and RMSE, mean +- std,
delta to S).

Example (3 seeds of the Table 2 combinations and the weak-label ablation; resumes):
  .venv/bin/python bench/bench_suw_study.py --seeds=0,1,2 --plots_dir=docs
"""

from __future__ import annotations

import argparse
import json
import os

import study

REPO = study.REPO
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# name -> (label, config under configs/suw/, weak strategy of its records, extra --set)
VARIANTS = {
    "s": ("S", "synthetic_s", "same+diff", ()),
    "u": ("U", "synthetic_u", "same+diff", ()),
    "w": ("W", "synthetic_w", "same+diff", ()),
    "su": ("SU", "synthetic_su", "same+diff", ()),
    "sw": ("SW patch same+diff", "synthetic_sw", "same+diff", ()),
    "suw": ("SUW", "synthetic_suw", "same+diff", ()),
    "hourglass_s": ("S (hourglass)", "synthetic_hourglass_s", "same+diff", ()),
    "sw_pixel_diff": ("SW pixel diff", "synthetic_sw", "diff", ("suw.weak=pixel",)),
    "sw_patch_same": ("SW patch same", "synthetic_sw", "same", ()),
    "sw_patch_diff": ("SW patch diff", "synthetic_sw", "diff", ()),
    "sw_random_gt": ("SW* pixel random from gt", "synthetic_sw", "random_gt",
                     ("suw.weak=pixel",)),
}
DEFAULT_VARIANTS = "s,su,sw,suw,sw_pixel_diff,sw_patch_same,sw_patch_diff"
# Settings that change what a run measures: a stored run under others is dropped.
COMPARED = ("steps", "batch_size", "height", "width", "learning_rate",
            "hourglass_learning_rate", "num_drives", "frames", "lidar_rows")


def make_data(args, strategies, log) -> dict:
    """Drives -> records -> weak pairs per strategy, each skipped when there; glob patterns."""
    raw, records = (os.path.join(args.work, d) for d in ("raw", "kitti"))
    if not os.path.exists(os.path.join(raw, "splits", "eigen_test_files.txt")):
        study.run_tool(["tools.make_synthetic", "--layout=kitti", f"--output_dir={raw}",
                        f"--num_drives={args.num_drives}", f"--frames_per_drive={args.frames}",
                        f"--height={args.height}", f"--width={args.width}",
                        f"--lidar_rows={args.lidar_rows or args.height // 2}",
                        "--num_workers=2"], log)
    if not os.path.exists(os.path.join(records, "manifest.json")) or not any(
            n.startswith("test-") for n in os.listdir(records)):
        study.run_tool(["tools.convert_kitti", f"--input_dir={raw}", f"--output_dir={records}",
                        "--splits=train,val,test", "--num_workers=2",
                        f"--semantic_dir={os.path.join(raw, 'predictions', 'semantic')}",
                        f"--instance_dir={os.path.join(raw, 'predictions', 'instances')}"], log)
    patterns = {"val": f"{records}/val-*.tfrecord", "test": f"{records}/test-*.tfrecord"}
    for strategy in strategies:
        weak = os.path.join(args.work, "weak_" + strategy.replace("+", "_"))
        if not os.path.exists(os.path.join(weak, "manifest.json")):
            study.run_tool(["tools.generate_weak_labels", f"--input={records}/train-*.tfrecord",
                            f"--output_dir={weak}", f"--strategy={strategy}",
                            "--pairs_per_rule=64"], log)
        patterns[strategy] = f"{weak}/train-*.tfrecord"
    return patterns


def train_and_evaluate(variant: str, seed: int, patterns: dict, args, log) -> dict:
    label, config, strategy, extra = VARIANTS[variant]
    workdir = os.path.join(args.work, "runs", variant, f"seed{seed}")
    learning_rate = (args.hourglass_learning_rate if variant == "hourglass_s"
                     else args.learning_rate)
    overrides = [f"data.train_pattern={patterns[strategy]}", f"data.eval_pattern={patterns['val']}",
                 f"data.image_size=[{args.height},{args.width}]",
                 f"data.batch_size={args.batch_size}", "data.eval_batch_size=4",
                 "data.shuffle_buffer=256", f"train.steps={args.steps}",
                 f"train.eval_every={args.eval_every}", f"train.log_every={args.log_every}",
                 f"train.checkpoint_every={args.eval_every}", "train.image_summaries_every=0",
                 f"train.seed={seed}", f"optim.learning_rate={learning_rate}",
                 "optim.schedule=constant", "eval.max_examples=0", *extra]
    seconds = study.run_tool(["tools.train", f"--config=suw/{config}", f"--workdir={workdir}"]
                             + [f"--set={o}" for o in overrides], log)
    entry = {"label": label, "workdir": workdir, "train_seconds": seconds}
    for key, scaling in (("metric", "false"), ("median_scaled", "true")):
        out = os.path.join(workdir, f"test_{key}.json")
        study.run_tool(["tools.evaluate", f"--workdir={workdir}", f"--split={patterns['test']}",
                        "--checkpoint=latest", f"--out={out}", "--baselines",
                        f"--set=eval.median_scaling={scaling}"], log)
        with open(out) as f:
            results = json.load(f)["results"]
        name = next(n for n in results if n != "constant_median")
        entry[key] = {k: results[name][k] for k in METRICS}
        entry["baseline_" + key] = {k: results["constant_median"][k] for k in METRICS}
    with open(os.path.join(workdir, "history.json")) as f:
        history = json.load(f)
    entry["val_curve"] = [(r["step"], r["abs_rel"]) for r in history["eval"] if "abs_rel" in r]
    entry["train_curve"] = [(r["step"], r["total"]) for r in history["train"]
                            if r.get("total") is not None]
    return entry


def table(store: study.ResultStore, variants, key: str) -> str:
    """The paper's form: AbsRel in % and RMSE (m), mean +- std over seeds, deltas to S."""
    def values(variant, metric):
        return [e[key][metric] for e in store.by_variant(variant)]

    reference = {m: study.mean_std(values("s", m))[0] if values("s", m) else None
                 for m in ("abs_rel", "rmse")}
    lines = ["| variant | AbsRel % | vs S | RMSE (m) | vs S | d1 |", "|---|---|---|---|---|---|"]
    rows = [(v, VARIANTS[v][0]) for v in variants] + [("constant", "constant median")]
    for variant, label in rows:
        if variant == "constant":
            entries = [e for v in variants for e in store.by_variant(v)][:1]
            pick = lambda m: [e["baseline_" + key][m] for e in entries]  # noqa: E731
        else:
            entries = store.by_variant(variant)
            pick = lambda m, v=variant: values(v, m)  # noqa: E731
        if not entries:
            continue
        cells = []
        for metric, scale in (("abs_rel", 100), ("rmse", 1)):
            mean = study.mean_std(pick(metric))[0]
            delta = ("" if reference[metric] is None or variant in ("s", "constant")
                     else f"{scale * (mean - reference[metric]):+.2f}")
            cells += [study.format_mean_std(pick(metric), scale, 2), delta]
        cells.append(study.format_mean_std(pick("a1"), 1, 3))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(store: study.ResultStore, variants, plots_dir: str) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plots_dir, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for variant in variants:
        entries = store.by_variant(variant)
        label = VARIANTS[variant][0]
        study.curve_band(axes[0], [tuple(zip(*e["val_curve"])) for e in entries
                                   if e["val_curve"]], label)
        study.curve_band(axes[1], [tuple(zip(*e["train_curve"])) for e in entries
                                   if e["train_curve"]], label)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("validation AbsRel (val drive)")
    axes[0].set_title("validation AbsRel during training (mean +- std over seeds)")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("training loss (weighted total)")
    axes[1].set_yscale("log")
    axes[1].set_title("training loss")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    curves = os.path.join(plots_dir, "suw_study_curves.png")
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    for ax, key, title in ((axes[0], "metric", "test AbsRel, metres (no scaling)"),
                           (axes[1], "median_scaled", "test AbsRel, median-scaled")):
        names, means, stds = [], [], []
        for variant in variants:
            values = [e[key]["abs_rel"] for e in store.by_variant(variant)]
            if values:
                mean, std = study.mean_std(values)
                names.append(VARIANTS[variant][0].replace(" ", "\n") + f"\n(n={len(values)})")
                means.append(mean)
                stds.append(std)
        first = next((e for v in variants for e in store.by_variant(v)), None)
        if first is not None:  # the constant median-depth baseline, the same for every run
            names.append("constant\nmedian")
            means.append(first["baseline_" + key]["abs_rel"])
            stds.append(0.0)
        drawn = ax.bar(names, means, yerr=stds, capsize=3,
                       color=(["C0"] * (len(names) - (first is not None))
                              + ["C7"] * (first is not None)))
        # The variants differ by tenths of a point: print the means (AbsRel %) on the bars.
        ax.bar_label(drawn, labels=[f"{100 * m:.1f}" for m in means], fontsize=7,
                     label_type="center", color="white")
        ax.set_title(title)
        ax.set_ylabel("AbsRel (lower is better)")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    bars = os.path.join(plots_dir, "suw_study_bars.png")
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return [curves, bars]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=os.path.join(REPO, "workdir", "suw_study"),
                        help="data and runs folder")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "bench_suw_study.json"))
    parser.add_argument("--plots_dir", default=None, help="write PNG figures here (docs/)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--num_drives", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--log_every", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=208)
    parser.add_argument("--lidar_rows", type=int, default=0,
                        help="LiDAR rows of the drives (0: height / 2, ~46 %% of the pixels; "
                             "KITTI's velodyne covers ~5 %%: try 4 with another --work/--out)")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--hourglass_learning_rate", type=float, default=5e-4)
    parser.add_argument("--report_only", action="store_true",
                        help="print the tables (and figures) of the stored runs; train nothing")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    os.makedirs(args.work, exist_ok=True)
    log = os.path.join(args.work, "study.log")
    # lidar_rows is stored only when set, so studies stored before it existed still match.
    settings = {k: getattr(args, k) for k in COMPARED if k != "lidar_rows" or args.lidar_rows}
    store = study.ResultStore(args.out, settings, COMPARED)
    if not args.report_only:
        patterns = make_data(args, sorted({VARIANTS[v][2] for v in variants}), log)
        store.save()
    for seed in ([] if args.report_only else seeds):
        for variant in variants:
            if store.has(variant, seed):
                continue
            entry = train_and_evaluate(variant, seed, patterns, args, log)
            store.put(variant, seed, entry)
            print(f"{variant:14s} seed {seed}: AbsRel {entry['metric']['abs_rel']:.4f} "
                  f"(median-scaled {entry['median_scaled']['abs_rel']:.4f}, "
                  f"{entry['train_seconds']:.0f} s)", flush=True)
    if args.plots_dir:
        store.data["figures"] = plot(store, variants, args.plots_dir)
        store.save()
    for key, title in (("metric", "metres, no scaling"), ("median_scaled", "median-scaled")):
        print(f"\nTest drive, {title}:\n" + table(store, variants, key))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
