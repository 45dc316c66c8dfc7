"""Shared settings of the Hoyer et al. SDE experiment configs (not an experiment itself).

`sde_config(...)` builds every `configs/hoyer/*.py` self-supervised depth experiment from the
data (Cityscapes sequences, the KITTI Eigen/Zhou split, or the built-in synthetic drives in
either layout), the network and the schedule. Sources of the constants:
* Cityscapes: the reference code's `configs/cityscapes_monodepth_highres_dec6_crop.yml`
  (lhoyer/improving_segmentation_with_selfsupervised_depth): ResNet-101 with a dilated last
  stage, 1024x512 sequences cropped to 512x512, batch 4, Adam 1e-5, 100k iterations (its x0.1
  milestone at 160k is never reached), mixed precision (here "auto", PAPER_MIXED_PRECISION;
  the reference's float16 AMP), min/max depth 0.1/100 m, smoothness
  1e-3, feature distance 1e-2 to a frozen ImageNet encoder, pose on frame pairs, colour
  augmentation and flips 0.5.
* KITTI: Monodepth2 (Godard et al. 2019, its `options.py` / `trainer.py` defaults): ResNet-18
  encoder (not dilated), 192x640, batch 12, Adam 1e-4 for 20 epochs, x0.1 after 15 (the
  "paper_encoder_decoder" schedule with decay_epochs=15), eigen_zhou split of 39,810 frames.
"""

from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.sde_config import SDEConfig

# Converted records (tools/convert_cityscapes.py --mode=sequence; tools/convert_kitti.py).
CITYSCAPES_SEQUENCE_TRAIN = "data/cityscapes_sequence/train-*.tfrecord"
KITTI_TRAIN = "data/kitti/train-*.tfrecord"
KITTI_EVAL = "data/kitti/test-*.tfrecord"
# Built-in synthetic drives: `make demo` writes the KITTI layout records here (64x208, 6
# drives: train, val, test); the Cityscapes-sequence records come from the commands in
# synthetic_cityscapes_sde.py.
SYNTHETIC_KITTI_TRAIN = "workdir/data/kitti_records/train-*.tfrecord"
SYNTHETIC_KITTI_EVAL = "workdir/data/kitti_records/val-*.tfrecord"
SYNTHETIC_CITYSCAPES_TRAIN = "workdir/data/cityscapes_sequence/train-*.tfrecord"

# The paper recipes' precision: "auto" (training/distribute.resolve_mixed_precision) =
# bfloat16 convolutions on Ampere+ GPUs and on CPUs with AMX / AVX512_BF16 (there the train
# step takes ~0.5x its float32 time, docs/hoyer_speed.md; no loss scaling needed), float16 with
# loss scaling on Volta / Turing (the reference's AMP), float32 elsewhere. Variables, losses
# and the disparity / logit heads stay float32. The synthetic CPU configs keep float32 (their
# measured learning curves are float32 runs).
PAPER_MIXED_PRECISION = "auto"

MONODEPTH2_KITTI_TRAIN_FRAMES = 39810  # eigen_zhou train split
MONODEPTH2_BATCH = 12
MONODEPTH2_EPOCHS = 20

SMOKE_OVERRIDES = [
    "train.steps=4", "train.log_every=2", "train.checkpoint_every=2", "train.eval_every=4",
    "train.image_summaries_every=0", "eval.max_examples=2", "data.batch_size=2",
    "data.eval_batch_size=2", "data.shuffle_buffer=8", "data.image_size=[64,192]",
    "data.crop_size=none", "train.mixed_precision=float32", "model.bn_momentum=0.5",
    # Offline: no ImageNet download in a smoke run (the feature distance then logs a warning).
    "sde.encoder_weights=",
]


def sde_config(name: str, *, dataset: str, smoke: bool = False, extra=()) -> cfg.ExperimentConfig:
    """One SDE experiment.

    Args:
      name: experiment name.
      dataset: "cityscapes", "kitti", "synthetic_kitti" or "synthetic_cityscapes".
      smoke: the seconds-long variant (tiny images, a few steps, ResNet-18 on synthetic data).
      extra: further `key=value` overrides (applied before the smoke ones).
    """
    jitter = 0.2  # Monodepth2 colour augmentation: brightness/contrast/saturation 0.2, hue 0.1
    if dataset == "cityscapes":
        data = cfg.DataConfig(train_pattern=CITYSCAPES_SEQUENCE_TRAIN, eval_pattern="",
                              keys=("image",), image_size=(512, 1024), crop_size=(512, 512),
                              batch_size=4, eval_batch_size=4, color_jitter=jitter)
        sde = SDEConfig(backbone="resnet101", dilate_last_stage=True, encoder_weights="imagenet",
                        feature_distance_weight=1e-2)
        optim = cfg.OptimConfig(optimizer="adam", learning_rate=1e-5, schedule="constant")
        train = cfg.TrainConfig(steps=100000, eval_every=0, checkpoint_every=2000,
                                log_every=100, best_metric="",
                                mixed_precision=PAPER_MIXED_PRECISION)
    elif dataset == "kitti":
        data = cfg.DataConfig(train_pattern=KITTI_TRAIN, eval_pattern=KITTI_EVAL,
                              keys=("image",), image_size=(192, 640),
                              batch_size=MONODEPTH2_BATCH, eval_batch_size=1,
                              color_jitter=jitter)
        sde = SDEConfig(backbone="resnet18", dilate_last_stage=False)
        optim = cfg.OptimConfig(optimizer="adam", learning_rate=1e-4,
                                schedule="paper_encoder_decoder", decay_epochs=15.0)
        steps = MONODEPTH2_EPOCHS * (MONODEPTH2_KITTI_TRAIN_FRAMES // MONODEPTH2_BATCH)
        train = cfg.TrainConfig(steps=steps, eval_every=5000, checkpoint_every=2000,
                                log_every=100, mixed_precision=PAPER_MIXED_PRECISION)
    elif dataset in ("synthetic_kitti", "synthetic_cityscapes"):
        # CPU-sized: the drives' own 64x208 (KITTI layout) or 64x128 (Cityscapes layout, 2:1)
        # size, ResNet-18, Adam 1e-4 constant for a few hundred steps (docs/sde.md).
        kitti = dataset == "synthetic_kitti"
        data = cfg.DataConfig(
            train_pattern=SYNTHETIC_KITTI_TRAIN if kitti else SYNTHETIC_CITYSCAPES_TRAIN,
            eval_pattern=SYNTHETIC_KITTI_EVAL, keys=("image",),
            image_size=(64, 208) if kitti else (64, 128), batch_size=4, eval_batch_size=4,
            color_jitter=0.0)
        # No auto-masking: from random weights the pose net's first motion is sideways, and
        # auto-masking drops the pixels that motion cannot explain, which locks it in (held-out
        # AbsRel 0.455 -> 0.713 from step 100 to 200 with it, 0.383 -> 0.338 without;
        # docs/sde.md). The paper recipes above keep Monodepth2's auto-masking.
        sde = SDEConfig(backbone="resnet18", dilate_last_stage=False, automask=False)
        # Monodepth2's 1e-4: at 1e-3 every pixel's disparity sigmoid reached exactly 1.0
        # (0.1 m) within ~10 steps and stayed there (zero gradient) while the pose net's
        # translation ran away (docs/sde.md; test_disparity_stays_alive_...).
        optim = cfg.OptimConfig(optimizer="adam", learning_rate=1e-4, schedule="constant")
        train = cfg.TrainConfig(steps=600, eval_every=200, checkpoint_every=200, log_every=50)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    # Monocular: depth is known up to scale; synthetic drives and KITTI use the Eigen crop
    # conventions of tools/evaluate (garg crop on KITTI, none on the synthetic drives).
    evaluation = cfg.EvalConfig(median_scaling=True,
                                crop="garg" if dataset == "kitti" else "none")
    config = cfg.ExperimentConfig(name=name, task="sde", data=data, optim=optim, train=train,
                                  eval=evaluation, export=cfg.ExportConfig(tflite=True),
                                  task_sections={"sde": sde})
    if dataset.startswith("synthetic"):
        config = cfg.apply_overrides(config, ["model.bn_momentum=0.9"])
    config = cfg.apply_overrides(config, list(extra))
    if smoke:
        overrides = list(SMOKE_OVERRIDES)
        if dataset.startswith("synthetic"):
            overrides.append("data.image_size=[64,208]" if dataset == "synthetic_kitti"
                             else "data.image_size=[64,128]")
        config = cfg.apply_overrides(config, overrides)
    return config
