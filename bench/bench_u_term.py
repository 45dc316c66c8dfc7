"""Why SUW's U term learned slowly and unstably, measured (docs/u_term.md). Not a test.

Two parts (`--part`):

* `landscape`: the view-synthesis loss (`losses.view_synthesis`, Monodepth2's SSIM + L1 with
  auto-masking, as the SUW task calls it) of a generated drive at 64x208 with its exact poses,
  for the ground-truth depth scaled by 0.5..2, with log-normal noise, at the SUW head's 1/4
  resolution, and for a constant depth. If the minimum is not at the ground truth, the data
  or the warp is the defect. Seconds.
* `curves`: the U-only SUW config (`configs/suw/synthetic_u.py`: encoder-decoder, ego-motion
  pose net sharing the encoder) trained through `tools/train` on the `make demo` drives
  (`workdir/data/kitti_records`, 64x208, batch 4, Adam 1e-3 constant) for each
  `--variants` x `--seeds`, evaluated every `--eval_every` steps on the held-out test drive with
  per-image median scaling, next to the constant baseline (any constant is the same after
  median scaling). Minutes per run. `--config=hoyer/synthetic_kitti_sde` draws the same
  curves for self-supervised depth (docs/sde.md).

Variants (`--set` overrides of the config; the code itself is the current one):
  default        the config as it is;
  scale1         suw.pose_translation_scale=1 (Monodepth2's 0.01 translation unit);
  scale100       suw.pose_translation_scale=100;
  lr1e-3         optim.learning_rate=1e-3 (the SDE configs' rate before docs/sde.md's fix);
  noautomask     <section>.automask=false (suw. or sde., by the config; docs/sde.md section 4).

Examples:
  .venv/bin/python bench/bench_u_term.py --part=landscape
  .venv/bin/python bench/bench_u_term.py --part=curves --variants=scale1,default --seeds=0,1,2 \
      --steps=800 --eval_every=100
  .venv/bin/python bench/bench_u_term.py --part=curves --config=hoyer/synthetic_kitti_sde \
      --variants=default --seeds=0 --steps=600 --eval_every=100
  .venv/bin/python bench/bench_u_term.py --part=plot          # docs/u_term_curves.png
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_depthseg.utils import atomic_write_text  # noqa: E402
VARIANTS = {"default": [], "scale1": ["suw.pose_translation_scale=1"],
            "scale100": ["suw.pose_translation_scale=100"],
            # SDE (--config=hoyer/synthetic_kitti_sde, docs/sde.md): the rate before the fix.
            "lr1e-3": ["optim.learning_rate=1e-3"],
            "noautomask": ["{section}.automask=false"]}


def landscape(args):
    import numpy as np
    import tensorflow as tf

    from tf_depthseg import synthetic
    from tf_depthseg.geometry import transforms
    from tf_depthseg.losses import view_synthesis
    from tf_depthseg.training.tasks.suw import depth_to_disparity

    scene = synthetic.SceneConfig(height=args.height, width=args.width, frames_per_drive=7)
    drive = synthetic.generate_drive(scene, seed=args.drive_seed)
    targets = range(1, 6)
    image = np.stack([drive.frames[t].rgb for t in targets]).astype(np.float32) / 255.0
    context = np.stack([[drive.frames[t - 1].rgb, drive.frames[t + 1].rgb]
                        for t in targets]).astype(np.float32) / 255.0
    depth = np.stack([drive.frames[t].depth for t in targets])[..., None].astype(np.float32)
    depth = np.where(depth > 0, depth, 80.0)  # sky (0 = no depth): far, as the bins' end
    poses = np.stack([[drive.frames[t + d].world_from_camera for d in (0, -1, 1)]
                      for t in targets]).astype(np.float32)
    motion = tf.stack([transforms.relative_pose(poses[:, 0], poses[:, i]) for i in (1, 2)], 1)
    intrinsics = np.repeat(drive.intrinsics[None].astype(np.float32), len(targets), 0)

    def loss(depth_map, quarter=False, automask=True):
        disparity = depth_to_disparity(depth_map, 1.0, 80.0)
        if quarter:  # the encoder-decoder's head sits at 1/4 resolution
            disparity = tf.nn.avg_pool2d(disparity, 4, 4, "VALID")
        out = view_synthesis.multiscale_view_synthesis_loss(
            image, context, [disparity], intrinsics, motion, min_depth=1.0, max_depth=80.0,
            automask=automask)
        return float(out["photometric"])

    scales = (0.5, 0.7, 0.85, 0.95, 1.0, 1.05, 1.2, 1.5, 2.0)
    rows = {}
    for quarter in (False, True):
        for automask in (True, False):
            name = f"{'1/4' if quarter else 'full'} resolution, automask={automask}"
            rows[name] = [loss(depth * s, quarter, automask) for s in scales]
    rng = np.random.default_rng(0)
    noise = {str(sigma): loss(depth * np.exp(rng.normal(0, sigma, depth.shape)).astype(
        np.float32)) for sigma in (0.05, 0.1, 0.2, 0.4)}
    median = float(np.median(depth))
    result = {"scales": scales, "photometric": rows, "log_normal_noise": noise,
              "constant_median_depth": loss(np.full_like(depth, median)),
              "identity_motion": float(view_synthesis.multiscale_view_synthesis_loss(
                  image, context, [depth_to_disparity(depth, 1.0, 80.0)], intrinsics,
                  tf.eye(4, batch_shape=[len(targets), 2]), min_depth=1.0, max_depth=80.0,
                  automask=False)["photometric"])}
    print("photometric loss of the ground-truth depth x scale (known poses):")
    print("  scale:", " ".join(f"{s:6.2f}" for s in scales))
    for name, values in rows.items():
        print(f"  {name}:", " ".join(f"{v:6.4f}" for v in values))
    print("  log-normal noise on the depth (sigma: loss):", noise)
    print(f"  constant median depth {median:.1f} m: {result['constant_median_depth']:.4f}; "
          f"no motion: {result['identity_motion']:.4f}")
    return result


def constant_baseline(test_pattern, config_name):
    """Median-scaled AbsRel of a constant prediction on the test drive (native resolution),
    with the evaluation protocol (crop, depth range) of the config whose curves it sits next
    to: the synthetic SDE configs evaluate uncropped, the SUW ones with the Garg crop."""
    import tensorflow as tf

    from tf_depthseg import common
    from tf_depthseg.data import pipeline
    from tf_depthseg.evaluation import depth as depth_eval
    from tools.train import load_experiment

    eval_config = load_experiment(config_name, "", [], False).eval
    dataset = pipeline.make_dataset(test_pattern, [common.IMAGE, common.DEPTH], 4,
                                    training=False, num_context=0)
    result = depth_eval.evaluate_predictor(
        lambda images: tf.fill(tf.concat([tf.shape(images)[:3], [1]], 0), 10.0), dataset,
        eval_config)
    result["protocol"] = {"crop": eval_config.crop, "median_scaling": eval_config.median_scaling}
    return result


def train_run(variant, seed, args, log):
    workdir = os.path.join(args.work, args.config.replace("/", "_"), f"{variant}_seed{seed}")
    overrides = [f"data.train_pattern={args.data}/train-*.tfrecord",
                 f"data.eval_pattern={args.data}/test-*.tfrecord",
                 f"data.image_size=[{args.height},{args.width}]", f"train.steps={args.steps}",
                 f"train.eval_every={args.eval_every}", f"train.checkpoint_every={args.eval_every}",
                 "train.log_every=50", "train.image_summaries_every=0", f"train.seed={seed}",
                 "optim.schedule=constant"]
    # The U curves of docs/u_term.md ran at the Adam 1e-3; an SDE config brings its own.
    rate = args.learning_rate or (1e-3 if args.config == "suw/synthetic_u" else None)
    if rate:
        overrides.append(f"optim.learning_rate={rate}")
    section = "sde" if args.config.startswith("hoyer/") else "suw"
    overrides += [o.format(section=section) for o in VARIANTS[variant]]
    command = [sys.executable, "-m", "tools.train", f"--config={args.config}",
               f"--workdir={workdir}"] + [f"--set={o}" for o in overrides]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    started = time.time()
    with open(log, "a") as out:
        result = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    if result.returncode:
        raise SystemExit(f"training failed ({result.returncode}); see {log}")
    with open(os.path.join(workdir, "history.json")) as f:
        history = json.load(f)
    return {"seconds": time.time() - started, "workdir": workdir,
            "abs_rel": {e["step"]: e["abs_rel"] for e in history["eval"]},
            "a1": {e["step"]: e["a1"] for e in history["eval"]},
            "photometric": {e["step"]: e["photometric"] for e in history["train"]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("landscape", "curves", "plot"), default="landscape",
                        help="plot: draw the stored curves into --plots_dir (no training)")
    parser.add_argument("--plots_dir", default=os.path.join(REPO, "docs"))
    parser.add_argument("--data", default=os.path.join(REPO, "workdir", "data", "kitti_records"),
                        help="make demo's records (train-*, test-* shards)")
    parser.add_argument("--work", default="/tmp/bench_u_term")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "bench_u_term.json"))
    parser.add_argument("--variants", default="default")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--config", default="suw/synthetic_u",
                        help="the curves' config: suw/synthetic_u (U only) or an SDE config, "
                             "e.g. hoyer/synthetic_kitti_sde (docs/sde.md)")
    parser.add_argument("--learning_rate", type=float, default=None,
                        help="default: 1e-3 for suw/synthetic_u, else the config's")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=208)
    parser.add_argument("--drive_seed", type=int, default=5)
    args = parser.parse_args()

    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    if args.part == "plot":
        print("wrote", plot_curves(results, args.plots_dir))
        return
    if args.part == "landscape":
        results["landscape"] = landscape(args)
    else:
        if not glob.glob(os.path.join(args.data, "test-*.tfrecord")):
            raise SystemExit(f"no records in {args.data}: run `make demo` (stages 1-3) first")
        os.makedirs(args.work, exist_ok=True)
        baselines = results.setdefault("constant_baseline_by_config", {})
        baselines[args.config] = constant_baseline(os.path.join(args.data, "test-*.tfrecord"),
                                                   args.config)
        runs = results.setdefault("runs", {})
        for variant in args.variants.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                key = f"{args.config}/{variant}/seed{seed}/steps{args.steps}"
                runs[key] = train_run(variant, seed, args, os.path.join(args.work, "log.txt"))
                print(key, "median-scaled AbsRel by step:",
                      {k: round(v, 3) for k, v in runs[key]["abs_rel"].items()},
                      f"({runs[key]['seconds']:.0f} s)", flush=True)
                save(results, args.out)  # each finished run is kept
        print(f"constant baseline AbsRel ({baselines[args.config]['protocol']}):",
              round(baselines[args.config]["abs_rel"], 3))
    save(results, args.out)


def plot_curves(results, plots_dir):
    """u_term_curves.png: the stored runs' held-out AbsRel by step, one panel per config, one
    line per variant and seed, the config's constant baseline dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results.get("runs", {})
    configs = sorted({key.rsplit("/", 3)[0] for key in runs})
    if not configs:
        raise SystemExit("no stored curves: run --part=curves first")
    fig, axes = plt.subplots(1, len(configs), figsize=(6.5 * len(configs), 4), squeeze=False)
    for ax, config in zip(axes[0], configs):
        for key in sorted(k for k in runs if k.startswith(config + "/")):
            variant, seed = key.rsplit("/", 3)[1:3]
            automask = _run_automask(runs[key]["workdir"])
            # A variant's name depends on the config of its day ("default" was auto-masked
            # for the U config until session 8): label by what the run's config.json says.
            label = variant if automask is None else f"auto-masking {'on' if automask else 'off'}"
            curve = sorted((int(step), value) for step, value in runs[key]["abs_rel"].items())
            ax.plot(*zip(*curve), marker="o", ms=3, label=f"{label}, {seed}",
                    linestyle="--" if automask else "-")
        baseline = results.get("constant_baseline_by_config", {}).get(config)
        if baseline:
            ax.axhline(baseline["abs_rel"], color="grey", linestyle=":",
                       label=f"constant baseline {baseline['abs_rel']:.3f}")
        ax.set_title(f"{config}: held-out drive")
        ax.set_xlabel("step")
        ax.set_ylabel("AbsRel, median-scaled")
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(plots_dir, exist_ok=True)
    path = os.path.join(plots_dir, "u_term_curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _run_automask(workdir):
    """The run's auto-masking setting from its config.json (None when it is gone)."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    for section in ("sde", "suw"):
        if isinstance(config.get(section), dict) and "automask" in config[section]:
            return bool(config[section]["automask"])
    return None


def save(results, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
