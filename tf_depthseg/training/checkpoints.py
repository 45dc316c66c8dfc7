"""Checkpoints: resumable training state, keep-best, determinism, initialising modules.

A run's workdir holds

    config.json            the resolved config (written by the Trainer)
    checkpoints/ckpt-N.*   `tf.train.CheckpointManager`: models, optimizer, step, input
                           iterator position, RNG state and the models' Keras seed-generator
                           states (dropout); the newest is resumed automatically
    best/ckpt-N.*          models + step of the best validation result, and best/best.json
    history.json           logged training scalars and evaluation metrics (learning curves)
    logs/train, logs/eval  TensorBoard

Every save also writes `ckpt-N.sha256.json` (size and sha256 of each file of that checkpoint,
written atomically after the checkpoint is complete). Readers (`newest_intact_checkpoint`) skip
damaged checkpoints - a missing, empty, truncated or changed `.index` or `.data` file - and use
the newest intact one, logging which file is damaged; checkpoints without that file (older
runs, or a kill between the save and it) are verified by reading every tensor, which checks
TensorFlow's own per-tensor CRC32C. `clean_partial_writes` removes what a kill during a save
leaves behind (`ckpt-N_temp/`, temporary files, a `ckpt-N` the state file never listed).

`tf.train.Checkpoint` files name objects by their place in the object graph (e.g.
`models/depth/_operations/3/_kernel`), not by layer name, so initialising selected modules
from another run (`init_modules_from_checkpoint`) rebuilds that run's models from its own
config.json, restores them whole, and then copies weights layer by layer, by layer name.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import re
import shutil
import time
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
SEED_STATES_KEY = "seed_generators"  # checkpoint key of `seed_generator_states`
STATE_FILENAME = "checkpoint"  # tf.train.CheckpointManager's state file
SIDECAR_SUFFIX = ".sha256.json"
DAMAGED_SUFFIX = ".damaged"
_CHUNK = 1 << 20


class CheckpointError(errors.UserError, ValueError):
    """A checkpoint is missing or does not fit the models; the message says what to do."""


class DamagedCheckpointError(CheckpointError):
    """Every checkpoint there is damaged (or the one asked for is); names the file and the fix."""


def enable_determinism(seed: int) -> None:
    """Bitwise-reproducible runs on the same machine: op determinism plus fixed seeds.

    Seeds Python, numpy, TensorFlow and Keras (`keras.utils.set_random_seed`) and turns on
    `tf.config.experimental.enable_op_determinism()`, which also makes `tf.data` produce
    elements in a fixed order. Randomness in input pipelines must be stateless ops seeded from
    the element's position in the stream, and randomness in the train step must come from the
    Trainer's checkpointed `tf.random.Generator`, so a resumed run draws the same numbers.

    Bitwise holds per machine only: another CPU (or `TF_ENABLE_ONEDNN_OPTS=0`) runs other
    kernels and gives other, equally reproducible, numbers; a run resumed on another machine
    continues correctly but is not bitwise equal to an uninterrupted run (docs/testing.md).
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def seed_generator_states(models: Mapping[str, keras.Model]) -> Dict[str, list]:
    """{role: [state variables of the model's Keras `SeedGenerator`s]}, for the checkpoint.

    Keras 3 layers that draw random numbers in training (Dropout) keep their random state in
    a `keras.random.SeedGenerator`: a variable that `model.variables` lists but
    `model.weights` does not, and that a `tf.train.Checkpoint` of the model does not reach (a
    SeedGenerator is not trackable). Without it a resumed run draws the masks of its first
    steps again. These are `model.variables` minus `model.weights`, in the model's variable
    order (layers in build order, so the same for the same config in any process: their
    auto-generated names are not), each variable once (models may share layers); roles
    without any are left out, so a run without dropout writes no `seed_generators` key.
    """
    states: Dict[str, list] = {}
    seen = set()
    for role, model in models.items():
        weights = {id(v) for v in model.weights}
        found = [v for v in model.variables if id(v) not in weights and id(v) not in seen]
        seen.update(id(v) for v in found)
        if found:
            states[role] = found
    return states


def has_key(prefix: str, key: str) -> bool:
    """Whether the checkpoint `prefix` holds any value under the top-level object `key`."""
    return any(name.startswith(key + "/") for name, _ in tf.train.list_variables(prefix))


# --------------------------------------------------------------------------------------------
# Integrity: which checkpoints exist, which are intact, what a killed save left behind.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Damage:
    """A checkpoint that cannot be used: `path` is the missing or damaged file."""

    prefix: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def checkpoint_number(prefix: str) -> Optional[int]:
    """N of a `.../ckpt-N` prefix (None for other names)."""
    match = re.fullmatch(re.escape(CHECKPOINT_NAME) + r"-(\d+)", os.path.basename(prefix))
    return int(match.group(1)) if match else None


def data_files(prefix: str) -> List[str]:
    """The `.data-?????-of-?????` files of a checkpoint that exist, sorted."""
    return sorted(glob.glob(glob.escape(prefix) + ".data-?????-of-?????"))


def read_state(folder: str):
    """The CheckpointManager state of `folder` (a CheckpointState proto with absolute paths),
    or None when the state file is missing or unreadable (TensorFlow raises on an empty one)."""
    if not os.path.exists(os.path.join(folder, STATE_FILENAME)):
        return None
    try:
        return tf.train.get_checkpoint_state(folder)
    except (ValueError, tf.errors.OpError):
        return None


def _listed(state) -> List[str]:
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
    return [p for p in dict.fromkeys(paths) if checkpoint_number(p) is not None]


def _on_disk(folder: str) -> List[str]:
    """Prefixes of `folder` with any `.index` or `.data` file (complete or not)."""
    found = set()
    for path in glob.glob(os.path.join(glob.escape(folder), f"{CHECKPOINT_NAME}-*")):
        match = re.fullmatch(re.escape(CHECKPOINT_NAME) + r"-(\d+)\.(index|data-\d{5}-of-\d{5})",
                             os.path.basename(path))
        if match:
            found.add(os.path.join(folder, f"{CHECKPOINT_NAME}-{match.group(1)}"))
    return list(found)


def scan_checkpoints(folder: str) -> Tuple[List[str], List[str]]:
    """(candidates newest first, unfinished writes) of a checkpoint folder.

    Candidates are the checkpoints the state file lists plus those with files on disk (so a
    lost or damaged state file hides nothing). A `ckpt-N` on disk that the state file does not
    list and that is newer than everything it lists is an unfinished write: the manager updates
    the state file only after a save is complete.
    """
    state = read_state(folder)
    listed = _listed(state)
    on_disk = _on_disk(folder)
    unfinished = []
    if listed:
        newest_listed = max(checkpoint_number(p) for p in listed)
        unfinished = [p for p in on_disk if p not in listed
                      and checkpoint_number(p) > newest_listed]
    candidates = set(listed) | (set(on_disk) - set(unfinished))
    return (sorted(candidates, key=checkpoint_number, reverse=True),
            sorted(unfinished, key=checkpoint_number))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(prefix: str) -> str:
    """Writes `<prefix>.sha256.json` (size and sha256 of every file of the checkpoint)."""
    files = {os.path.basename(p): {"bytes": os.path.getsize(p), "sha256": _sha256(p)}
             for p in [prefix + ".index"] + data_files(prefix)}
    path = prefix + SIDECAR_SUFFIX
    atomic_write_bytes(path, (json.dumps({"files": files}, indent=1) + "\n").encode())
    return path


def remove_stale_sidecars(folder: str) -> None:
    """Deletes the sidecars of checkpoints the manager has deleted."""
    for path in glob.glob(os.path.join(glob.escape(folder), "*" + SIDECAR_SUFFIX)):
        if not os.path.exists(path[:-len(SIDECAR_SUFFIX)] + ".index"):
            os.remove(path)


def _op_error_text(error: Exception) -> str:
    """A TensorFlow error's message without the op and function names wrapped around it."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{[^}]*\}\}", "", text)
    text = re.sub(r"\[Op:[^\]]*\]", "", text)
    return " ".join(text.split()) or type(error).__name__


def find_damage(prefix: str) -> Optional[Damage]:
    """Why the checkpoint `prefix` cannot be restored, or None when it is intact.

    With a sidecar: every file must exist with the recorded size and sha256. Without one, the
    index must parse, every `.data` shard must exist, and every tensor must read back (each
    carries a CRC32C that TensorFlow checks).
    """
    index = prefix + ".index"
    if not os.path.exists(index):
        if data_files(prefix):
            return Damage(prefix, index, "missing (the .data file is there, the .index is not)")
        return Damage(prefix, index, "missing (the checkpoint's files were deleted)")
    if os.path.getsize(index) == 0:
        return Damage(prefix, index, "empty (0 bytes)")
    sidecar = prefix + SIDECAR_SUFFIX
    if os.path.exists(sidecar):
        try:
            with open(sidecar) as f:
                files = json.load(f)["files"]
            expected = {os.path.join(os.path.dirname(prefix), name): (int(entry["bytes"]),
                                                                      str(entry["sha256"]))
                        for name, entry in files.items()}
        except (OSError, ValueError, KeyError, TypeError):
            expected = None  # a damaged sidecar says nothing: verify by reading, below
        if expected is not None:
            for path, (size, _) in expected.items():
                if not os.path.exists(path):
                    return Damage(prefix, path, "missing")
                actual = os.path.getsize(path)
                if actual != size:
                    what = "truncated" if actual < size else "longer than written"
                    return Damage(prefix, path, f"{what}: {actual} bytes, {size} when saved")
            for path, (_, digest) in expected.items():
                if _sha256(path) != digest:
                    return Damage(prefix, path, "content changed since it was saved (sha256 "
                                                f"differs from {os.path.basename(sidecar)})")
            return None
    # TensorFlow's reader maps its C++ status codes to several Python exceptions (OpError
    # subclasses, IndexError for short reads, ValueError...): any of them means unreadable.
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as error:  # pylint: disable=broad-except
        return Damage(prefix, index, f"unreadable ({_op_error_text(error)})")
    shards = data_files(prefix)
    total = int(shards[0].rsplit("-of-", 1)[1]) if shards else 1
    for shard in range(total):
        path = f"{prefix}.data-{shard:05d}-of-{total:05d}"
        if path not in shards:
            return Damage(prefix, path, "missing")
    dtypes = reader.get_variable_to_dtype_map()
    names = sorted(dtypes)
    try:
        tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                             dtypes=[dtypes[n] for n in names])
    except Exception as error:  # pylint: disable=broad-except  (as above)
        where = shards[0] if len(shards) == 1 else f"{prefix}.data-*"
        return Damage(prefix, where, f"unreadable ({_op_error_text(error)})")
    return None


def newest_intact_checkpoint(folder: str) -> Tuple[Optional[str], List[Damage]]:
    """(newest intact checkpoint prefix, damage found in newer ones) of a checkpoint folder.

    (None, []) when the folder holds no checkpoint at all; (None, damages) when every one is
    damaged.
    """
    damages = []
    candidates, _ = scan_checkpoints(folder)
    for prefix in candidates:
        damage = find_damage(prefix)
        if damage is None:
            return prefix, damages
        damages.append(damage)
    return None, damages


def describe_damage(damages: Sequence[Damage]) -> str:
    """'<file>: <reason>' of each damaged checkpoint, newest first, in one line."""
    return "; ".join(str(d) for d in damages)


def no_intact_error(folder: str, damages: Sequence[Damage], fix: str) -> DamagedCheckpointError:
    """The error for a folder whose every checkpoint is damaged."""
    return DamagedCheckpointError(
        f"{describe_damage(damages)}. No intact checkpoint is left in {folder}; {fix}")


def select_intact(folder: str, fix: str) -> Optional[str]:
    """The newest intact checkpoint of `folder` (None when it has none at all), logging the
    damaged newer ones it skipped; raises DamagedCheckpointError (with `fix`) when all are."""
    prefix, damages = newest_intact_checkpoint(folder)
    if damages and prefix is None:
        raise no_intact_error(folder, damages, fix)
    if damages:
        logging.warning("Damaged checkpoint skipped: %s. Using %s instead.",
                        describe_damage(damages), prefix)
    return prefix


def set_aside(damage: Damage) -> List[str]:
    """Renames every file of a damaged checkpoint to `<name>.damaged` (kept for inspection,
    out of the way of the run that saves that step again); returns the new names."""
    moved = []
    paths = [damage.prefix + ".index", damage.prefix + SIDECAR_SUFFIX] + data_files(damage.prefix)
    for path in paths:
        if os.path.exists(path):
            os.replace(path, path + DAMAGED_SUFFIX)
            moved.append(path + DAMAGED_SUFFIX)
    return moved


def write_state(folder: str, latest: str, kept: Sequence[str]) -> None:
    """Atomically rewrites the manager's state file: `latest` is the newest checkpoint, `kept`
    (oldest first) those the manager keeps and deletes in turn. Keeps the old timestamps."""
    state = read_state(folder)
    stamps, preserved = {}, time.time()
    if state is not None:
        stamps = dict(zip(state.all_model_checkpoint_paths,
                          state.all_model_checkpoint_timestamps))
        preserved = state.last_preserved_timestamp or preserved
    kept = list(dict.fromkeys(list(kept) + [latest]))
    # The CheckpointState text proto, with paths relative to the folder as the manager writes.
    lines = [f'model_checkpoint_path: "{os.path.basename(latest)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in kept]
    lines += [f"all_model_checkpoint_timestamps: "
              f"{stamps.get(p) or os.path.getmtime(p + '.index')!r}" for p in kept]
    lines.append(f"last_preserved_timestamp: {preserved!r}")
    atomic_write_bytes(os.path.join(folder, STATE_FILENAME), ("\n".join(lines) + "\n").encode())


_TEMP_PATTERNS = (
    f"{CHECKPOINT_NAME}-*_temp",            # tf.train.Checkpoint's per-save shard folder
    f"{CHECKPOINT_NAME}-*.tempstate*",      # TensorFlow's bundle writer's temporary files
    f"{STATE_FILENAME}.tmp*",               # the manager's atomic state-file write
    ".tmp-*",                               # our atomic writes (sidecars, best.json)
)


def clean_partial_writes(folder: str) -> List[str]:
    """Removes what a kill during a save left in a checkpoint folder; returns the paths.

    Only names this module and TensorFlow's checkpoint writer give temporary files, and the
    files of an unfinished `ckpt-N` (on disk, newer than anything the state file lists).
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for pattern in _TEMP_PATTERNS:
        for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
    for prefix in scan_checkpoints(folder)[1]:
        for path in [prefix + ".index", prefix + SIDECAR_SUFFIX] + data_files(prefix):
            if os.path.exists(path):
                os.remove(path)
                removed.append(path)
    if removed:
        logging.warning("Removed %d leftovers of an interrupted checkpoint save: %s",
                        len(removed), ", ".join(sorted(os.path.basename(p) for p in removed)))
    return sorted(removed)


def prepare_for_writing(folder: str, fix: str) -> Tuple[Optional[str], List[Damage]]:
    """Readies a checkpoint folder a run writes to, before a CheckpointManager opens it.

    Removes leftovers of an interrupted save, finds the newest intact checkpoint, renames
    damaged newer ones to `*.damaged` and rewrites the state file so that it names the intact
    one as the latest (the manager would otherwise count, and one day resume, the damaged
    ones). Only the process that owns the folder may call this (the chief).

    Returns:
      (newest intact prefix, damaged newer ones); (None, []) when there is no checkpoint.
    Raises:
      DamagedCheckpointError: there are checkpoints but none is intact (message ends in `fix`).
    """
    clean_partial_writes(folder)
    prefix, damages = newest_intact_checkpoint(folder)
    if prefix is None:
        if damages:
            raise no_intact_error(folder, damages, fix)
        if os.path.exists(os.path.join(folder, STATE_FILENAME)):
            # A state file naming nothing that exists, or unreadable: it would only confuse
            # the manager (TensorFlow raises on an empty one).
            os.remove(os.path.join(folder, STATE_FILENAME))
        return None, []
    kept_damages = []
    for damage in damages:
        moved = set_aside(damage)
        if moved:
            damage = dataclasses.replace(damage, reason=f"{damage.reason}; its files are kept "
                                         f"as {os.path.basename(damage.prefix)}.*{DAMAGED_SUFFIX}")
        kept_damages.append(damage)
    state = read_state(folder)
    if state is None:
        logging.warning("%s: missing or unreadable; rebuilt from the checkpoint files (newest "
                        "intact: %s)", os.path.join(folder, STATE_FILENAME), prefix)
    if state is None or state.model_checkpoint_path != prefix or damages:
        older = [p for p in scan_checkpoints(folder)[0]
                 if checkpoint_number(p) < checkpoint_number(prefix)]
        write_state(folder, prefix, sorted(older, key=checkpoint_number))
    return prefix, kept_damages


READ_FIX = "restore the damaged file from a backup, or delete it and train the run again."


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix, a checkpoint folder, or a run's workdir.

    A folder gives its newest intact checkpoint (damaged newer ones are logged and skipped).
    Raises CheckpointError when nothing is there, DamagedCheckpointError when the prefix, or
    every checkpoint of the folder, is damaged.
    """
    if not path:
        raise CheckpointError("empty checkpoint path")
    if tf.io.gfile.isdir(path):
        for folder in (path, os.path.join(path, CHECKPOINT_SUBDIR)):
            latest = select_intact(folder, READ_FIX) if os.path.isdir(folder) else None
            if latest:
                return latest
        raise CheckpointError(f"{path}: no checkpoint found in this folder or in its "
                              f"'{CHECKPOINT_SUBDIR}/' subfolder. Pass a run's workdir, its "
                              "checkpoints/ folder, or a checkpoint prefix like "
                              ".../checkpoints/ckpt-1000.")
    if tf.io.gfile.exists(path + ".index") or data_files(path):
        damage = find_damage(path)
        if damage is not None:
            intact = newest_intact_checkpoint(os.path.dirname(path))[0]
            other = f" The newest intact checkpoint there is {intact}." if intact else ""
            raise DamagedCheckpointError(f"{damage}.{other} Pass another checkpoint, or "
                                         f"{READ_FIX}")
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
    load_models(models, prefix)
    return prefix


def load_models(models: Mapping[str, keras.Model], prefix: str) -> None:
    """`restore_models` from a prefix already resolved and verified (`resolve_checkpoint`,
    `select_intact`): no second sha256 pass over the checkpoint's files."""
    checkpoint = tf.train.Checkpoint(models=dict(models))
    try:
        checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"{prefix}: the checkpoint does not match the models "
                              f"{sorted(models)} ({error}). Was it written by a run with "
                              "another model config?") from error


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
        if write:
            prepare_for_writing(directory, f"delete {directory} to start keep-best over.")
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1,
                                                  checkpoint_name=CHECKPOINT_NAME)
        self.best: Optional[dict] = None
        path = os.path.join(directory, BEST_FILENAME)
        if tf.io.gfile.exists(path):
            try:
                with tf.io.gfile.GFile(path) as f:
                    self.best = json.load(f)
            except ValueError as error:
                raise CheckpointError(f"{path}: unreadable ({error}); delete {directory} to "
                                      "start keep-best over.") from error

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
        prefix = self.manager.save(checkpoint_number=step)
        if self.write:
            write_sidecar(prefix)
            remove_stale_sidecars(self.directory)
            atomic_write_bytes(os.path.join(self.directory, BEST_FILENAME),
                               (json.dumps(self.best, indent=2) + "\n").encode())
        return True
