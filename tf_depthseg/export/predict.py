"""Prediction with an exported model for a folder of images or a video file: it draws what
the model predicts (depth, uncertainty, semantic classes, or all of them).

For every input frame `<name>` it writes into the output folder, at the input's size,

* `<name>_depth.png` (depth models): uint16 PNG, value = round(depth in metres * 256), 0 =
  invalid (the KITTI depth benchmark convention, `image_io.depth_to_png16`; depth beyond
  255.99 m is stored as 0);
* `<name>_classes.png` (segmentation models): the predicted class id of every pixel, uint8
  PNG (uint16 for more than 256 classes);
* `<name>_viz.png`: side by side with titles (`visualize.prediction_figure`; inputs narrower
  than `visualize.PANEL_MIN_WIDTH` are enlarged so the labels stay readable): the input, the
  colourised depth (inverse depth, near = bright, colour bar in metres from near to far), the
  colourised uncertainty (its own colour bar), the class map in the dataset's palette with a
  legend of the classes present, and the class colours blended over the input. Class names
  and palette come from the export's metadata.json (tools/export.py writes them when the
  dataset is known); without them classes get numbers and generated colours.

Inputs: a folder of .png/.jpg/.jpeg files (sorted by name; `<name>` is the file's stem, or
`<stem>_<ext>` when two files share a stem), or a video (.mp4/.avi/.mov/.mkv, read with
OpenCV; `<name>` is `<video stem>_<frame index:06d>`). Frames of equal size are batched.

Models: an export folder (the SavedModel of `tools/export.py`, any image size: its signature
resizes internally) or a `.tflite` file (fixed size: images are resized to its input size here,
the same bilinear resize the SavedModel signature uses, and the outputs resized back; class
ids then are the argmax of the resized probabilities, where the SavedModel resizes the
logits, so the two can differ at class boundaries; the depth of a disparity model (SDE) is
computed from the resized disparity with the export's depth_range, as the signature does).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from tf_depthseg import common, visualize
from tf_depthseg.data import image_io
from tf_depthseg.errors import BadInputError
from tf_depthseg.export import exporter, saved_model, tflite
from tf_depthseg.losses import view_synthesis
from tf_depthseg import utils

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
DEPTH_SUFFIX = "_depth.png"
CLASSES_SUFFIX = "_classes.png"
VIZ_SUFFIX = "_viz.png"
# Predictions need one of these signature outputs (the others are drawn when present).
DRAWN_OUTPUTS = (saved_model.OUTPUT_DEPTH, saved_model.OUTPUT_CLASS_IDS)


# --------------------------------------------------------------------------------------------
# Models.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ClassTable:
    """Names and colours of a segmentation model's class ids (from the export's metadata.json;
    None when not recorded)."""

    names: Optional[List[str]] = None
    palette: Optional[np.ndarray] = None  # uint8 [C, 3]


def class_table(metadata: dict, source: str) -> ClassTable:
    """The ClassTable of an export's metadata ("segmentation" entry; empty when absent).
    Raises BadInputError naming `source` when the entry is malformed."""
    entry = metadata.get("segmentation") or {}
    names, palette = entry.get("class_names"), entry.get("palette")
    try:
        if names is not None:
            names = [str(name) for name in names]
        if palette is not None:
            palette = np.asarray(palette, np.int64)
            if palette.ndim != 2 or palette.shape[1] != 3 or palette.min() < 0 or (
                    palette.max() > 255):
                raise ValueError(f"palette of shape {palette.shape}")
            palette = palette.astype(np.uint8)
    except (TypeError, ValueError) as error:
        raise BadInputError(f"{source}: bad 'segmentation' entry in {exporter.METADATA_FILENAME} "
                            f"({error}); export the model again with tools/export.py.") from error
    return ClassTable(names=names, palette=palette)


def _check_outputs(path: str, output_names) -> None:
    if not any(name in output_names for name in DRAWN_OUTPUTS):
        raise BadInputError(f"{path}: the model's signature has the outputs "
                            f"{sorted(output_names)}, none of {list(DRAWN_OUTPUTS)}; export it "
                            "with tools/export.py.")


class SavedModelPredictor:
    """Calls the `serving_default` signature of an export folder on uint8 batches.

    Attributes:
      output_names: the signature's outputs.
      classes: ClassTable from the folder's metadata.json.
    """

    def __init__(self, export_dir: str):
        self.path = export_dir
        self._loaded, self._serve = saved_model.load_serving_function(export_dir)
        self.output_names = tuple(self._serve.structured_outputs)
        _check_outputs(export_dir, self.output_names)
        self.classes = class_table(exporter.read_metadata(export_dir), export_dir)

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 `[batch, H, W, 3]` -> the signature's outputs at `[batch, H, W]`."""
        outputs = self._serve(**{saved_model.INPUT_IMAGES: tf.constant(images, tf.uint8)})
        return {key: value.numpy() for key, value in outputs.items()}


class TFLitePredictor:
    """Runs a fixed-size .tflite export on uint8 batches of any size (resizing in and out).

    Attributes:
      output_names: the model's outputs.
      classes: ClassTable from the metadata.json next to the file (the export folder).
    """

    def __init__(self, path: str, num_threads: Optional[int] = None):
        self.path = path
        self.model = tflite.TFLiteModel(model_path=path, num_threads=num_threads)
        self.output_names = self.model.output_names
        _check_outputs(path, self.output_names)
        metadata = exporter.read_metadata(os.path.dirname(path) or ".")
        self.classes = class_table(metadata, path)
        # Disparity models: depth at another size inverts the resized disparity (Monodepth2's
        # convention, what the SavedModel signature computes), not a resized depth.
        self.depth_range = (metadata.get("depth_range") if "depth_from_disparity" in metadata
                            else None)

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 `[batch, H, W, 3]` -> the model's outputs at `[batch, H, W]`: float outputs
        resized back bilinearly, class ids as the argmax of the resized probabilities."""
        images = np.asarray(images, np.uint8)
        size = tuple(images.shape[1:3])
        if size != self.model.input_size:
            # The model input is uint8, so the resized images are rounded back to uint8 (the
            # SavedModel signature resizes after /255 and so differs by < 0.5/255 per pixel).
            resized = saved_model.resize_if_needed(tf.constant(images, tf.float32),
                                                   self.model.input_size)
            images = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
        outputs = self.model(images)
        if size == self.model.input_size:
            return outputs
        resized = {key: saved_model.resize_if_needed(tf.constant(value), size).numpy()
                   for key, value in outputs.items()
                   if key != saved_model.OUTPUT_CLASS_IDS}
        if self.depth_range and {saved_model.OUTPUT_DISPARITY,
                                 saved_model.OUTPUT_DEPTH} <= set(resized):
            resized[saved_model.OUTPUT_DEPTH] = view_synthesis.disp_to_depth(
                resized[saved_model.OUTPUT_DISPARITY], *self.depth_range)[1].numpy()
        if saved_model.OUTPUT_CLASS_IDS in outputs:
            # Ids cannot be interpolated; the SavedModel resizes logits, the closest here.
            resized[saved_model.OUTPUT_CLASS_IDS] = np.argmax(
                resized[saved_model.OUTPUT_PROBABILITIES], axis=-1).astype(np.int32)
        return resized


def load_predictor(path: str):
    """A SavedModelPredictor for an export folder, a TFLitePredictor for a .tflite file.

    Raises BadInputError naming the path when it is neither.
    """
    if os.path.isdir(path):
        if not tf.saved_model.contains_saved_model(path):
            raise BadInputError(f"{path}: not a SavedModel folder (no saved_model.pb). Pass the "
                                "--output_dir of tools/export.py or its model.tflite.")
        try:
            return SavedModelPredictor(path)
        except ValueError as error:
            raise BadInputError(str(error)) from error
    if os.path.isfile(path) and path.lower().endswith(".tflite"):
        try:
            return TFLitePredictor(path)
        except ValueError as error:
            raise BadInputError(str(error)) from error
    raise BadInputError(f"{path}: not found, or neither an export folder nor a .tflite file. "
                        "Pass the --output_dir of tools/export.py or its model.tflite.")


# --------------------------------------------------------------------------------------------
# Inputs.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Frame:
    """One input image: its output name, the image (uint8 `[H, W, 3]`), and where it came from."""

    name: str
    image: np.ndarray
    source: str


def list_image_files(folder: str) -> List[Tuple[str, str]]:
    """(output name, path) of every image in `folder`, sorted by file name.

    Raises BadInputError when the folder holds no .png/.jpg/.jpeg file.
    """
    files = sorted(name for name in os.listdir(folder)
                   if name.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, name)))
    if not files:
        raise BadInputError(f"{folder}: no {'/'.join(IMAGE_EXTENSIONS)} images in this folder. "
                            "Pass a folder of images or a video file.")
    stems = [os.path.splitext(name)[0] for name in files]
    result = []
    for name, stem in zip(files, stems, strict=True):
        if stems.count(stem) > 1:  # a.png and a.jpg must not overwrite each other's outputs
            stem = f"{stem}_{os.path.splitext(name)[1][1:].lower()}"
        result.append((stem, os.path.join(folder, name)))
    return result


def is_video(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def check_input(path: str) -> None:
    """Raises BadInputError unless `path` is a folder with images or a video file (cheap:
    call it before loading a model)."""
    if os.path.isdir(path):
        list_image_files(path)
    elif not os.path.exists(path):
        raise BadInputError(f"{path}: not found. Pass a folder of images or a video file.")
    elif not is_video(path):
        raise BadInputError(f"{path}: not a folder and not a video ({'/'.join(VIDEO_EXTENSIONS)})"
                            ". Pass a folder of images or a video file.")


def count_frames(path: str) -> Optional[int]:
    """How many frames `path` (folder or video) will yield, for the progress bar (a video's
    count is the container's estimate; None when unknown)."""
    if os.path.isdir(path):
        return len(list_image_files(path))
    import cv2
    capture = cv2.VideoCapture(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return count if count > 0 else None


def _as_rgb(image: np.ndarray, path: str) -> np.ndarray:
    """Decoded file -> uint8 `[H, W, 3]`; 16-bit images are not photographs: BadInputError."""
    if image.dtype != np.uint8:
        raise BadInputError(f"{path}: a {image.dtype} image (e.g. a 16-bit depth PNG), not an "
                            "8-bit RGB photograph; remove it from the input folder or pass "
                            "--skip_bad.")
    return visualize.to_rgb_uint8(image)


def iterate_frames(path: str, skip_bad: bool = False,
                   skipped: Optional[List[Tuple[str, str]]] = None) -> Iterator[Frame]:
    """Yields the frames of a folder or video in order.

    Args:
      path: a folder of images or a video file.
      skip_bad: log and skip unreadable images (appended to `skipped` as (path, reason))
        instead of raising.
      skipped: list collecting the skipped inputs.
    Raises:
      BadInputError: the path is missing, not a supported input, a video cannot be opened,
        or (without skip_bad) an image is unreadable; the message names the file.
    """
    if os.path.isdir(path):
        for name, file_path in list_image_files(path):
            try:
                image = _as_rgb(image_io.read_image(file_path), file_path)
            except BadInputError as error:
                if not skip_bad:
                    raise
                logging.warning("Skipping %s", error)
                if skipped is not None:
                    skipped.append((file_path, str(error)))
                continue
            yield Frame(name=name, image=image, source=file_path)
        return
    check_input(path)
    import cv2  # only videos need OpenCV
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise BadInputError(f"{path}: OpenCV cannot open this video (corrupt, or a codec "
                            "FFmpeg lacks); re-encode it (e.g. ffmpeg -i in.mov out.mp4) or "
                            "extract the frames into a folder.")
    stem = os.path.splitext(os.path.basename(path))[0]
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield Frame(name=f"{stem}_{index:06d}", image=rgb, source=f"{path}#{index}")
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise BadInputError(f"{path}: the video has no readable frames; it is empty or "
                            "corrupt.")


def batch_frames(frames: Iterator[Frame], batch_size: int) -> Iterator[List[Frame]]:
    """Groups consecutive frames of equal size into lists of at most `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch: List[Frame] = []
    for frame in frames:
        if batch and (len(batch) == batch_size or frame.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


# --------------------------------------------------------------------------------------------
# Outputs.
# --------------------------------------------------------------------------------------------


def write_prediction(output_dir: str, frame: Frame, outputs: Dict[str, np.ndarray],
                     classes: Optional[ClassTable] = None) -> Dict[str, str]:
    """Writes a frame's PNGs (atomically): `<name>_depth.png` for depth, `<name>_classes.png`
    for class ids, and `<name>_viz.png` drawing every output (`visualize.prediction_figure`).

    Args:
      outputs: one frame's signature outputs (`[H, W(, c)]`), with depth and/or class ids.
      classes: names and palette of the class ids (default: numbers, generated colours).
    Returns:
      {"depth" / "classes" / "viz": path written}.
    """
    classes = classes or ClassTable()
    paths = {}
    depth = outputs.get(saved_model.OUTPUT_DEPTH)
    class_ids = outputs.get(saved_model.OUTPUT_CLASS_IDS)
    if depth is None and class_ids is None:
        raise ValueError(f"outputs {sorted(outputs)} have neither depth nor class ids")
    if depth is not None:
        depth = np.asarray(depth)[..., 0] if np.ndim(depth) == 3 else np.asarray(depth)
        paths["depth"] = os.path.join(output_dir, frame.name + DEPTH_SUFFIX)
        image_io.write_png(paths["depth"], image_io.depth_to_png16(
            depth, common.DEPTH_PNG_SCALE, name=f"predicted depth of {frame.source}"))
    if class_ids is not None:
        probabilities = outputs.get(saved_model.OUTPUT_PROBABILITIES)
        num_classes = (probabilities.shape[-1] if probabilities is not None
                       else int(np.max(class_ids)) + 1)
        paths["classes"] = os.path.join(output_dir, frame.name + CLASSES_SUFFIX)
        image_io.write_png(paths["classes"], np.asarray(class_ids).astype(
            np.uint8 if num_classes <= 256 else np.uint16))
    paths["viz"] = os.path.join(output_dir, frame.name + VIZ_SUFFIX)
    image_io.write_png(paths["viz"], visualize.prediction_figure(
        frame.image, depth, outputs.get(saved_model.OUTPUT_UNCERTAINTY), class_ids=class_ids,
        palette=classes.palette, class_names=classes.names))
    return paths


@dataclasses.dataclass
class PredictSummary:
    """What `predict_path` did: output names written, inputs skipped (path, reason), and the
    kinds of files written per frame ("depth", "classes", "viz")."""

    output_dir: str
    written: List[str]
    skipped: List[Tuple[str, str]]
    kinds: Tuple[str, ...] = ()


def predict_path(predictor, input_path: str, output_dir: str, batch_size: int = 4,
                 skip_bad: bool = False, show_progress: bool = True) -> PredictSummary:
    """Predicts every frame of a folder or video and writes the outputs (`write_prediction`).

    Args:
      predictor: `load_predictor(...)` (or any callable uint8 batch -> output dict).
      input_path: a folder of images or a video file.
      output_dir: created if missing.
      batch_size: frames per model call (equal-size frames only).
      skip_bad: skip unreadable images instead of stopping (listed in the summary).
      show_progress: a progress bar on stderr.
    """
    check_input(input_path)
    os.makedirs(output_dir, exist_ok=True)
    skipped: List[Tuple[str, str]] = []
    written: List[str] = []
    frames = iterate_frames(input_path, skip_bad=skip_bad, skipped=skipped)
    total = count_frames(input_path) if show_progress else None
    bar = (utils.progress(None, total=total, desc="predict", unit="frame") if show_progress
           else None)
    classes = getattr(predictor, "classes", None)
    kinds: Tuple[str, ...] = ()
    counted_skips = 0
    try:
        for batch in batch_frames(frames, batch_size):
            outputs = predictor(np.stack([frame.image for frame in batch]))
            for index, frame in enumerate(batch):
                paths = write_prediction(output_dir, frame,
                                         {key: value[index] for key, value in outputs.items()},
                                         classes)
                kinds = tuple(paths)
                written.append(frame.name)
            if bar is not None:
                bar.update(len(batch) + len(skipped) - counted_skips)
                counted_skips = len(skipped)
    finally:
        if bar is not None:
            bar.close()
    return PredictSummary(output_dir=output_dir, written=written, skipped=skipped, kinds=kinds)
