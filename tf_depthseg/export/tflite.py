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
* "float16": float16 weights, dequantised to float32 on CPU (~2x smaller),
* "int8": full-integer quantisation: int8 weights and activations (per-channel weight
  scales), calibrated on representative images (`representative_images`: uint8 images at
  the export size, e.g. from the run's training records, `exporter.representative_images`).
  The input stays the raw uint8 image (no scale to apply: a uint8 -> float cast, the /255 and
  a QUANTIZE op start the graph; the calibration always includes a 0..255 ramp image
  (`input_range_image`), so the input quantiser's scale is exactly 1/255 and loses no
  level), and every output is dequantised inside the model (float32 metres, as the other
  variants). Layers listed by `int8_float_layers` stay float: the soft-classification head,
  whose softmax spreads over B bins (int8 probabilities have a step of 1/256, as large as a
  bin's typical probability at B = 80) and whose log10 depth goes through 10^x.
Only TFLite builtin ops are allowed (no Flex/Select TF ops), so the file runs on the plain
TFLite / LiteRT runtime.
"""

from __future__ import annotations

import re
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_depthseg.export import saved_model

QUANTIZE_CHOICES = ("none", "dynamic", "float16", "int8")
# Choices that need representative images (calibration of the activation ranges).
CALIBRATED_CHOICES = ("int8",)
# Images the int8 calibration uses by default (export.tflite_representative_examples). The
# ranges are min/max over all of them, so more images only widen them; 100 is the size the
# TFLite documentation suggests and takes ~10 s at 240x320 on 2 cores.
DEFAULT_REPRESENTATIVE_EXAMPLES = 100


def input_range_image(image_size: Sequence[int]) -> np.ndarray:
    """uint8 `[h, w, 3]` holding every value 0..255 (a ramp along the rows, repeated): with it
    in the calibration set the input quantiser spans exactly [0, 1] (scale 1/255), so each of
    the 256 input levels keeps its own int8 level whatever range the real images cover."""
    height, width = int(image_size[0]), int(image_size[1])
    ramp = np.arange(height * width, dtype=np.int64) % 256
    return np.repeat(ramp.reshape(height, width, 1), 3, axis=-1).astype(np.uint8)


def int8_float_layers(model: keras.Model) -> List[str]:
    """Names of the layers an int8 export keeps in float: soft-classification heads (layers
    with `num_bins`, `min_depth` and `max_depth`, e.g. `layers.DepthBinsHead`), nested models
    searched too. See the module docstring for why."""
    names, stack = [], list(model.layers)
    while stack:
        layer = stack.pop(0)
        if all(hasattr(layer, key) for key in ("num_bins", "min_depth", "max_depth")):
            names.append(layer.name)
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return names


class RepresentativeImagesError(ValueError):
    """The representative images of an int8 conversion are unusable (none, wrong shape)."""


def _representative_dataset(images: Iterable[np.ndarray], image_size, name: str):
    """The converter's calibration generator over uint8 images `[h, w, 3]` (or `[1, h, w,
    3]`) at `image_size`, the input-range ramp first. Checks every image."""
    def generate():
        yield {saved_model.INPUT_IMAGES: input_range_image(image_size)[None]}
        count = 0
        for image in images:
            image = np.asarray(image)
            if image.ndim == 3:
                image = image[None]
            if image.dtype != np.uint8 or image.shape != (1, *image_size, 3):
                raise RepresentativeImagesError(f"{name}: representative images must be uint8 [{image_size[0]}"
                                 f", {image_size[1]}, 3], got {image.dtype} {image.shape}")
            count += 1
            yield {saved_model.INPUT_IMAGES: image}
        if not count:
            raise RepresentativeImagesError(f"{name}: no representative images; the int8 calibration needs "
                             "at least one")
    return generate


def _tensor_names(content: bytes) -> List[str]:
    """Names of every tensor of a .tflite model (op outputs carry the TF op names)."""
    interpreter = _make_interpreter(None, content, None, delegates=False)
    return [detail["name"] for detail in interpreter.get_tensor_details()]


def op_types(content: bytes) -> Dict[str, Dict[str, int]]:
    """{op type: {dtype of its first input: count}} of a .tflite model, e.g. {"CONV_2D":
    {"int8": 38}, "EXP": {"float32": 1}}: which ops of an int8 model run in float."""
    interpreter = _make_interpreter(None, content, None, delegates=False)
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    result: Dict[str, Dict[str, int]] = {}
    # The interpreter lists its ops only through this private accessor (TF 2.21, LiteRT).
    for op in interpreter._get_ops_details():  # pylint: disable=protected-access
        inputs = [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors]
        dtype = np.dtype(inputs[0]["dtype"]).name if inputs else "none"
        counts = result.setdefault(op["op_name"], {})
        counts[dtype] = counts.get(dtype, 0) + 1
    return result


def first_quantizer(content: bytes) -> Optional[dict]:
    """{"scale", "zero_point", "dtype"} of the first QUANTIZE op of a .tflite model (in an int8
    export: the one that turns the cast uint8 image, 0..255 in float, into int8; scale 1.0
    means every input level is kept), None without one."""
    interpreter = _make_interpreter(None, content, None, delegates=False)
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    for op in interpreter._get_ops_details():  # pylint: disable=protected-access
        if op["op_name"] == "QUANTIZE":
            detail = tensors[op["outputs"][0]]
            scale, zero_point = detail["quantization"]
            return {"scale": float(scale), "zero_point": int(zero_point),
                    "dtype": np.dtype(detail["dtype"]).name}
    return None


def io_quantization(content: bytes) -> Dict[str, Dict[str, dict]]:
    """{"inputs"/"outputs": {name: {"dtype", "shape", "scale", "zero_point"}}} of the
    serving signature (scale 0 = not quantised: float, or the raw uint8 image)."""
    interpreter = _make_interpreter(None, content, None, delegates=False)
    runner = interpreter.get_signature_runner(saved_model.SIGNATURE_KEY)

    def describe(details):
        result = {}
        for name, detail in sorted(details.items()):
            scales = detail["quantization_parameters"]["scales"]
            zero_points = detail["quantization_parameters"]["zero_points"]
            result[name] = {"dtype": np.dtype(detail["dtype"]).name,
                            "shape": [int(v) for v in detail["shape"]],
                            "scale": float(scales[0]) if len(scales) else 0.0,
                            "zero_point": int(zero_points[0]) if len(zero_points) else 0}
        return result

    return {"inputs": describe(runner.get_input_details()),
            "outputs": describe(runner.get_output_details())}


def convert_to_tflite(model: keras.Model, image_size: Sequence[int],
                      quantize: str = "none",
                      module: Optional[saved_model.ServingModule] = None,
                      representative_images: Optional[Iterable[np.ndarray]] = None,
                      float_layers: Optional[Sequence[str]] = None) -> bytes:
    """Converts the serving computation at `image_size` to a TFLite flatbuffer.

    Args:
      model: the served network (ignored when `module` is given).
      image_size: (height, width) of the TFLite input.
      quantize: one of QUANTIZE_CHOICES.
      module: an existing `ServingModule` to convert (reuses its frozen graph).
      representative_images: "int8" only (required): uint8 images `[h, w, 3]` at
        `image_size` to calibrate the activation ranges on (iterated once).
      float_layers: "int8" only: names of layers whose ops stay float (default
        `int8_float_layers(model)`; () quantises everything the int8 kernels support).
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
    if quantize in CALIBRATED_CHOICES and representative_images is None:
        raise ValueError(f"tflite quantize={quantize!r} needs representative images to "
                         "calibrate on (e.g. from the run's training records)")
    if module is None or module.image_size != image_size:
        module = saved_model.ServingModule(model, image_size)
    function = module.fixed_size_function(batch_size=1)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("dynamic", "float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = _representative_dataset(
            representative_images, image_size, model.name)
        # int8 kernels first; ops without one stay float between (de)quantize ops.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        if float_layers is None:
            float_layers = int8_float_layers(model)
    try:
        if quantize != "int8" or not float_layers:
            return converter.convert()
        # Selective quantisation (what tf.lite.experimental.QuantizationDebugger does, in one
        # pass): calibrate, then quantise with the float layers' ops on the deny list.
        converter._experimental_calibrate_only = True  # pylint: disable=protected-access
        calibrated = converter.convert()
        # Op names carry the layer's name scope, which tracing may suffix ("head_1/Softmax").
        scopes = re.compile("|".join(rf"(^|/){re.escape(name)}(_\d+)?/"
                                     for name in float_layers))
        nodes = [name for name in _tensor_names(calibrated) if scopes.search(name)]
        # The ops that produce the serving outputs carry the function's output names
        # ("PartitionedCall:0"), not their layer's: without these the head's last ops (its
        # exp, the uncertainty slice) would be quantised, depth linearly (int8 EXP exists).
        nodes += [detail["name"] for detail in _make_interpreter(
            None, calibrated, None, delegates=False).get_output_details()]
        from tensorflow.lite.python import convert as lite_convert  # no public equivalent
        return lite_convert.mlir_quantize(calibrated, denylisted_nodes=nodes)
    except RepresentativeImagesError:
        raise
    except Exception as error:  # ConverterError and friends carry the MLIR diagnostics
        raise _conversion_error(error, image_size, quantize) from error


def _conversion_error(error, image_size, quantize) -> ValueError:
    first_lines = "\n".join(str(error).strip().splitlines()[:6])
    return ValueError(f"TFLite conversion failed at image size {image_size} with quantize="
                      f"{quantize!r}: {first_lines}")


def _make_interpreter(model_path: Optional[str], model_content: Optional[bytes],
                      num_threads: Optional[int], delegates: bool = True):
    """LiteRT's interpreter when installed (the successor package), else tf.lite's.

    `delegates=False`: the builtin kernels only (no XNNPACK), so every op of the file stays
    visible (tensor names, op listings)."""
    try:
        from ai_edge_litert import interpreter as litert  # type: ignore
    except ImportError:
        litert = None
    module = litert or tf.lite
    kwargs = {} if delegates else {"experimental_op_resolver_type": (
        (litert or tf.lite.experimental).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)}
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to ai_edge_litert; it still works in 2.21.
        warnings.simplefilter("ignore")
        return module.Interpreter(model_path=model_path, model_content=model_content,
                                  num_threads=num_threads, **kwargs)


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
        image_input = inputs[saved_model.INPUT_IMAGES]
        if np.dtype(image_input["dtype"]) != np.uint8:
            raise ValueError(f"{self.name}: the '{saved_model.INPUT_IMAGES}' input is "
                             f"{np.dtype(image_input['dtype']).name}, expected uint8 images; "
                             "export it with tools/export.py")
        shape = [int(v) for v in image_input["shape"]]
        self.batch_size = shape[0]
        self.input_size: Tuple[int, int] = (shape[1], shape[2])
        outputs = self.runner.get_output_details()
        self.output_names = tuple(name for name in saved_model.SERVING_OUTPUTS
                                  if name in outputs)
        # Integer outputs with a scale are quantised values (x = scale * (q - zero_point));
        # our int8 exports dequantise inside the model, files with int8 outputs are read too.
        self._dequantize = {}
        for name in self.output_names:
            params = outputs[name]["quantization_parameters"]
            if (np.issubdtype(np.dtype(outputs[name]["dtype"]), np.integer)
                    and len(params["scales"]) == 1 and params["scales"][0] > 0):
                self._dequantize[name] = (float(params["scales"][0]),
                                          int(params["zero_points"][0]))

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        """uint8 `[batch, h, w, 3]` at `input_size` -> {name: `[batch, h, w(, c)]`}, the
        signature's dtypes (float32; int32 class ids; quantised outputs dequantised to
        float32)."""
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
                value = np.array(outputs[name][:len(chunk)])
                if name in self._dequantize:
                    scale, zero_point = self._dequantize[name]
                    value = (scale * (value.astype(np.float32) - zero_point)).astype(np.float32)
                results[name].append(value)
        return {name: np.concatenate(values) for name, values in results.items()}
