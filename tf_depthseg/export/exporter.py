"""Export a network as one folder: SavedModel + TFLite + metadata.json, atomically.

    export_dir/
      saved_model.pb, fingerprint.pb, variables/   the SavedModel (weights frozen into the
                                                   graph, so variables/ is empty):
                                                   `tf.saved_model.load(export_dir)
                                                   .signatures["serving_default"]`
      model.tflite                                 fixed-size TFLite model (optional)
      metadata.json                                the signature's outputs, config, input
                                                   size, depth range (depth models), classes
                                                   (segmentation models: count, names and
                                                   palette when given), source checkpoint and
                                                   step, file sizes, and the measured
                                                   differences to the Keras model

The folder is written under a temporary name next to `export_dir` and renamed when complete,
so a crash never leaves a half-written export (an existing export is only replaced by a
complete new one). See `saved_model.py` for the signature and `tflite.py` for TFLite.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg.utils import atomic_write_bytes
from tf_depthseg.export import saved_model, tflite

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
METADATA_VERSION = 1


@dataclasses.dataclass
class ExportResult:
    """What `export_model` wrote.

    Attributes:
      export_dir: the final folder (a SavedModel).
      tflite_path: the .tflite file, or None.
      metadata: the content of metadata.json.
    """

    export_dir: str
    tflite_path: Optional[str]
    metadata: dict


def depth_range_of(model: keras.Model) -> Optional[list]:
    """(min, max) metres a depth model can predict, when one of its layers declares them as
    `min_depth` / `max_depth` attributes (e.g. a soft-classification bins head); else None."""
    if not isinstance(model.output, dict) or saved_model.OUTPUT_DEPTH not in model.output:
        return None
    for layer in _all_layers(model):
        if hasattr(layer, "min_depth") and hasattr(layer, "max_depth"):
            return [float(layer.min_depth), float(layer.max_depth)]
    return None


def _all_layers(model: keras.Model):
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        yield layer
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)


def verification_images(image_size: Sequence[int], count: int = 2, seed: int = 0
                        ) -> np.ndarray:
    """Deterministic uint8 test images `[count, h, w, 3]`: smooth gradients plus noise, so
    the comparison exercises the whole output range rather than one flat colour."""
    height, width = int(image_size[0]), int(image_size[1])
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    cols = np.linspace(0.0, 1.0, width)[None, :, None]
    base = np.concatenate([rows * np.ones((1, width, 1)), cols * np.ones((height, 1, 1)),
                           0.5 * (rows + cols)], axis=-1)
    images = base[None] * 200.0 + rng.uniform(0.0, 55.0, (count, height, width, 3))
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def keras_reference(model: keras.Model, images: np.ndarray,
                    image_size: Optional[Sequence[int]] = None) -> Dict[str, np.ndarray]:
    """The Keras model's serving outputs for uint8 `images` (eager, same preprocessing)."""
    outputs = saved_model.serve(model, tf.constant(images),
                                saved_model.check_image_size(image_size))
    return {key: value.numpy() for key, value in outputs.items()}


def output_differences(outputs: Dict[str, np.ndarray], reference: Dict[str, np.ndarray]
                       ) -> Dict[str, float]:
    """Per output of `reference`: max |a - b| for float outputs, the fraction of differing
    pixels for integer ones (class ids: an argmax flips where two logits nearly tie, so a
    distance between ids means nothing). Raises on missing outputs and shape mismatches."""
    result = {}
    for key in reference:
        if key not in outputs:
            raise ValueError(f"output '{key}' is missing (got {sorted(outputs)})")
        if outputs[key].shape != reference[key].shape:
            raise ValueError(f"output '{key}' has shape {outputs[key].shape}, expected "
                             f"{reference[key].shape}")
        if np.issubdtype(reference[key].dtype, np.integer):
            result[key] = float(np.mean(outputs[key] != reference[key]))
        else:
            result[key] = float(np.max(np.abs(outputs[key].astype(np.float64)
                                              - reference[key].astype(np.float64))))
    return result


def verify_export(export_dir: str, model: keras.Model, images: np.ndarray,
                  image_size: Optional[Sequence[int]] = None) -> dict:
    """Loads the export back (plain tf.saved_model.load and the TFLite interpreter) and
    measures the difference of every output to the Keras model on `images`
    (`output_differences`: max abs difference; fraction of differing class ids).

    Returns {"saved_model": {name: diff}, "tflite": {name: diff} (if model.tflite exists),
    "num_images": n, "image_size": [h, w]}.
    """
    reference = keras_reference(model, images, image_size)
    _, serve = saved_model.load_serving_function(export_dir)
    served = serve(**{saved_model.INPUT_IMAGES: tf.constant(images)})
    report = {"num_images": len(images), "image_size": list(images.shape[1:3]),
              "saved_model": output_differences({k: v.numpy() for k, v in served.items()},
                                                reference)}
    tflite_path = os.path.join(export_dir, TFLITE_FILENAME)
    if os.path.exists(tflite_path):
        runner = tflite.TFLiteModel(tflite_path)
        if tuple(images.shape[1:3]) == runner.input_size:
            report["tflite"] = output_differences(runner(images), reference)
    return report


def representative_images(pattern: str, image_size: Sequence[int],
                          count: int = tflite.DEFAULT_REPRESENTATIVE_EXAMPLES,
                          allow_incomplete: bool = False) -> np.ndarray:
    """Calibration images of an int8 TFLite export: up to `count` uint8 images `[n, h, w, 3]`
    from the records `pattern` (a run's data.train_pattern), resized to `image_size` by the
    evaluation pipeline (the first examples in its order: round robin over up to 8 shards).

    Raises BadInputError naming the pattern and the fix when there are no readable records
    (ConfigError when `pattern` is empty).
    """
    from tf_depthseg import common
    from tf_depthseg.data import pipeline
    fix = ("the int8 TFLite export calibrates on the run's training records "
           "(data.train_pattern); point it at converted records with --set "
           "data.train_pattern=<glob>, or export with --tflite_quantize=none, dynamic or float16")
    if not pattern:
        raise errors.ConfigError(f"data.train_pattern is empty: {fix}.")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    try:
        dataset = pipeline.make_dataset(pattern, [common.IMAGE], 1, training=False,
                                        image_size=tuple(image_size), num_context=0,
                                        deterministic=True, allow_incomplete=allow_incomplete)
        images = []
        with pipeline.reading_errors([pattern]):
            for batch in dataset.take(count):
                # The pipeline's images are uint8 / 255 (resized): back to the served uint8.
                images.append(np.clip(np.round(batch[common.IMAGE][0].numpy() * 255.0), 0, 255
                                      ).astype(np.uint8))
    except errors.BadInputError as error:
        raise errors.BadInputError(f"{error} ({fix}).") from error
    if not images:
        raise errors.BadInputError(f"{pattern}: no records to calibrate on: {fix}.")
    return np.stack(images)


def tflite_description(content: bytes, quantize: str) -> dict:
    """metadata.json facts of a .tflite file: its signature's dtypes and quantisation scales
    ("io": scale 0 = not quantised), and for int8 the ops by type and input dtype (those
    still in float32 are listed under "float_ops") and the scale / zero point of the
    quantiser that turns the input into int8 ("input_quantizer")."""
    info = {"io": tflite.io_quantization(content)}
    if quantize in tflite.CALIBRATED_CHOICES:
        ops = tflite.op_types(content)
        info["op_types"] = ops
        info["float_ops"] = sorted(name for name, dtypes in ops.items()
                                   if "float32" in dtypes and name not in ("QUANTIZE",
                                                                           "DEQUANTIZE"))
        info["input_quantizer"] = tflite.first_quantizer(content)
    return info


def _replace_directory(temp_dir: str, export_dir: str, overwrite: bool) -> None:
    """Renames the finished `temp_dir` to `export_dir`, replacing an old export if allowed."""
    if os.path.lexists(export_dir):
        if not overwrite:
            raise FileExistsError(f"{export_dir} already exists; pass --overwrite to replace it "
                                  "(the old export stays until the new one is complete).")
        old = tempfile.mkdtemp(dir=os.path.dirname(export_dir),
                               prefix=f".{os.path.basename(export_dir)}.old-")
        os.rmdir(old)
        os.replace(export_dir, old)
        os.replace(temp_dir, export_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp_dir, export_dir)


def check_classes(num_classes: int, class_names: Optional[Sequence[str]] = None,
                  palette=None) -> dict:
    """The "segmentation" entry of metadata.json: {"num_classes", "class_names", "palette"}
    (names and palette None when not given). Raises ValueError when `class_names` does not
    have `num_classes` entries or `palette` is not `[>= num_classes, 3]` values in 0..255."""
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) != num_classes:
            raise ValueError(f"the model predicts {num_classes} classes but {len(class_names)} "
                             f"class names were given ({class_names[:4]}...)")
    if palette is not None:
        colours = np.asarray(palette)
        if (colours.ndim != 2 or colours.shape[1] != 3 or len(colours) < num_classes
                or colours.min() < 0 or colours.max() > 255):
            raise ValueError(f"palette must be [>= {num_classes}, 3] RGB values in 0..255, got "
                             f"shape {colours.shape}")
        palette = colours[:num_classes].astype(int).tolist()
    return {"num_classes": int(num_classes), "class_names": class_names, "palette": palette}


def export_model(model: keras.Model, export_dir: str, *,
                 image_size: Optional[Sequence[int]] = (128, 416),
                 dynamic_size: bool = False,
                 tflite_export: bool = True, tflite_quantize: str = "none",
                 config: Optional[config_lib.ExperimentConfig] = None,
                 source: Optional[dict] = None, verify: bool = True,
                 overwrite: bool = False,
                 class_names: Optional[Sequence[str]] = None,
                 palette=None,
                 representative_images: Optional[np.ndarray] = None,
                 representative_source: Optional[str] = None) -> ExportResult:
    """Writes the SavedModel, the TFLite file and metadata.json into `export_dir` atomically.

    Args:
      model: the network (RGB in [0, 1] -> dict with OUT_DEPTH [, OUT_UNCERTAINTY] and/or
        OUT_SEMANTIC_LOGITS; `saved_model.check_serving_model`).
      export_dir: the folder to create.
      image_size: (height, width) of the TFLite model and, unless `dynamic_size`, the size
        the SavedModel runs the network at (other input sizes are resized inside).
      dynamic_size: the SavedModel runs the network at the caller's image size.
      tflite_export: also write model.tflite (needs `image_size`).
      tflite_quantize: "none", "dynamic", "float16" or "int8" (see `tflite`).
      config: the run's config (stored in metadata.json).
      source: where the weights came from, e.g. {"workdir", "checkpoint", "step"}.
      verify: load the export back and record the difference to the Keras model on two test
        images at `image_size` in metadata.json ("verification").
      overwrite: replace an existing `export_dir`.
      class_names, palette: segmentation models: the name and RGB colour of each class id
        (stored in metadata.json; `tools/predict.py` draws with the palette).
      representative_images: "int8": uint8 `[n, h, w, 3]` calibration images at
        `image_size` (`representative_images()` of the run's training records).
      representative_source: where they came from (stored in metadata.json).
    Returns:
      ExportResult.
    """
    saved_model.check_serving_model(model)
    image_size = saved_model.check_image_size(image_size)
    if tflite_export and image_size is None:
        raise ValueError("a TFLite export needs image_size; set data.image_size")
    if tflite_quantize not in tflite.QUANTIZE_CHOICES:
        raise ValueError(f"tflite_quantize must be one of {tflite.QUANTIZE_CHOICES}, got "
                         f"{tflite_quantize!r}")
    if (tflite_export and tflite_quantize in tflite.CALIBRATED_CHOICES
            and representative_images is None):
        raise ValueError(f"tflite_quantize={tflite_quantize!r} needs representative_images "
                         "(exporter.representative_images of the run's training records)")
    num_classes = saved_model.num_classes_of(model)
    classes = (check_classes(num_classes, class_names, palette) if num_classes is not None
               else None)
    export_dir = os.path.abspath(export_dir)
    if os.path.lexists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} already exists; pass --overwrite to replace it.")
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    serving_size = None if dynamic_size else image_size
    temp_dir = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(export_dir)}.tmp-")
    try:
        # mkdtemp makes a private (0700) folder; give the export a normal folder's permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp_dir, 0o777 & ~umask)
        module = saved_model.save_serving_model(model, temp_dir, serving_size)
        tflite_info = None
        if tflite_export:
            content = tflite.convert_to_tflite(
                model, image_size, tflite_quantize, module=module,
                representative_images=representative_images)
            atomic_write_bytes(os.path.join(temp_dir, TFLITE_FILENAME), content)
            tflite_info = {"file": TFLITE_FILENAME, "quantize": tflite_quantize,
                           "bytes": len(content), "input_shape": [1, *image_size, 3],
                           "outputs": list(module.output_names),
                           **tflite_description(content, tflite_quantize)}
            if tflite_quantize in tflite.CALIBRATED_CHOICES:
                tflite_info["calibration"] = {
                    "source": representative_source,
                    "images": int(len(representative_images)),
                    "input_range_image": ("a 0..255 ramp (tflite.input_range_image): the "
                                          "input quantiser keeps every uint8 level"),
                    "float_layers": tflite.int8_float_layers(model)}
        metadata = {
            "metadata_version": METADATA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "model_name": model.name,
            "num_params": int(model.count_params()),
            "outputs": list(module.output_names),
            "signature": saved_model.signature_description(module.output_names, serving_size,
                                                           num_classes),
            "weights": "frozen into the SavedModel graph as constants (no variables)",
            "input_size": list(image_size) if image_size else None,
            "dynamic_size": bool(dynamic_size),
        }
        if saved_model.OUTPUT_DEPTH in module.output_names:
            metadata.update({
                "depth_range": depth_range_of(model),
                "depth_units": "metres",
                "depth_png_convention": "uint16 = round(depth * 256), 0 = invalid (KITTI)"})
            converter = saved_model.disparity_converter(model)
            if converter is not None:
                metadata["depth_from_disparity"] = (
                    "depth = 1 / (1/max + (1/min - 1/max) disparity), min/max = depth_range; "
                    "computed after resizing the disparity to the input size (Monodepth2)")
            if converter is not None and not getattr(converter, "metric_depth", True):
                metadata["depth_units"] = (
                    "metres only up to an unknown scale: self-supervised monocular training "
                    "fixes depth up to a global factor; multiply by a known scale (e.g. the "
                    "median ratio to ground truth, as the evaluation does) for metric depth")
                metadata["metric_depth"] = False
        if classes is not None:
            metadata["segmentation"] = classes
        metadata.update({
            "source": dict(source or {}),
            "config": config_lib.to_dict(config) if config is not None else None,
            "saved_model_bytes": saved_model.directory_size(temp_dir) - (
                tflite_info["bytes"] if tflite_info else 0),
            "tflite": tflite_info,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        })
        if verify:
            images = verification_images(image_size or (64, 64))
            metadata["verification"] = verify_export(temp_dir, model, images, serving_size)
        atomic_write_bytes(os.path.join(temp_dir, METADATA_FILENAME),
                           (json.dumps(metadata, indent=2) + "\n").encode())
        _replace_directory(temp_dir, export_dir, overwrite)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return ExportResult(export_dir=export_dir,
                        tflite_path=(os.path.join(export_dir, TFLITE_FILENAME)
                                     if tflite_export else None),
                        metadata=metadata)


def read_metadata(export_dir: str) -> dict:
    """metadata.json of an export ({} when absent, e.g. a SavedModel from elsewhere).

    Raises BadInputError naming the file when it is not a JSON object."""
    path = os.path.join(export_dir, METADATA_FILENAME)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            metadata = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise errors.BadInputError(f"{path}: unreadable ({error}); export the model again "
                                   "with tools/export.py, or delete the file.") from error
    if not isinstance(metadata, dict):
        raise errors.BadInputError(f"{path}: not a JSON object; export the model again with "
                                   "tools/export.py, or delete the file.")
    return metadata
