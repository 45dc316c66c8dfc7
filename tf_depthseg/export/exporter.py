"""Export a depth network as one folder: SavedModel + TFLite + metadata.json, atomically.

    export_dir/
      saved_model.pb, fingerprint.pb, variables/   the SavedModel (weights frozen into the
                                                   graph, so variables/ is empty):
                                                   `tf.saved_model.load(export_dir)
                                                   .signatures["serving_default"]`
      model.tflite                                 fixed-size TFLite model (optional)
      metadata.json                                config, input size, depth range, source
                                                   checkpoint and step, file sizes, and the
                                                   measured differences to the Keras model

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
from tf_depthseg.utils import atomic_write_bytes
from tf_depthseg.export import saved_model, tflite

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
METADATA_VERSION = 1


@dataclasses.dataclass
class ExportResult:
    """What `export_depth_model` wrote.

    Attributes:
      export_dir: the final folder (a SavedModel).
      tflite_path: the .tflite file, or None.
      metadata: the content of metadata.json.
    """

    export_dir: str
    tflite_path: Optional[str]
    metadata: dict


def depth_range_of(model: keras.Model) -> Optional[list]:
    """(min, max) metres of the model's soft-classification bins, if it has a bins head."""
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
    the comparison exercises the whole depth range rather than one flat colour."""
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
    outputs = saved_model.serve_depth(model, tf.constant(images),
                                      saved_model.check_image_size(image_size))
    return {key: value.numpy() for key, value in outputs.items()}


def max_abs_differences(outputs: Dict[str, np.ndarray], reference: Dict[str, np.ndarray]
                        ) -> Dict[str, float]:
    """max |a - b| per output name present in both (raises on shape mismatches)."""
    result = {}
    for key in reference:
        if key not in outputs:
            raise ValueError(f"output '{key}' is missing (got {sorted(outputs)})")
        if outputs[key].shape != reference[key].shape:
            raise ValueError(f"output '{key}' has shape {outputs[key].shape}, expected "
                             f"{reference[key].shape}")
        result[key] = float(np.max(np.abs(outputs[key].astype(np.float64)
                                          - reference[key].astype(np.float64))))
    return result


def verify_export(export_dir: str, model: keras.Model, images: np.ndarray,
                  image_size: Optional[Sequence[int]] = None) -> dict:
    """Loads the export back (plain tf.saved_model.load and the TFLite interpreter) and
    measures the max abs difference of every output to the Keras model on `images`.

    Returns {"saved_model": {name: diff}, "tflite": {name: diff} (if model.tflite exists),
    "num_images": n, "image_size": [h, w]}.
    """
    reference = keras_reference(model, images, image_size)
    _, serve = saved_model.load_serving_function(export_dir)
    served = serve(**{saved_model.INPUT_IMAGES: tf.constant(images)})
    report = {"num_images": len(images), "image_size": list(images.shape[1:3]),
              "saved_model": max_abs_differences({k: v.numpy() for k, v in served.items()},
                                                 reference)}
    tflite_path = os.path.join(export_dir, TFLITE_FILENAME)
    if os.path.exists(tflite_path):
        runner = tflite.TFLiteDepthModel(tflite_path)
        if tuple(images.shape[1:3]) == runner.input_size:
            report["tflite"] = max_abs_differences(runner(images), reference)
    return report


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


def export_depth_model(model: keras.Model, export_dir: str, *,
                       image_size: Optional[Sequence[int]] = (128, 416),
                       dynamic_size: bool = False,
                       tflite_export: bool = True, tflite_quantize: str = "none",
                       config: Optional[config_lib.ExperimentConfig] = None,
                       source: Optional[dict] = None, verify: bool = True,
                       overwrite: bool = False) -> ExportResult:
    """Writes the SavedModel, the TFLite file and metadata.json into `export_dir` atomically.

    Args:
      model: the depth network (RGB in [0, 1] -> dict with OUT_DEPTH [, OUT_UNCERTAINTY]).
      export_dir: the folder to create.
      image_size: (height, width) of the TFLite model and, unless `dynamic_size`, the size
        the SavedModel runs the network at (other input sizes are resized inside).
      dynamic_size: the SavedModel runs the network at the caller's image size.
      tflite_export: also write model.tflite (needs `image_size`).
      tflite_quantize: "none", "dynamic" or "float16".
      config: the run's config (stored in metadata.json).
      source: where the weights came from, e.g. {"workdir", "checkpoint", "step"}.
      verify: load the export back and record the max abs difference to the Keras model on
        two test images at `image_size` in metadata.json ("verification").
      overwrite: replace an existing `export_dir`.
    Returns:
      ExportResult.
    """
    saved_model.check_depth_model(model)
    image_size = saved_model.check_image_size(image_size)
    if tflite_export and image_size is None:
        raise ValueError("a TFLite export needs image_size; set export.image_size")
    if tflite_quantize not in tflite.QUANTIZE_CHOICES:
        raise ValueError(f"tflite_quantize must be one of {tflite.QUANTIZE_CHOICES}, got "
                         f"{tflite_quantize!r}")
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
            content = tflite.convert_to_tflite(model, image_size, tflite_quantize,
                                               module=module)
            atomic_write_bytes(os.path.join(temp_dir, TFLITE_FILENAME), content)
            tflite_info = {"file": TFLITE_FILENAME, "quantize": tflite_quantize,
                           "bytes": len(content), "input_shape": [1, *image_size, 3],
                           "outputs": list(module.output_names)}
        metadata = {
            "metadata_version": METADATA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "model_name": model.name,
            "num_params": int(model.count_params()),
            "signature": saved_model.signature_description(module.output_names, serving_size),
            "weights": "frozen into the SavedModel graph as constants (no variables)",
            "input_size": list(image_size) if image_size else None,
            "dynamic_size": bool(dynamic_size),
            "depth_range": depth_range_of(model),
            "depth_units": "metres",
            "depth_png_convention": "uint16 = round(depth * 256), 0 = invalid (KITTI)",
            "source": dict(source or {}),
            "config": config_lib.to_dict(config) if config is not None else None,
            "saved_model_bytes": saved_model.directory_size(temp_dir) - (
                tflite_info["bytes"] if tflite_info else 0),
            "tflite": tflite_info,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
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
    """metadata.json of an export ({} when absent, e.g. a SavedModel from elsewhere)."""
    path = os.path.join(export_dir, METADATA_FILENAME)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)
