"""The depth student of data selection: a `training.loop.Task` the Trainer runs per round.

After each selection step but the last, a slim student (`hoyer.build_selection_student`:
ResNet-50, BN decoder 256/128/128/64/64) is trained from scratch on the labelled images so far
to regress the SDE teacher's normalised disparity with berHu (`scores.berhu`, the bottom
`selection.loss_bottom_fraction` of the rows left out), as the reference's label_selection.py
does (`train_on_subset` with `segmentation_lambda = 0`, `pseudo_depth_lambda = 1`). Where the
student then disagrees with the teacher on an unlabelled image, that image is unlike the
labelled ones: its difficulty.

Why a Task and not a loop of its own: the Trainer already checkpoints models, optimizer, input
position and random state atomically, and resumes bit-exactly from its workdir after a kill
(docs/kill9_drill.md), so a killed selection run continues the student it was training by
building the same Trainer on the same workdir; a custom loop would have to repeat all of that.

The task is not in `training.tasks.TASKS` (tools/train cannot run it: its labelled set and
teacher come from the selection run, passed to the constructor, not from the config). Its
config is an ExperimentConfig with task "selection" (section `selection.*`,
`selection/config.py`).

Teacher disparity (`selection.teacher_disparity`): "records" reads the records'
`depth/pseudo/encoded` (normalised per full image before any crop, like the reference's
precomputed depth); "network" runs the frozen SDE on the training crop in the step and
normalises per crop (a frozen model of the task, saved with the student's checkpoints).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg.data import pipeline
from tf_depthseg.models import batch_norm, hoyer, resnet
from tf_depthseg.selection import scores
from tf_depthseg.selection.config import SelectionConfig
from tf_depthseg.semisup import depthmix
from tf_depthseg.training import checkpoints, loop
from tf_depthseg.training.tasks import sde as sde_task

TRAIN_STREAM = "train"
MODEL_STUDENT = "student"
MODEL_TEACHER = "teacher"
LOSS_BERHU = "berhu"
GROUP_ENCODER, GROUP_DECODER = "encoder", "decoder"
ENCODER_NAME = "encoder"
MIN_INPUT_SIDE = 32  # models/hoyer.py: "any H, W >= 32"


@dataclasses.dataclass(frozen=True)
class Teacher:
    """The SDE teacher: its checkpoint prefix and its run's config (task sde)."""

    prefix: str
    config: config_lib.ExperimentConfig


def build_student(config) -> keras.Model:
    """`hoyer.build_selection_student` on `config.selection`'s backbone (encoder named
    "encoder"), with `model.bn_momentum`.

    Returns:
      "image" `[B, H, W, 3]` in [0, 1] -> {"disparity_s0".."disparity_s3", "features"}.
    """
    selection = config.selection
    encoder = resnet.build_backbone(
        sde_task.backbone_name(selection.backbone, selection.dilate_last_stage),
        weights=selection.encoder_weights or None, name=ENCODER_NAME)
    model = hoyer.build_selection_student(encoder)
    batch_norm.set_bn_momentum(model, config.model.bn_momentum)
    return model


def normalized_teacher_disparity(teacher: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """The frozen SDE's full-resolution disparity `[B, H, W, 1]`, normalised per image to
    [0, 1] as tools/predict_pseudo_depth stores it."""
    disparity = teacher(images, training=False)[common.disparity_key(0)]
    return depthmix.normalize_disparity(disparity)


def check_config(config) -> None:
    """Settings the student cannot train: ConfigError naming the key and the fix."""
    data = config.data
    size = data.crop_size or data.image_size
    if min(size) < MIN_INPUT_SIDE:
        raise errors.ConfigError(
            f"the selection student needs training images of at least {MIN_INPUT_SIDE} pixels "
            f"a side; got {list(size)} (data.crop_size or data.image_size). Raise them.")
    if config.selection.teacher_disparity == "auto":
        raise errors.ConfigError("selection.teacher_disparity=auto must be resolved to "
                                 "'records' or 'network' before the student is built.")


class StudentTask(loop.Task):
    """berHu regression of the teacher's disparity on the labelled images (module doc).

    Args:
      labelled_ids: source ids of the records of data.train_pattern to train on.
      teacher: the SDE (needed with selection.teacher_disparity=network).
    """

    config_sections = {"selection": SelectionConfig}

    def __init__(self, labelled_ids: Sequence[str], teacher: Optional[Teacher] = None):
        if not labelled_ids:
            raise ValueError("the student needs at least one labelled image")
        self.labelled_ids = tuple(labelled_ids)
        self.teacher = teacher

    def _network_teacher(self, config) -> bool:
        return config.selection.teacher_disparity == "network"

    def check_config(self, config) -> None:
        check_config(config)
        if self._network_teacher(config) and self.teacher is None:
            raise ValueError("selection.teacher_disparity=network needs the teacher")

    def build(self, config) -> Dict[str, keras.Model]:
        models = {MODEL_STUDENT: build_student(config)}
        if self._network_teacher(config):
            models[MODEL_TEACHER] = sde_task.build_depth_model(self.teacher.config)
        return models

    def frozen_models(self, config):
        return [MODEL_TEACHER] if self._network_teacher(config) else []

    def initialize_models(self, config, models) -> None:
        if self._network_teacher(config):
            checkpoints.load_models({common.MODEL_DEPTH: models[MODEL_TEACHER]},
                                    self.teacher.prefix)

    def param_groups(self, config, models):
        groups = hoyer.parameter_groups(models[MODEL_STUDENT])
        # The loss reads the full-resolution head only (the reference's berHu on ("disp", 0)):
        # the coarser heads' variables get no gradient and stay out of the optimizer.
        unused = tuple(f"{hoyer.DEPTH_DECODER}_disp{s}" for s in hoyer.DISPARITY_SCALES if s)
        decoder = [v for v in groups["decoder"] if not v.path.startswith(unused)]
        return {GROUP_ENCODER: groups["backbone"], GROUP_DECODER: decoder}

    def serving_model(self, config, models) -> keras.Model:
        return models[MODEL_STUDENT]

    def train_keys(self, config):
        keys = [common.IMAGE]
        if not self._network_teacher(config):
            keys.append(common.PSEUDO_DISPARITY)
        return keys

    def make_train_dataset(self, config, stream, input_context):
        return pipeline.make_training_dataset(config, config.data.train_pattern,
                                              self.train_keys(config), config.data.batch_size,
                                              input_context, source_ids=self.labelled_ids)

    def num_train_examples(self, config) -> int:
        return len(self.labelled_ids)

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        batch = batches[TRAIN_STREAM]
        images = batch[common.IMAGE]
        prediction = models[MODEL_STUDENT](images, training=training)[common.disparity_key(0)]
        if self._network_teacher(config):
            target = normalized_teacher_disparity(models[MODEL_TEACHER], images)
        else:
            target = batch[common.PSEUDO_DISPARITY]
        mask = scores.bottom_mask(tf.shape(prediction), config.selection.loss_bottom_fraction)
        per_image = scores.berhu(prediction, target, mask, config.selection.berhu_threshold)
        loss = loop.global_mean(per_image, global_batch_sizes[TRAIN_STREAM])
        return {LOSS_BERHU: loss, common.LOSS_TOTAL: loss}
