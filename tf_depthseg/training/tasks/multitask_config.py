"""`config.multitask`: the multi-task (DM) task's own config section (Hoyer et al. 2021).

The task "multitask" owns three sections: this one, `seg` (`SegConfig`: label set, the shared
encoder, the labelled subset, `seg.init_from`) and `sde` (`SDEConfig`: pose network and
Monodepth2 loss constants). Registered for the task on import (and
`MultitaskTask.config_sections`); set as `--set multitask.sde_weight=0.5`. Defaults are the
reference's multi-task experiments (`lhoyer/improving_segmentation_with_selfsupervised_depth`,
experiments.py id 212: `distillation_layer=7`, `side_output=True`, `monodepth_lambda=1`,
`segmentation_lambda=1`; configs/cityscapes_joint.yml: `feat_dist_lambda: 0`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.sde_config import SDEConfig
from tf_depthseg.training.tasks.seg_config import SegConfig


@dataclasses.dataclass(frozen=True)
class MultitaskConfig(cfg._Section):  # pylint: disable=protected-access
    """Segmentation + self-supervised depth in one network (PAD-Net distillation)."""

    # ---- Network (models/hoyer.py build_multitask_net).
    # The decoder block after which the two decoders exchange PAD-Net messages (2: the third
    # block, 1/4 resolution; the reference's distillation_layer 7).
    distillation_block: int = cfg._ranged(2, 1, 4)
    # A segmentation side output before the exchange, trained with the final one:
    # (CE(final) + CE(side)) / 2. False: CE(final) alone.
    side_output: bool = True

    # ---- Loss: seg_weight * segmentation CE + sde_weight * (photometric + smoothness)
    # (reference segmentation_lambda / monodepth_lambda, both 1). Both > 0: every variable
    # of the network and the pose net must take part in the loss (task=seg / task=sde
    # train one side alone).
    seg_weight: float = cfg._ranged(1.0, 0, low_open=True)
    sde_weight: float = cfg._ranged(1.0, 0, low_open=True)

    # ---- Video for the SDE loss. "" (the reference): the labelled records' own neighbour
    # frames and K (Cityscapes labelled records carry them; data.num_context=2), one stream.
    # Else records of video (target + t-1/t+1 + K, e.g. Cityscapes sequences for CamVid,
    # whose SegNet release has no neighbours): a second stream "video" of video_batch_size
    # examples, resized to video_image_size (None = data.image_size), then cropped and
    # augmented like the labelled stream (data.crop_size, flip, colour jitter).
    video_pattern: str = ""
    video_batch_size: int = cfg._ranged(2, 1)
    video_image_size: Optional[Tuple[int, int]] = cfg._ranged(None, 1)


SECTIONS = {"multitask": MultitaskConfig, "seg": SegConfig, "sde": SDEConfig}

cfg.register_task_sections("multitask", SECTIONS)
