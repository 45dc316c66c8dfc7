"""Experiment configuration: frozen dataclasses, typed dotted overrides, JSON round trip.

An experiment is one `ExperimentConfig` built by a `configs/**/*.py` file's
`get_config(smoke=False)`. Command lines change it with `--set section.field=value`:

    config = load_config("suw/synthetic_suw", smoke=True)
    config = apply_overrides(config, ["train.steps=100", "suw.sam_dilations=[1,2,4]"])
    save_json(config, workdir)            # <workdir>/config.json; load_config() reads it back

Shared sections (`data`, `model`, `optim`, `train`, `eval`, `export`) hold what every task
uses; each task owns its sections (`Task.config_sections`, e.g. `config.suw` of the SUW task,
defined next to the task and registered with it in `tf_depthseg.training.tasks.TASKS`).
Config files of the old layout (`loss.*`, SUW knobs under `model.*`) load with their keys
moved (`MOVED_KEYS`); `--set` of an old key names the new one.

Values are parsed as Python literals (`3`, `1e-4`, `[1, 2]`, `true`/`false`, `none`); anything
else is taken as a string. Every value is checked against the field's annotation, fields with
`choices` metadata against those, and numeric fields against the range declared with
`_ranged` (every element of a tuple; `below=` another field, `order=` within a tuple); an
unknown key names the nearest valid keys.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import importlib.util
import json
import os
import types
import typing
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from absl import logging

from tf_depthseg.errors import ConfigError

CONFIG_FILENAME = "config.json"


def _choices(default, *choices):
    """A dataclass field that only accepts `choices` (checked in `__post_init__`)."""
    return dataclasses.field(default=default, metadata={"choices": choices})


@dataclasses.dataclass(frozen=True)
class _Range:
    """Valid numbers: `low` <= x (< with `low_open`), x <= `high` (< with `high_open`)."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, x) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


def _ranged(default, low=None, high=None, *, low_open: bool = False, high_open: bool = False,
            below: Optional[str] = None, order: Optional[str] = None):
    """A numeric field (or tuple of numbers: every element) limited to a range.

    `below`: the value must also be smaller than that field of the same section. `order`:
    "<" or "<=" between consecutive elements of a tuple. Checked in `__post_init__`.
    """
    return dataclasses.field(default=default, metadata={
        "range": _Range(low, high, low_open, high_open), "below": below, "order": order})


def _plain_fields(section) -> list:
    """The dataclass fields of a section, without ExperimentConfig's `task_sections` mapping
    (its sections are checked and listed under their own keys)."""
    return [f for f in dataclasses.fields(section) if f.name != "task_sections"]


def _section_key(cls) -> str:
    """'train.' for TrainConfig: the dotted prefix users type ('' for ExperimentConfig). By
    name, since the default sections are built before ExperimentConfig exists."""
    if cls.__name__ == "ExperimentConfig":
        return ""
    return cls.__name__[:-len("Config")].lower() + "."


@dataclasses.dataclass(frozen=True)
class _Section:
    """Base: checks every field's type, choices and range when built (also after overrides)."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        prefix = _section_key(type(self))
        for field in _plain_fields(self):
            key = prefix + field.name
            value = getattr(self, field.name)
            choices = field.metadata.get("choices")
            if value is None and choices and "none" in choices:
                value = "none"  # `--set suw.weak=none` parses as None; the choice is "none"
            coerced = _coerce(value, hints[field.name], key)
            if coerced is not getattr(self, field.name):
                object.__setattr__(self, field.name, coerced)
            if choices and coerced not in choices:
                raise ConfigError(f"{key}={coerced!r} is not one of {list(choices)}")
            if "range" in field.metadata and coerced is not None:
                self._check_range(key, coerced, field.metadata)

    def check_relations(self) -> None:
        """`below=` constraints between fields, of this section and the ones inside it.

        Not run in `__post_init__`: overrides are applied one at a time, and e.g. lowering
        suw.max_depth and then suw.min_depth must not fail in between. `apply_overrides`
        and `load_config` run it on the result.
        """
        prefix = _section_key(type(self))
        for section in getattr(self, "task_sections", {}).values():
            section.check_relations()
        for field in _plain_fields(self):
            value = getattr(self, field.name)
            if isinstance(value, _Section):
                value.check_relations()
            other = field.metadata.get("below")
            if other is not None and value is not None and not value < getattr(self, other):
                raise ConfigError(f"{prefix}{field.name}={_show(value)} must be below "
                                  f"{prefix}{other}={_show(getattr(self, other))}")

    def _check_range(self, key: str, value, metadata) -> None:
        valid = metadata["range"]
        items = value if isinstance(value, tuple) else (value,)
        what = "every element " if isinstance(value, tuple) else ""
        if not all(valid.contains(x) for x in items):
            raise ConfigError(f"{key}={_show(value)} is out of range: {what}must be "
                              f"{valid.describe()}")
        order = metadata["order"]
        if order and any(not (a < b if order == "<" else a <= b)
                         for a, b in zip(items, items[1:])):
            raise ConfigError(f"{key}={_show(value)}: the values must be "
                              f"{'increasing' if order == '<' else 'non-decreasing'}")


def _show(value) -> str:
    """A value as the user writes it in --set (lists, not tuples)."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value, annotation, where: str):
    """Returns `value` checked against `annotation` (lists become tuples, ints become floats)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list ({_type_name(annotation)}), got "
                              f"{value!r} of type {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        else:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values "
                                  f"({_type_name(annotation)}), got {len(value)}: {value!r}")
            items = tuple(_coerce(v, a, f"{where}[{i}]")
                          for i, (v, a) in enumerate(zip(value, args)))
        return value if isinstance(value, tuple) and items == value else items
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, dict):
            return from_dict(annotation, value, where)  # where: the section's key, "train"
        raise ConfigError(f"{where}: expected a {annotation.__name__} section, got {value!r}")
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {value!r} of type "
                              f"{type(value).__name__}")
        return float(value) if isinstance(value, int) else value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {value!r} of type "
                              f"{type(value).__name__}")
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r} of type "
                              f"{type(value).__name__}")
        return value
    raise ConfigError(f"{where}: unsupported annotation {annotation!r}")


# --------------------------------------------------------------------------------------------
# Sections. Defaults are the papers' values where the papers give them.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
    """Where the TFRecords are and how batches are made (see tf_depthseg/data/pipeline.py)."""

    train_pattern: str = ""  # glob of training shards, e.g. data/kitti/train-*.tfrecord
    eval_pattern: str = ""
    # Batch keys (tf_depthseg.common) the task needs from each record.
    keys: Tuple[str, ...] = ("image", "context", "intrinsics", "depth")
    num_context: int = _ranged(2, 0)  # neighbour frames per record (t-1, t+1)
    image_size: Tuple[int, int] = _ranged((128, 416), 1)  # (height, width) fed to the model
    # Random crop after resize; None = no crop.
    crop_size: Optional[Tuple[int, int]] = _ranged(None, 1)
    # Random resize factor range before crop.
    scale_range: Tuple[float, float] = _ranged((1.0, 1.0), 0, low_open=True, order="<=")
    flip_prob: float = _ranged(0.5, 0, 1)
    # Strength of brightness/contrast/saturation/hue jitter; 0 = off.
    color_jitter: float = _ranged(0.2, 0, 1)
    batch_size: int = _ranged(4, 1)  # global batch (all replicas together)
    eval_batch_size: int = _ranged(4, 1)
    shuffle_buffer: int = _ranged(256, 1)
    # Read splits whose conversion has not finished (manifest.json says complete: false):
    # only their finished shards. Off, such a split is an error naming it (see records.py).
    allow_incomplete: bool = False
    # TensorFlow Datasets data_dir of `tfds:` patterns ("" = TFDS's default: $TFDS_DATA_DIR,
    # else ~/tensorflow_datasets); see tf_depthseg/tfds/source.py.
    tfds_data_dir: str = ""


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    """What every task's networks share (each task's own network knobs are in its section)."""

    # Batch-norm moving-average momentum of every BN layer (Keras default 0.99). Short runs
    # (CPU smoke, the synthetic study) need ~0.9: with 0.99 the inference statistics still
    # hold 22 % of their initial values after 150 steps and evaluation suffers.
    bn_momentum: float = _ranged(0.99, 0, 1, high_open=True)
    init_checkpoint: str = ""  # initialise modules from another checkpoint ("" = none)
    init_modules: Tuple[str, ...] = ("encoder",)


@dataclasses.dataclass(frozen=True)
class OptimConfig(_Section):
    """Optimizer and learning-rate schedule."""

    optimizer: str = _choices("adam", "adam", "adamw", "sgd")
    learning_rate: float = _ranged(1e-4, 0, low_open=True)
    # Learning-rate multiplier per parameter group of the task (`Task.param_groups`), e.g.
    # [["backbone", 0.1]]; groups not listed train at 1x.
    lr_multipliers: Tuple[Tuple[str, float], ...] = dataclasses.field(
        default=(), metadata={"range_checked_by": "OptimConfig.__post_init__ (>= 0)"})
    weight_decay: float = _ranged(0.0, 0)
    momentum: float = _ranged(0.9, 0, 1, high_open=True)  # SGD only
    clip_norm: float = _ranged(0.0, 0)  # global gradient-norm clip; 0 = off
    # paper_encoder_decoder: lr, then lr/10 after `decay_epochs` (10);
    # paper_hourglass: lr / 10 every `decay_epochs` (5).
    schedule: str = _choices("constant", "constant", "paper_encoder_decoder", "paper_hourglass",
                             "step", "poly", "cosine")
    decay_epochs: float = _ranged(10.0, 0, low_open=True)
    decay_steps: Tuple[int, ...] = _ranged((), 1, order="<")  # step schedule boundaries
    decay_rate: float = _ranged(0.1, 0, low_open=True)
    poly_power: float = _ranged(0.9, 0, low_open=True)
    warmup_steps: int = _ranged(0, 0)
    end_learning_rate: float = _ranged(0.0, 0)

    def __post_init__(self):
        super().__post_init__()
        for name, multiplier in self.lr_multipliers:
            if not multiplier >= 0:
                raise ConfigError(f"optim.lr_multipliers: the multiplier of group '{name}' is "
                                  f"{multiplier!r}; it must be >= 0.")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    """The training loop."""

    steps: int = _ranged(1000, 1)
    # 0 = derived from the dataset size (schedules in epochs).
    steps_per_epoch: int = _ranged(0, 0)
    log_every: int = _ranged(10, 0)  # 0 = only at the end
    checkpoint_every: int = _ranged(200, 0)  # 0 = only at the end
    eval_every: int = _ranged(500, 0)  # 0 = no evaluation
    keep_checkpoints: int = _ranged(3, 1)
    best_metric: str = "abs_rel"  # validation metric for keep-best ("" = off)
    best_mode: str = _choices("min", "min", "max")
    seed: int = _ranged(0, 0)
    deterministic: bool = False  # op determinism + stateless seeds: bitwise-resumable (per machine)
    # "auto": by the devices at hand (training/distribute.resolve_mixed_precision).
    mixed_precision: str = _choices("float32", "float32", "mixed_float16", "mixed_bfloat16",
                                    "auto")
    # XLA for the forward + backward pass. Off by default: on the CPU it loses by far
    # (bench/bench_train_step.py, SUW encoder-decoder, batch 4, 128x416: S 6.8x slower than
    # graph mode, whose convolutions run in oneDNN; docs/suw_speed.md). Measure before
    # turning it on elsewhere (GPUs).
    jit_compile: bool = False
    distribution: str = _choices("auto", "auto", "default", "mirrored", "multi_worker")
    image_summaries_every: int = _ranged(200, 0)  # 0 = none


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Section):
    """Depth evaluation (KITTI Eigen protocol by default)."""

    crop: str = _choices("garg", "garg", "eigen", "none")
    min_depth: float = _ranged(1e-3, 0, low_open=True, below="max_depth")
    max_depth: float = _ranged(80.0, 0, low_open=True)
    median_scaling: bool = False  # on for monocular (scale-ambiguous) models
    max_examples: int = _ranged(0, 0)  # 0 = the whole eval split
    # True: compare with the ground truth at the stored record size (Eigen protocol: the
    # prediction is resized to the ground truth), the image resized to data.image_size for the
    # model; records of different sizes then need data.eval_batch_size=1. False: resize the
    # ground truth (nearest) to data.image_size in the pipeline.
    native_resolution: bool = True


@dataclasses.dataclass(frozen=True)
class ExportConfig(_Section):
    """SavedModel / TFLite export (the serving size is data.image_size)."""

    tflite: bool = True
    # int8: full-integer quantisation calibrated on images of data.train_pattern.
    tflite_quantize: str = _choices("none", "none", "dynamic", "float16", "int8")
    # int8: how many training images calibrate the activation ranges (the first ones in the
    # evaluation pipeline's order, resized to data.image_size).
    tflite_representative_examples: int = _ranged(100, 1)


# --------------------------------------------------------------------------------------------
# Task-owned sections. A task declares its own sections (`Task.config_sections`, e.g.
# {"suw": SUWConfig}), defined next to the task and registered here by their module.
# `ExperimentConfig` holds exactly the sections of its `task` and reads
# them as attributes (`config.suw.num_bins`); JSON and --set keys are "suw.num_bins".
# --------------------------------------------------------------------------------------------


# task name -> {section name: section class}; filled by `register_task_sections`.
_TASK_SECTIONS: Dict[str, Dict[str, type]] = {}

# The package whose import registers every task (`tf_depthseg.training.tasks.TASKS`).
TASK_PACKAGE = "tf_depthseg.training.tasks"


def register_task_sections(task: str, sections: Mapping[str, type]) -> None:
    """Declares the config sections task `task` owns, e.g. ("suw", {"suw": SUWConfig}).

    Called by each task's section module when it is imported. A section class must be named
    `<Key>Config` for its key (SUWConfig -> "suw"): error messages derive keys from it.
    """
    for key, cls in sections.items():
        if _section_key(cls) != key + ".":
            raise ValueError(f"section class {cls.__name__} of task {task!r} must be named "
                             f"{key.upper()}Config or {key.capitalize()}Config for key {key!r}")
    _TASK_SECTIONS[task] = dict(sections)


def task_sections(task: str) -> Dict[str, type]:
    """{section name: section class} of the registered task `task` (ConfigError if unknown)."""
    if task not in _TASK_SECTIONS:
        # A config read before any task module was imported (e.g. a tool loading a
        # config.json): import the tasks by name. Not an import statement: the tasks import
        # this module, and a static import back would be a cycle (also for Bazel).
        importlib.import_module(TASK_PACKAGE)
    if task not in _TASK_SECTIONS:
        near = difflib.get_close_matches(task, list(_TASK_SECTIONS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise ConfigError(f"task={task!r} is not a registered task.{hint} Known tasks: "
                          f"{sorted(_TASK_SECTIONS)}")
    return dict(_TASK_SECTIONS[task])


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(_Section):
    """One experiment: the shared sections, the task, and the task's own sections.

    `task_sections` maps each of the task's section names to its section; missing ones get
    their defaults, so `ExperimentConfig(task="suw")` is complete. Read them as attributes:
    `config.suw`.
    """

    name: str = "experiment"
    task: str = "suw"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    task_sections: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self):
        super().__post_init__()
        classes = task_sections(self.task)
        given = dict(self.task_sections)
        for name in given:
            if name not in classes:
                raise _unknown_key_error(name, self, f" (task {self.task!r} has the sections "
                                                     f"{sorted(classes)})")
        sections = {}
        for name, cls in classes.items():
            value = given.get(name, cls())
            sections[name] = _coerce(value, cls, name)
        object.__setattr__(self, "task_sections", types.MappingProxyType(sections))

    def __getattr__(self, name):
        # Only reached when normal lookup fails: the task's own sections.
        sections = self.__dict__.get("task_sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no section {name!r} (task "
                             f"{self.__dict__.get('task')!r} has {sorted(sections)})")

    def __eq__(self, other):
        return (isinstance(other, ExperimentConfig)
                and self.shared_items() == other.shared_items()
                and dict(self.task_sections) == dict(other.task_sections))

    def __deepcopy__(self, memo):
        return self  # immutable all the way down (the sections mapping is read-only)

    def __reduce__(self):
        # The read-only sections mapping does not pickle: rebuild from the plain dict.
        return from_dict, (ExperimentConfig, to_dict(self))

    def shared_items(self) -> tuple:
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                     if f.name != "task_sections")

    def sections(self) -> Dict[str, Any]:
        """Every section by its key: the shared ones, then the task's."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if dataclasses.is_dataclass(getattr(self, f.name))}
        return {**shared, **self.task_sections}


# Keys that moved to a task's section or went away (issue 13): old config.json files are
# rewritten on load (with a warning), and --set of an old key names the new one.
MOVED_KEYS = {
    **{f"loss.{k}": f"suw.{k}" for k in (
        "supervised", "supervised_weight", "soft_target_a", "silog_lambda", "unsupervised",
        "unsupervised_weight", "ssim_weight", "smoothness_weight", "automask", "num_scales",
        "weak", "weak_weight")},
    "model.name": "suw.network",
    **{f"model.{k}": f"suw.{k}" for k in (
        "num_bins", "min_depth", "max_depth", "sam_dilations", "pose_net", "max_objects",
        "hourglass_head")},
    **{f"data.{k}": f"suw.{k}" for k in (
        "weak_pairs_per_image", "weak_train_pattern", "weak_batch_size")},
}
# Removed keys -> what to do instead.
DROPPED_KEYS = {
    "model.object_motion_net": "nothing read it; leave it out (suw.unsupervised=ego_object "
                               "builds the object-motion net)",
    "data.dataset": "nothing read it; leave it out",
    "export.image_size": "exports serve at data.image_size; set that",
}


# --------------------------------------------------------------------------------------------
# Overrides and (de)serialisation.
# --------------------------------------------------------------------------------------------


def _sections_and_values(config) -> list:
    """(name, value) of every field of a section; for ExperimentConfig also its task sections
    (by section name), in place of the `task_sections` mapping."""
    items = [(f.name, getattr(config, f.name)) for f in _plain_fields(config)]
    return items + list(getattr(config, "task_sections", {}).items())


def all_keys(config) -> list:
    """Every dotted key of a config, e.g. ['name', 'data.train_pattern', ..., 'suw.num_bins']."""
    keys = []
    for name, value in _sections_and_values(config):
        if dataclasses.is_dataclass(value):
            keys.extend(f"{name}.{k}" for k in all_keys(value))
        else:
            keys.append(name)
    return keys


def _old_key_error(key: str) -> Optional[ConfigError]:
    """The error for a full dotted key of the old layout (None for any other key)."""
    if key in MOVED_KEYS:
        new = MOVED_KEYS[key]
        return ConfigError(f"config key '{key}' moved to '{new}'; write {new}=... instead.")
    if key in DROPPED_KEYS:
        return ConfigError(f"config key '{key}' was removed: {DROPPED_KEYS[key]}.")
    return None


def _unknown_key_error(key: str, config, where: str = "") -> ConfigError:
    if isinstance(config, ExperimentConfig) and _old_key_error(key):
        return _old_key_error(key)
    valid = all_keys(config)
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    if not near:
        tail = key.rsplit(".", 1)[-1]
        near = [k for k in valid if k.rsplit(".", 1)[-1] == tail][:3]
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return ConfigError(f"unknown config key '{key}'{where}.{hint} "
                       f"Valid sections: {[name for name, _ in _sections_and_values(config)]}")


# String fields that hold file paths or globs, by name suffix, in any section (a task's own
# too): the tools resolve them against the user's directory (`resolve_paths`).
PATH_SUFFIXES = ("_pattern", "_checkpoint", "_weights", "_file", "_from")  # _from: seg.init_from
# Values of path fields that name something else than a file (e.g. sde.encoder_weights).
PATH_KEYWORDS = ("imagenet",)
# Path fields whose names end in none of the suffixes.
PATH_FIELDS = ("data.tfds_data_dir",)
# Pattern values starting with this name a TensorFlow Datasets split, not files
# ("tfds:<name>[/<config>]:<split>", tf_depthseg/tfds/source.py); they are not resolved.
TFDS_PREFIX = "tfds:"


def path_keys(config) -> list:
    """Dotted keys of every path field (`PATH_SUFFIXES`, `PATH_FIELDS`), e.g.
    ['data.train_pattern', ...]."""
    return [k for k in all_keys(config) if k.endswith(PATH_SUFFIXES) or k in PATH_FIELDS]


def get_key(config, key: str):
    """The value of a dotted key ("suw.num_bins")."""
    for part in key.split("."):
        config = dict(_sections_and_values(config))[part]
    return config


def resolve_paths(config, resolve):
    """A copy of `config` with `resolve(value)` applied to every non-empty path field (not to
    `PATH_KEYWORDS` nor to `TFDS_PREFIX` sources)."""
    for key in path_keys(config):
        value = get_key(config, key)
        if value and value not in PATH_KEYWORDS and not value.startswith(TFDS_PREFIX):
            config = replace_key(config, key, resolve(value))
    return config


def parse_value(text: str) -> Any:
    """Parses an override's value: Python literal, true/false/none, else the raw string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _replace_field(config, name: str, value):
    """`dataclasses.replace` of one field, or of one task section of an ExperimentConfig.

    Another `task` comes with that task's sections at their defaults (the old task's
    sections belong to it)."""
    if name in getattr(config, "task_sections", {}):
        return dataclasses.replace(config, task_sections={**config.task_sections, name: value})
    if name == "task" and isinstance(config, ExperimentConfig) and value != config.task:
        return dataclasses.replace(config, task=value, task_sections={})
    return dataclasses.replace(config, **{name: value})


def replace_key(config, key: str, value):
    """Returns a copy of `config` with the dotted `key` set to `value` (type-checked)."""
    head, _, rest = key.partition(".")
    fields = dict(_sections_and_values(config))
    if head not in fields:
        raise _unknown_key_error(key, config)
    current = fields[head]
    if rest:
        if not dataclasses.is_dataclass(current):
            raise _unknown_key_error(key, config)
        try:
            return _replace_field(config, head, replace_key(current, rest, value))
        except ConfigError as error:
            if str(error).startswith("unknown config key"):
                raise _unknown_key_error(key, config) from None
            raise
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"'{key}' is a section; set one of its fields, e.g. "
                          f"{key}.{dataclasses.fields(current)[0].name}=...")
    return _replace_field(config, head, value)


def apply_overrides(config, overrides: Sequence[str]):
    """Applies `key=value` strings in order; raises ConfigError naming the bad one."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like section.field=value, e.g. "
                              "train.steps=100")
        try:
            config = replace_key(config, key.strip(), parse_value(text))
        except ConfigError as error:
            message = str(error)
            if message.startswith(key.strip() + "="):  # already names the key and the value
                raise ConfigError(f"--set {message}") from None
            raise ConfigError(f"--set {item}: {message}") from None
    config.check_relations()
    return config


def to_dict(config) -> dict:
    """Plain JSON-able dict (tuples become lists); task sections at the top level ("suw")."""
    data = {}
    for name, value in _sections_and_values(config):
        data[name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(data))


def migrate_old_keys(data: dict, source: str) -> dict:
    """A config dict written before task sections (issue 13) in today's layout.

    Moves every `MOVED_KEYS` key to its new place and drops `DROPPED_KEYS` (logging what it
    did); `data` is not changed. Dicts in today's layout come back equal.
    """
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    moved = []
    for old in list(MOVED_KEYS) + list(DROPPED_KEYS):
        section, _, field = old.partition(".")
        if not isinstance(data.get(section), dict) or field not in data[section]:
            continue
        value = data[section].pop(field)
        new = MOVED_KEYS.get(old)
        if new:
            new_section, _, new_field = new.partition(".")
            data.setdefault(new_section, {}).setdefault(new_field, value)
            moved.append(f"{old} -> {new}")
        else:
            moved.append(f"{old} dropped")
    if isinstance(data.get("loss"), dict) and not data["loss"]:
        del data["loss"]
    if moved:
        logging.warning("%s: old config layout; read with %s", source, ", ".join(moved))
    return data


def from_dict(cls, data: dict, prefix: str = ""):
    """Builds `cls` from a dict, rejecting unknown keys (nearest names suggested).

    `prefix` is the dotted path of this section ("train") for error messages. For
    ExperimentConfig, keys named after the task's sections ("suw") build those sections.
    """
    names = [f.name for f in _plain_fields(cls)]
    extra = {}
    if cls is ExperimentConfig:
        task = data.get("task", ExperimentConfig.task)
        sections = task_sections(task) if isinstance(task, str) else {}
        extra = {k: v for k, v in data.items() if k in sections}
        data = {k: v for k, v in data.items() if k not in sections}
    dotted = f"{prefix}." if prefix else ""
    for key in data:
        if key not in names:
            old = _old_key_error(dotted + key)
            if old is None and cls is ExperimentConfig and isinstance(data[key], dict):
                old = _old_key_error(f"{key}.{next(iter(data[key]), '')}")  # e.g. "loss"
            if old is not None:
                raise old
            near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(dotted + n for n in near)}?" if near else ""
            raise ConfigError(f"unknown config key '{dotted}{key}'.{hint} Valid keys"
                              f"{' in ' + prefix if prefix else ''}: {names}")
    if extra:
        data = dict(data, task_sections=extra)
    return cls(**data)


def save_json(config, workdir: str) -> str:
    """Atomically writes the resolved config to `<workdir>/config.json`; returns the path."""
    from tf_depthseg.utils import atomic_write_bytes
    path = os.path.join(workdir, CONFIG_FILENAME)
    atomic_write_bytes(path, (json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
                       .encode())
    return path


def configs_root() -> str:
    """The repository's configs/ folder (next to this package)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def list_config_files() -> list:
    """Every experiment config file under configs/, as paths relative to it ("suw/x.py")."""
    root = configs_root()
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and not name.startswith("_"):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def _compact_names(names: Sequence[str]) -> str:
    """"a/x, a/y, b" -> "a/{x, y}, b": the config list fits on one line."""
    groups: dict = {}
    for name in names:
        folder, _, leaf = name.rpartition("/")
        groups.setdefault(folder, []).append(leaf)
    return ", ".join(f"{folder}/{{{', '.join(leaves)}}}" if folder else ", ".join(leaves)
                     for folder, leaves in groups.items())


def load_config(spec: str, smoke: bool = False) -> ExperimentConfig:
    """Loads a config from a .py file path, a name under configs/ ("suw/synthetic_suw"), or a
    resolved config.json (a workdir's, to repeat a run; `smoke` is ignored for JSON)."""
    if spec.endswith(".json"):
        if not os.path.isfile(spec):
            raise ConfigError(f"{spec}: config JSON not found.")
        with open(spec) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as error:
                raise ConfigError(f"{spec}: not valid JSON ({error}).") from None
        config = from_dict(ExperimentConfig, migrate_old_keys(data, spec))
        config.check_relations()
        return config
    path = spec if spec.endswith(".py") else os.path.join(configs_root(), spec + ".py")
    if not os.path.isfile(path):
        known = [f[:-3] for f in list_config_files()]
        near = difflib.get_close_matches(spec.replace(".py", ""), known, n=3, cutoff=0.75)
        hint = f" Did you mean {' or '.join(near)}?" if near else ""
        raise ConfigError(f"config '{spec}' not found (looked for {path}).{hint} Known "
                          f"configs ({len(known)}): {_compact_names(known)}")
    module_spec = importlib.util.spec_from_file_location(
        "tf_depthseg_config_" + os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: a config file must define get_config(smoke=False).")
    config = module.get_config(smoke=smoke)
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, expected "
                          "ExperimentConfig.")
    config.check_relations()
    return config
