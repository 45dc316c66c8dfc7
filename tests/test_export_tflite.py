"""TFLite conversion (float32 / dynamic-range / float16) and the atomic export folder.

Uses a small depth model made of the SUW building blocks (pad, strided conv + BN, the
soft-classification head) so every variant converts in seconds; the full SUW network's
SavedModel and TFLite exports are checked in test_export_saved_model.py.
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
# Weights and images are drawn with seeds offset by `learning_seed`; the tolerances are checked
# against the differences measured over seeds and oneDNN settings (docs/testing.md).


def build_small_depth_model(seed: int = 0) -> keras.Model:
    """Pad -> conv s2 + BN + ReLU -> conv 3x3 to 16 logits -> DepthBinsHead, with random
    batch-norm statistics (so inference mode differs from training mode)."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((None, None, 3), name="image")
    x = layers.PadToMultiple(2, name="pad")(image)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv2")(x)
    logits = keras.layers.Conv2D(16, 3, padding="same", name="logits")(x)
    _, depth_low, depth, uncertainty = layers.DepthBinsHead(
        16, 1.0, 80.0, upsample_factor=2, name="head")([logits, image])
    model = keras.Model(image, {common.OUT_DEPTH: depth, common.OUT_UNCERTAINTY: uncertainty,
                                common.OUT_DEPTH_LOW: depth_low}, name="small_depth")
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn1")
    bn.moving_mean.assign(rng.normal(0.0, 0.3, 32).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 32).astype(np.float32))
    return model


def random_images(count, size, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model(learning_seed):
    return build_small_depth_model(seed=learning_seed)


@pytest.fixture(scope="module")
def converted(model):
    """{quantize: .tflite bytes} for every quantisation choice without calibration (int8:
    test_export_int8.py)."""
    return {quantize: tflite.convert_to_tflite(model, SIZE, quantize)
            for quantize in tflite.QUANTIZE_CHOICES
            if quantize not in tflite.CALIBRATED_CHOICES}


def test_tflite_variants_match_keras_and_shrink(model, converted, learning_seed,
                                                record_measure):
    images = random_images(3, SIZE, seed=1 + learning_seed)
    # Independent reference: the Keras model on images / 255 in inference mode.
    expected = model(images.astype(np.float32) / 255.0, training=False)
    sizes, diffs = {}, {}
    for quantize, content in converted.items():
        runner = tflite.TFLiteModel(model_content=content)
        assert runner.input_size == SIZE and runner.batch_size == 1
        assert runner.output_names == ("depth", "uncertainty")
        outputs = runner(images)  # 3 images through a batch-1 model
        assert outputs["depth"].shape == (3, *SIZE, 1)
        sizes[quantize] = len(content)
        diffs[quantize] = {key: float(np.max(np.abs(outputs[key] - expected[key].numpy())))
                           for key in ("depth", "uncertainty")}
    print("tflite bytes", sizes, "max abs diff", diffs)
    depth_scale = float(np.max(expected["depth"]))
    record_measure("float32: depth max abs diff / max depth",
                   diffs["none"]["depth"] / depth_scale, below=1e-4)
    record_measure("float32: uncertainty max abs diff", diffs["none"]["uncertainty"],
                   below=1e-5)
    for quantize in ("dynamic", "float16"):
        record_measure(f"{quantize}: depth max abs diff / max depth",
                       diffs[quantize]["depth"] / depth_scale, below=0.05)
        record_measure(f"{quantize}: uncertainty max abs diff", diffs[quantize]["uncertainty"],
                       below=0.05)
    record_measure("float16 / dynamic depth diff",
                   diffs["float16"]["depth"] / diffs["dynamic"]["depth"], below=1)
    assert diffs["none"]["depth"] < 1e-4 * depth_scale
    assert diffs["none"]["uncertainty"] < 1e-5
    # Quantised weights change the output a little, not arbitrarily.
    for quantize in ("dynamic", "float16"):
        assert diffs[quantize]["depth"] < 0.05 * depth_scale, (quantize, diffs)
        assert diffs[quantize]["uncertainty"] < 0.05, (quantize, diffs)
    assert diffs["float16"]["depth"] < diffs["dynamic"]["depth"]
    assert sizes["dynamic"] < 0.5 * sizes["none"]
    assert sizes["float16"] < 0.75 * sizes["none"]


def test_tflite_rejects_bad_arguments(model, converted):
    with pytest.raises(ValueError, match="quantize"):
        tflite.convert_to_tflite(model, SIZE, "int4")
    with pytest.raises(ValueError, match="fixed image_size"):
        tflite.convert_to_tflite(model, None)
    with pytest.raises(ValueError, match="cannot load"):
        tflite.TFLiteModel(model_content=b"not a flatbuffer")
    runner = tflite.TFLiteModel(model_content=converted["none"])
    with pytest.raises(ValueError, match="resize first"):
        runner(random_images(1, (10, 12)))
    with pytest.raises(ValueError, match="uint8"):
        runner(np.zeros((1, *SIZE, 3), np.float32))


def test_export_folder_contents_and_dynamic_size(model, tmp_path, learning_seed,
                                                 record_measure):
    export_dir = str(tmp_path / "export")
    result = exporter.export_model(model, export_dir, image_size=SIZE, dynamic_size=True,
                                         tflite_export=False, source={"step": 3})
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary folders left
    files = set(os.listdir(export_dir))
    assert {"saved_model.pb", exporter.METADATA_FILENAME} <= files
    assert exporter.TFLITE_FILENAME not in files and result.tflite_path is None
    with open(os.path.join(export_dir, exporter.METADATA_FILENAME)) as f:
        metadata = json.load(f)
    assert metadata == result.metadata
    assert metadata["dynamic_size"] and metadata["depth_range"] == [1.0, 80.0]
    assert metadata["tflite"] is None and metadata["source"] == {"step": 3}
    # Dynamic size: the network itself runs at the caller's size (no resize in between).
    loaded = tf.saved_model.load(export_dir)
    images = random_images(2, (20, 30), seed=1 + learning_seed)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = model(images.astype(np.float32) / 255.0, training=False)
    record_measure("verification: SavedModel depth",
                   metadata["verification"]["saved_model"]["depth"], below=1e-3)
    record_measure("depth at 20x30: max rel diff",
                   np.max(np.abs(served["depth"].numpy() - expected["depth"].numpy())
                          / np.abs(expected["depth"].numpy())), below=1e-5)
    assert metadata["verification"]["saved_model"]["depth"] < 1e-3
    np.testing.assert_allclose(served["depth"].numpy(), expected["depth"].numpy(), rtol=1e-5)


def test_export_is_atomic(model, tmp_path, monkeypatch):
    export_dir = str(tmp_path / "export")
    exporter.export_model(model, export_dir, image_size=SIZE, tflite_export=False,
                                verify=False, source={"step": 1})
    with pytest.raises(FileExistsError, match="--overwrite"):
        exporter.export_model(model, export_dir, image_size=SIZE, tflite_export=False)

    def crash_while_saving(model, export_dir, image_size=None):
        with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
            f.write(b"half written")
        raise RuntimeError("simulated crash while writing the SavedModel")

    monkeypatch.setattr(saved_model, "save_serving_model", crash_while_saving)
    with pytest.raises(RuntimeError, match="simulated"):
        exporter.export_model(model, export_dir, image_size=SIZE, overwrite=True,
                                    source={"step": 2})
    # The old export is untouched and no temporary folder is left behind.
    assert sorted(os.listdir(tmp_path)) == ["export"]
    assert exporter.read_metadata(export_dir)["source"] == {"step": 1}
    with pytest.raises(RuntimeError, match="simulated"):
        exporter.export_model(model, str(tmp_path / "new"), image_size=SIZE)
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_serving_rejects_models_without_depth(tmp_path):
    image = keras.Input((None, None, 3))
    not_depth = keras.Model(image, {"features": keras.layers.Conv2D(2, 1)(image)})
    with pytest.raises(ValueError, match="'depth'"):
        saved_model.ServingModule(not_depth)
