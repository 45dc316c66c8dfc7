"""`config.sde`: the SDE task's own config section (Hoyer et al.'s self-supervised depth).

Registered for the task "sde" on import (and `SDETask.config_sections`); set as
`--set sde.backbone=resnet18`. Defaults are the reference's Cityscapes recipe
(`lhoyer/improving_segmentation_with_selfsupervised_depth`,
`configs/cityscapes_monodepth_highres_dec6_crop.yml`) except the feature-distance weight, which
is off unless ImageNet weights are given (the configs in `configs/hoyer/` set it).
"""

from __future__ import annotations

import dataclasses

from tf_depthseg import config as cfg

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


@dataclasses.dataclass(frozen=True)
class SDEConfig(cfg._Section):  # pylint: disable=protected-access
    """Self-supervised depth (Monodepth2 losses) with the Hoyer et al. depth network."""

    # ---- Depth network (models/: ResNet encoder, ASPP U-Net decoder, 4 sigmoid heads).
    backbone: str = cfg._choices("resnet101", *BACKBONES)
    # Hoyer et al.: "dilated (instead of strided) convolutions in the last block" (OS 16).
    dilate_last_stage: bool = True
    # Encoder initialisation (`resnet.build_backbone`): "" = random (offline default),
    # "imagenet" = keras.applications' weights when Keras' cache has them (ResNet-50/101; else
    # random with a warning line), or a weights file.
    encoder_weights: str = ""
    # Depth range of `disp_to_depth` (reference monodepth_loss: min_depth 0.1, max_depth 100).
    min_depth: float = cfg._ranged(0.1, 0, low_open=True, below="max_depth")
    max_depth: float = cfg._ranged(100.0, 0, low_open=True)
    num_scales: int = cfg._ranged(4, 1, 4)  # disparity heads used by the loss (s0 .. s3)

    # ---- Pose network (Monodepth2: ResNet-18 on a frame pair + 4 convolutions).
    pose_backbone: str = cfg._choices("resnet18", *BACKBONES)
    # As encoder_weights, for the pose encoder (ImageNet conv1 tiled over the stacked frames).
    pose_weights: str = ""
    # "pairs" (reference `pose_model_input: pairs`): one pass per source frame on the pair in
    # temporal order, the transform inverted for t-1; "all": one pass on all frames stacked.
    pose_input: str = cfg._choices("pairs", "pairs", "all")

    # ---- Loss (reference `monodepth_loss`).
    ssim_weight: float = cfg._ranged(0.85, 0, 1)
    smoothness_weight: float = cfg._ranged(1e-3, 0)  # disparity_smoothness, / 2^s per scale
    automask: bool = True
    # Feature-distance regulariser (reference `feat_dist_lambda`, 1e-2 in the dec6 recipe):
    # L2 distance of the encoder's deepest feature to a frozen ImageNet encoder's. 0 = off.
    feature_distance_weight: float = cfg._ranged(0.0, 0)


cfg.register_task_sections("sde", {"sde": SDEConfig})
