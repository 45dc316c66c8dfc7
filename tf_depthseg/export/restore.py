"""Restore a training run's depth network for inference (export, prediction).

A run's workdir (see `tf_depthseg.training.checkpoints`) holds `config.json`, the resumable
checkpoints in `checkpoints/` and, with keep-best, the best models in `best/`. Restoring builds
the models with the run's Task (`tf_depthseg.training.tasks.make_task(config).build(config)`),
so the object graph is the one the engine saved (`models/<key>/...`), and restores only the
models (`checkpoints.load_models`: no optimizer, iterator or RNG state needed).

The models are built with the float32 policy whatever `train.mixed_precision` was: mixed
precision keeps float32 variables, so the checkpoint fits, and exports should compute in
float32.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Dict, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg.training import checkpoints

STEP_CHECKPOINT_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"  # the Trainer's `step` variable
CHECKPOINT_CHOICES = ("latest", "best")

BuildModels = Callable[[config_lib.ExperimentConfig], Mapping[str, keras.Model]]


@dataclasses.dataclass
class RestoredModel:
    """A depth network restored from a run.

    Attributes:
      model: the depth network (inference only; float32).
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


def restore_depth_model(workdir: Optional[str] = None, checkpoint: str = "latest",
                        config: Optional[config_lib.ExperimentConfig] = None,
                        build_models: BuildModels = build_task_models,
                        overrides: Sequence[str] = ()) -> RestoredModel:
    """Restores the depth network of a run for inference.

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
    if common.MODEL_DEPTH not in models:
        raise checkpoints.CheckpointError(
            f"task {config.task!r} has no '{common.MODEL_DEPTH}' model (it has {sorted(models)}); "
            "only depth networks can be exported.")
    # Only the depth network: it is all inference needs; the other models (pose nets) may
    # share its encoder but their own layers are not restored.
    depth_model = models[common.MODEL_DEPTH]
    checkpoints.load_models({common.MODEL_DEPTH: depth_model}, prefix)  # verified above
    return RestoredModel(model=depth_model, config=config, checkpoint=prefix,
                         step=checkpoint_step(prefix))
