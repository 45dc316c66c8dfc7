"""`config.selection`: the annotation data selection's own config section (Hoyer et al. 2021).

Registered for the task "selection" on import; set as `--set selection.bias_weight=10` (or
with `tools/select_annotations` flags: `--steps`, `--seed`, `--sde`). The shared sections say
how the student is trained (`data` size, crop, batch; `optim`; `train.seed`, logging,
checkpoints; `train.steps` is unused: a round's length is `selection.student_steps`).

Defaults are the reference's "depthifp_u3-avg4_bias10ldepth_donly" runs
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, experiments.py id 211 and
label_selection.py): the label schedule 25, 50, 100, 200, 372, 744 (Cityscapes), the student
retrained from scratch after every step for 4k x (round) iterations, difficulty "abs_log"
with weight 1, distance bias weight 10, teacher features of decoder block 3 ("u3")
average-pooled to 4 x 8 ("h": 4 -> (h, 2h)), standardised per channel ("norm": True),
Euclidean ("p": 2).
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.sde_config import BACKBONES

TASK = "selection"
TEACHER_DISPARITY = ("auto", "records", "network")
POOLING = ("avg", "max")


@dataclasses.dataclass(frozen=True)
class SelectionConfig(cfg._Section):  # pylint: disable=protected-access
    """Which images to annotate: a depth student's disagreement with the SDE teacher
    (difficulty) as a bias on iterative farthest-point sampling of teacher features."""

    # The SDE teacher: an SDE run's workdir, its checkpoints/ folder, a checkpoint prefix, or
    # its tools/export folder (resolved like seg.init_from).
    sde_from: str = ""

    # ---- The growing labelled set: its size after each step (increasing; the paper's
    # Cityscapes schedule; CamVid 25, 50, 100).
    steps: Tuple[int, ...] = cfg._ranged((25, 50, 100, 200, 372, 744), 1, order="<")
    # Chooses the first image (a seeded draw from the sorted source ids, as the reference's
    # `np.random.permutation` of the dataset); the rest is deterministic given the student.
    seed: int = cfg._ranged(0, 0)

    # ---- The student (paper: "ResNet50 backbone, 256, 128, 128, 64, and 64 decoder channels,
    # and BatchNorm in the decoder"; models/hoyer.py build_selection_student). It is trained
    # from scratch on the labelled set after every step but the last, for round x
    # student_steps steps (reference: 4k, 8k, 12k, ... iterations; Adam 1e-4, poly 0.9 over
    # each round, batch 2, 512x512 crops, in the configs' optim and data sections).
    backbone: str = cfg._choices("resnet50", *BACKBONES)
    dilate_last_stage: bool = True
    # "" = random (offline default), "imagenet" (the reference's `imnet`), or a weights file.
    encoder_weights: str = ""
    student_steps: int = cfg._ranged(4000, 1)
    # The berHu threshold c = berhu_threshold * max|e| over the batch (reference 0.2) and the
    # bottom rows left out of the training loss (the ego car; reference 0.9 H and below).
    berhu_threshold: float = cfg._ranged(0.2, 0, 1, low_open=True)
    loss_bottom_fraction: float = cfg._ranged(0.1, 0, 1, high_open=True)
    # The teacher's disparity the student learns: "records" = the records' depth/pseudo/
    # encoded (tools/predict_pseudo_depth, normalised per full image), "network" = the frozen
    # SDE run in the train step (normalised per training crop), "auto" = records when the
    # first record has it.
    teacher_disparity: str = cfg._choices("auto", *TEACHER_DISPARITY)

    # ---- Difficulty: mean over pixels of |log(1 + d_student) - log(1 + d_teacher)|, without
    # pixels where the teacher's normalised disparity is below far_threshold (cars driving
    # ahead at the camera's speed look infinitely far; also the sky), dilated by a
    # far_dilation x far_dilation square, nor the bottom difficulty_bottom_fraction of rows
    # (the ego car; reference 0.07, 7 and 0.13).
    far_threshold: float = cfg._ranged(0.07, 0, 1)
    far_dilation: int = cfg._ranged(7, 1)
    difficulty_bottom_fraction: float = cfg._ranged(0.13, 0, 1, high_open=True)

    # ---- Diversity and the choice: Euclidean distances between the teacher's decoder block
    # `feature_block` outputs pooled to `pool_size` (rows, columns), each channel standardised
    # over the pool when normalize_features; an image's distance to the labelled set plus
    # bias_weight x its difficulty is what iterative farthest-point sampling maximises.
    feature_block: int = cfg._ranged(3, 0, 4)
    pool_size: Tuple[int, int] = cfg._ranged((4, 8), 1)
    pooling: str = cfg._choices("avg", *POOLING)
    normalize_features: bool = True
    bias_weight: float = cfg._ranged(10.0, 0)

    # Keep each student's checkpoints once its step is stored (False: delete them, as the
    # reference's remove_models does; its config, history and logs stay).
    keep_students: bool = False

    # ---- The contact sheet of each step: thumbnails this many pixels wide (their titles
    # need about 110).
    thumbnail_width: int = cfg._ranged(160, 96)


cfg.register_task_sections(TASK, {"selection": SelectionConfig})
