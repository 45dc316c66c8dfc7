"""The serving computation of a model and its SavedModel with a `serving_default` signature.

Serving signature (`tf.saved_model.load(export_dir).signatures["serving_default"]`, also shown
by `saved_model_cli show --dir export_dir --all`); the outputs are those the model predicts:

    inputs:
      images                  uint8   [batch, height, width, 3]   RGB, any batch, any height/width
    outputs (depth models: model output common.OUT_DEPTH):
      depth                   float32 [batch, height, width, 1]   metres, at the caller's size
      uncertainty             float32 [batch, height, width, 1]   std of the predicted depth-bin
                                                                  distribution in log10 depth
                                                                  (models that output it)
    outputs (disparity models: model output common.disparity_key(0), e.g. self-supervised
    depth; they also output depth, converted by their `DisparityToDepth` layer):
      disparity               float32 [batch, height, width, 1]   sigmoid disparity in [0, 1]
                                                                  (larger = closer)
    outputs (segmentation models: model output common.OUT_SEMANTIC_LOGITS, C classes):
      semantic_class_ids      int32   [batch, height, width]      argmax class (train id)
      semantic_probabilities  float32 [batch, height, width, C]   softmax of the logits

A model that predicts both gets all of them. Everything a deploying user would otherwise have
to reproduce runs inside the signature:

1. the model's input normalisation: uint8 -> float32 RGB in [0, 1] (what the training
   pipelines feed the networks),
2. with a fixed export size (`image_size=(h, w)`, the run's `config.data.image_size`), images
   of another size are resized to (h, w) bilinearly with half-pixel centres and no
   antialiasing (the resize of the training and evaluation pipelines, so exported predictions
   match the evaluation), and the outputs resized back to the caller's size the same way --
   for segmentation the LOGITS are resized (bilinear) and then turned into probabilities and
   class ids, the usual way segmentation networks are upsampled; for disparity models the
   DISPARITY is resized and then turned into depth (Monodepth2's evaluation convention, so
   served and evaluated depths agree); with `image_size=None` the
   network runs at the caller's size (the SUW encoder-decoder and the hourglass take any size),
3. the network in inference mode (batch-norm moving statistics).

The weights are frozen into the graph as constants (`freeze_function`): the export is a
self-contained TensorFlow program without variables (`variables/` stays empty), loadable
with plain `tf.saved_model.load` and `saved_model_cli` without tf_depthseg or Keras, but not
meant for fine-tuning (train from the run's checkpoint for that).
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from tf_depthseg import common

SIGNATURE_KEY = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # "serving_default"
INPUT_IMAGES = "images"
OUTPUT_DEPTH = common.OUT_DEPTH  # "depth"
OUTPUT_UNCERTAINTY = common.OUT_UNCERTAINTY  # "uncertainty"
OUTPUT_DISPARITY = "disparity"  # served from the model output common.disparity_key(0)
OUTPUT_CLASS_IDS = "semantic_class_ids"
OUTPUT_PROBABILITIES = "semantic_probabilities"
SERVING_OUTPUTS = (OUTPUT_DEPTH, OUTPUT_UNCERTAINTY, OUTPUT_DISPARITY, OUTPUT_CLASS_IDS,
                   OUTPUT_PROBABILITIES)
MODEL_DISPARITY = common.disparity_key(0)
# The model outputs the signature is made of (the segmentation outputs both come from the
# logits).
SERVED_MODEL_OUTPUTS = (common.OUT_DEPTH, common.OUT_UNCERTAINTY, MODEL_DISPARITY,
                        common.OUT_SEMANTIC_LOGITS)

Size = Tuple[int, int]


def check_image_size(image_size: Optional[Sequence[int]]) -> Optional[Size]:
    """`(height, width)` as a tuple of positive ints, or None (run at the caller's size)."""
    if image_size is None:
        return None
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be (height, width) with positive values, got "
                         f"{image_size!r}")
    return size


def check_serving_model(model: keras.Model) -> None:
    """Raises ValueError unless `model` maps one `[batch, H, W, 3]` input to a dict with
    OUT_DEPTH and/or OUT_SEMANTIC_LOGITS (the contract of every tf_depthseg network that can
    be served), the logits with a known number of classes."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    if len(model.inputs) != 1 or model.inputs[0].shape[-1] != 3:
        raise ValueError(f"model {model.name!r} must take one [batch, height, width, 3] image "
                         f"input, got inputs {[tuple(i.shape) for i in model.inputs]}")
    outputs = model.output
    if not isinstance(outputs, dict) or not (
            OUTPUT_DEPTH in outputs or common.OUT_SEMANTIC_LOGITS in outputs):
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(f"model {model.name!r} must return a dict with '{OUTPUT_DEPTH}' "
                         f"(common.OUT_DEPTH) or '{common.OUT_SEMANTIC_LOGITS}' "
                         f"(common.OUT_SEMANTIC_LOGITS) to be served; got {keys}")
    if common.OUT_SEMANTIC_LOGITS in outputs and num_classes_of(model) is None:
        raise ValueError(f"model {model.name!r}: '{common.OUT_SEMANTIC_LOGITS}' must have a "
                         "known number of classes (last dimension), got "
                         f"{tuple(outputs[common.OUT_SEMANTIC_LOGITS].shape)}")


def num_classes_of(model: keras.Model) -> Optional[int]:
    """C of the model's `[B, H, W, C]` semantic logits (None without segmentation output)."""
    logits = model.output.get(common.OUT_SEMANTIC_LOGITS) if isinstance(
        model.output, dict) else None
    return None if logits is None else logits.shape[-1]


def serving_output_names(model: keras.Model) -> Tuple[str, ...]:
    """The signature outputs this model provides (in SERVING_OUTPUTS order): depth and
    uncertainty when it predicts them, class ids and probabilities when it has logits."""
    outputs = model.output
    names = [key for key in (OUTPUT_DEPTH, OUTPUT_UNCERTAINTY) if key in outputs]
    if MODEL_DISPARITY in outputs:
        names.append(OUTPUT_DISPARITY)
    if common.OUT_SEMANTIC_LOGITS in outputs:
        names += [OUTPUT_CLASS_IDS, OUTPUT_PROBABILITIES]
    return tuple(names)


def resize_if_needed(images: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize (half-pixel centres, no antialiasing) of `[batch, h, w, c]` to `size`;
    no-op when the size already matches.

    The check is static when the shape is known (no resize op in fixed-size graphs such as the
    TFLite one) and a `tf.cond` otherwise, so matching sizes are passed through bit-exactly.
    """
    if isinstance(size, (tuple, list)) and tuple(images.shape[1:3]) == tuple(size):
        return images
    target = tf.convert_to_tensor(size, tf.int32)
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], target))
    return tf.cond(same, lambda: images,
                   lambda: tf.image.resize(images, target, method="bilinear"))


def disparity_converter(model: keras.Model):
    """The layer of a disparity model that turns its disparity into its depth output (one with
    a `disparity_to_depth` method, e.g. the SDE task's `DisparityToDepth`), or None."""
    if not isinstance(model.output, dict) or MODEL_DISPARITY not in model.output:
        return None
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if callable(getattr(layer, "disparity_to_depth", None)):
            return layer
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return None


def network_outputs(model: keras.Model, inputs: tf.Tensor, image_size: Optional[Size] = None,
                    keys: Optional[Sequence[str]] = None) -> Dict[str, tf.Tensor]:
    """The model's outputs `keys` for float images, at the images' own size.

    The computation both the serving signature and `tools/evaluate.py` run: with `image_size`
    the images are resized to it for the network and each output is resized back, except the
    depth of a disparity model, which is computed from the resized disparity (Monodepth2).

    Args:
      model: a network with a dict output (input RGB in [0, 1]).
      inputs: float `[batch, height, width, 3]` in [0, 1].
      image_size: (h, w) the network runs at, or None for the input's own size.
      keys: model outputs to return (default: those of SERVED_MODEL_OUTPUTS it has).
    Returns:
      {key: float32 `[batch, height, width, c]`}.
    """
    if keys is None:
        keys = [key for key in SERVED_MODEL_OUTPUTS if key in model.output]
    static_size = tuple(inputs.shape[1:3])
    input_size = static_size if None not in static_size else tf.shape(inputs)[1:3]
    if image_size is not None:
        inputs = resize_if_needed(inputs, image_size)
    outputs = model(inputs, training=False)
    converter = disparity_converter(model) if image_size is not None else None
    result = {}
    for key in keys:
        if key == common.OUT_DEPTH and converter is not None:
            disparity = resize_if_needed(tf.cast(outputs[MODEL_DISPARITY], tf.float32),
                                         input_size)
            result[key] = tf.cast(converter.disparity_to_depth(disparity), tf.float32)
            continue
        value = tf.cast(outputs[key], tf.float32)
        if image_size is not None:
            value = resize_if_needed(value, input_size)
        result[key] = value
    return result


def semantic_outputs(logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`[B, H, W, C]` logits -> {class ids int32 `[B, H, W]`, probabilities `[B, H, W, C]`}."""
    return {OUTPUT_CLASS_IDS: tf.argmax(logits, axis=-1, output_type=tf.int32),
            OUTPUT_PROBABILITIES: tf.nn.softmax(logits, axis=-1)}


def serve(model: keras.Model, images: tf.Tensor,
          image_size: Optional[Size] = None) -> Dict[str, tf.Tensor]:
    """The serving computation: uint8 images -> the signature outputs at the input size.

    Args:
      model: a served network (`check_serving_model`; input RGB in [0, 1]).
      images: uint8 `[batch, height, width, 3]`.
      image_size: (h, w) the network runs at, or None for the input's own size.
    Returns:
      {name: tensor} for `serving_output_names(model)` (see the module docstring).
    """
    if images.dtype != tf.uint8:
        raise ValueError(f"serving images must be uint8, got {images.dtype.name}")
    outputs = network_outputs(model, tf.cast(images, tf.float32) / 255.0, image_size)
    if MODEL_DISPARITY in outputs:
        outputs[OUTPUT_DISPARITY] = outputs.pop(MODEL_DISPARITY)
    logits = outputs.pop(common.OUT_SEMANTIC_LOGITS, None)
    if logits is not None:
        outputs.update(semantic_outputs(logits))
    return outputs


def freeze_function(function: tf.types.experimental.ConcreteFunction):
    """The concrete function with its variables folded in as constants.

    Returns a Python callable with the same structured outputs. Why freeze: the exported
    program is self-contained (no variables to restore), and saving it is several times
    faster: `tf.saved_model.save` otherwise traces save/restore ops for every one of the
    ~300 variables of the SUW network, and the TFLite converter would freeze them again.
    """
    # TF has no public TF2 freezing API; the TFLite converter uses this same function.
    from tensorflow.python.framework import convert_to_constants
    frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    structure = function.structured_outputs

    def call(images):
        return tf.nest.pack_sequence_as(structure, frozen(images))

    return call


class ServingModule(tf.Module):
    """A `tf.Module` with a model's serving function, its weights frozen into the graph.

    Attributes:
      serve: `tf.function` with the serving signature (see the module docstring); the
        SavedModel exports it as `serving_default`.
      image_size: the fixed network size, or None.
      output_names: the signature's outputs.
    """

    def __init__(self, model: keras.Model, image_size: Optional[Sequence[int]] = None,
                 name: str = "serving"):
        super().__init__(name=name)
        check_serving_model(model)
        self.image_size = check_image_size(image_size)
        self.output_names = serving_output_names(model)
        image_size = self.image_size
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_IMAGES)
        traced = tf.function(lambda images: serve(model, images, image_size))
        # Closures, not attributes: attributes would be tracked and saved as objects too.
        frozen = freeze_function(traced.get_concrete_function(spec))
        self._frozen = frozen
        self.serve = tf.function(frozen, input_signature=[spec])

    def fixed_size_function(self, batch_size: int = 1) -> tf.types.experimental.ConcreteFunction:
        """The serving function for `[batch_size, h, w, 3]` inputs at the export size (the
        static shapes TFLite needs; the converter's shape inference then folds the size
        checks and the padding of the dynamic graph). Requires `image_size`."""
        if self.image_size is None:
            raise ValueError("a fixed-size serving function needs image_size (TFLite models "
                             "have static shapes); set data.image_size")
        spec = tf.TensorSpec([batch_size, *self.image_size, 3], tf.uint8, name=INPUT_IMAGES)
        return tf.function(self._frozen).get_concrete_function(spec)


def save_serving_model(model: keras.Model, export_dir: str,
                       image_size: Optional[Sequence[int]] = None) -> ServingModule:
    """Writes the SavedModel with the `serving_default` signature into `export_dir`.

    Not atomic by itself: `tf_depthseg.export.exporter.export_model` calls it on a
    temporary folder and renames. Returns the module (for a TFLite conversion of the same
    computation).
    """
    module = ServingModule(model, image_size)
    signature = module.serve.get_concrete_function()
    tf.saved_model.save(module, export_dir, signatures={SIGNATURE_KEY: signature})
    return module


def load_serving_function(export_dir: str):
    """The `serving_default` function of a SavedModel (plain `tf.saved_model.load`).

    Returns (loaded object, signature function); keep the loaded object alive while calling.
    Raises ValueError naming the folder when it is not a SavedModel with that signature.
    """
    if not tf.saved_model.contains_saved_model(export_dir):
        raise ValueError(f"{export_dir}: not a SavedModel folder (no saved_model.pb). Pass the "
                         "--output_dir of tools/export.py, or a .tflite file.")
    loaded = tf.saved_model.load(export_dir)
    if SIGNATURE_KEY not in loaded.signatures:
        raise ValueError(f"{export_dir}: the SavedModel has no '{SIGNATURE_KEY}' signature "
                         f"(it has {sorted(loaded.signatures)}); export it with "
                         "tools/export.py.")
    return loaded, loaded.signatures[SIGNATURE_KEY]


def signature_description(output_names: Sequence[str], image_size: Optional[Size],
                          num_classes: Optional[int] = None) -> dict:
    """The signature as JSON-able facts (for metadata.json); `num_classes` is C of the
    segmentation outputs (needed when they are among `output_names`)."""
    described = {
        OUTPUT_DEPTH: {"dtype": "float32", "shape": [-1, -1, -1, 1], "units": "metres"},
        OUTPUT_UNCERTAINTY: {"dtype": "float32", "shape": [-1, -1, -1, 1],
                             "units": "std of the depth-bin distribution in log10(metres)"},
        OUTPUT_DISPARITY: {"dtype": "float32", "shape": [-1, -1, -1, 1],
                           "meaning": "sigmoid disparity in [0, 1], larger = closer; depth = "
                                      "1 / (1/max + (1/min - 1/max) disparity)"},
        OUTPUT_CLASS_IDS: {"dtype": "int32", "shape": [-1, -1, -1],
                           "meaning": "class id (argmax of the logits)"},
        OUTPUT_PROBABILITIES: {"dtype": "float32", "shape": [-1, -1, -1, num_classes or -1],
                               "meaning": "class probabilities (softmax of the logits)"},
    }
    return {
        "key": SIGNATURE_KEY,
        "inputs": {INPUT_IMAGES: {"dtype": "uint8", "shape": [-1, -1, -1, 3],
                                  "meaning": "RGB images, any batch and size"}},
        "outputs": {name: described[name] for name in output_names},
        "preprocessing": ("uint8 / 255 -> RGB in [0, 1]; " + (
            f"bilinear resize (half-pixel, no antialias) to {list(image_size)} when the input "
            "size differs, outputs resized back to the input size" if image_size else
            "the network runs at the input size")),
    }


def directory_size(path: str) -> int:
    """Bytes of all files under `path`."""
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
    return total

