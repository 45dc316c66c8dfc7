"""Semantic segmentation evaluation: dataset confusion matrix, per-class IoU, mIoU, accuracy.

The confusion matrix is a sum over batches (and replicas: all-reduce it with
`ReduceOp.SUM`); IoU and mIoU are computed once from the dataset total, so every pixel weighs
the same (Cityscapes / CamVid convention), not every image.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from tf_depthseg import common


def _as_ids(values, name):
    values = tf.convert_to_tensor(values)
    if values.shape.rank is not None and values.shape.rank >= 1 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.dtype.is_floating:
        raise ValueError(f"{name} must hold integer class ids (argmax the logits first), got "
                         f"{values.dtype}")
    return tf.cast(values, tf.int64)


def confusion_matrix(labels, predictions, num_classes: int,
                     ignore_label: int = common.IGNORE_LABEL, validate: bool = True):
    """Pixel counts `[num_classes, num_classes]`, rows = ground truth, columns = prediction.

    Args:
      labels: `[B, H, W]` or `[B, H, W, 1]` integer train ids; `ignore_label` pixels are
        skipped.
      predictions: same shape, predicted class ids.
      num_classes: C.
      ignore_label: label value not counted.
      validate: check (with tf.debugging asserts, which also run inside tf.function) that every
        label is in [0, C) or `ignore_label` and every prediction in [0, C); turn off under XLA.
    Returns:
      `[C, C]` int64.
    """
    labels = _as_ids(labels, "labels")
    predictions = _as_ids(predictions, "predictions")
    labels.shape.assert_is_compatible_with(predictions.shape)
    valid = tf.not_equal(labels, ignore_label)
    if validate:
        in_range = tf.logical_and(labels >= 0, labels < num_classes)
        checks = [
            tf.debugging.assert_equal(
                tf.reduce_all(tf.logical_or(in_range, tf.logical_not(valid))), True,
                message=f"labels outside [0, {num_classes}) that are not the ignore label "
                        f"{ignore_label}: map the dataset's ids to train ids first"),
            tf.debugging.assert_equal(
                tf.reduce_all(tf.logical_and(predictions >= 0, predictions < num_classes)), True,
                message=f"predictions outside [0, {num_classes})"),
        ]
        with tf.control_dependencies(checks):
            valid = tf.identity(valid)
    index = tf.where(valid, labels * num_classes + predictions, tf.zeros_like(labels))
    counts = tf.math.unsorted_segment_sum(tf.reshape(tf.cast(valid, tf.int64), [-1]),
                                          tf.reshape(index, [-1]), num_classes * num_classes)
    return tf.reshape(counts, [num_classes, num_classes])


def segmentation_scores(confusion) -> Dict[str, np.ndarray]:
    """Per-class IoU, mIoU and pixel accuracy from a (dataset) confusion matrix.

    IoU_c = TP / (TP + FP + FN) = diag / (row + col - diag); classes absent from both ground
    truth and prediction get NaN and are left out of the mean (nan-mean).

    Args:
      confusion: `[C, C]` counts (tensor or numpy), rows = ground truth.
    Returns:
      `{"iou": [C] float64, "miou": float, "pixel_accuracy": float}`.
    """
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
    total = confusion.sum()
    return {
        "iou": iou,
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else float("nan"),
    }
