"""Hoyer et al. Table S2 at toy scale: semi-supervised segmentation on synthetic CamVid-layout
drives with 50 labels, SDE trained on synthetic Cityscapes-layout sequences (the paper's
cross-dataset setting), variants x seeds, mean +- std of the test mIoU.

Not a test. Everything goes through the project's tools, with the configs' own paths (the
`workdir/` layout of `configs/hoyer/synthetic_*`), so each run is what a user gets from
`bazel run //tools:train -- --config=hoyer/<config>`:

  1. data, when missing: tools/make_synthetic --layout=camvid and --layout=cityscapes,
     tools/convert_camvid, tools/convert_cityscapes --mode=sequence (the configs' docstrings'
     commands);
  2. the SDE: tools/train --config=hoyer/synthetic_cityscapes_sde -> workdir/sde_cs (trains or
     resumes it; --sde_steps stops it earlier than its config's 600 steps);
  3. its disparity on the CamVid training records (DepthMix's depth), when missing:
     tools/predict_pseudo_depth -> workdir/data/camvid_pseudo_depth (+ the DepthMix figure);
  4. for each seed and variant, tools/train with the variant's config into
     <root>/runs/<variant>/seed<k>, then tools/evaluate on the held-out test drive (the last
     checkpoint: keep-best picks by the val drive, the test drive is for the table only).

Variants (the configs are the paper's recipes scaled down, see configs/hoyer/):
  baseline  synthetic_camvid_seg         random init (no ImageNet offline)
  dt        synthetic_camvid_seg_dt      encoder + decoder from the SDE (transfer)
  classmix  synthetic_camvid_classmix    mean teacher + ClassMix, random init
  dt_xd     synthetic_camvid_dt_depthmix transfer + mean teacher + DepthMix
  dt_xd_s   as dt_xd with the 50 labelled images chosen by tools/select_annotations
            (configs/hoyer/synthetic_camvid_selection with this study's SDE, into
            <root>/selection, run once when missing; or --selection=<a selected_50.txt>)

Seeds: seed k sets train.seed=k and, for the randomly drawn labelled subsets, seg.labeled_seed=k
(the reference draws its subset from the run's seed too); seed 0 is the configs' default, so
seed 0's runs are the configs' runs. dt_xd_s keeps the selected subset for every seed.

Results: bench/results/bench_seg_study.json, rewritten after every run (a killed study
resumes: finished runs are kept, the interrupted one resumes from its checkpoint). With
--plots_dir: seg_study_curves.png (validation mIoU during training, mean +- std over seeds)
and seg_study_bars.png. Prints the table in the paper's form (mIoU in %, mean +- std, delta to
the baseline).

Example (one seed, the issue-15 comparison; ~1 h on 2 shared cores):
  .venv/bin/python bench/bench_seg_study.py --seeds=0 --plots_dir=docs
Three seeds (issue 16's Table S2 at toy scale; resumes):
  .venv/bin/python bench/bench_seg_study.py --seeds=0,1,2 --sde_steps=400 \
      --variants=baseline,dt,classmix,dt_xd,dt_xd_s --plots_dir=docs
"""

from __future__ import annotations

import argparse
import json
import os

import study

REPO = study.REPO
VARIANTS = {  # name -> (label in the tables, config)
    "baseline": ("Baseline", "hoyer/synthetic_camvid_seg"),
    "dt": ("DT", "hoyer/synthetic_camvid_seg_dt"),
    "classmix": ("ClassMix", "hoyer/synthetic_camvid_classmix"),
    "dt_xd": ("DT+XD", "hoyer/synthetic_camvid_dt_depthmix"),
    "dt_xd_s": ("DT+XD+S", "hoyer/synthetic_camvid_dt_depthmix"),
}
DATA = os.path.join("workdir", "data")
SDE_RUN = os.path.join("workdir", "sde_cs")
CAMVID = os.path.join(DATA, "camvid_records")
CITYSCAPES = os.path.join(DATA, "cityscapes_sequence")
PSEUDO_DEPTH = os.path.join(DATA, "camvid_pseudo_depth")


def ensure_inputs(args, log) -> dict:
    """Data, SDE and pseudo depth in the configs' default places; seconds per stage run."""
    seconds = {}

    def has(path, name="manifest.json"):
        return os.path.exists(os.path.join(REPO, path, name))

    if not has(CAMVID):
        seconds["camvid_data"] = study.run_tool(
            ["tools.make_synthetic", "--layout=camvid", f"--output_dir={DATA}/camvid_raw",
             "--num_drives=5", "--frames_per_drive=24", "--height=72", "--width=96",
             "--num_workers=2"], log)
        seconds["camvid_data"] += study.run_tool(
            ["tools.convert_camvid", f"--input_dir={DATA}/camvid_raw", f"--output_dir={CAMVID}",
             "--height=64", "--width=84", "--num_shards=2"], log)
    if not has(CITYSCAPES):
        seconds["cityscapes_data"] = study.run_tool(
            ["tools.make_synthetic", "--layout=cityscapes",
             f"--output_dir={DATA}/cityscapes_raw", "--num_drives=6", "--frames_per_drive=24",
             "--height=64", "--width=128", "--num_workers=2"], log)
        seconds["cityscapes_data"] += study.run_tool(
            ["tools.convert_cityscapes", f"--input_dir={DATA}/cityscapes_raw",
             f"--output_dir={CITYSCAPES}", "--mode=sequence", "--height=64", "--width=128"],
            log)
    # Trains, resumes a stopped run, or (finished) only restores and returns.
    seconds["sde"] = study.run_tool(
        ["tools.train", "--config=hoyer/synthetic_cityscapes_sde", f"--workdir={SDE_RUN}",
         "--set=train.eval_every=100", "--set=train.checkpoint_every=100"]
        + ([f"--set=train.steps={args.sde_steps}"] if args.sde_steps else []), log)
    if not has(PSEUDO_DEPTH):
        seconds["pseudo_depth"] = study.run_tool(
            ["tools.predict_pseudo_depth", f"--input={CAMVID}/train-*.tfrecord",
             f"--sde={SDE_RUN}", f"--output_dir={PSEUDO_DEPTH}",
             f"--figure={os.path.join(args.root, 'depthmix.png')}"], log)
    if "dt_xd_s" in args.variants.split(",") and not args.selection:
        selection = os.path.join(args.root, "selection")
        seconds["selection"] = study.run_tool(
            ["tools.select_annotations", "--config=hoyer/synthetic_camvid_selection",
             f"--output_dir={selection}", f"--sde={SDE_RUN}"], log)  # resumes when stopped
        args.selection = os.path.join(REPO, selection, "selected_50.txt")
    return seconds


def run_overrides(variant: str, seed: int, args) -> list:
    """--set overrides of one run: evaluation cadence, seed, the selected subset."""
    overrides = [f"train.eval_every={args.eval_every}"]
    if seed:
        overrides.append(f"train.seed={seed}")
        if variant != "dt_xd_s":
            overrides.append(f"seg.labeled_seed={seed}")
    if variant == "dt_xd_s":
        overrides += ["seg.labeled_count=0",
                      f"seg.labeled_ids_file={os.path.abspath(args.selection)}"]
    return overrides


def train_and_evaluate(variant: str, seed: int, args, log) -> dict:
    label, config = VARIANTS[variant]
    workdir = os.path.join(args.root, "runs", variant, f"seed{seed}")
    seconds = study.run_tool(["tools.train", f"--config={config}", f"--workdir={workdir}"]
                             + [f"--set={o}" for o in run_overrides(variant, seed, args)], log)
    out = os.path.join(workdir, "test_eval.json")
    study.run_tool(["tools.evaluate", f"--workdir={workdir}",
                    f"--split={CAMVID}/test-*.tfrecord", "--checkpoint=latest",
                    f"--out={out}"], log)
    with open(os.path.join(REPO, out)) as f:
        results = json.load(f)["segmentation"]["results"]
    test = next(iter(results.values()))
    with open(os.path.join(REPO, workdir, "history.json")) as f:
        history = json.load(f)
    curve = [(row["step"], row["miou"]) for row in history["eval"] if "miou" in row]
    return {"workdir": workdir, "config": config, "train_seconds": seconds,
            "test": {k: v for k, v in test.items() if k == "miou" or k == "pixel_accuracy"
                     or k.startswith("iou/")},
            "val_curve": curve}


def table(store: study.ResultStore, variants) -> str:
    """The paper's form: mIoU in % mean +- std (seeds), delta of the means to the baseline."""
    def mious(variant):
        return [e["test"]["miou"] for e in store.by_variant(variant)]

    base_mean, _ = study.mean_std(mious("baseline")) if mious("baseline") else (None, None)
    def last_val(variant):
        return [e["val_curve"][-1][1] for e in store.by_variant(variant) if e["val_curve"]]

    base_val = last_val("baseline")
    val_base = study.mean_std(base_val)[0] if base_val else None
    lines = ["| variant | test mIoU % (mean +- std, seeds) | vs baseline | pixel acc % | "
             "val-drive mIoU % at the last step | vs baseline |",
             "|---|---|---|---|---|---|"]
    for variant in variants:
        values = mious(variant)
        if not values:
            continue
        mean, _ = study.mean_std(values)
        delta = "" if base_mean is None or variant == "baseline" else \
            f"{100 * (mean - base_mean):+.1f}"
        acc = [e["test"]["pixel_accuracy"] for e in store.by_variant(variant)]
        val = last_val(variant)
        val_delta = "" if val_base is None or variant == "baseline" or not val else \
            f"{100 * (study.mean_std(val)[0] - val_base):+.1f}"
        lines.append(f"| {VARIANTS[variant][0]} | {study.format_mean_std(values, 100)} | "
                     f"{delta} | {study.format_mean_std(acc, 100)} | "
                     f"{study.format_mean_std(val, 100) if val else ''} | {val_delta} |")
    return "\n".join(lines)


def plot(store: study.ResultStore, variants, plots_dir: str) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plots_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for variant in variants:
        curves = [tuple(zip(*e["val_curve"])) for e in store.by_variant(variant)
                  if e["val_curve"]]
        study.curve_band(ax, curves, VARIANTS[variant][0])
    ax.set_xlabel("step")
    ax.set_ylabel("validation mIoU (val drive)")
    ax.set_title("synthetic CamVid, 50 labels: mIoU during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    curves_path = os.path.join(plots_dir, "seg_study_curves.png")
    fig.savefig(curves_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    names, means, stds = [], [], []
    for variant in variants:
        values = [100 * e["test"]["miou"] for e in store.by_variant(variant)]
        if values:
            mean, std = study.mean_std(values)
            names.append(f"{VARIANTS[variant][0]}\n(n={len(values)})")
            means.append(mean)
            stds.append(std)
    ax.bar(names, means, yerr=stds, capsize=4, color="C0")
    ax.set_ylabel("test mIoU %")
    ax.set_title("held-out test drive (mean +- std over seeds)")
    fig.tight_layout()
    bars_path = os.path.join(plots_dir, "seg_study_bars.png")
    fig.savefig(bars_path, dpi=110)
    plt.close(fig)
    return [curves_path, bars_path]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.join("workdir", "seg_study"),
                        help="runs and logs (relative to the repo)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "bench_seg_study.json"))
    parser.add_argument("--variants", default="baseline,dt,classmix,dt_xd")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--sde_steps", type=int, default=0,
                        help="train the SDE this many steps instead of its config's")
    parser.add_argument("--selection", default="",
                        help="dt_xd_s: an ids file of tools/select_annotations (default: run "
                             "it with this study's SDE into <root>/selection)")
    parser.add_argument("--plots_dir", default=None, help="write the PNG figures here (docs/)")
    parser.add_argument("--report_only", action="store_true",
                        help="print the table (and figures) of the stored runs; train nothing")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]

    os.makedirs(os.path.join(REPO, args.root), exist_ok=True)
    log = os.path.join(REPO, args.root, "study.log")
    store = study.ResultStore(args.out, {"eval_every": args.eval_every,
                                         "sde_steps": args.sde_steps},
                              ["eval_every", "sde_steps"])
    if not args.report_only:
        store.data.setdefault("inputs_seconds", {}).update(ensure_inputs(args, log))
        store.save()
    for seed in ([] if args.report_only else seeds):
        for variant in variants:
            if store.has(variant, seed):
                continue
            entry = train_and_evaluate(variant, seed, args, log)
            store.put(variant, seed, entry)
            print(f"{variant:9s} seed {seed}: test mIoU {entry['test']['miou']:.4f} "
                  f"({entry['train_seconds']:.0f} s)", flush=True)
    if args.plots_dir:
        store.data["figures"] = plot(store, variants, args.plots_dir)
        store.save()
    print("\n" + table(store, variants))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
