"""The serving computation of a depth model and its SavedModel with a `serving_default` signature.

Serving signature (`tf.saved_model.load(export_dir).signatures["serving_default"]`, also shown
by `saved_model_cli show --dir export_dir --all`):

    inputs:
      images        uint8   [batch, height, width, 3]   RGB, any batch, any height/width
    outputs:
      depth         float32 [batch, height, width, 1]   metres, at the caller's image size
      uncertainty   float32 [batch, height, width, 1]   std of the predicted depth-bin
                                                        distribution in log10 depth (only for
                                                        models with a soft-classification head)

Everything a deploying user would otherwise have to reproduce runs inside the signature:

1. the model's input normalisation: uint8 -> float32 RGB in [0, 1] (what the training
   pipelines feed the networks),
2. with a fixed export size (`image_size=(h, w)`, from `config.export.image_size`), images of
   another size are resized to (h, w) bilinearly with half-pixel centres and no antialiasing
   (the resize of the training and evaluation pipelines, so exported predictions match the
   evaluation), and the outputs are resized back to the caller's size the same way;
   with `image_size=None` the network runs at the caller's size (the SUW encoder-decoder and
   the hourglass take any size),
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
SERVING_OUTPUTS = (OUTPUT_DEPTH, OUTPUT_UNCERTAINTY)

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


def check_depth_model(model: keras.Model) -> None:
    """Raises ValueError unless `model` maps one `[batch, H, W, 3]` input to a dict with
    OUT_DEPTH (the contract of every tf_depthseg depth network)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    if len(model.inputs) != 1 or model.inputs[0].shape[-1] != 3:
        raise ValueError(f"model {model.name!r} must take one [batch, height, width, 3] image "
                         f"input, got inputs {[tuple(i.shape) for i in model.inputs]}")
    outputs = model.output
    if not isinstance(outputs, dict) or OUTPUT_DEPTH not in outputs:
        raise ValueError(f"model {model.name!r} must return a dict with '{OUTPUT_DEPTH}' "
                         f"(tf_depthseg.common.OUT_DEPTH); got {type(outputs).__name__}")


def serving_output_names(model: keras.Model) -> Tuple[str, ...]:
    """The signature outputs this model provides: depth, and uncertainty when it has one."""
    return tuple(key for key in SERVING_OUTPUTS if key in model.output)


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


def serve_depth(model: keras.Model, images: tf.Tensor,
                image_size: Optional[Size] = None) -> Dict[str, tf.Tensor]:
    """The serving computation: uint8 images -> depth (and uncertainty) at the input size.

    Args:
      model: a depth network (input RGB in [0, 1], output dict with OUT_DEPTH and optionally
        OUT_UNCERTAINTY, both `[batch, h, w, 1]`).
      images: uint8 `[batch, height, width, 3]`.
      image_size: (h, w) the network runs at, or None for the input's own size.
    Returns:
      {"depth": float32 `[batch, height, width, 1]` metres,
       "uncertainty": float32 `[batch, height, width, 1]` (if the model has it)}.
    """
    if images.dtype != tf.uint8:
        raise ValueError(f"serving images must be uint8, got {images.dtype.name}")
    inputs = tf.cast(images, tf.float32) / 255.0
    input_size = tf.shape(images)[1:3]
    if image_size is not None:
        inputs = resize_if_needed(inputs, image_size)
    outputs = model(inputs, training=False)
    result = {}
    for key in serving_output_names(model):
        value = tf.cast(outputs[key], tf.float32)
        if image_size is not None:
            static_size = tuple(images.shape[1:3])
            value = resize_if_needed(value, static_size if None not in static_size
                                     else input_size)
        result[key] = value
    return result


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


class DepthServingModule(tf.Module):
    """A `tf.Module` with a depth model's serving function, its weights frozen into the graph.

    Attributes:
      serve: `tf.function` with the serving signature (see the module docstring); the
        SavedModel exports it as `serving_default`.
      image_size: the fixed network size, or None.
      output_names: the signature's outputs.
    """

    def __init__(self, model: keras.Model, image_size: Optional[Sequence[int]] = None,
                 name: str = "depth_serving"):
        super().__init__(name=name)
        check_depth_model(model)
        self.image_size = check_image_size(image_size)
        self.output_names = serving_output_names(model)
        image_size = self.image_size
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_IMAGES)
        traced = tf.function(lambda images: serve_depth(model, images, image_size))
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
                             "have static shapes); set export.image_size")
        spec = tf.TensorSpec([batch_size, *self.image_size, 3], tf.uint8, name=INPUT_IMAGES)
        return tf.function(self._frozen).get_concrete_function(spec)


def save_serving_model(model: keras.Model, export_dir: str,
                       image_size: Optional[Sequence[int]] = None) -> DepthServingModule:
    """Writes the SavedModel with the `serving_default` signature into `export_dir`.

    Not atomic by itself: `tf_depthseg.export.exporter.export_depth_model` calls it on a
    temporary folder and renames. Returns the module (for a TFLite conversion of the same
    computation).
    """
    module = DepthServingModule(model, image_size)
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


def signature_description(output_names: Sequence[str], image_size: Optional[Size]) -> dict:
    """The signature as JSON-able facts (for metadata.json)."""
    outputs = {OUTPUT_DEPTH: {"dtype": "float32", "shape": [-1, -1, -1, 1], "units": "metres"}}
    if OUTPUT_UNCERTAINTY in output_names:
        outputs[OUTPUT_UNCERTAINTY] = {
            "dtype": "float32", "shape": [-1, -1, -1, 1],
            "units": "std of the depth-bin distribution in log10(metres)"}
    return {
        "key": SIGNATURE_KEY,
        "inputs": {INPUT_IMAGES: {"dtype": "uint8", "shape": [-1, -1, -1, 3],
                                  "meaning": "RGB images, any batch and size"}},
        "outputs": outputs,
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

