"""Weak labels and object-mask alignment on synthetic drives: accuracy, precision/recall, speed.

Not a test. Generates drives with `synthetic.generate_drive` and reports:

* weak pairs checked against the ground-truth depth, per rule and per strategy (pixel "diff",
  patch "diff", patch "same", patch "same+diff", "random_gt" from sparse depth), on the true
  masks and on degraded masks (a stand-in for a segmenter's predictions);
* alignment of the instance masks of every (t, t-1, t+1) clip against the generator's true
  tracks, on clean masks and on masks eroded, dilated, shifted, partly dropped (every object is
  renumbered per frame, as an independent segmenter would);
* images/s of pair generation and of alignment (the library functions), and of both tools'
  record rewrite (decode, label, encode, write) on the drives' records;
* with --figures_dir, the preview pictures of docs/weak_labels.md.

Example:
  .venv/bin/python bench/bench_weak_labels.py --num_drives=4 --frames=12
  (writes bench/results/bench_weak_labels.json)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_depthseg import visualize  # noqa: E402
from tf_depthseg.data import datasets  # noqa: E402
from tf_depthseg.data import image_io  # noqa: E402
from tf_depthseg.labels import object_alignment as oa  # noqa: E402
from tf_depthseg.data import records  # noqa: E402
from tf_depthseg.data import schema  # noqa: E402
from tf_depthseg import synthetic  # noqa: E402
from tf_depthseg.labels import weak_labels as wl  # noqa: E402

SKY_TRAIN_ID = datasets.cityscapes_train_id("sky")
EQUAL_TOLERANCE = 0.05  # relative depth difference under which two patches are "equal"
LIDAR_DENSITY = 0.05  # fraction of valid pixels kept for the sparse "random from gt" depth

# name -> (strategy, half sizes)
VARIANTS = {
    "pixel_diff": ("diff", (0,)),
    "patch_diff": ("diff", (1, 2, 3, 4)),
    "patch_same": ("same", (1, 2, 3, 4)),
    "patch_same+diff": ("same+diff", (1, 2, 3, 4)),
    "random_gt": ("random_gt", (0,)),
}
# name -> perturb_instances keyword arguments
ALIGNMENT_CASES = {
    "clean": {},
    "eroded_1px": {"erode": 1},
    "dilated_1px": {"dilate": 1},
    "shifted_2px": {"max_shift": 2},
    "dropped_10pct": {"drop_probability": 0.1},
    "all_combined": {"erode": 1, "dilate": 2, "max_shift": 2, "drop_probability": 0.1},
}


def degrade_mask(train_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A predicted-looking mask: shifted by up to 2 px and 2 % of pixels set to random classes."""
    dy, dx = rng.integers(-2, 3, size=2)
    out = np.roll(train_ids, (int(dy), int(dx)), axis=(0, 1))
    noise = rng.random(out.shape) < 0.02
    out = out.copy()
    out[noise] = rng.integers(0, datasets.CITYSCAPES_NUM_CLASSES, noise.sum())
    return out


def sparse_depth(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(depth.shape) < LIDAR_DENSITY, depth, 0.0).astype(np.float32)


def new_tally():
    return {"correct": 0, "usable": 0, "pairs": 0, "images": 0}


def add(tally, correct, usable, pairs):
    tally["correct"] += correct
    tally["usable"] += usable
    tally["pairs"] += pairs


def finish(tally):
    out = dict(tally)
    out["accuracy"] = tally["correct"] / tally["usable"] if tally["usable"] else None
    out["pairs_per_image"] = tally["pairs"] / max(tally["images"], 1)
    return out


def evaluate_weak_labels(drives, pairs_per_rule, seed):
    """Accuracy per (mask kind, variant, rule) and pair-generation speed."""
    results = {}
    timing = {"images": 0, "seconds": 0.0, "cpu_seconds": 0.0, "pairs": 0}
    for mask_kind in ("true_masks", "degraded_masks"):
        for variant, (strategy, half_sizes) in VARIANTS.items():
            if mask_kind == "degraded_masks" and strategy == "random_gt":
                continue
            config = wl.WeakLabelConfig(strategy=strategy, pairs_per_rule=pairs_per_rule,
                                        half_sizes=half_sizes)
            tallies = {"all": new_tally()}
            for drive in drives:
                for index, frame in enumerate(drive.frames):
                    rng = wl.image_rng(seed, f"{drive.seed}/{index}")
                    mask = (frame.train_ids if mask_kind == "true_masks"
                            else degrade_mask(frame.train_ids, rng))
                    depth = sparse_depth(frame.depth, rng) if strategy == "random_gt" else None
                    start, cpu_start = time.perf_counter(), time.process_time()
                    by_rule = wl.generate_weak_pairs(mask, config, rng, depth=depth)
                    elapsed = time.perf_counter() - start
                    cpu = time.process_time() - cpu_start
                    if mask_kind == "true_masks" and variant == "patch_same+diff":
                        timing["images"] += 1
                        timing["seconds"] += elapsed
                        timing["cpu_seconds"] += cpu
                        timing["pairs"] += sum(len(p) for p in by_rule.values())
                    # Ground truth: the generator's dense depth; true sky is infinitely far.
                    infinite = frame.train_ids == SKY_TRAIN_ID
                    tallies["all"]["images"] += 1
                    for rule, pairs in by_rule.items():
                        tally = tallies.setdefault(rule, new_tally())
                        tally["images"] += 1
                        correct, usable = wl.pair_accuracy(pairs, frame.depth, infinite,
                                                           EQUAL_TOLERANCE)
                        add(tally, correct, usable, len(pairs))
                        add(tallies["all"], correct, usable, len(pairs))
            results.setdefault(mask_kind, {})[variant] = {k: finish(v)
                                                          for k, v in tallies.items()}
    speed = {"images_per_s": timing["images"] / max(timing["seconds"], 1e-9),
             "images_per_cpu_s": timing["images"] / max(timing["cpu_seconds"], 1e-9),
             "pairs_per_image": timing["pairs"] / max(timing["images"], 1)}
    return results, speed


def evaluate_alignment(drives, seed, min_area):
    """Precision / recall per matching mode and perturbation, and alignment speed (clips/s).

    Recall is reported against two sets of true tracks: every track visible (>= min_area
    pixels) in all three frames, and the "trackable" ones whose true masks satisfy the paper's
    rule (IoU > 0.3 with the target in both neighbours); fast, thin objects (pedestrians on the
    sidewalk) move more than that between frames and only the compensated mode aligns them.
    """
    results = {match: {} for match in oa.MATCH_MODES}
    speed = {}
    for match in oa.MATCH_MODES:
        seconds, cpu_seconds, clips = 0.0, 0.0, 0
        for case, kwargs in ALIGNMENT_CASES.items():
            totals = np.zeros(6, np.int64)  # correct, aligned, found vis., vis., found tr., tr.
            for drive in drives:
                rng = np.random.default_rng([seed, drive.seed])
                for t in range(1, len(drive.frames) - 1):
                    clip = [drive.frames[i].instance_ids for i in (t, t - 1, t + 1)]
                    visible = oa.true_alignable_ids(clip, min_area=min_area)
                    trackable = oa.true_trackable_ids(clip, min_area=min_area)
                    perturbed, mappings = zip(*(oa.perturb_instances(f, rng, **kwargs)
                                                for f in clip))
                    start, cpu_start = time.perf_counter(), time.process_time()
                    _, aligned = oa.align_objects(perturbed, target_index=0, min_area=min_area,
                                                  match=match)
                    if case == "clean":
                        seconds += time.perf_counter() - start
                        cpu_seconds += time.process_time() - cpu_start
                        clips += 1
                    correct, predicted, found, num_visible = oa.alignment_counts(
                        aligned, mappings, visible)
                    _, _, found_trackable, num_trackable = oa.alignment_counts(
                        aligned, mappings, trackable)
                    totals += [correct, predicted, found, num_visible, found_trackable,
                               num_trackable]
            correct, predicted, found, visible, found_tr, trackable = totals.tolist()
            results[match][case] = {
                "precision": correct / predicted if predicted else None,
                "recall_visible": found / visible if visible else None,
                "recall_trackable": found_tr / trackable if trackable else None,
                "correct": correct, "aligned": predicted, "trackable": trackable,
                "visible": visible}
        speed[match] = {"clips_per_s": clips / max(seconds, 1e-9),
                        "clips_per_cpu_s": clips / max(cpu_seconds, 1e-9)}
    return results, speed


def write_figures(drives, pairs_per_rule, seed, min_area, figures_dir):
    """Docs pictures: one frame's weak pairs next to its mask, and the clip of the first drive
    with the most objects aligned only by motion compensation (top row: the paper's rule,
    bottom row: compensated; t-1, t, t+1 left to right, unaligned objects grey)."""
    os.makedirs(figures_dir, exist_ok=True)
    frame = drives[0].frames[len(drives[0].frames) // 2]
    pairs = wl.concat_pairs(wl.generate_weak_pairs(
        frame.train_ids, wl.WeakLabelConfig(pairs_per_rule=pairs_per_rule // 8),
        wl.image_rng(seed, "figure")))
    paths = {"weak_pairs": os.path.join(figures_dir, "weak_pairs_preview.png"),
             "alignment": os.path.join(figures_dir, "alignment_preview.png")}
    image_io.write_png(paths["weak_pairs"], visualize.side_by_side([
        visualize.draw_weak_pairs(frame.rgb, pairs),
        datasets.colorize(frame.train_ids, datasets.CITYSCAPES_TRAIN_PALETTE)]))
    best = None
    for t in range(1, len(drives[0].frames) - 1):
        clip = [drives[0].frames[i] for i in (t, t - 1, t + 1)]
        _, aligned = oa.align_objects([f.instance_ids for f in clip], min_area=min_area)
        gained = sum(obj.compensated for obj in aligned)
        if best is None or gained > best[0]:
            best = (gained, clip)
    clip = best[1]
    rows = []
    for match in ("paper", "compensated"):
        ids = [f.instance_ids for f in clip]
        maps, _ = oa.align_objects(ids, min_area=min_area, match=match)
        kept = [oa.kept_objects(i, min_area=min_area) for i in ids]
        rows.append(visualize.side_by_side([
            visualize.overlay_instances(clip[i].rgb, maps[i], kept[i]) for i in (1, 0, 2)]))
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    image_io.write_png(paths["alignment"], np.concatenate([rows[0], gap, rows[1]], axis=0))
    return paths


def tool_throughput(drives, pairs_per_rule):
    """Records/s of both tools' rewrite (decode + label + encode + write) on the drives."""
    from tf_depthseg.labels import object_alignment_records, weak_label_records
    with tempfile.TemporaryDirectory() as tmp:
        samples = []
        for drive in drives:
            for t in range(1, len(drive.frames) - 1):
                frames = [drive.frames[i] for i in (t, t - 1, t + 1)]
                samples.append(schema.Sample(
                    image=frames[0].rgb, source_id=f"drive{drive.seed}/{t:04d}",
                    context=[f.rgb for f in frames[1:]], intrinsics=drive.intrinsics,
                    depth=frames[0].depth, semantic=frames[0].train_ids,
                    instances=[f.instance_ids.astype(np.uint16) for f in frames]))
        records.write_split(os.path.join(tmp, "in"), "train",
                            (schema.encode_example(s) for s in samples), num_shards=2)
        pattern = records.split_pattern(os.path.join(tmp, "in"), "train")
        start, cpu_start = time.perf_counter(), time.process_time()
        weak_label_records.generate(pattern, os.path.join(tmp, "weak"), None,
                                    wl.WeakLabelConfig(pairs_per_rule=pairs_per_rule))
        weak_seconds = time.perf_counter() - start
        weak_cpu = time.process_time() - cpu_start
        start, cpu_start = time.perf_counter(), time.process_time()
        object_alignment_records.align(pattern, os.path.join(tmp, "aligned"))
        align_seconds = time.perf_counter() - start
        align_cpu = time.process_time() - cpu_start
    return {"records": len(samples),
            "generate_weak_labels_records_per_s": len(samples) / weak_seconds,
            "generate_weak_labels_records_per_cpu_s": len(samples) / weak_cpu,
            "align_object_masks_records_per_s": len(samples) / align_seconds,
            "align_object_masks_records_per_cpu_s": len(samples) / align_cpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_drives", type=int, default=4)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--pairs_per_rule", type=int, default=64)
    parser.add_argument("--min_area", type=int, default=20,
                        help="objects smaller than this (pixels) are neither truth nor aligned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first_drive_seed", type=int, default=1000,
                        help="drives use seeds first_drive_seed + i (the tests use 1000+)")
    parser.add_argument("--figures_dir", default=None,
                        help="write the preview pictures of docs/weak_labels.md here (docs/)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(
        __file__)), "results", "bench_weak_labels.json"))
    args = parser.parse_args()

    config = synthetic.SceneConfig(height=args.height, width=args.width,
                                   frames_per_drive=args.frames)
    start = time.perf_counter()
    drives = [synthetic.generate_drive(config, seed=args.first_drive_seed + i)
              for i in range(args.num_drives)]
    generate_seconds = time.perf_counter() - start

    if args.figures_dir:
        for path in write_figures(drives, args.pairs_per_rule, args.seed, args.min_area,
                                  args.figures_dir).values():
            print(f"wrote {path}")
    weak, weak_speed = evaluate_weak_labels(drives, args.pairs_per_rule, args.seed)
    alignment, align_speed = evaluate_alignment(drives, args.seed, args.min_area)
    tools_speed = tool_throughput(drives, args.pairs_per_rule)
    result = {
        "setup": {"num_drives": args.num_drives, "frames_per_drive": args.frames,
                  "size": [args.height, args.width], "pairs_per_rule": args.pairs_per_rule,
                  "equal_tolerance": EQUAL_TOLERANCE, "lidar_density": LIDAR_DENSITY,
                  "min_area": args.min_area, "first_drive_seed": args.first_drive_seed,
                  "generate_seconds": generate_seconds},
        "weak_labels": weak, "alignment": alignment,
        "speed": {"weak_pairs": weak_speed, "alignment": align_speed, "tools": tools_speed},
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)

    def pct(value):
        return "  n/a " if value is None else f"{100 * value:5.1f}%"

    print(f"{args.num_drives} drives x {args.frames} frames at {args.height}x{args.width}")
    for mask_kind, variants in weak.items():
        print(f"\nweak-pair accuracy vs ground-truth depth ({mask_kind}; equal within "
              f"{EQUAL_TOLERANCE:.0%}):")
        for variant, rules in variants.items():
            parts = [f"{rule} {pct(t['accuracy'])} ({t['usable']}/{t['pairs']})"
                     for rule, t in rules.items()]
            print(f"  {variant:16s} " + "; ".join(parts))
    print("\nalignment vs true tracks: precision / recall of all tracks visible in the 3 "
          "frames / recall of the trackable ones (true masks pass the paper's IoU > 0.3):")
    for match, cases in alignment.items():
        print(f" match={match}")
        for case, r in cases.items():
            print(f"  {case:14s} {pct(r['precision'])} / {pct(r['recall_visible'])} / "
                  f"{pct(r['recall_trackable'])} ({r['correct']} correct of {r['aligned']} "
                  f"aligned; {r['visible']} visible, {r['trackable']} trackable)")
    print(f"\nspeed, wall clock (per CPU second in brackets; the wall figure depends on other "
          f"load on the machine):\n"
          f"  weak pairs {weak_speed['images_per_s']:.0f} ({weak_speed['images_per_cpu_s']:.0f})"
          f" images/s, {weak_speed['pairs_per_image']:.0f} pairs/image\n"
          + "".join(f"  alignment match={m} {v['clips_per_s']:.0f} ({v['clips_per_cpu_s']:.0f})"
                    " clips/s\n" for m, v in align_speed.items()) +
          f"  tools on records (decode + label + encode + write): generate_weak_labels "
          f"{tools_speed['generate_weak_labels_records_per_s']:.1f} "
          f"({tools_speed['generate_weak_labels_records_per_cpu_s']:.1f}) rec/s, "
          f"align_object_masks {tools_speed['align_object_masks_records_per_s']:.1f} "
          f"({tools_speed['align_object_masks_records_per_cpu_s']:.1f}) rec/s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
