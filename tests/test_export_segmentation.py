"""Export of segmentation networks (and of networks predicting depth and segmentation).

Tiny functional Keras models output `semantic_logits` (and `depth` / `uncertainty`); their
SavedModel and TFLite signatures must carry `semantic_class_ids` (int32 [B, H, W]) and
`semantic_probabilities` (float32 [B, H, W, C]) at the caller's image size, computed as the
signature documents: logits resized (bilinear) back to the input size, then softmax / argmax.
The reference is the Keras model plus numpy (softmax and argmax written out here).
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.export import exporter, saved_model, tflite
from tf_depthseg.models import layers

SIZE = (24, 32)
NUM_CLASSES = 5
CLASS_NAMES = ("road", "car", "sky", "tree", "person")
PALETTE = np.array([(128, 64, 128), (0, 0, 142), (70, 130, 180), (107, 142, 35),
                    (220, 20, 60)], np.uint8)


def build_small_segmentation_model(seed: int = 0, with_depth: bool = False,
                                   num_classes: int = NUM_CLASSES) -> keras.Model:
    """Pad -> conv s2 + BN + ReLU -> logits at 1/2 -> bilinear x2 and crop = `semantic_logits`
    at the input size; `with_depth` adds the SUW bins head on the same features (depth,
    uncertainty). Random batch-norm statistics, so inference mode differs from training mode."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((None, None, 3), name="image")
    x = layers.PadToMultiple(2, name="pad")(image)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    low = keras.layers.Conv2D(num_classes, 3, padding="same", name="seg_logits")(x)
    logits = layers.UpsampleCropToReference(2, name="seg_up")([low, image])
    outputs = {common.OUT_SEMANTIC_LOGITS: logits}
    if with_depth:
        bins = keras.layers.Conv2D(16, 3, padding="same", name="bins")(x)
        _, _, depth, uncertainty = layers.DepthBinsHead(16, 1.0, 80.0, upsample_factor=2,
                                                        name="head")([bins, image])
        outputs.update({common.OUT_DEPTH: depth, common.OUT_UNCERTAINTY: uncertainty})
    model = keras.Model(image, outputs, name="small_seg_depth" if with_depth else "small_seg")
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn1")
    bn.moving_mean.assign(rng.normal(0.0, 0.3, 16).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 16).astype(np.float32))
    return model


def random_images(count, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def numpy_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def reference_segmentation(model, images, network_size=SIZE):
    """Keras logits at `network_size` resized (bilinear) to the images' size, then numpy
    softmax and argmax: (probabilities, class ids, top-2 logit margin)."""
    x = images.astype(np.float32) / 255.0
    if tuple(images.shape[1:3]) != tuple(network_size):
        x = tf.image.resize(x, network_size, method="bilinear")
    logits = model(x, training=False)[common.OUT_SEMANTIC_LOGITS]
    logits = tf.image.resize(logits, images.shape[1:3], method="bilinear").numpy()
    ordered = np.sort(logits, axis=-1)
    return numpy_softmax(logits), np.argmax(logits, axis=-1), ordered[..., -1] - ordered[..., -2]


def check_class_ids(ids, expected, margin, record_measure, name):
    """Equal class ids wherever the top two logits are not within float noise of a tie."""
    clear = margin > 1e-4
    record_measure(f"{name}: pixels with a clear argmax", float(np.mean(clear)), above=0.95)
    assert np.mean(clear) > 0.95  # the comparison covers nearly every pixel
    np.testing.assert_array_equal(ids[clear], expected[clear])


@pytest.fixture(scope="module")
def exports(tmp_path_factory, learning_seed):
    """A segmentation-only and a depth+segmentation export (SavedModel + float32 TFLite)."""
    root = tmp_path_factory.mktemp("seg_export")
    result = {}
    for name, with_depth in (("seg", False), ("both", True)):
        model = build_small_segmentation_model(seed=learning_seed, with_depth=with_depth)
        export_dir = str(root / name)
        exporter.export_model(model, export_dir, image_size=SIZE, config=None,
                              class_names=CLASS_NAMES if name == "seg" else None,
                              palette=PALETTE if name == "seg" else None)
        result[name] = {"model": model, "export_dir": export_dir}
    return result


def test_segmentation_signature_matches_keras(exports, learning_seed, record_measure):
    model, export_dir = exports["seg"]["model"], exports["seg"]["export_dir"]
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    assert sorted(serve.structured_outputs) == ["semantic_class_ids", "semantic_probabilities"]
    assert serve.structured_outputs["semantic_class_ids"].dtype == tf.int32
    # At the export size and at another size (resized to SIZE inside, logits resized back).
    for count, size, seed in ((3, SIZE, 11), (2, (30, 44), 12)):
        images = random_images(count, size, seed + learning_seed)
        served = serve(images=tf.constant(images))
        ids = served["semantic_class_ids"].numpy()
        probabilities = served["semantic_probabilities"].numpy()
        assert ids.shape == (count, *size) and ids.dtype == np.int32
        assert probabilities.shape == (count, *size, NUM_CLASSES)
        expected, expected_ids, margin = reference_segmentation(model, images)
        diff = float(np.max(np.abs(probabilities - expected)))
        record_measure(f"probabilities at {size}: max abs diff", diff, below=1e-5)
        assert diff < 1e-5
        check_class_ids(ids, expected_ids, margin, record_measure, f"class ids at {size}")
        assert len(np.unique(ids)) > 1  # not one class everywhere: the check has teeth


def test_segmentation_tflite_matches_keras(exports, learning_seed, record_measure):
    model, export_dir = exports["seg"]["model"], exports["seg"]["export_dir"]
    runner = tflite.TFLiteModel(os.path.join(export_dir, exporter.TFLITE_FILENAME))
    assert runner.output_names == ("semantic_class_ids", "semantic_probabilities")
    images = random_images(2, SIZE, 13 + learning_seed)
    outputs = runner(images)
    assert outputs["semantic_class_ids"].dtype == np.int32
    expected, expected_ids, margin = reference_segmentation(model, images)
    diff = float(np.max(np.abs(outputs["semantic_probabilities"] - expected)))
    record_measure("TFLite probabilities: max abs diff", diff, below=1e-5)
    assert diff < 1e-5
    check_class_ids(outputs["semantic_class_ids"], expected_ids, margin, record_measure,
                    "TFLite class ids")


def test_segmentation_metadata(exports, record_measure):
    with open(os.path.join(exports["seg"]["export_dir"], exporter.METADATA_FILENAME)) as f:
        metadata = json.load(f)
    assert metadata["outputs"] == ["semantic_class_ids", "semantic_probabilities"]
    assert metadata["segmentation"] == {"num_classes": NUM_CLASSES,
                                        "class_names": list(CLASS_NAMES),
                                        "palette": PALETTE.astype(int).tolist()}
    assert "depth_range" not in metadata  # no depth facts for a network without depth
    outputs = metadata["signature"]["outputs"]
    assert outputs["semantic_class_ids"]["dtype"] == "int32"
    assert outputs["semantic_probabilities"]["shape"] == [-1, -1, -1, NUM_CLASSES]
    assert metadata["tflite"]["outputs"] == metadata["outputs"]
    verification = metadata["verification"]
    record_measure("verification: SavedModel probabilities",
                   verification["saved_model"]["semantic_probabilities"], below=1e-5)
    record_measure("verification: SavedModel class ids differing",
                   verification["saved_model"]["semantic_class_ids"], below=0.01)
    assert verification["saved_model"]["semantic_probabilities"] < 1e-5
    assert verification["saved_model"]["semantic_class_ids"] < 0.01
    assert verification["tflite"]["semantic_class_ids"] < 0.01


def test_depth_and_segmentation_export(exports, learning_seed, record_measure):
    model, export_dir = exports["both"]["model"], exports["both"]["export_dir"]
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    assert sorted(serve.structured_outputs) == [
        "depth", "semantic_class_ids", "semantic_probabilities", "uncertainty"]
    images = random_images(2, (30, 44), 14 + learning_seed)
    served = serve(images=tf.constant(images))
    resized = tf.image.resize(images.astype(np.float32) / 255.0, SIZE, method="bilinear")
    depth = tf.image.resize(model(resized, training=False)[common.OUT_DEPTH], (30, 44),
                            method="bilinear").numpy()
    np.testing.assert_allclose(served["depth"].numpy(), depth, rtol=1e-5, atol=1e-6)
    expected, expected_ids, margin = reference_segmentation(model, images)
    np.testing.assert_allclose(served["semantic_probabilities"].numpy(), expected, atol=1e-5)
    check_class_ids(served["semantic_class_ids"].numpy(), expected_ids, margin, record_measure,
                    "depth+seg class ids")
    # TFLite carries all four outputs (the model has no disparity output).
    four = ("depth", "uncertainty", "semantic_class_ids", "semantic_probabilities")
    assert saved_model.serving_output_names(model) == four
    runner = tflite.TFLiteModel(os.path.join(export_dir, exporter.TFLITE_FILENAME))
    assert runner.output_names == four
    at_size = random_images(1, SIZE, 15 + learning_seed)
    outputs = runner(at_size)
    keras_outputs = model(at_size.astype(np.float32) / 255.0, training=False)
    np.testing.assert_allclose(outputs["depth"], keras_outputs["depth"].numpy(), rtol=1e-4)
    np.testing.assert_allclose(outputs["semantic_probabilities"],
                               numpy_softmax(keras_outputs["semantic_logits"].numpy()),
                               atol=1e-5)
    metadata = exporter.read_metadata(export_dir)
    assert metadata["outputs"] == list(four)
    assert metadata["depth_range"] == [1.0, 80.0]
    assert metadata["segmentation"] == {"num_classes": NUM_CLASSES, "class_names": None,
                                        "palette": None}


def test_class_table_must_fit_the_model(tmp_path):
    model = build_small_segmentation_model()
    with pytest.raises(ValueError, match="predicts 5 classes but 2 class names"):
        exporter.export_model(model, str(tmp_path / "a"), image_size=SIZE,
                              class_names=["road", "car"])
    with pytest.raises(ValueError, match=r"palette must be \[>= 5, 3\]"):
        exporter.export_model(model, str(tmp_path / "b"), image_size=SIZE,
                              palette=PALETTE[:3])
    assert not os.listdir(tmp_path)  # checked before anything is written
