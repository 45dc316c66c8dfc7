"""Prediction on folders and videos with exported models (library and tools/predict.py)."""

import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from tf_depthseg import common, visualize
from tf_depthseg.data import image_io
from tf_depthseg.errors import BadInputError
from tf_depthseg.export import exporter, predict
from tf_depthseg.models import layers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (24, 32)


def build_small_depth_model():
    """Pad -> conv s2 + BN -> 16 bin logits -> the SUW soft-classification head."""
    keras.utils.set_random_seed(3)
    image = keras.Input((None, None, 3), name="image")
    x = layers.PadToMultiple(2)(image)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    logits = keras.layers.Conv2D(16, 3, padding="same")(x)
    _, _, depth, uncertainty = layers.DepthBinsHead(16, 1.0, 80.0, upsample_factor=2)(
        [logits, image])
    return keras.Model(image, {common.OUT_DEPTH: depth, common.OUT_UNCERTAINTY: uncertainty})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_small_depth_model()
    export_dir = str(tmp_path_factory.mktemp("predict") / "export")
    exporter.export_model(model, export_dir, image_size=SIZE, verify=False)
    return {"model": model, "export_dir": export_dir,
            "tflite": os.path.join(export_dir, exporter.TFLITE_FILENAME)}


def reference_depth(model, images, size=SIZE):
    """The Keras model at the export size, resized back (what the signature promises)."""
    import tensorflow as tf
    x = tf.image.resize(images.astype(np.float32) / 255.0, size, method="bilinear")
    depth = model(x, training=False)[common.OUT_DEPTH]
    return tf.image.resize(depth, images.shape[1:3], method="bilinear").numpy()


def smooth_images(count, size, seed):
    """Images with smooth structure (JPEG and video codecs keep them close to the original)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, size[0])[:, None]
    cols = np.linspace(0, 1, size[1])[None, :]
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(0.2, 1.0, 3)
        image = np.stack([a * rows + 0 * cols, b * cols + 0 * rows,
                          c * (rows + cols) / 2], axis=-1)
        images.append(np.round(image * 255).astype(np.uint8))
    return np.stack(images)


def make_folder(root, with_corrupt=False):
    folder = os.path.join(root, "frames")
    os.makedirs(folder, exist_ok=True)
    images = smooth_images(3, SIZE, seed=0)
    for index, image in enumerate(images):
        image_io.write_png(os.path.join(folder, f"f{index}.png"), image)
    other = smooth_images(1, (30, 44), seed=1)[0]  # another size: its own batch
    image_io.write_png(os.path.join(folder, "f1.jpg.png"), other)
    # Same stem as f0.png: outputs must not collide.
    from PIL import Image
    Image.fromarray(images[0]).save(os.path.join(folder, "f0.jpg"), quality=95)
    if with_corrupt:
        with open(os.path.join(folder, "f2_broken.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n truncated")
    return folder, images, other


def test_folder_with_saved_model(exported, tmp_path):
    folder, images, other = make_folder(str(tmp_path))
    predictor = predict.load_predictor(exported["export_dir"])
    out = str(tmp_path / "out")
    summary = predict.predict_path(predictor, folder, out, batch_size=2, show_progress=False)
    assert summary.written == ["f0_jpg", "f0_png", "f1.jpg", "f1", "f2"]
    assert summary.skipped == []
    expected = reference_depth(exported["model"], images)
    for index in range(3):
        stored = image_io.read_image(os.path.join(out, f"f{index}" + predict.DEPTH_SUFFIX)
                                     if index else os.path.join(out, "f0_png_depth.png"))
        assert stored.dtype == np.uint16 and stored.shape == SIZE
        # KITTI convention: metres * 256, rounded.
        np.testing.assert_allclose(stored / 256.0, expected[index, ..., 0], atol=0.5 / 256 + 1e-4)
    stored = image_io.read_image(os.path.join(out, "f1.jpg" + predict.DEPTH_SUFFIX))
    assert stored.shape == (30, 44)  # at the input's own size
    np.testing.assert_allclose(stored / 256.0, reference_depth(exported["model"], other[None])
                               [0, ..., 0], atol=0.5 / 256 + 1e-4)
    viz = image_io.read_image(os.path.join(out, "f1" + predict.VIZ_SUFFIX))
    # input | depth | uncertainty with 4-pixel gaps, enlarged so the titles and colour bars
    # are readable, the input panel below its title (visualize.prediction_figure).
    factor = -(-visualize.PANEL_MIN_WIDTH // SIZE[1])
    assert viz.shape[1] == 3 * SIZE[1] * factor + 2 * visualize.PANEL_GAP
    assert viz.shape[0] > SIZE[0] * factor  # + title strip and colour bars
    top = 0
    while not np.array_equal(viz[top, :SIZE[1] * factor:factor], images[1][0]):
        top += 1
    np.testing.assert_array_equal(viz[top:top + SIZE[0] * factor:factor,
                                      :SIZE[1] * factor:factor], images[1])
    assert top > 0  # the title strip is above


def test_bad_file_is_named_or_skipped(exported, tmp_path):
    folder, _, _ = make_folder(str(tmp_path), with_corrupt=True)
    predictor = predict.load_predictor(exported["tflite"])
    with pytest.raises(BadInputError, match="f2_broken.png"):
        predict.predict_path(predictor, folder, str(tmp_path / "out"), show_progress=False)
    summary = predict.predict_path(predictor, folder, str(tmp_path / "out2"), skip_bad=True,
                                   show_progress=False)
    assert [os.path.basename(path) for path, _ in summary.skipped] == ["f2_broken.png"]
    assert len(summary.written) == 5
    assert not os.path.exists(str(tmp_path / "out2" / ("f2_broken" + predict.DEPTH_SUFFIX)))


def test_tflite_predictor_matches_saved_model_at_other_sizes(exported):
    images = smooth_images(2, (30, 44), seed=5)
    saved = predict.load_predictor(exported["export_dir"])(images)
    lite = predict.load_predictor(exported["tflite"])(images)
    assert lite["depth"].shape == saved["depth"].shape == (2, 30, 44, 1)
    # Same resize in and out; the TFLite input is rounded to uint8 after resizing.
    np.testing.assert_allclose(lite["depth"], saved["depth"], rtol=0.02)
    np.testing.assert_allclose(lite["uncertainty"], saved["uncertainty"], atol=0.01)


def test_video_input(exported, tmp_path):
    path = str(tmp_path / "clip.avi")
    frames = smooth_images(4, SIZE, seed=7)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (SIZE[1], SIZE[0]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    decoded = np.stack([frame.image for frame in predict.iterate_frames(path)])
    assert decoded.shape == (4, *SIZE, 3)
    assert np.mean(np.abs(decoded.astype(float) - frames)) < 8  # RGB order kept, lossy codec
    out = str(tmp_path / "out")
    summary = predict.predict_path(predict.load_predictor(exported["tflite"]), path, out,
                                   batch_size=3, show_progress=False)
    assert summary.written == [f"clip_{i:06d}" for i in range(4)]
    stored = image_io.read_image(os.path.join(out, "clip_000003" + predict.DEPTH_SUFFIX))
    expected = reference_depth(exported["model"], decoded[3:])
    np.testing.assert_allclose(stored / 256.0, expected[0, ..., 0], rtol=1e-3, atol=0.01)


def test_input_errors(exported, tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        list(predict.iterate_frames(str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no .png"):
        list(predict.iterate_frames(str(empty)))
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(b"not a video")
    with pytest.raises(BadInputError, match="broken.mp4"):
        list(predict.iterate_frames(str(broken_video)))
    sixteen = tmp_path / "sixteen"
    sixteen.mkdir()
    image_io.write_png(str(sixteen / "depth.png"), np.ones(SIZE, np.uint16))
    with pytest.raises(BadInputError, match="depth.png.*8-bit"):
        list(predict.iterate_frames(str(sixteen)))
    with pytest.raises(BadInputError, match="neither an export folder"):
        predict.load_predictor(str(tmp_path / "model.onnx"))
    with pytest.raises(BadInputError, match="not a SavedModel"):
        predict.load_predictor(str(empty))


def test_predict_tool(exported, tmp_path):
    folder, _, _ = make_folder(str(tmp_path), with_corrupt=True)
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    command = [sys.executable, "-m", "tools.predict", f"--model={exported['tflite']}",
               f"--input={folder}", f"--output_dir={out}", "--batch_size=2", "--skip_bad"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 5 depth PNGs" in result.stdout
    assert "skipped" in result.stdout and "f2_broken.png" in result.stdout
    assert len(list(out.glob("*" + predict.DEPTH_SUFFIX))) == 5
    assert len(list(out.glob("*" + predict.VIZ_SUFFIX))) == 5


# --------------------------------------------------------------------------------------------
# Segmentation exports: class-id PNGs and pictures in the dataset's palette.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg_exported(tmp_path_factory):
    """A tiny CamVid-sized (11 classes) segmentation export with CamVid's names and palette."""
    from test_export_segmentation import build_small_segmentation_model
    from tf_depthseg.data import datasets
    model = build_small_segmentation_model(seed=4, num_classes=datasets.CAMVID_NUM_CLASSES)
    export_dir = str(tmp_path_factory.mktemp("seg_predict") / "export")
    palette = datasets.CAMVID_PALETTE[:datasets.CAMVID_NUM_CLASSES]
    exporter.export_model(model, export_dir, image_size=SIZE, verify=False,
                          class_names=datasets.CAMVID_CLASS_NAMES, palette=palette)
    return {"model": model, "export_dir": export_dir, "palette": palette,
            "tflite": os.path.join(export_dir, exporter.TFLITE_FILENAME)}


def test_segmentation_folder_with_saved_model(seg_exported, tmp_path, record_measure):
    from test_export_segmentation import reference_segmentation
    folder, images, other = make_folder(str(tmp_path))
    predictor = predict.load_predictor(seg_exported["export_dir"])
    assert predictor.classes.names[3] == "Road"
    out = tmp_path / "out"
    summary = predict.predict_path(predictor, folder, str(out), batch_size=2,
                                   show_progress=False)
    assert summary.kinds == ("classes", "viz")
    assert not list(out.glob("*" + predict.DEPTH_SUFFIX))  # no depth: no depth PNGs
    for name, image in (("f1", images[1]), ("f1.jpg", other)):
        stored = image_io.read_image(str(out / (name + predict.CLASSES_SUFFIX)))
        assert stored.dtype == np.uint8 and stored.shape == image.shape[:2]
        _, expected, margin = reference_segmentation(seg_exported["model"], image[None])
        clear = margin[0] > 1e-4
        record_measure(f"{name}: pixels with a clear argmax", float(np.mean(clear)), above=0.95)
        assert np.mean(clear) > 0.95
        np.testing.assert_array_equal(stored[clear], expected[0][clear])
    # The picture: input | classes in CamVid's palette | classes over the input.
    ids = image_io.read_image(str(out / ("f1" + predict.CLASSES_SUFFIX)))
    viz = image_io.read_image(str(out / ("f1" + predict.VIZ_SUFFIX)))
    factor = -(-visualize.PANEL_MIN_WIDTH // SIZE[1])
    panel = SIZE[1] * factor
    assert viz.shape[1] == 3 * panel + 2 * visualize.PANEL_GAP
    top = 0
    while not np.array_equal(viz[top, :panel:factor], images[1][0]):
        top += 1
    second = panel + visualize.PANEL_GAP
    np.testing.assert_array_equal(
        viz[top:top + SIZE[0] * factor:factor, second:second + panel:factor],
        seg_exported["palette"][ids])
    assert len(np.unique(ids)) > 1


def test_segmentation_tflite_and_tool(seg_exported, tmp_path):
    images = smooth_images(2, (30, 44), seed=6)
    saved = predict.load_predictor(seg_exported["export_dir"])(images)
    lite = predict.load_predictor(seg_exported["tflite"])
    assert lite.classes.palette.shape == (11, 3)  # read from the export folder's metadata
    outputs = lite(images)
    assert outputs["semantic_class_ids"].shape == (2, 30, 44)
    assert outputs["semantic_class_ids"].dtype == np.int32
    # The TFLite path resizes probabilities (not logits) and its input is rounded to uint8:
    # the same classes except near boundaries (measured over 4 seeds x 2 image sets: >= 99.7 %
    # of pixels agree, probabilities within 6.4e-4).
    np.testing.assert_allclose(outputs["semantic_probabilities"],
                               saved["semantic_probabilities"], atol=0.005)
    agree = np.mean(outputs["semantic_class_ids"] == saved["semantic_class_ids"])
    assert agree > 0.98, agree
    folder, _, _ = make_folder(str(tmp_path))
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    result = subprocess.run([sys.executable, "-m", "tools.predict",
                             f"--model={seg_exported['tflite']}", f"--input={folder}",
                             f"--output_dir={out}"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 5 class-id PNGs (*_classes.png) and pictures" in result.stdout
    assert len(list(out.glob("*" + predict.CLASSES_SUFFIX))) == 5


def test_bad_class_table_in_metadata_is_named(seg_exported, tmp_path):
    import json
    import shutil
    copy = str(tmp_path / "export")
    shutil.copytree(seg_exported["export_dir"], copy)
    path = os.path.join(copy, exporter.METADATA_FILENAME)
    with open(path) as f:
        metadata = json.load(f)
    metadata["segmentation"]["palette"] = [[0, 0, 300]]
    with open(path, "w") as f:
        json.dump(metadata, f)
    with pytest.raises(BadInputError, match="metadata.json"):
        predict.load_predictor(copy)


def test_tflite_predictor_inverts_the_resized_disparity_of_disparity_models(tmp_path):
    """SDE exports: at another image size the depth is 1 / the resized (scaled) disparity, as
    the SavedModel signature and Monodepth2 compute it, not the resized depth, which differs
    wherever the disparity varies (bilinear interpolation does not commute with 1/x)."""
    import tensorflow as tf

    from tf_depthseg.training.tasks import sde as sde_task
    keras.utils.set_random_seed(5)
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    # Large weights: a disparity that varies strongly from pixel to pixel.
    logits = keras.layers.Conv2D(1, 3, padding="same",
                                 kernel_initializer=keras.initializers.RandomNormal(0, 3.0))(x)
    disparity = keras.layers.Activation("sigmoid")(logits)
    depth = sde_task.DisparityToDepth(0.1, 100.0)(disparity)
    model = keras.Model(image, {common.OUT_DEPTH: depth, common.disparity_key(0): disparity})
    export_dir = str(tmp_path / "export")
    exporter.export_model(model, export_dir, image_size=SIZE, verify=False)
    images = np.random.default_rng(0).integers(0, 256, (2, 30, 44, 3), dtype=np.uint8)
    lite = predict.load_predictor(os.path.join(export_dir, exporter.TFLITE_FILENAME))(images)
    saved = predict.load_predictor(export_dir)(images)
    assert lite["depth"].shape == lite["disparity"].shape == (2, 30, 44, 1)

    def invert(disp):
        return 1.0 / (1.0 / 100.0 + (1.0 / 0.1 - 1.0 / 100.0) * disp.astype(np.float64))

    np.testing.assert_allclose(lite["depth"], invert(lite["disparity"]), rtol=1e-4)
    np.testing.assert_allclose(saved["depth"], invert(saved["disparity"]), rtol=1e-4)
    # The other convention is far off here, so the check above can tell them apart.
    at_model_size = tf.image.resize(images.astype(np.float32), SIZE).numpy()
    small_depth = predict.load_predictor(export_dir)(
        np.clip(np.round(at_model_size), 0, 255).astype(np.uint8))["depth"]
    resized_depth = tf.image.resize(small_depth, (30, 44)).numpy()
    assert np.max(np.abs(resized_depth / invert(lite["disparity"]) - 1.0)) > 0.1
