"""Checkpoints: resumable training state, keep-best, determinism, initialising modules.

A run's workdir holds

    config.json            the resolved config (written by the Trainer)
    checkpoints/ckpt-N.*   `tf.train.CheckpointManager`: models, optimizer, step, input
                           iterator position and RNG state; the newest is resumed automatically
    best/ckpt-N.*          models + step of the best validation result, and best/best.json
    history.json           logged training scalars and evaluation metrics (learning curves)
    logs/train, logs/eval  TensorBoard

`tf.train.Checkpoint` files name objects by their place in the object graph (e.g.
`models/depth/_operations/3/_kernel`), not by layer name, so initialising selected modules
from another run (`init_modules_from_checkpoint`) rebuilds that run's models from its own
config.json, restores them whole, and then copies weights layer by layer, by layer name.
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from absl import logging

from tf_depthseg.utils import atomic_write_bytes
from tf_depthseg import errors

CHECKPOINT_SUBDIR = "checkpoints"
BEST_SUBDIR = "best"
BEST_FILENAME = "best.json"
CHECKPOINT_NAME = "ckpt"


class CheckpointError(errors.UserError, ValueError):
    """A checkpoint is missing or does not fit the models; the message says what to do."""


def enable_determinism(seed: int) -> None:
    """Bitwise-reproducible runs on the same machine: op determinism plus fixed seeds.

    Seeds Python, numpy, TensorFlow and Keras (`keras.utils.set_random_seed`) and turns on
    `tf.config.experimental.enable_op_determinism()`, which also makes `tf.data` produce
    elements in a fixed order. Randomness in input pipelines must be stateless ops seeded from
    the element's position in the stream, and randomness in the train step must come from the
    Trainer's checkpointed `tf.random.Generator`, so a resumed run draws the same numbers.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix, a checkpoint folder, or a run's workdir.

    Raises CheckpointError when nothing is there.
    """
    if not path:
        raise CheckpointError("empty checkpoint path")
    if tf.io.gfile.isdir(path):
        for folder in (path, os.path.join(path, CHECKPOINT_SUBDIR)):
            latest = tf.train.latest_checkpoint(folder)
            if latest:
                return latest
        raise CheckpointError(f"{path}: no checkpoint found in this folder or in its "
                              f"'{CHECKPOINT_SUBDIR}/' subfolder. Pass a run's workdir, its "
                              "checkpoints/ folder, or a checkpoint prefix like "
                              ".../checkpoints/ckpt-1000.")
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise CheckpointError(f"{path}: not a checkpoint (no {path}.index) and not a folder. Pass a "
                          "run's workdir, its checkpoints/ folder, or a checkpoint prefix.")


def find_run_config(checkpoint_prefix: str) -> Optional[str]:
    """The config.json of the run a checkpoint belongs to (next to it or one folder up)."""
    folder = os.path.dirname(checkpoint_prefix)
    for candidate in (folder, os.path.dirname(folder)):
        path = os.path.join(candidate, "config.json")
        if tf.io.gfile.exists(path):
            return path
    return None


def restore_models(models: Mapping[str, keras.Model], path: str) -> str:
    """Restores only the models (no optimizer/iterator) from a checkpoint, workdir or best/.

    For evaluation and export. Raises CheckpointError when a model's variables are missing
    from the checkpoint or have other shapes. Returns the checkpoint prefix used.
    """
    prefix = resolve_checkpoint(path)
    checkpoint = tf.train.Checkpoint(models=dict(models))
    try:
        checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"{prefix}: the checkpoint does not match the models "
                              f"{sorted(models)} ({error}). Was it written by a run with "
                              "another model config?") from error
    return prefix


# --------------------------------------------------------------------------------------------
# Initialising selected modules from another run.
# --------------------------------------------------------------------------------------------


def _children(layer) -> list:
    """The direct sub-layers of a functional/sequential sub-model (empty for plain layers)."""
    return list(getattr(layer, "layers", []) or []) if isinstance(layer, keras.Model) else []


def _match_layers(model: keras.Model, prefix: str) -> List[keras.layers.Layer]:
    """Top-most layers (searching into sub-models) whose name starts with `prefix`."""
    found = []

    def visit(layer):
        for child in _children(layer):
            if child.name.startswith(prefix):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def _find_layer(model: keras.Model, name: str):
    stack = [model]
    while stack:
        layer = stack.pop()
        for child in _children(layer):
            if child.name == name:
                return child
            stack.append(child)
    return None


def _parse_module(spec: str, model_keys: Sequence[str]) -> Tuple[List[str], str]:
    """'encoder' -> (all model keys, 'encoder'); 'depth/encoder' -> (['depth'], 'encoder')."""
    if "/" in spec:
        key, prefix = spec.split("/", 1)
        if key not in model_keys:
            raise CheckpointError(f"model.init_modules entry '{spec}' names model '{key}', but "
                                  f"the task's models are {list(model_keys)}")
        return [key], prefix
    return list(model_keys), spec


def init_modules_from_checkpoint(models: Mapping[str, keras.Model], path: str,
                                 modules: Sequence[str],
                                 build_donor: Callable[[Optional[str]],
                                                       Mapping[str, keras.Model]]
                                 ) -> Dict[str, List[str]]:
    """Copies the weights of selected layers from another run's checkpoint.

    Args:
      models: the live models, by key (their variables may be distributed).
      path: the other run's workdir, checkpoints/ folder or checkpoint prefix.
      modules: layer-name prefixes, optionally restricted to one model: 'encoder' matches every
        layer (or sub-model) whose name starts with 'encoder' in every model;
        'depth/encoder' only in model 'depth'. Each entry must match at least one layer.
      build_donor: builds models shaped like the other run's, given the path of that run's
        config.json (None when it has none: build them like the live ones).

    Returns:
      {model key: [names of the layers initialised]}.

    Raises:
      CheckpointError: no checkpoint, an entry matching nothing, or a layer missing from the
        other run or shaped differently there.
    """
    prefix = resolve_checkpoint(path)
    if not modules:
        raise CheckpointError(f"model.init_checkpoint={path} is set but model.init_modules is "
                              "empty; name the modules to initialise, e.g. ['encoder'].")
    donor = build_donor(find_run_config(prefix))
    try:
        tf.train.Checkpoint(models=dict(donor)).restore(prefix).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"{prefix}: cannot restore the run's models from it ({error}). Its "
                              "config.json must describe the models that wrote it.") from error
    copied: Dict[str, List[str]] = {}
    for spec in modules:
        keys, layer_prefix = _parse_module(spec, list(models))
        matched_any = False
        for key in keys:
            for layer in _match_layers(models[key], layer_prefix):
                matched_any = True
                if key not in donor:
                    raise CheckpointError(f"{prefix}: the run has no model '{key}' (it has "
                                          f"{sorted(donor)}), needed for '{spec}'")
                source = _find_layer(donor[key], layer.name)
                if source is None:
                    raise CheckpointError(f"{prefix}: model '{key}' of that run has no layer "
                                          f"'{layer.name}' (matched by init module '{spec}')")
                _copy_weights(source, layer, f"{key}/{layer.name}", prefix)
                copied.setdefault(key, []).append(layer.name)
        if not matched_any:
            names = sorted({l.name for k in keys for l in _children(models[k])})
            raise CheckpointError(f"model.init_modules entry '{spec}' matches no layer of models "
                                  f"{keys}; top-level layer names are {names[:20]}")
    logging.info("Initialised from %s: %s", prefix,
                 {k: len(v) for k, v in copied.items()})
    return copied


def _copy_weights(source, target, where: str, prefix: str) -> None:
    if len(source.weights) != len(target.weights):
        raise CheckpointError(f"{prefix}: layer {where} has {len(source.weights)} weights there "
                              f"but {len(target.weights)} here; the architectures differ")
    for src, dst in zip(source.weights, target.weights):
        if tuple(src.shape) != tuple(dst.shape):
            raise CheckpointError(f"{prefix}: weight {src.path} of layer {where} has shape "
                                  f"{tuple(src.shape)} there but {tuple(dst.shape)} here")
        dst.assign(src.numpy())


# --------------------------------------------------------------------------------------------
# Keep-best.
# --------------------------------------------------------------------------------------------


class BestKeeper:
    """Saves the models whenever a validation metric improves, in `<workdir>/best/`.

    `best/best.json` records the step, the metric and all metrics of that evaluation; it is
    read back on resume so a restarted run keeps comparing against the same best value.
    """

    def __init__(self, directory: str, metric: str, mode: str,
                 checkpoint: tf.train.Checkpoint, write: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {mode!r}")
        self.directory, self.metric, self.mode, self.write = directory, metric, mode, write
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1,
                                                  checkpoint_name=CHECKPOINT_NAME)
        self.best: Optional[dict] = None
        path = os.path.join(directory, BEST_FILENAME)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                self.best = json.load(f)

    def is_better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        best = self.best["value"]
        return value < best if self.mode == "min" else value > best

    def update(self, step: int, metrics: Mapping[str, float]) -> bool:
        """Saves when `metrics[self.metric]` beats the best so far; returns whether it did."""
        if self.metric not in metrics:
            raise ValueError(f"train.best_metric='{self.metric}' is not among the evaluation "
                             f"metrics {sorted(metrics)}; set train.best_metric to one of them, "
                             "or to '' to turn keep-best off.")
        value = float(metrics[self.metric])
        if not self.is_better(value):
            return False
        self.best = {"step": int(step), "metric": self.metric, "mode": self.mode,
                     "value": value, "metrics": {k: float(v) for k, v in metrics.items()}}
        # Every worker must take part in a save (collective reads); only the chief keeps it.
        self.manager.save(checkpoint_number=step)
        if self.write:
            atomic_write_bytes(os.path.join(self.directory, BEST_FILENAME),
                               (json.dumps(self.best, indent=2) + "\n").encode())
        return True
