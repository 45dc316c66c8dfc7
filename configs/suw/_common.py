"""Shared settings of the SUW-Learn experiment configs (not an experiment itself).

`suw_config(...)` builds every `configs/suw/*.py` experiment from a few choices: the data
(synthetic drives, KITTI Eigen split, M&M), the network, which S/U/W terms are on. Paper
values (SUW supplement): encoder-decoder Adam 1e-4, x0.1 after 10 epochs; hourglass Adam 5e-4,
x0.1 every 5 epochs; log-depth bins over [1, 80] m (B is not stated: 64 here); one weak pair
per image per iteration, patches 3x3..9x9.
"""

from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.suw_config import SUWConfig

# Where `make demo` / the README put the converted synthetic drives (relative paths are
# resolved against the directory the command runs from). The records carry depth, neighbour
# frames, K and weak pairs (make_synthetic -> convert_kitti -> generate_weak_labels).
SYNTHETIC_TRAIN = "workdir/data/kitti_records/train-*.tfrecord"
SYNTHETIC_EVAL = "workdir/data/kitti_records/val-*.tfrecord"
# KITTI Eigen split converted by tools/convert_kitti.py, then tools/align_object_masks.py
# (instance masks, for the object-motion U loss) and tools/generate_weak_labels.py (pairs).
KITTI_TRAIN = "data/kitti_suw/train-*.tfrecord"
KITTI_EVAL = "data/kitti/test-*.tfrecord"
# Mannequin Challenge (known poses, U) and MegaDepth (ordinal pairs, W).
MC_TRAIN = "data/mannequin/train-*.tfrecord"
MC_EVAL = "data/mannequin/val-*.tfrecord"
MD_TRAIN = "data/megadepth/train-*.tfrecord"

ENCODER_DECODER = "suw_encoder_decoder"
HOURGLASS = "hourglass"
NUM_BINS = 64

# Loss weights: the SUW text gives none (L = L_s + L_u + L_w). S and U are means over pixels;
# W is a mean over ONE pair per image (2 x up to 9x9 pixels), so its gradient is concentrated
# on a few pixels and, at weight 1, its norm on the shared depth network is ~5x that of S
# (measured with bench/bench_suw_gradients.py on the demo's drives: 5140 vs 1037 at the start,
# 2688 vs 664 after 100 steps; nearly orthogonal to S). Adam then normalises the update by the
# ranking term's noise and S learns several times slower: at 200 demo steps SUW had AbsRel 0.36
# / d1 0.39 against 0.31 / 0.58 for S alone; with 0.1 it matched S (0.31 / 0.58). At 0.1 the W
# gradient is about half the S gradient. U stays at 1: its gradient on the depth net is ~1-2 %
# of S (the pose net starts near the identity, so the warp hardly depends on depth at first).
# See docs/suw_study.md, "Loss weights".
WEAK_WEIGHT = 0.1

SMOKE_OVERRIDES = [
    "train.steps=6", "train.log_every=2", "train.checkpoint_every=3", "train.eval_every=6",
    "train.image_summaries_every=0", "eval.max_examples=4", "data.batch_size=2",
    "data.eval_batch_size=2", "data.shuffle_buffer=16", "data.image_size=[64,208]",
    "train.mixed_precision=float32",
]
# The real-data recipes' precision: by the device (training/distribute.resolve_mixed_precision:
# bf16 on CPUs with AMX / AVX512_BF16 and Ampere+ GPUs, float16 on Volta / Turing, else
# float32). On a Sapphire Rapids core every SUW variant's step takes 0.72-0.86x its float32
# time in bf16 (docs/suw_speed.md). The synthetic configs keep float32: their measured
# curves (docs/suw_study.md) are float32 runs.
REAL_DATA_MIXED_PRECISION = "auto"


def _optim(network: str) -> cfg.OptimConfig:
    if network == HOURGLASS:
        return cfg.OptimConfig(optimizer="adam", learning_rate=5e-4, schedule="paper_hourglass",
                               decay_epochs=5.0)
    return cfg.OptimConfig(optimizer="adam", learning_rate=1e-4,
                           schedule="paper_encoder_decoder", decay_epochs=10.0)


def suw_config(name: str, *, supervised: str = "soft_classification",
               unsupervised: str = "none", weak: str = "none", network: str = ENCODER_DECODER,
               dataset: str = "synthetic", smoke: bool = False, steps: int = 20000,
               extra=()) -> cfg.ExperimentConfig:
    """One SUW experiment.

    Args:
      name: experiment name.
      supervised, unsupervised, weak: `SUWConfig` choices ("none" = term off).
      network: ENCODER_DECODER or HOURGLASS.
      dataset: "synthetic", "kitti" or "mannequin" (M&M: MC for U, MegaDepth for W).
      smoke: the seconds-long variant (tiny images, a few steps).
      steps: training steps of the full run.
      extra: further `key=value` overrides (applied before the smoke ones).
    """
    scale_ambiguous = supervised == "none" and unsupervised != "known_pose"
    weak_set = {}
    if dataset == "synthetic":
        data = cfg.DataConfig(train_pattern=SYNTHETIC_TRAIN, eval_pattern=SYNTHETIC_EVAL,
                              keys=("image",), image_size=(128, 416), batch_size=4,
                              eval_batch_size=4)
        evaluation = cfg.EvalConfig(median_scaling=scale_ambiguous)
    elif dataset == "kitti":
        # Eigen test images keep their native size (375x1242 and a few others): batch 1.
        data = cfg.DataConfig(train_pattern=KITTI_TRAIN, eval_pattern=KITTI_EVAL,
                              keys=("image",), image_size=(128, 416), batch_size=4,
                              eval_batch_size=1)
        evaluation = cfg.EvalConfig(median_scaling=scale_ambiguous)
    elif dataset == "mannequin":
        # SUW text 2.2: 320x240; MC examples give L_u (known poses), MegaDepth examples L_w
        # (a second input stream of 4 of the 8 examples).
        data = cfg.DataConfig(train_pattern=MC_TRAIN, eval_pattern=MC_EVAL, keys=("image",),
                              image_size=(240, 320), batch_size=8, eval_batch_size=4)
        if weak != "none":
            weak_set = {"weak_train_pattern": MD_TRAIN, "weak_batch_size": 4}
        # COLMAP depth and poses share an unknown scale: compare shapes, not metres.
        evaluation = cfg.EvalConfig(crop="none", median_scaling=True)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    suw = SUWConfig(network=network, num_bins=NUM_BINS, min_depth=1.0, max_depth=80.0,
                    pose_net=unsupervised in ("ego", "ego_object"), supervised=supervised,
                    unsupervised=unsupervised, weak=weak, weak_weight=WEAK_WEIGHT,
                    # One output scale per network (see tf_depthseg/training/tasks/suw.py).
                    num_scales=1, **weak_set)
    config = cfg.ExperimentConfig(
        name=name,
        task="suw",
        data=data,
        optim=_optim(network),
        train=cfg.TrainConfig(steps=steps, eval_every=1000, checkpoint_every=500,
                              log_every=50,
                              mixed_precision=("float32" if dataset == "synthetic"
                                               else REAL_DATA_MIXED_PRECISION)),
        eval=evaluation,
        export=cfg.ExportConfig(tflite=network == ENCODER_DECODER),
        task_sections={"suw": suw})
    if dataset == "synthetic":
        # CPU-sized runs of a few hundred steps: faster batch-norm statistics (see
        # ModelConfig.bn_momentum).
        config = cfg.apply_overrides(config, ["model.bn_momentum=0.9"])
    config = cfg.apply_overrides(config, list(extra))
    if smoke:
        overrides = list(SMOKE_OVERRIDES) + ["model.bn_momentum=0.5"]
        if dataset == "mannequin":
            overrides.append("data.image_size=[48,64]")
            if weak != "none":
                overrides.append("suw.weak_batch_size=1")
        config = cfg.apply_overrides(config, overrides)
    return config
