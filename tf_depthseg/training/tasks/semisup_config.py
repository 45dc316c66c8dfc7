"""`config.semisup`: the semi-supervised segmentation task's own section (Hoyer et al. 2021).

Registered for the task "semisup" together with the segmentation task's section `seg` (the
student is the seg task's network, its labelled subset and transfer are `seg.*`); set as
`--set semisup.mix=depthmix`. Defaults are the reference's DepthMix runs
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, experiments.py id 210,
"transfer_dcompgt0.030": consistency weight 1, colour jitter and blur on, depthcomp margin
0.03, foreground threshold 0, `only_unlabeled=False`, `mix_use_gt=True`).
"""

from __future__ import annotations

import dataclasses

from tf_depthseg import config as cfg
from tf_depthseg.semisup import augment, depthmix, mean_teacher
from tf_depthseg.training.tasks.seg_config import SegConfig

MIX_MODES = ("none", "depthmix", "classmix")
DEPTH_SOURCES = ("network", "records")


@dataclasses.dataclass(frozen=True)
class SemisupConfig(cfg._Section):  # pylint: disable=protected-access
    """Mean teacher + pseudo-labels with DepthMix / ClassMix on an unlabelled stream."""

    # How two images of the unlabelled batch are combined before the student sees them:
    # "none" (mean teacher only: the student learns the teacher's pseudo-labels on the
    # strongly augmented image), "depthmix" (image i pasted where its SDE disparity is in
    # front of its partner's) or "classmix" (half of image i's classes pasted).
    mix: str = cfg._choices("depthmix", *MIX_MODES)

    # ---- The unlabelled stream. "" = data.train_pattern. Its global batch size (2 + 2 in
    # the paper: data.batch_size labelled + this).
    unlabeled_pattern: str = ""
    unlabeled_batch_size: int = cfg._ranged(2, 1)
    # True (the reference's DepthMix runs, mix_use_gt): the unlabelled stream reads every
    # record, and the labelled ones among it (the seg.* subset) mix their one-hot ground truth
    # instead of the teacher's probabilities; its records need semantic labels. False (its
    # ClassMix runs, only_unlabeled): the stream reads only the records outside the labelled
    # subset (every record of a separate semisup.unlabeled_pattern), all labels from the
    # teacher.
    mix_use_gt: bool = True

    # ---- DepthMix's disparity: "network" = a frozen SDE depth network run in the train step
    # on the (cropped) unlabelled images, from semisup.sde_from (an SDE run's workdir, its
    # checkpoint, or its tools/export folder); "records" = precomputed into the records by
    # tools/predict_pseudo_depth (feature depth/pseudo/encoded, normalised per full image).
    depth_source: str = cfg._choices("network", *DEPTH_SOURCES)
    sde_from: str = ""
    depthmix_margin: float = cfg._ranged(depthmix.MARGIN, 0, 1)
    depthmix_foreground_threshold: float = cfg._ranged(depthmix.FOREGROUND_THRESHOLD, 0, 1)

    # ---- Mean teacher (semisup/mean_teacher.py).
    ema_max_alpha: float = cfg._ranged(mean_teacher.MAX_ALPHA, 0, 1, high_open=True)
    confidence_threshold: float = cfg._ranged(mean_teacher.CONFIDENCE_THRESHOLD, 0, 1)
    # Weight of the pseudo-label loss (the reference's consistency_weight).
    unlabeled_weight: float = cfg._ranged(1.0, 0)
    # True (the reference: ema_model.train()): the teacher runs in training mode - it
    # normalises with the statistics of the batch it labels (and its ASPP dropout is on) - and
    # the EMA averages the trainable weights only. False: inference mode, and
    # the EMA also averages the student's batch-norm moving statistics.
    teacher_batch_stats: bool = True

    # ---- Strong augmentation after mixing (semisup/augment.py), per image.
    color_jitter: bool = True
    jitter_strength: float = cfg._ranged(augment.JITTER_STRENGTH, 0, 1)
    blur: bool = True


cfg.register_task_sections("semisup", {"seg": SegConfig, "semisup": SemisupConfig})
