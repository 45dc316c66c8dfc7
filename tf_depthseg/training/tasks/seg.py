"""Supervised segmentation task (Hoyer et al. 2021): the baseline and SDE transfer (DT).

The segmentation network (`models.hoyer.build_segmentation_net`: ResNet encoder, ASPP U-Net
decoder, a 1x1 head on the last decoder block) is trained with pixel-wise cross-entropy over
labelled pixels (ignore 255; `losses.segmentation.cross_entropy_with_ignore`, each image's mean
summed over the replica's images / global batch) on a labelled subset of the training records
(`seg.labeled_count` + `seg.labeled_seed`, or `seg.labeled_ids_file`: `data/subsets.py`).
Constants from the reference code (`lhoyer/improving_segmentation_with_selfsupervised_depth`,
experiments.py id 210) are set by the configs in `configs/hoyer/` through the shared sections:
SGD momentum 0.9, weight decay 5e-4, lr 1e-2, the encoder group at 0.1x
(`optim.lr_multipliers=[["encoder", 0.1]]`), gradient clipping at a global norm of 10, a step
decay x0.1 (CamVid 20k iterations, step at 15k; Cityscapes 40k, step at 30k), batch 2, random
crop 512x512 + flip 0.5 + colour jitter (the pipeline's joint augmentation: labels are
resampled with nearest neighbour and crops never leave the image, so no pixel is padded).

Transfer (`seg.init_from`, the paper's "DT"): on a fresh run (never on a resume), encoder and
decoder start from a self-supervised depth run's depth network (`transfer_from_sde`): every
variable of the segmentation network is copied from the SDE variable of the same path, with
the decoder's "seg_dec_" read as "depth_dec_" (`models/hoyer.py` names both decoders alike);
the classification head ("seg_head_*") keeps its initialisation. Before copying, every shared
layer's type and configuration are compared (a dilated vs an undilated stage, or the ResNet
v1 graph of ImageNet weights vs v1.5, have equal shapes but other features), and a difference
is a `ConfigError` naming the layer and the setting to change. A log line lists what was
restored and what was not.

Evaluation: the dataset confusion matrix of argmax predictions at `data.image_size` over
labelled pixels, per-class IoU, mIoU, pixel accuracy (`evaluation.segmentation`); keep-best on
`miou` (max) in the configs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import datasets, pipeline, records, subsets
from tf_depthseg.evaluation import segmentation as seg_eval
from tf_depthseg.losses import segmentation as seg_losses
from tf_depthseg.models import batch_norm, hoyer, resnet
from tf_depthseg.training import checkpoints, loop
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks.seg_config import SegConfig

TRAIN_STREAM = "train"
MODEL_SEGMENTATION = "segmentation"
LOSS_CROSS_ENTROPY = "cross_entropy"
# Parameter groups (`param_groups`, `optim.lr_multipliers`), named as the SDE task's encoder.
GROUP_ENCODER, GROUP_DECODER = "encoder", "decoder"
ENCODER_NAME = sde_task.ENCODER_NAME  # the same layer names as the SDE's encoder
MIN_INPUT_SIDE = sde_task.MIN_INPUT_SIDE
# Layers of the segmentation network an SDE has no counterpart of.
HEAD_PREFIXES = ("seg_head_",)
# Layer-config entries that may differ between the SDE and the segmentation network without
# changing what a layer computes from its weights (BN momentum is a training setting).
_IGNORED_LAYER_CONFIG = ("name", "trainable", "dtype", "momentum")


def num_classes(config) -> int:
    """Classes of `seg.dataset` (CamVid 11, Cityscapes 19)."""
    return len(class_names(config))


def class_names(config) -> Tuple[str, ...]:
    if config.seg.dataset == "camvid":
        return tuple(datasets.CAMVID_CLASS_NAMES)
    return tuple(datasets.CITYSCAPES_TRAIN_NAMES)


def class_palette(config) -> np.ndarray:
    """uint8 `[C, 3]` colours of the classes of `seg.dataset`."""
    if config.seg.dataset == "camvid":
        return datasets.CAMVID_PALETTE[:datasets.CAMVID_NUM_CLASSES]
    return datasets.CITYSCAPES_TRAIN_PALETTE


def metric_names(config) -> List[str]:
    return ["miou", "pixel_accuracy"] + [f"iou/{name}" for name in class_names(config)]


def check_config(config) -> None:
    """Settings the segmentation task cannot train: ConfigError naming the key and the fix."""
    seg, data, train = config.seg, config.data, config.train
    bad = errors.ConfigError
    size = data.crop_size or data.image_size
    if min(size) < MIN_INPUT_SIDE:
        raise bad(f"task=seg needs training images of at least {MIN_INPUT_SIDE} pixels a side; "
                  f"got {list(size)} (data.crop_size or data.image_size). Raise them.")
    if data.crop_size and (data.crop_size[0] > data.image_size[0] * data.scale_range[1]
                           or data.crop_size[1] > data.image_size[1] * data.scale_range[1]):
        logging.warning("data.crop_size=%s is larger than data.image_size=%s scaled by at most "
                        "%g: images are enlarged to cover the crop.", list(data.crop_size),
                        list(data.image_size), data.scale_range[1])
    if seg.labeled_count and seg.labeled_ids_file:
        raise bad(f"seg.labeled_count={seg.labeled_count} and seg.labeled_ids_file="
                  f"{seg.labeled_ids_file!r} both choose the labelled subset; set one "
                  "(seg.labeled_count=0 to use the file).")
    if train.best_metric and train.best_metric not in metric_names(config):
        raise bad(f"train.best_metric={train.best_metric!r} is not a segmentation metric; use "
                  "miou (with train.best_mode=max), pixel_accuracy or iou/<class>, or '' for "
                  "no keep-best.")
    if train.best_metric and train.best_mode != "max":
        raise bad(f"train.best_metric={train.best_metric!r} is better when larger; set "
                  "train.best_mode=max.")


def build_segmentation_model(config) -> keras.Model:
    """`hoyer.build_segmentation_net` on `config.seg`'s backbone, its encoder named like the
    SDE's ("encoder") so that variable paths match an SDE run's.

    Returns:
      "image" `[B, H, W, 3]` in [0, 1] -> {"semantic_logits" `[B, H, W, C]`, "features"}.
    """
    seg = config.seg
    encoder = resnet.build_backbone(sde_task.backbone_name(seg.backbone, seg.dilate_last_stage),
                                    weights=seg.encoder_weights or None, name=ENCODER_NAME)
    return hoyer.build_segmentation_net(num_classes(config), encoder, head_inter=seg.head_inter,
                                        head_dropout=seg.head_dropout, name="segmentation_net")


# ------------------------------------------------------------------------------------------
# Transfer from a self-supervised depth run.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TransferReport:
    """What `transfer_weights` did (variable paths of the target network)."""

    restored: List[str]  # copied from the donor
    not_restored: List[str]  # kept at their initialisation (the head)
    donor_unused: List[str]  # donor variables nothing was copied from (e.g. disparity heads)
    source: str = ""  # the checkpoint prefix read

    def summary(self) -> str:
        encoder = sum(1 for path in self.restored if path.startswith(ENCODER_NAME + "_"))
        return (f"restored {len(self.restored)} variables ({encoder} encoder, "
                f"{len(self.restored) - encoder} decoder) from {self.source}; not restored "
                f"(their initialisation): {', '.join(self.not_restored) or 'none'}; SDE "
                f"variables not used: {len(self.donor_unused)} "
                f"({', '.join(sorted({p.split('/')[0] for p in self.donor_unused})) or '-'})")


def donor_layer_name(name: str) -> str:
    """The SDE depth-net layer a segmentation-net layer starts from ("seg_dec_*" ->
    "depth_dec_*"; encoder layers keep their names)."""
    prefix = hoyer.SEG_DECODER + "_"
    if name.startswith(prefix):
        return hoyer.DEPTH_DECODER + "_" + name[len(prefix):]
    return name


def _comparable_config(layer) -> dict:
    layer_config = dict(layer.get_config())
    for key in _IGNORED_LAYER_CONFIG:
        layer_config.pop(key, None)
    return json.loads(json.dumps(layer_config, default=str))


def transfer_weights(target: keras.Model, donor: keras.Model, source: str = "",
                     new_prefixes: Sequence[str] = HEAD_PREFIXES,
                     fix: str = "") -> TransferReport:
    """Copies every weight of `target` from `donor`'s layer `donor_layer_name(layer)`.

    Args:
      target: the network to initialise (its variables may be distributed).
      donor: the network to read (e.g. the SDE depth net, restored).
      source: where the donor's weights came from, for messages.
      new_prefixes: target layers that may lack a donor counterpart (left at their init).
      fix: appended to an architecture-mismatch message (what to set).
    Returns:
      TransferReport.
    Raises:
      errors.ConfigError: a target layer with weights the donor lacks (outside
        `new_prefixes`), or a shared layer of another type, configuration or weight shape.
    """
    donor_layers = {layer.name: layer for layer in donor.layers}
    restored, not_restored, used = [], [], set()
    for layer in target.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        source_layer = donor_layers.get(donor_layer_name(layer.name))
        if source_layer is None:
            if layer.weights and not layer.name.startswith(tuple(new_prefixes)):
                raise errors.ConfigError(
                    f"{source}: the SDE network has no layer {donor_layer_name(layer.name)!r} "
                    f"for this network's {layer.name!r}; the architectures differ. {fix}")
            not_restored.extend(v.path for v in layer.weights)
            continue
        used.add(source_layer.name)
        where = f"{source}: layer {layer.name!r} (SDE {source_layer.name!r})"
        if type(source_layer) is not type(layer):
            raise errors.ConfigError(f"{where} is a {type(source_layer).__name__} there but a "
                                     f"{type(layer).__name__} here; the architectures differ. "
                                     f"{fix}")
        mine, theirs = _comparable_config(layer), _comparable_config(source_layer)
        if mine != theirs:
            key = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))[0]
            raise errors.ConfigError(f"{where} has {key}={theirs.get(key)!r} there but "
                                     f"{mine.get(key)!r} here; the architectures differ. {fix}")
        if len(source_layer.weights) != len(layer.weights):
            raise errors.ConfigError(f"{where} has {len(source_layer.weights)} weights there "
                                     f"but {len(layer.weights)} here. {fix}")
        for variable, value in zip(layer.weights, source_layer.weights):
            if tuple(variable.shape) != tuple(value.shape):
                raise errors.ConfigError(
                    f"{where}: variable {value.path} has shape {tuple(value.shape)} there but "
                    f"{variable.path} has {tuple(variable.shape)} here; the architectures "
                    f"differ. {fix}")
            variable.assign(value.numpy())
            restored.append(variable.path)
    unused = [v.path for layer in donor.layers if layer.name not in used for v in layer.weights]
    return TransferReport(restored=restored, not_restored=not_restored, donor_unused=unused,
                          source=source)


def resolve_sde_source(path: str, key_name: str = "seg.init_from"
                       ) -> Tuple[str, config_lib.ExperimentConfig]:
    """(checkpoint prefix, its run's config) of `key_name` (e.g. `seg.init_from`, or
    `semisup.sde_from` of the semi-supervised task): an SDE run's workdir, its
    checkpoints/ folder, a checkpoint prefix, or a tools/export folder (a SavedModel whose
    weights are frozen into the graph: its metadata.json names the checkpoint and config it
    was made from, and those are read).

    Raises:
      errors.UserError (CheckpointError, ConfigError): nothing usable there, or not an SDE run.
    """
    key = f"{key_name}={path}"
    if not os.path.exists(path) and not tf.io.gfile.exists(path + ".index"):
        raise errors.ConfigError(f"{key}: no such folder or checkpoint; pass the workdir of an "
                                 "SDE run (tools/train with task=sde) or its export.")
    donor_config = None
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        from tf_depthseg.export import exporter  # lazily: the export package is heavy
        metadata = exporter.read_metadata(path)
        prefix = (metadata.get("source") or {}).get("checkpoint")
        if not prefix:
            raise errors.ConfigError(
                f"{key}: this SavedModel has its weights frozen into the graph and its "
                "metadata.json names no source checkpoint; pass the SDE run's workdir instead.")
        if not tf.io.gfile.exists(prefix + ".index"):
            raise errors.ConfigError(
                f"{key}: the export was made from {prefix}, which is gone (an export's weights "
                "are graph constants without variable names); pass the SDE run's workdir, or "
                "a checkpoint of it.")
        if metadata.get("config"):
            donor_config = config_lib.from_dict(config_lib.ExperimentConfig,
                                                metadata["config"])
    else:
        prefix = checkpoints.resolve_checkpoint(path)
    if donor_config is None:
        config_path = checkpoints.find_run_config(prefix)
        if not config_path:
            raise errors.ConfigError(f"{key}: no config.json next to {prefix} or one folder up, "
                                     "so the SDE network cannot be rebuilt; pass the run's "
                                     "workdir.")
        donor_config = config_lib.load_config(config_path)
    if donor_config.task != "sde":
        raise errors.ConfigError(f"{key}: that run trained task {donor_config.task!r}; pass a "
                                 "self-supervised depth run (task=sde).")
    return prefix, donor_config


def transfer_from_sde(config, model: keras.Model) -> TransferReport:
    """Initialises `model` (`build_segmentation_model(config)`) from `config.seg.init_from`.

    Raises:
      errors.ConfigError: not an SDE run, or an SDE network of another architecture (naming
        the setting and the fix).
    """
    seg = config.seg
    prefix, donor_config = resolve_sde_source(seg.init_from)
    sde = donor_config.sde
    key = f"seg.init_from={seg.init_from}"
    fix = (f"The SDE run has sde.backbone={sde.backbone}, sde.dilate_last_stage="
           f"{sde.dilate_last_stage}, sde.encoder_weights={sde.encoder_weights!r} (the ResNet "
           f"graph follows it); set --set seg.backbone={sde.backbone} --set "
           f"seg.dilate_last_stage={str(sde.dilate_last_stage).lower()} --set "
           f"seg.encoder_weights={sde.encoder_weights} to match it.")
    if (sde.backbone, sde.dilate_last_stage) != (seg.backbone, seg.dilate_last_stage):
        raise errors.ConfigError(
            f"{key}: its encoder is {sde_task.backbone_name(sde.backbone, sde.dilate_last_stage)}"
            f", this run's {sde_task.backbone_name(seg.backbone, seg.dilate_last_stage)}. {fix}")
    donor = sde_task.build_depth_model(donor_config)
    checkpoints.load_models({common.MODEL_DEPTH: donor}, prefix)
    report = transfer_weights(model, donor, prefix, fix=fix)
    logging.info("%s: %s", key, report.summary())
    return report


# ------------------------------------------------------------------------------------------
# Labelled subset.
# ------------------------------------------------------------------------------------------
_SUBSET_CACHE: Dict[tuple, Optional[Tuple[str, ...]]] = {}


def labelled_source_ids(config) -> Optional[Tuple[str, ...]]:
    """The source ids of the labelled subset of data.train_pattern (None = every record).
    Cached per (files, their modification times, subset settings): the Trainer asks twice
    (example count and dataset) and reading every record's id once is enough."""
    seg, data = config.seg, config.data
    if not seg.labeled_count and not seg.labeled_ids_file:
        return None
    if data.train_pattern.startswith(config_lib.TFDS_PREFIX):
        raise errors.ConfigError(
            f"seg.labeled_count / seg.labeled_ids_file choose records of converted TFRecords, "
            f"but data.train_pattern={data.train_pattern!r} is a TensorFlow Datasets split; "
            "take a slice of it instead (e.g. tfds:camvid_depthseg:train[:50]) with "
            "seg.labeled_count=0, or train on converted records.")
    files = records.list_shards(data.train_pattern)
    stamp = tuple((path, os.path.getmtime(path)) for path in files)
    ids_stamp = (os.path.getmtime(seg.labeled_ids_file)
                 if seg.labeled_ids_file and os.path.isfile(seg.labeled_ids_file) else None)
    key = (stamp, seg.labeled_count, seg.labeled_seed, seg.labeled_ids_file, ids_stamp,
           data.allow_incomplete)
    if key not in _SUBSET_CACHE:
        ids = subsets.labelled_source_ids(data.train_pattern, seg.labeled_count,
                                          seg.labeled_seed, seg.labeled_ids_file,
                                          data.allow_incomplete)
        _SUBSET_CACHE[key] = tuple(ids)
        how = (f"from {seg.labeled_ids_file}" if seg.labeled_ids_file
               else f"at random, seed {seg.labeled_seed}")
        logging.info("Labelled subset: %d records of %s (%s).", len(ids), data.train_pattern,
                     how)
    return _SUBSET_CACHE[key]


def _colorize_classes_tf(class_ids, palette: np.ndarray):
    """int `[B, H, W]` ids -> uint8 `[B, H, W, 3]`; ids outside the palette (255) black."""
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = palette
    ids = tf.clip_by_value(tf.cast(class_ids, tf.int32), 0, 255)
    return tf.gather(tf.constant(table), ids)


class SegTask(loop.Task):
    """Supervised semantic segmentation (see the module docstring)."""

    config_sections = {"seg": SegConfig}

    def check_config(self, config) -> None:
        check_config(config)

    # ----------------------------------------------------------------------------------
    # Models.
    # ----------------------------------------------------------------------------------

    def build(self, config) -> Dict[str, keras.Model]:
        model = build_segmentation_model(config)
        batch_norm.set_bn_momentum(model, config.model.bn_momentum)
        return {MODEL_SEGMENTATION: model}

    def initialize_models(self, config, models) -> None:
        if config.seg.init_from:
            transfer_from_sde(config, models[MODEL_SEGMENTATION])

    def param_groups(self, config, models):
        groups = hoyer.parameter_groups(models[MODEL_SEGMENTATION])
        return {GROUP_ENCODER: groups["backbone"], GROUP_DECODER: groups["decoder"]}

    def serving_model(self, config, models) -> keras.Model:
        return models[MODEL_SEGMENTATION]

    # ----------------------------------------------------------------------------------
    # Data.
    # ----------------------------------------------------------------------------------

    def make_train_dataset(self, config, stream, input_context):
        data = config.data
        if not data.train_pattern:
            raise errors.ConfigError(
                "data.train_pattern is empty; point it at records with semantic labels, e.g. "
                "--set data.train_pattern='workdir/data/camvid_records/train-*.tfrecord'.")
        ids = labelled_source_ids(config)
        return pipeline.make_training_dataset(config, data.train_pattern,
                                              [common.IMAGE, common.SEMANTIC], data.batch_size,
                                              input_context, source_ids=ids)

    def make_eval_dataset(self, config) -> Optional[tf.data.Dataset]:
        """Finite IMAGE + SEMANTIC batches of data.eval_pattern at data.image_size (labels
        resized with nearest neighbour), in order; None without an eval pattern."""
        data = config.data
        if not data.eval_pattern:
            return None
        return pipeline.make_dataset(data.eval_pattern, [common.IMAGE, common.SEMANTIC],
                                     data.eval_batch_size, training=False,
                                     image_size=data.image_size, num_context=0,
                                     deterministic=True,
                                     allow_incomplete=data.allow_incomplete)

    def num_train_examples(self, config) -> Optional[int]:
        ids = labelled_source_ids(config)
        return len(ids) if ids is not None else pipeline.count_train_examples(config)

    # ----------------------------------------------------------------------------------
    # Loss, evaluation, pictures.
    # ----------------------------------------------------------------------------------

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        batch = batches[TRAIN_STREAM]
        logits = models[MODEL_SEGMENTATION](batch[common.IMAGE],
                                            training=training)[common.OUT_SEMANTIC_LOGITS]
        per_image = seg_losses.cross_entropy_with_ignore(logits, batch[common.SEMANTIC])
        loss = loop.global_mean(per_image, global_batch_sizes[TRAIN_STREAM])
        return {LOSS_CROSS_ENTROPY: loss, common.LOSS_TOTAL: loss}

    def predict_classes(self, models, images):
        """int32 class ids `[B, H, W]` of images `[B, H, W, 3]`."""
        logits = models[MODEL_SEGMENTATION](tf.cast(images, tf.float32),
                                            training=False)[common.OUT_SEMANTIC_LOGITS]
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def eval_outputs(self, config, models, batch):
        return seg_eval.segmentation_eval_outputs(
            self.predict_classes(models, batch[common.IMAGE]), batch[common.SEMANTIC],
            num_classes(config))

    def init_metrics(self, config):
        return seg_eval.ConfusionAccumulator(num_classes(config))

    def update_metrics(self, config, state, outputs):
        return seg_eval.update_segmentation_accumulator(state, outputs)

    def result_metrics(self, config, state):
        return state.result(class_names(config))

    def image_summaries(self, config, models, batch):
        palette = class_palette(config)
        pictures = {"input": visualize.to_rgb_uint8_tf(batch[common.IMAGE]),
                    "prediction": _colorize_classes_tf(
                        self.predict_classes(models, batch[common.IMAGE]), palette)}
        if common.SEMANTIC in batch:
            pictures["ground_truth"] = _colorize_classes_tf(batch[common.SEMANTIC][..., 0],
                                                            palette)
        return pictures
