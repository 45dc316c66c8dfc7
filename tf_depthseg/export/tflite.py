"""TFLite conversion of a model's serving computation, and a runner for the result.

The TFLite model has the same `serving_default` signature as the SavedModel
(`tf_depthseg.export.saved_model`) at a FIXED size, because TFLite kernels are planned for
static shapes:

    inputs:   images                  uint8   [1, h, w, 3]   (h, w) = the run's data.image_size
    outputs:  depth                   float32 [1, h, w, 1]   metres (depth models)
              uncertainty             float32 [1, h, w, 1]   (models that output it)
              disparity               float32 [1, h, w, 1]   (SDE models)
              semantic_class_ids      int32   [1, h, w]      (segmentation models)
              semantic_probabilities  float32 [1, h, w, C]   (segmentation models)

Batch 1 is the mobile case; `TFLiteModel` runs larger batches image by image. Callers with
other image sizes resize to (h, w) and back exactly like the SavedModel signature does
(`tf_depthseg.export.predict` does this).

Quantisation (`export.tflite_quantize`):
* "none": float32 weights and activations (the reference),
* "dynamic": dynamic-range quantisation: int8 weights, float activations (~4x smaller),
* "float16": float16 weights, dequantised to float32 on CPU (~2x smaller).
Only TFLite builtin ops are allowed (no Flex/Select TF ops), so the file runs on the plain
TFLite / LiteRT runtime.
"""

from __future__ import annotations

import warnings
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_depthseg.export import saved_model

QUANTIZE_CHOICES = ("none", "dynamic", "float16")


def convert_to_tflite(model: keras.Model, image_size: Sequence[int],
                      quantize: str = "none",
                      module: Optional[saved_model.ServingModule] = None) -> bytes:
    """Converts the serving computation at `image_size` to a TFLite flatbuffer.

    Args:
      model: the served network (ignored when `module` is given).
      image_size: (height, width) of the TFLite input.
      quantize: one of QUANTIZE_CHOICES.
      module: an existing `ServingModule` to convert (reuses its frozen graph).
    Returns:
      The .tflite file content.
    Raises:
      ValueError: bad arguments, or the converter could not express the model with TFLite
        builtin ops (the message includes the converter's reason).
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"tflite quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    image_size = saved_model.check_image_size(image_size)
    if image_size is None:
        raise ValueError("TFLite needs a fixed image_size (height, width); set "
                         "data.image_size")
    if module is None or module.image_size != image_size:
        module = saved_model.ServingModule(model, image_size)
    function = module.fixed_size_function(batch_size=1)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as error:  # ConverterError and friends carry the MLIR diagnostics
        first_lines = "\n".join(str(error).strip().splitlines()[:6])
        raise ValueError(f"TFLite conversion failed at image size {image_size} with quantize="
                         f"{quantize!r}: {first_lines}") from error


def _make_interpreter(model_path: Optional[str], model_content: Optional[bytes],
                      num_threads: Optional[int]):
    """LiteRT's interpreter when installed (the successor package), else tf.lite's."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore
    except ImportError:
        Interpreter = None
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to ai_edge_litert; it still works in 2.21.
        warnings.simplefilter("ignore")
        interpreter_cls = Interpreter or tf.lite.Interpreter
        return interpreter_cls(model_path=model_path, model_content=model_content,
                               num_threads=num_threads)


class TFLiteModel:
    """Runs an exported .tflite file on uint8 image batches.

    Attributes:
      input_size: (height, width) the model takes.
      batch_size: the model's batch dimension (1 for our exports).
      output_names: signature outputs (`saved_model.SERVING_OUTPUTS` it has, in that order).
    """

    def __init__(self, model_path: Optional[str] = None, model_content: Optional[bytes] = None,
                 num_threads: Optional[int] = None):
        if (model_path is None) == (model_content is None):
            raise ValueError("pass exactly one of model_path and model_content")
        self.name = model_path or "<tflite bytes>"
        try:
            self.interpreter = _make_interpreter(model_path, model_content, num_threads)
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{self.name}: cannot load the TFLite model ({error}); pass a "
                             ".tflite file written by tools/export.py") from error
        signatures = self.interpreter.get_signature_list()
        if saved_model.SIGNATURE_KEY not in signatures:
            raise ValueError(f"{self.name}: no '{saved_model.SIGNATURE_KEY}' signature (has "
                             f"{sorted(signatures)}); export it with tools/export.py")
        self.runner = self.interpreter.get_signature_runner(saved_model.SIGNATURE_KEY)
        inputs = self.runner.get_input_details()
        if saved_model.INPUT_IMAGES not in inputs:
            raise ValueError(f"{self.name}: the signature has inputs {sorted(inputs)}, expected "
                             f"'{saved_model.INPUT_IMAGES}'")
        shape = [int(v) for v in inputs[saved_model.INPUT_IMAGES]["shape"]]
        self.batch_size = shape[0]
        self.input_size: Tuple[int, int] = (shape[1], shape[2])
        self.output_names = tuple(name for name in saved_model.SERVING_OUTPUTS
                                  if name in self.runner.get_output_details())

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 `[batch, h, w, 3]` at `input_size` -> {name: `[batch, h, w(, c)]`}, the
        signature's dtypes (float32; int32 class ids)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 [batch, height, width, 3] images, got "
                             f"{images.dtype} {images.shape}")
        if tuple(images.shape[1:3]) != self.input_size:
            raise ValueError(f"{self.name} takes {self.input_size} images, got "
                             f"{tuple(images.shape[1:3])}; resize first (see "
                             "tf_depthseg.export.predict)")
        results: Dict[str, list] = {name: [] for name in self.output_names}
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            if len(chunk) < self.batch_size:  # pad the last chunk to the model's batch
                padding = np.repeat(chunk[-1:], self.batch_size - len(chunk), axis=0)
                outputs = self.runner(**{saved_model.INPUT_IMAGES:
                                         np.concatenate([chunk, padding])})
            else:
                outputs = self.runner(**{saved_model.INPUT_IMAGES: chunk})
            for name in self.output_names:
                results[name].append(np.array(outputs[name][:len(chunk)]))
        return {name: np.concatenate(values) for name, values in results.items()}
