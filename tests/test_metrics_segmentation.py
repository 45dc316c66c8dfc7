"""Confusion matrix, IoU, mIoU and pixel accuracy against an independent numpy computation."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.metrics import segmentation


def _numpy_confusion(labels, predictions, num_classes, ignore=255):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for label, prediction in zip(labels.ravel(), predictions.ravel()):
        if label != ignore:
            matrix[label, prediction] += 1
    return matrix


def test_confusion_and_scores_match_numpy():
    rng = np.random.default_rng(0)
    num_classes = 6
    labels = rng.integers(0, num_classes, size=(3, 9, 11))
    labels[rng.uniform(size=labels.shape) < 0.2] = 255
    labels[labels == 4] = 0  # class 4 never in the ground truth ...
    predictions = np.where(rng.uniform(size=labels.shape) < 0.6, labels,
                           rng.integers(0, num_classes, size=labels.shape))
    predictions[predictions == 255] = 1
    predictions[predictions == 5] = 2  # ... and class 5 never predicted
    labels[labels == 5] = 3  # so class 5 is absent from both: NaN, excluded from the mean
    predictions[predictions == 4] = 0
    matrix = tf.function(lambda l, p: segmentation.confusion_matrix(l, p, num_classes))(
        labels.astype(np.int32), predictions[..., None].astype(np.uint8))
    expected = _numpy_confusion(labels, predictions, num_classes)
    np.testing.assert_array_equal(matrix.numpy(), expected)

    scores = segmentation.segmentation_scores(matrix)
    ious = []
    for c in range(num_classes):
        tp = np.sum((labels == c) & (predictions == c))
        fp = np.sum((labels != c) & (labels != 255) & (predictions == c))
        fn = np.sum((labels == c) & (predictions != c))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    np.testing.assert_allclose(scores["iou"], ious)
    assert np.isnan(scores["iou"][5]) and np.isnan(scores["iou"][4])
    np.testing.assert_allclose(scores["miou"], np.nanmean(ious))
    valid = labels != 255
    np.testing.assert_allclose(scores["pixel_accuracy"],
                               np.mean(labels[valid] == predictions[valid]))


def test_bad_ids_raise_clear_errors():
    labels = np.array([[[0, 7]]], np.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="train ids"):
        segmentation.confusion_matrix(labels, np.zeros_like(labels), 5)
    with pytest.raises(ValueError, match="argmax"):
        segmentation.confusion_matrix(labels, np.zeros((1, 1, 2), np.float32), 5)
