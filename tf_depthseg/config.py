"""Experiment configuration: frozen dataclasses, typed dotted overrides, JSON round trip.

An experiment is one `ExperimentConfig` built by a `configs/**/*.py` file's
`get_config(smoke=False)`. Command lines change it with `--set section.field=value`:

    config = load_config("suw/synthetic_suw", smoke=True)
    config = apply_overrides(config, ["train.steps=100", "model.sam_dilations=[1,2,4]"])
    save_json(config, workdir)            # <workdir>/config.json; load_config() reads it back

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
from typing import Any, Optional, Sequence, Tuple

CONFIG_FILENAME = "config.json"


from tf_depthseg.errors import ConfigError


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
        for field in dataclasses.fields(self):
            key = prefix + field.name
            value = getattr(self, field.name)
            choices = field.metadata.get("choices")
            if value is None and choices and "none" in choices:
                value = "none"  # `--set loss.weak=none` parses as None; the choice is "none"
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
        model.max_depth and then model.min_depth must not fail in between. `apply_overrides`
        and `load_config` run it on the result.
        """
        prefix = _section_key(type(self))
        for field in dataclasses.fields(self):
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

    dataset: str = _choices("synthetic", "synthetic", "kitti", "cityscapes", "camvid",
                            "mannequin", "megadepth")
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
    weak_pairs_per_image: int = _ranged(1, 0)  # SUW draws one pair per image per iteration
    # A second training set that contributes ONLY the weak (W) loss, mixed into every batch
    # (SUW text 2.2: Mannequin Challenge examples give L_u, MegaDepth examples give L_w).
    # "" = off; then `weak_batch_size` of the global `batch_size` examples come from it.
    weak_train_pattern: str = ""
    weak_batch_size: int = _ranged(0, 0, below="batch_size")
    # Read splits whose conversion has not finished (manifest.json says complete: false):
    # only their finished shards. Off, such a split is an error naming it (see records.py).
    allow_incomplete: bool = False


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    """Network choice and its hyper-parameters (SUW text Table 1/2, Eq. 1)."""

    name: str = _choices("suw_encoder_decoder", "suw_encoder_decoder", "hourglass")
    num_bins: int = _ranged(64, 2)  # B in Eq. 1 (the paper does not state it)
    min_depth: float = _ranged(1.0, 0, low_open=True, below="max_depth")  # alpha in Eq. 1, m
    max_depth: float = _ranged(80.0, 0, low_open=True)  # beta in Eq. 1, metres
    # SAM dilations: sequential 3x3 dilated convs (1, 2, 2, 4, 4, ..., k/2, k/2, k); k unstated.
    sam_dilations: Tuple[int, ...] = _ranged((1, 2, 2, 4, 4, 8), 1)
    pose_net: bool = True  # build the pose net (shares the encoder) for the U loss
    object_motion_net: bool = False  # per-object motion net (struct2depth-style U loss)
    max_objects: int = _ranged(4, 0)  # aligned objects per clip fed to the object-motion net
    # Hourglass output head: "auto" = the soft-classification bins head when
    # loss.supervised is soft_classification, else natural-log depth regression.
    hourglass_head: str = _choices("auto", "auto", "log_depth", "bins")
    # Batch-norm moving-average momentum of every BN layer (Keras default 0.99). Short runs
    # (CPU smoke, the synthetic study) need ~0.9: with 0.99 the inference statistics still
    # hold 22 % of their initial values after 150 steps and evaluation suffers.
    bn_momentum: float = _ranged(0.99, 0, 1, high_open=True)
    init_checkpoint: str = ""  # initialise modules from another checkpoint ("" = none)
    init_modules: Tuple[str, ...] = ("encoder",)


@dataclasses.dataclass(frozen=True)
class LossConfig(_Section):
    """Which S, U, W terms are on, and their weights."""

    supervised: str = _choices("soft_classification", "none", "soft_classification",
                               "l1_log", "scale_invariant", "berhu")
    supervised_weight: float = _ranged(1.0, 0)
    # exp(-a (i - b*)^2) soft target width (Cao et al. 2016).
    soft_target_a: float = _ranged(0.2, 0, low_open=True)
    silog_lambda: float = _ranged(0.85, 0, 1)
    unsupervised: str = _choices("none", "none", "ego", "ego_object", "known_pose")
    unsupervised_weight: float = _ranged(1.0, 0)
    ssim_weight: float = _ranged(0.85, 0, 1)
    smoothness_weight: float = _ranged(1e-3, 0)
    automask: bool = True
    num_scales: int = _ranged(4, 1)
    weak: str = _choices("none", "none", "pixel", "patch")
    weak_weight: float = _ranged(1.0, 0)


@dataclasses.dataclass(frozen=True)
class OptimConfig(_Section):
    """Optimizer and learning-rate schedule."""

    optimizer: str = _choices("adam", "adam", "adamw", "sgd")
    learning_rate: float = _ranged(1e-4, 0, low_open=True)
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
    mixed_precision: str = _choices("float32", "float32", "mixed_float16", "mixed_bfloat16")
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
    """SavedModel / TFLite export."""

    image_size: Tuple[int, int] = _ranged((128, 416), 1)  # serving input (height, width)
    tflite: bool = True
    tflite_quantize: str = _choices("none", "none", "dynamic", "float16")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(_Section):
    """One experiment: every section plus a name and the task that trains it."""

    name: str = "experiment"
    task: str = _choices("suw", "suw")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()


# --------------------------------------------------------------------------------------------
# Overrides and (de)serialisation.
# --------------------------------------------------------------------------------------------


def all_keys(config) -> list:
    """Every dotted key of a config, e.g. ['name', 'data.dataset', ...]."""
    keys = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            keys.extend(f"{field.name}.{k}" for k in all_keys(value))
        else:
            keys.append(field.name)
    return keys


def _unknown_key_error(key: str, config, where: str = "") -> ConfigError:
    valid = all_keys(config)
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    if not near:
        tail = key.rsplit(".", 1)[-1]
        near = [k for k in valid if k.rsplit(".", 1)[-1] == tail][:3]
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return ConfigError(f"unknown config key '{key}'{where}.{hint} "
                       f"Valid sections: {[f.name for f in dataclasses.fields(config)]}")


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


def replace_key(config, key: str, value):
    """Returns a copy of `config` with the dotted `key` set to `value` (type-checked)."""
    head, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(config)}
    if head not in names:
        raise _unknown_key_error(key, config)
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise _unknown_key_error(key, config)
        try:
            return dataclasses.replace(config, **{head: replace_key(current, rest, value)})
        except ConfigError as error:
            if str(error).startswith("unknown config key"):
                raise _unknown_key_error(key, config) from None
            raise
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"'{key}' is a section; set one of its fields, e.g. "
                          f"{key}.{dataclasses.fields(current)[0].name}=...")
    return dataclasses.replace(config, **{head: value})


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
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls, data: dict, prefix: str = ""):
    """Builds `cls` from a dict, rejecting unknown keys (nearest names suggested).

    `prefix` is the dotted path of this section ("train") for error messages.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = f"{prefix}." if prefix else ""
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(dotted + n for n in near)}?" if near else ""
            raise ConfigError(f"unknown config key '{dotted}{key}'.{hint} Valid keys"
                              f"{' in ' + prefix if prefix else ''}: {names}")
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
        config = from_dict(ExperimentConfig, data)
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
