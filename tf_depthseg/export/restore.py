"""Restore a training run's serving network for inference (evaluation, export, prediction).

A run's workdir (see `tf_depthseg.training.checkpoints`) holds `config.json`, the resumable
checkpoints in `checkpoints/` and, with keep-best, the best models in `best/`. Restoring builds
the models with the run's Task (`tf_depthseg.training.tasks.make_task(config).build(config)`),
so the object graph is the one the engine saved (`models/<role>/...`), takes the network the
task serves (`Task.serving_model(config, models)`: SUW's depth network, a segmentation task's
segmenter, ...) and restores only the model roles holding it (`checkpoints.load_models`: no
optimizer, iterator or RNG state needed).

What the network predicts is read from its output dict (`common.OUT_DEPTH`,
`common.OUT_SEMANTIC_LOGITS`, ...), never from the task's name; the names and colours of a
segmentation network's classes come from the dataset facts (`tf_depthseg.data.datasets`) when
the dataset is known (`segmentation_classes`).

The models are built with the float32 policy whatever `train.mixed_precision` was: mixed
precision keeps float32 variables, so the checkpoint fits, and exports should compute in
float32.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg.export import saved_model
from tf_depthseg.training import checkpoints

STEP_CHECKPOINT_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"  # the Trainer's `step` variable
CHECKPOINT_CHOICES = ("latest", "best")

BuildModels = Callable[[config_lib.ExperimentConfig], Mapping[str, keras.Model]]


@dataclasses.dataclass
class RestoredModel:
    """A run's serving network, restored.

    Attributes:
      model: the network the task serves (inference only; float32).
      config: the run's resolved config.
      checkpoint: the checkpoint prefix restored.
      step: the training step of that checkpoint (None if unknown).
    """

    model: keras.Model
    config: config_lib.ExperimentConfig
    checkpoint: str
    step: Optional[int]


def select_checkpoint(workdir: str, checkpoint: str = "latest") -> str:
    """The checkpoint prefix for `checkpoint` = "latest", "best" or a path (prefix/folder).

    "latest" and "best" give the newest intact checkpoint of the folder: a damaged newer one
    is logged (naming the file) and skipped. Raises CheckpointError with the fix when there is
    none, DamagedCheckpointError when every one there (or the prefix asked for) is damaged.
    """
    if checkpoint in ("", "latest"):
        folder = os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)
        prefix = (checkpoints.select_intact(folder, checkpoints.READ_FIX)
                  if os.path.isdir(folder) else None)
        if not prefix:
            raise checkpoints.CheckpointError(
                f"{folder}: no checkpoint found. Is {workdir} the --workdir of a training run "
                "(tools/train.py) that has saved at least once?")
        return prefix
    if checkpoint == "best":
        best_dir = os.path.join(workdir, checkpoints.BEST_SUBDIR)
        prefix = (checkpoints.select_intact(best_dir, "use --checkpoint=latest, or "
                                            + checkpoints.READ_FIX)
                  if os.path.isdir(best_dir) else None)
        if not prefix:
            raise checkpoints.CheckpointError(
                f"{best_dir}: no best checkpoint. The run kept none (train.best_metric empty, "
                "or no evaluation ran yet); use --checkpoint=latest.")
        return prefix
    return checkpoints.resolve_checkpoint(checkpoint)


def checkpoint_step(prefix: str) -> Optional[int]:
    """The `step` saved in a checkpoint, else the N of a `ckpt-N` prefix, else None."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        if reader.has_tensor(STEP_CHECKPOINT_KEY):
            return int(reader.get_tensor(STEP_CHECKPOINT_KEY))
    except (tf.errors.OpError, ValueError):
        pass
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else None


def load_run_config(prefix: str, config_path: Optional[str] = None
                    ) -> config_lib.ExperimentConfig:
    """The config of the run that wrote `prefix` (its config.json), or `config_path`."""
    path = config_path or checkpoints.find_run_config(prefix)
    if not path:
        raise checkpoints.CheckpointError(
            f"{prefix}: no config.json next to this checkpoint or one folder up, so the model "
            "cannot be rebuilt; pass the run's config (--config=.../config.json).")
    return config_lib.load_config(path)


def build_task_models(config: config_lib.ExperimentConfig) -> Dict[str, keras.Model]:
    """The models of `config.task`, built exactly as the Trainer builds them."""
    from tf_depthseg.training import tasks  # imported lazily: pulls in the data pipelines
    return dict(tasks.make_task(config).build(config))


def serving_model_of(config: config_lib.ExperimentConfig,
                     models: Mapping[str, keras.Model]) -> keras.Model:
    """The network `config.task` serves among its built `models` (`Task.serving_model`)."""
    from tf_depthseg.training import tasks  # imported lazily: pulls in the data pipelines
    return tasks.make_task(config).serving_model(config, models)


def restore_serving_model(workdir: Optional[str] = None, checkpoint: str = "latest",
                          config: Optional[config_lib.ExperimentConfig] = None,
                          build_models: BuildModels = build_task_models,
                          overrides: Sequence[str] = ()) -> RestoredModel:
    """Restores the network a run's task serves, for inference.

    Args:
      workdir: the run's workdir (needed for "latest"/"best"; optional with a path).
      checkpoint: "latest", "best", or a checkpoint prefix / folder.
      config: the run's config; default: the config.json of the run that wrote the checkpoint.
      build_models: builds the run's models from its config (default: the Task's `build`).
      overrides: `--set key=value` items applied to that config (`config.apply_overrides`).
    Returns:
      RestoredModel.
    Raises:
      CheckpointError: no checkpoint, no config, or a checkpoint that does not fit.
    """
    if checkpoint in ("", "latest", "best") and not workdir:
        raise ValueError(f"checkpoint={checkpoint!r} needs the run's workdir")
    prefix = select_checkpoint(workdir or "", checkpoint)
    config = config or load_run_config(prefix)
    if overrides:
        config = config_lib.apply_overrides(config, overrides)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        models = build_models(config)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    model = serving_model_of(config, models)
    try:
        saved_model.check_serving_model(model)
    except ValueError as error:
        raise errors.ConfigError(f"task {config.task!r} serves a network that cannot be "
                                 f"evaluated or exported: {error}") from error
    # Only the roles holding the served network: it is all inference needs; the other models
    # (pose nets, teachers) may share its layers but their own ones are not restored. A served
    # network that is no role of its own (a part of one) restores every role.
    roles = {role: m for role, m in models.items() if m is model} or dict(models)
    checkpoints.load_models(roles, prefix)  # verified above
    return RestoredModel(model=model, config=config, checkpoint=prefix,
                         step=checkpoint_step(prefix))


# --------------------------------------------------------------------------------------------
# Segmentation classes: names and colours of a network's class ids.
# --------------------------------------------------------------------------------------------
SEGMENTATION_DATASETS = ("cityscapes", "camvid")


def dataset_classes(dataset: str) -> Tuple[Tuple[str, ...], np.ndarray]:
    """(class names, uint8 palette `[C, 3]`) of a segmentation dataset's train ids, from the
    dataset facts (`tf_depthseg.data.datasets`). ConfigError for other names."""
    from tf_depthseg.data import datasets
    if dataset == "cityscapes":
        return tuple(datasets.CITYSCAPES_TRAIN_NAMES), datasets.CITYSCAPES_TRAIN_PALETTE
    if dataset == "camvid":
        return (datasets.CAMVID_CLASS_NAMES,
                datasets.CAMVID_PALETTE[:datasets.CAMVID_NUM_CLASSES])
    raise errors.ConfigError(f"dataset {dataset!r} has no class table; known: "
                             f"{', '.join(SEGMENTATION_DATASETS)} (or leave it empty for "
                             "numbered classes).")


def config_dataset(config: config_lib.ExperimentConfig) -> str:
    """The dataset a run declares: the `dataset` field of one of its task's own config
    sections (e.g. a segmentation task's), "" when none has one."""
    for section in getattr(config, "task_sections", {}).values():
        value = getattr(section, "dataset", "")
        if value:
            return str(value)
    return ""


def segmentation_classes(model: keras.Model, config: config_lib.ExperimentConfig,
                         dataset: str = "") -> Tuple[Optional[Tuple[str, ...]],
                                                     Optional[np.ndarray]]:
    """(class names, palette) of a segmentation network, (None, None) when it has no
    segmentation output or its dataset is unknown.

    Args:
      dataset: "cityscapes" or "camvid"; "" = the run's own (`config_dataset`).
    Raises:
      ConfigError: an unknown dataset, or one with another number of classes than the model.
    """
    num_classes = saved_model.num_classes_of(model)
    dataset = dataset or config_dataset(config)
    if num_classes is None or not dataset:
        return None, None
    names, palette = dataset_classes(dataset)
    if len(names) != num_classes:
        raise errors.ConfigError(f"the network predicts {num_classes} classes but dataset "
                                 f"{dataset!r} has {len(names)}; pass the dataset the run was "
                                 "trained on (--dataset), or none for numbered classes.")
    return names, palette
