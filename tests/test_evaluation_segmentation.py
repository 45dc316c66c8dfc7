"""Segmentation evaluation (`tf_depthseg.evaluation.segmentation`) against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg.evaluation import segmentation as seg_eval

NUM_CLASSES = 5
NAMES = ("road", "car", "sky", "person", "train")  # "train" never occurs: its IoU is NaN


def make_dataset(labels, predictions, batch_size=3):
    """Batches of IMAGE / SEMANTIC / SOURCE_ID; the prediction rides in the image's first
    channel, so the predictor below is a pure read-out."""
    images = np.zeros(labels.shape + (3,), np.float32)
    images[..., 0] = predictions
    return tf.data.Dataset.from_tensor_slices({
        common.IMAGE: images,
        common.SEMANTIC: labels[..., None].astype(np.int32),
        common.SOURCE_ID: [f"img{i}" for i in range(len(labels))],
    }).batch(batch_size)


def random_labels(seed, count=5, height=6, width=7):
    """Labels and predictions in [0, 4) (class 4 absent), ~20 % ignore pixels; predictions
    agree with the label on ~60 % of pixels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, [count, height, width])
    predictions = np.where(rng.random(labels.shape) < 0.6, labels,
                           rng.integers(0, 4, labels.shape))
    labels = np.where(rng.random(labels.shape) < 0.2, common.IGNORE_LABEL, labels)
    return labels, predictions


def numpy_scores(labels, predictions):
    """IoU per class from TP/FP/FN counted directly on the pixels (no confusion matrix)."""
    valid = labels != common.IGNORE_LABEL
    iou = []
    for c in range(NUM_CLASSES):
        tp = np.sum(valid & (labels == c) & (predictions == c))
        fp = np.sum(valid & (labels != c) & (predictions == c))
        fn = np.sum(valid & (labels == c) & (predictions != c))
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
    accuracy = np.sum(valid & (labels == predictions)) / np.sum(valid)
    return np.array(iou), float(np.nanmean(iou)), float(accuracy)


def test_metrics_match_numpy_with_one_trace_and_a_smaller_last_batch():
    labels, predictions = random_labels(0)
    traces = []

    def predict(images):
        traces.append(images.shape)
        return tf.cast(images[..., 0], tf.int32)  # [B, H, W]

    result = seg_eval.evaluate_predictor(predict, make_dataset(labels, predictions),
                                         NUM_CLASSES, class_names=NAMES)
    iou, miou, accuracy = numpy_scores(labels, predictions)
    assert len(traces) == 1 and traces[0][0] is None  # batches of 3 and 2
    assert result["num_images"] == 5
    assert set(result) == {"miou", "pixel_accuracy", "num_images"} | {
        f"iou/{name}" for name in NAMES}
    np.testing.assert_allclose([result[f"iou/{name}"] for name in NAMES], iou, rtol=1e-12)
    assert np.isnan(result["iou/train"])  # absent class: out of the mean, not a zero
    assert result["miou"] == pytest.approx(miou, rel=1e-12)
    assert result["pixel_accuracy"] == pytest.approx(accuracy, rel=1e-12)
    # Pixel-weighted over the dataset, not a mean of per-image mIoUs (which differs here).
    per_image = np.mean([numpy_scores(l, p)[1] for l, p in zip(labels, predictions)])
    assert abs(per_image - miou) > 1e-3


def test_max_examples_stops_after_whole_batches_and_names_default_to_indices():
    labels, predictions = random_labels(1)
    result = seg_eval.evaluate_predictor(
        lambda images: tf.cast(images[..., :1], tf.int64),  # [B, H, W, 1]
        make_dataset(labels, predictions), NUM_CLASSES, max_examples=3)
    iou, miou, _ = numpy_scores(labels[:3], predictions[:3])
    assert result["num_images"] == 3
    np.testing.assert_allclose([result[f"iou/{c}"] for c in range(NUM_CLASSES)], iou)
    assert result["miou"] == pytest.approx(miou, rel=1e-12)


def test_a_label_outside_the_classes_names_the_value_and_the_record():
    labels, predictions = random_labels(2)
    labels[3, 2, 4] = 19  # e.g. Cityscapes train ids evaluated as a 5-class set
    labels[3, 5, 0] = 19
    with pytest.raises(errors.BadInputError, match=r"record 'img3': semantic label 19 \(2 "
                                                    r"pixels.*\[0, 5\).*ignore label 255"):
        seg_eval.evaluate_predictor(lambda images: tf.cast(images[..., 0], tf.int32),
                                    make_dataset(labels, predictions), NUM_CLASSES)
    labels[3] = np.where(labels[3] == 19, -1, labels[3])  # negative ids are bad too
    with pytest.raises(errors.BadInputError, match="semantic label -1"):
        seg_eval.evaluate_predictor(lambda images: tf.cast(images[..., 0], tf.int32),
                                    make_dataset(labels, predictions), NUM_CLASSES)


def test_a_prediction_outside_the_classes_is_a_config_error():
    labels, predictions = random_labels(3)
    predictions[1, 0, 0] = 7
    labels[1, 0, 0] = 0  # a labelled pixel (ignored pixels are not checked)
    with pytest.raises(errors.ConfigError, match=r"class id 7, outside \[0, 5\)"):
        seg_eval.evaluate_predictor(lambda images: tf.cast(images[..., 0], tf.int32),
                                    make_dataset(labels, predictions), NUM_CLASSES)


def test_task_hooks_sum_batches_like_one_big_batch():
    """eval_outputs / update_metrics as a task uses them: batch by batch equals all at once,
    and the outputs' own SOURCE_ID entry names a bad record."""
    labels, predictions = random_labels(4, count=4)
    whole = seg_eval.segmentation_eval_outputs(predictions, labels, NUM_CLASSES)
    accumulator = seg_eval.ConfusionAccumulator(NUM_CLASSES)
    for part in (slice(0, 1), slice(1, 4)):
        outputs = seg_eval.segmentation_eval_outputs(predictions[part], labels[part],
                                                     NUM_CLASSES)
        seg_eval.update_segmentation_accumulator(
            accumulator, {k: v.numpy() for k, v in outputs.items()})
    np.testing.assert_array_equal(accumulator.confusion, whole[seg_eval.EVAL_CONFUSION])
    assert accumulator.num_images == 4
    labels[2, 0, 0] = 5
    outputs = {k: v.numpy() for k, v in seg_eval.segmentation_eval_outputs(
        predictions, labels, NUM_CLASSES).items()}
    outputs[common.SOURCE_ID] = np.array([b"a", b"b", b"c", b"d"])
    with pytest.raises(errors.BadInputError, match="record 'c': semantic label 5"):
        seg_eval.update_segmentation_accumulator(seg_eval.ConfusionAccumulator(NUM_CLASSES),
                                                 outputs)
