"""Shared settings of the Hoyer et al. data-selection configs (not an experiment itself).

`selection_config(...)` builds every `configs/hoyer/*_selection.py` for
`tools/select_annotations`. Sources (`lhoyer/improving_segmentation_with_selfsupervised_depth`,
experiments.py id 211 "depthifp_u3-avg4_bias10ldepth_donly", label_selection.py, train.py):
* label schedules: Cityscapes 25, 50, 100, 200, 372, 744 of the 2975 training images; CamVid
  25, 50, 100 of 367;
* the student (paper supplement A: ResNet-50, decoder 256/128/128/64/64 with BatchNorm;
  reference `decoder_variant(dec=9)`, ImageNet encoder) retrained from scratch after every
  step for 4k, 8k, 12k, ... iterations (`train_iters` 4e3 x round, `train_from_scratch`), Adam
  1e-4 for encoder and decoder, poly decay (power 0.9) over each round, batch 2, random
  512x512 crops and flips of the 1024x512 (Cityscapes) / 672x512 (CamVid) images, berHu on the
  SDE's disparity without the bottom 10 % of rows;
* difficulty "abs_log" x 1, bias weight 10, teacher features "u3" average-pooled to 4 x 8,
  standardised, Euclidean (the `selection` section's defaults);
* PyTorch's batch-norm momentum 0.1 is Keras' 0.9 (`model.bn_momentum`).
`train.steps` is not read by the tool (a round trains (round) x selection.student_steps
steps); it is set to the longest round for reference.
"""

from tf_depthseg import config as cfg
from tf_depthseg.selection.config import SelectionConfig

from configs.hoyer import _seg_common

# dataset -> (image size, label steps, records of the pool, the SDE run)
RECIPES = {
    "camvid": ((512, 672), (25, 50, 100), _seg_common.CAMVID_TRAIN,
               _seg_common.CITYSCAPES_SDE_RUN),
    "cityscapes": ((512, 1024), (25, 50, 100, 200, 372, 744), _seg_common.CITYSCAPES_TRAIN,
                   _seg_common.CITYSCAPES_SDE_RUN),
}

SMOKE_OVERRIDES = [
    "selection.steps=[2,4]", "selection.student_steps=2", "train.steps=2",
    "train.log_every=1", "train.checkpoint_every=0", "data.batch_size=2",
    "data.eval_batch_size=4", "data.shuffle_buffer=8", "train.mixed_precision=float32",
    "model.bn_momentum=0.5", "selection.backbone=resnet18",
    "selection.dilate_last_stage=false", "selection.encoder_weights=",
    "selection.thumbnail_width=112",
]


def selection_config(name: str, *, dataset: str, smoke: bool = False,
                     extra=()) -> cfg.ExperimentConfig:
    """One data-selection experiment.

    Args:
      name: experiment name.
      dataset: "camvid", "cityscapes" or "synthetic_camvid".
      smoke: the seconds-long variant (2 + 2 images, a 2-step student, ResNet-18).
      extra: further `key=value` overrides (applied before the smoke ones).
    """
    if dataset == "synthetic_camvid":
        # CPU-sized: the 66 training drives' frames at 64x84 (synthetic_camvid_seg.py's data),
        # 12, 25, 50 images (the paper's 25, 50, 100 of CamVid halved; 50 is what the synthetic
        # segmentation configs label), a ResNet-18 student undilated like the synthetic SDE,
        # 100 x round steps on whole images (no crop). The synthetic drives have no ego car:
        # no rows are left out of the loss or the difficulty.
        data = cfg.DataConfig(train_pattern=_seg_common.SYNTHETIC_CAMVID_TRAIN, eval_pattern="",
                              keys=("image",), num_context=0, image_size=(64, 84),
                              crop_size=None, batch_size=2, eval_batch_size=16,
                              color_jitter=0.2, shuffle_buffer=64)
        selection = SelectionConfig(sde_from=_seg_common.SYNTHETIC_SDE_RUN, steps=(12, 25, 50),
                                    backbone="resnet18", dilate_last_stage=False,
                                    student_steps=100, loss_bottom_fraction=0.0,
                                    difficulty_bottom_fraction=0.0, thumbnail_width=126)
        train = cfg.TrainConfig(steps=200, log_every=25, checkpoint_every=50, eval_every=0,
                                keep_checkpoints=2, best_metric="", image_summaries_every=0,
                                deterministic=True)
    elif dataset in RECIPES:
        size, steps, pattern, sde_run = RECIPES[dataset]
        data = cfg.DataConfig(train_pattern=pattern, eval_pattern="", keys=("image",),
                              num_context=0, image_size=size, crop_size=(512, 512),
                              batch_size=2, eval_batch_size=2, color_jitter=0.2)
        selection = SelectionConfig(sde_from=sde_run, steps=steps, backbone="resnet50",
                                    dilate_last_stage=True, encoder_weights="imagenet",
                                    student_steps=4000)
        train = cfg.TrainConfig(steps=4000 * (len(steps) - 1), log_every=100,
                                checkpoint_every=1000, keep_checkpoints=2, eval_every=0,
                                best_metric="", image_summaries_every=0)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    optim = cfg.OptimConfig(optimizer="adam", learning_rate=1e-4, schedule="poly",
                            poly_power=0.9)
    config = cfg.ExperimentConfig(name=name, task="selection", data=data, optim=optim,
                                  train=train, model=cfg.ModelConfig(bn_momentum=0.9),
                                  task_sections={"selection": selection})
    config = cfg.apply_overrides(config, list(extra))
    if smoke:
        overrides = list(SMOKE_OVERRIDES)
        if dataset in RECIPES:
            overrides += ["data.image_size=[64,84]", "data.crop_size=none"]
        config = cfg.apply_overrides(config, overrides)
    return config
