"""Segmentation evaluation: the dataset confusion matrix of a predictor of class ids, then
per-class IoU, mIoU and pixel accuracy (`tf_depthseg.metrics.segmentation`).

The same shape as `evaluation.depth`: `segmentation_eval_outputs` (per batch, in TensorFlow)
and `update_segmentation_accumulator` (on the host, where a bad label becomes a one-line
`errors.BadInputError`) are what a task's `eval_outputs` / `update_metrics` hooks call;
`evaluate_predictor` runs any predictor over a dataset with them. Every pixel weighs the same
(the confusion matrix is summed over the whole dataset before IoU is taken).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg.metrics import segmentation as seg_metrics

# Per-batch evaluation outputs (scalars unless noted).
EVAL_CONFUSION = "confusion"  # int64 [C, C], rows = label, columns = prediction
EVAL_NUM_IMAGES = "num_images"
# Pixels whose label is neither a class id in [0, C) nor the ignore label; the first such
# value (row-major order) and the index of its image in the batch (-1 when there is none).
EVAL_BAD_LABELS = "bad_labels"
EVAL_BAD_LABEL_VALUE = "bad_label_value"
EVAL_BAD_LABEL_IMAGE = "bad_label_image"
# The same for predicted class ids outside [0, C) (a predictor with another class count).
EVAL_BAD_PREDICTIONS = "bad_predictions"
EVAL_BAD_PREDICTION_VALUE = "bad_prediction_value"


def _squeeze_ids(values):
    """`[B, H, W]` int64 class ids from `[B, H, W]` or `[B, H, W, 1]` integers."""
    values = tf.convert_to_tensor(values)
    if values.dtype.is_floating:
        raise ValueError(f"class ids must be integers (argmax the logits first), got "
                         f"{values.dtype}")
    if values.shape.rank == 4:
        values = tf.squeeze(values, axis=-1)
    return tf.cast(values, tf.int64)


def _first_where(mask, values):
    """(count, first value, first batch index) of the True entries of `mask` `[B, H, W]`;
    value and index are -1 when there is none."""
    flat_mask = tf.reshape(mask, [-1])
    count = tf.reduce_sum(tf.cast(flat_mask, tf.int64))
    first = tf.argmax(tf.cast(flat_mask, tf.int32), output_type=tf.int64)
    pixels_per_image = tf.cast(tf.reduce_prod(tf.shape(mask)[1:]), tf.int64)
    none = tf.constant(-1, tf.int64)
    value = tf.where(count > 0, tf.gather(tf.reshape(values, [-1]), first), none)
    image = tf.where(count > 0, first // tf.maximum(pixels_per_image, 1), none)
    return count, value, image


def segmentation_eval_outputs(predictions, labels, num_classes: int,
                              ignore_label: int = common.IGNORE_LABEL) -> Dict[str, tf.Tensor]:
    """One batch's confusion matrix and the checks `update_segmentation_accumulator` reports.

    Args:
      predictions: `[B, H, W]` or `[B, H, W, 1]` predicted class ids (the labels' size).
      labels: `[B, H, W]` or `[B, H, W, 1]` train ids (common.SEMANTIC); `ignore_label`
        pixels are skipped.
      num_classes: C.
    Returns:
      {EVAL_CONFUSION: int64 [C, C], EVAL_NUM_IMAGES, EVAL_BAD_*: int64 scalars}. Pixels with
      a bad label or prediction are left out of the matrix (the host raises on them).
    """
    labels = _squeeze_ids(labels)
    predictions = _squeeze_ids(predictions)
    if not labels.shape.is_compatible_with(predictions.shape):
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in "
                         "shape: predict class ids at the labels' size (resize the logits, "
                         "then argmax)")
    labelled = tf.not_equal(labels, ignore_label)
    bad_label = labelled & ((labels < 0) | (labels >= num_classes))
    bad_prediction = labelled & ((predictions < 0) | (predictions >= num_classes))
    bad_labels, bad_label_value, bad_label_image = _first_where(bad_label, labels)
    bad_predictions, bad_prediction_value, _ = _first_where(bad_prediction, predictions)
    # The checked-out pixels become ignore pixels, so the matrix (validate=False: the checks
    # above replace its graph asserts, and name the value) only sees ids in range.
    keep = labelled & tf.logical_not(bad_label | bad_prediction)
    confusion = seg_metrics.confusion_matrix(
        tf.where(keep, labels, tf.cast(ignore_label, tf.int64)),
        tf.where(keep, predictions, tf.zeros_like(predictions)),
        num_classes, ignore_label=ignore_label, validate=False)
    return {EVAL_CONFUSION: confusion,
            EVAL_NUM_IMAGES: tf.shape(labels, out_type=tf.int64)[0],
            EVAL_BAD_LABELS: bad_labels, EVAL_BAD_LABEL_VALUE: bad_label_value,
            EVAL_BAD_LABEL_IMAGE: bad_label_image,
            EVAL_BAD_PREDICTIONS: bad_predictions,
            EVAL_BAD_PREDICTION_VALUE: bad_prediction_value}


def _class_names(class_names: Optional[Sequence[str]], num_classes: int) -> Sequence[str]:
    if class_names is None:
        return [str(index) for index in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    return class_names


class ConfusionAccumulator:
    """The dataset confusion matrix, summed batch by batch on the host.

    Usage:
      accumulator = ConfusionAccumulator(num_classes)
      for batch in dataset:
          update_segmentation_accumulator(accumulator, eval_step(batch))
      print(accumulator.result(class_names))
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = np.zeros([num_classes, num_classes], np.int64)
        self.num_images = 0

    def add(self, confusion, num_images: int) -> None:
        self.confusion += np.asarray(confusion, np.int64)
        self.num_images += int(num_images)

    def result(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, float]:
        """{"miou", "pixel_accuracy", "iou/<class>" (NaN: class in neither labels nor
        predictions), "num_images"}; classes are named by `class_names`, else by index."""
        class_names = _class_names(class_names, self.num_classes)
        scores = seg_metrics.segmentation_scores(self.confusion)
        result = {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]}
        result.update({f"iou/{name}": float(iou)
                       for name, iou in zip(class_names, scores["iou"])})
        result["num_images"] = self.num_images
        return result


def _record_name(source_ids, index: int) -> str:
    if source_ids is None or index < 0:
        return "a record"
    source_id = np.asarray(source_ids).reshape(-1)[index]
    if isinstance(source_id, bytes):
        source_id = source_id.decode(errors="replace")
    return f"record {source_id!r}"


def update_segmentation_accumulator(accumulator: ConfusionAccumulator,
                                    outputs: Mapping[str, np.ndarray],
                                    source_ids=None,
                                    ignore_label: int = common.IGNORE_LABEL):
    """Adds one batch of `segmentation_eval_outputs` (numpy) to the accumulator; returns it.

    Raises:
      errors.BadInputError: a label outside [0, C) that is not the ignore label (naming the
        value and, with `source_ids` `[B]` or a common.SOURCE_ID entry in `outputs`, the
        record).
      errors.ConfigError: a predicted class id outside [0, C).
    """
    num_classes = accumulator.num_classes
    if source_ids is None:
        source_ids = outputs.get(common.SOURCE_ID)
    if int(outputs[EVAL_BAD_LABELS]) > 0:
        value = int(outputs[EVAL_BAD_LABEL_VALUE])
        record = _record_name(source_ids, int(outputs[EVAL_BAD_LABEL_IMAGE]))
        raise errors.BadInputError(
            f"{record}: semantic label {value} ({int(outputs[EVAL_BAD_LABELS])} pixels in its "
            f"batch) is neither a class id in [0, {num_classes}) nor the ignore label "
            f"{ignore_label}; convert the dataset with its converter (which maps label ids to "
            f"train ids), or evaluate with the dataset's number of classes.")
    if int(outputs[EVAL_BAD_PREDICTIONS]) > 0:
        raise errors.ConfigError(
            f"the predictor returned class id {int(outputs[EVAL_BAD_PREDICTION_VALUE])}, "
            f"outside [0, {num_classes}): evaluate with the model's number of classes.")
    accumulator.add(outputs[EVAL_CONFUSION], int(outputs[EVAL_NUM_IMAGES]))
    return accumulator


def evaluate_predictor(predict_fn, dataset: tf.data.Dataset, num_classes: int,
                       class_names: Optional[Sequence[str]] = None,
                       max_examples: int = 0) -> Dict[str, float]:
    """Segmentation metrics of any class-id predictor over a dataset of IMAGE/SEMANTIC batches.

    Args:
      predict_fn: images `[B, h, w, 3]` -> class ids `[B, h, w]` or `[B, h, w, 1]` (integers,
        at the images' size, which is the labels').
      dataset: finite batches with common.IMAGE and common.SEMANTIC (and common.SOURCE_ID,
        which names the record of a bad label).
      num_classes: C; labels are train ids in [0, C) or common.IGNORE_LABEL.
      class_names: C names for the "iou/<name>" entries (default: the class index).
      max_examples: stop after this many images (0 = all).
    Returns:
      {"miou", "pixel_accuracy", "iou/<class>" for each class, "num_images"}.
    """
    class_names = _class_names(class_names, num_classes)  # before the slow part

    # One trace per call: the signature has the dataset's unknown batch size (see
    # evaluation.depth.evaluate_predictor).
    @tf.function(input_signature=[dataset.element_spec], autograph=False)
    def step(batch):
        return segmentation_eval_outputs(predict_fn(batch[common.IMAGE]),
                                         batch[common.SEMANTIC], num_classes)

    accumulator = ConfusionAccumulator(num_classes)
    for batch in dataset:
        outputs = step(batch)
        update_segmentation_accumulator(accumulator, {k: v.numpy() for k, v in outputs.items()},
                                        source_ids=batch.get(common.SOURCE_ID))
        if max_examples and accumulator.num_images >= max_examples:
            break
    return accumulator.result(class_names)
