"""Shared settings of the Hoyer et al. multi-task (DM) configs (not an experiment itself).

`multitask_config(...)` builds every `configs/hoyer/*_multitask.py` experiment on the
segmentation recipe of the same dataset (`_seg_common.seg_config` with transfer: data, SGD,
schedule, labelled subset, evaluation, `seg.init_from` = the SDE run) and adds what the
reference's multi-task runs change (`lhoyer/improving_segmentation_with_selfsupervised_depth`,
experiments.py id 212; configs/cityscapes_joint.yml):
* task "multitask": the PAD-Net network (distillation after the third decoder block, side
  output), loss (CE(final) + CE(side)) / 2 + SDE with both lambdas 1, no feature distance;
* initialisation of encoder, both decoders and the pose net from the SDE run;
* learning rates: 1e-2, the encoder 1e-3 (0.1x), the pose net 1e-6 (1e-4 x); the reference
  also names a depth-decoder lr 1e-3 in its run tags but never passes it to the optimizer
  (`setup_optimizer(..., plr, None, gclip)`), so the depth decoder trains at 1e-2 here too;
  clipping 10 over all parameters (`disable_depth_grad_clip=False`);
* the SDE loss constants of the SDE recipe (min/max depth 0.1/100, smoothness 1e-3, SSIM
  0.85, auto-masking, pose on frame pairs: the `sde` section's defaults).
Video for the SDE loss: Cityscapes' labelled records carry t-1/t+1 and K (the reference trains
on the labelled frames' sequences: one stream); CamVid's SegNet release has none, so the CamVid
configs take the video from Cityscapes sequences (a second stream, the paper's cross-dataset
setting of supplement B).
"""

import dataclasses

from configs.hoyer import _common, _seg_common
from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.multitask_config import MultitaskConfig
from tf_depthseg.training.tasks.sde_config import SDEConfig

POSE_LR_MULTIPLIER = 1e-4  # reference pose_lr 1e-6 at lr 1e-2
# dataset -> (video pattern, video image size): "" = the labelled records' own neighbours.
VIDEO = {
    "cityscapes": ("", None),
    "camvid": (_common.CITYSCAPES_SEQUENCE_TRAIN, (512, 1024)),
    # The synthetic Cityscapes-sequence drives of synthetic_cityscapes_sde.py, at their size.
    "synthetic_camvid": (_common.SYNTHETIC_CITYSCAPES_TRAIN, (64, 128)),
}
SMOKE_OVERRIDES = ["multitask.video_batch_size=2"]


def multitask_config(name: str, *, dataset: str, smoke: bool = False,
                     extra=()) -> cfg.ExperimentConfig:
    """One multi-task experiment.

    Args:
      name: experiment name.
      dataset: "camvid", "cityscapes" or "synthetic_camvid".
      smoke: the seconds-long variant (tiny images, a few steps; still starts from the SDE
        run unless `--set seg.init_from=`).
      extra: further `key=value` overrides (applied before the smoke ones).
    """
    base = _seg_common.seg_config(name, dataset=dataset, transfer=True)
    video_pattern, video_size = VIDEO[dataset]
    seg = base.seg
    sde = SDEConfig(backbone=seg.backbone, dilate_last_stage=seg.dilate_last_stage,
                    encoder_weights=seg.encoder_weights)
    multitask = MultitaskConfig(video_pattern=video_pattern, video_image_size=video_size,
                                video_batch_size=base.data.batch_size)
    data = base.data
    if not video_pattern:
        data = dataclasses.replace(data, num_context=2)
    optim = dataclasses.replace(
        base.optim, lr_multipliers=tuple(base.optim.lr_multipliers)
        + (("pose", POSE_LR_MULTIPLIER),))
    config = dataclasses.replace(base, task="multitask", data=data, optim=optim,
                                 task_sections={"seg": seg, "sde": sde,
                                                "multitask": multitask})
    config = cfg.apply_overrides(config, list(extra))
    if smoke:
        overrides = list(_seg_common.SMOKE_OVERRIDES) + SMOKE_OVERRIDES
        if dataset in _seg_common.RECIPES:
            # Offline and small: no ImageNet weights, 64x84 images, a 64x64 crop.
            overrides += ["seg.encoder_weights=", "sde.encoder_weights=",
                          "data.image_size=[64,84]", "data.crop_size=[64,64]"]
            if video_pattern:
                overrides.append("multitask.video_image_size=[64,128]")
        config = cfg.apply_overrides(config, overrides)
    return config
