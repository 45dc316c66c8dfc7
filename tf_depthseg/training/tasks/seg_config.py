"""`config.seg`: the supervised segmentation task's own config section (Hoyer et al.).

Registered for the task "seg" on import (and `SegTask.config_sections`); set as
`--set seg.labeled_count=100`. Defaults are the reference's main experiments
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, experiments.py id 210): ResNet-101
with a dilated last stage, the ASPP U-Net decoder, the head reading the last decoder block
(`Conv2d(64, 64, 1)` + `Conv2d(64, C, 1)`, no intermediate stage). The optimiser and schedule
are the shared `optim` section's (the configs in `configs/hoyer/` set the reference's SGD).
"""

from __future__ import annotations

import dataclasses

from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.sde_config import BACKBONES

DATASETS = ("camvid", "cityscapes")


@dataclasses.dataclass(frozen=True)
class SegConfig(cfg._Section):  # pylint: disable=protected-access
    """Supervised semantic segmentation with the Hoyer et al. network, optionally from an SDE."""

    # The label set: CamVid's 11 classes or Cityscapes' 19 train ids (data/datasets.py); it
    # sets the number of classes and names them in evaluation, export and prediction.
    dataset: str = cfg._choices("cityscapes", *DATASETS)

    # ---- Network (models/hoyer.py build_segmentation_net).
    backbone: str = cfg._choices("resnet101", *BACKBONES)
    dilate_last_stage: bool = True
    # Encoder initialisation (`resnet.build_backbone`): "" = random (offline default),
    # "imagenet" (Keras' cache; the reference's baseline), or a weights file. seg.init_from
    # overwrites it.
    encoder_weights: str = ""
    # The reference's optional 3x3 conv + BN + ReLU + dropout stage in the head (off in its
    # main experiments); head_dropout only applies to it.
    head_inter: bool = False
    head_dropout: float = cfg._ranged(0.1, 0, 1, high_open=True)

    # ---- Transfer (DT): a self-supervised depth run (tools/train with task=sde: its workdir,
    # checkpoints/ folder or a checkpoint prefix) or its export (tools/export's folder, whose
    # metadata.json names the checkpoint it was made from). Encoder and decoder start from
    # the SDE's; the classification head starts at its initialisation. "" = off.
    init_from: str = ""

    # ---- Labelled subset of data.train_pattern (the paper's 50/100/367 CamVid and
    # 372/744/2975 Cityscapes labels). 0 = every record; else this many records drawn at
    # random (reproducible: the same seed and records give the same subset).
    labeled_count: int = cfg._ranged(0, 0)
    labeled_seed: int = cfg._ranged(0, 0)
    # A text file of the records' source ids to train on, one per line ('#' comments and
    # blank lines skipped), e.g. written by the data-selection tool. Excludes labeled_count.
    labeled_ids_file: str = ""


cfg.register_task_sections("seg", {"seg": SegConfig})
