"""The backbone protocol: what every encoder gives the decoders, pose nets and heads.

A **backbone** is a Keras functional model with one input, an image-like tensor
`[batch, H, W, C]` (C = 3 for one RGB frame in [0, 1], 3 * n for n stacked frames), and a
**dict of features keyed by level**, "P1" .. "P5":

    "P<k>": the feature map at the *end* of level k, i.e. the output of the last layer before
            the network's k+1-th stride-2 step. Nominal stride 2^k: `[batch, ceil(H / 2^k),
            ceil(W / 2^k), channels_k]` for an undilated backbone.

A backbone exposes the levels it has, shallowest to deepest (the SUW encoder stops at P2, the
ResNets have P1..P5); `deepest_level` names the deepest, which pose nets and the first decoder
block read. Any input size works: every strided layer pads so that level k has exactly
`ceil(size / real_stride_k)` rows and columns.

Why levels and not real strides as keys (the choice this module documents):
* A backbone that replaces strides with dilation (Hoyer et al.: "ResNet101 with dilated
  (instead of strided) convolutions in the last block", output stride 16) has two stages at
  real stride 16. Keys by real stride would collide; keys by level keep both, and a U-Net
  decoder still pairs its k-th upsampling block with "P<k>" by position.
* A decoder written for the undilated network keeps working on the dilated one: the keys are
  the same, only the sizes change (a decoder that upsamples must follow the real sizes, e.g.
  resize to the skip feature's size, not assume x2).
So a key names the **nominal** level; its **real** stride is `feature_strides(backbone)`
(e.g. {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 16} for a ResNet with a dilated last stage),
measured from the model's own shape inference, never stored beside it.

Backbones are plain functional models, so one backbone can be called by several networks
(shared weights), saved, and restored like any other model. `apply_backbone` places a
backbone's layers directly into the caller's graph (the same layer objects, hence the same
variables) instead of nesting it as one sub-model; see there why.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence

import keras

LEVELS = ("P1", "P2", "P3", "P4", "P5")
# Input side used to measure real strides of a dynamic-size backbone: divisible by every
# nominal stride, and large enough that ceil(probe / stride) differs for each power of two.
_PROBE_SIZE = 1024


def level_key(level: int) -> str:
    """"P<level>" for level 1..5."""
    key = f"P{int(level)}"
    if key not in LEVELS:
        raise ValueError(f"Backbone levels are 1..{len(LEVELS)}, got {level}.")
    return key


def level_of(key: str) -> int:
    """The level number of a feature key ("P3" -> 3)."""
    if key not in LEVELS:
        raise ValueError(f"{key!r} is not a backbone feature key; keys are {LEVELS}.")
    return int(key[1:])


def backbone_levels(backbone: keras.Model) -> Sequence[str]:
    """The feature keys of a backbone, shallowest first; checks it follows the protocol.

    Raises:
      ValueError: the model has more than one input, its input is not `[batch, H, W, C]`, or
        its output is not a non-empty dict keyed by "P1".."P5".
    """
    inputs = getattr(backbone, "inputs", None)  # unbuilt Sequential models raise, so getattr
    if inputs is None or len(inputs) != 1 or len(inputs[0].shape) != 4:
        found = [tuple(x.shape) for x in inputs] if inputs else "none"
        raise ValueError(f"Backbone {backbone.name!r} must be a functional model with one input "
                         f"[batch, H, W, C]; it has inputs {found}.")
    outputs = backbone.output
    if not isinstance(outputs, Mapping) or not outputs or not set(outputs) <= set(LEVELS):
        found = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise ValueError(f"Backbone {backbone.name!r} must output a dict keyed by {LEVELS} "
                         f"(tf_depthseg.models.backbones); it outputs {found}.")
    return tuple(key for key in LEVELS if key in outputs)


def is_backbone(model: keras.Model) -> bool:
    """True when `model` follows the protocol (`backbone_levels` would not raise)."""
    try:
        backbone_levels(model)
    except ValueError:
        return False
    return True


def deepest_level(backbone: keras.Model) -> str:
    """The key of the deepest feature (the one pose nets and the first decoder block use)."""
    return backbone_levels(backbone)[-1]


def input_channels(backbone: keras.Model) -> int:
    """C of the backbone's `[batch, H, W, C]` input."""
    backbone_levels(backbone)
    return int(backbone.inputs[0].shape[-1])


def feature_channels(backbone: keras.Model) -> Dict[str, int]:
    """Channels of each feature, e.g. {"P1": 64, ..., "P5": 2048} for ResNet-50."""
    levels = backbone_levels(backbone)
    return {key: int(backbone.output[key].shape[-1]) for key in levels}


def feature_strides(backbone: keras.Model) -> Dict[str, int]:
    """Real stride of each feature (a power of two), measured by symbolic shape inference.

    The probe input is the model's own static size, or 1024 x 1024 when it is dynamic; the
    stride of a feature is the power of two s with `ceil(size / s)` equal to its size (no
    tensor is computed). With dilation this is smaller than the nominal 2^k of "P<k>".
    """
    levels = backbone_levels(backbone)
    _, height, width, channels = backbone.inputs[0].shape
    height, width = height or _PROBE_SIZE, width or _PROBE_SIZE
    specs = backbone.compute_output_spec(keras.KerasTensor((1, height, width, channels)))
    strides = {}
    for key in levels:
        feature_size = tuple(specs[key].shape[1:3])
        candidates = [2 ** j for j in range(11)
                      if (-(-height // 2 ** j), -(-width // 2 ** j)) == feature_size]
        if not candidates:
            raise ValueError(f"Backbone {backbone.name!r} feature {key} has size {feature_size} "
                             f"for input {height}x{width}: not ceil(input / 2^j) for any j.")
        strides[key] = candidates[0]
    return strides


def apply_backbone(backbone: keras.Model, inputs) -> Dict[str, keras.KerasTensor]:
    """Applies a backbone to a symbolic input by calling its own layers on it (inlined).

    The result is the backbone's feature dict in the caller's graph. Unlike `backbone(inputs)`,
    which nests the backbone as a single sub-model, the backbone's layers (the very same layer
    objects, so the same variables, shared with every other user of the backbone) become
    layers of the model being built; sub-models inside the backbone (e.g. the shared SUW
    encoder body) stay nested. Why: a network's checkpoint names its variables by their place
    in its layer list, so inlining keeps the SUW pose nets' checkpoints identical to those
    they had before backbones existed (old runs restore), and `model.get_layer` finds the
    backbone's layers by name.

    Args:
      backbone: a model following the protocol.
      inputs: a `keras.Input` `[batch, H, W, C]`, C = the backbone's input channels. (Keras
        rebuilds a graph on any other tensor from fresh inputs, which would disconnect it;
        to apply a backbone further down a graph, call it, nested: `backbone(x)`.)
    Returns:
      {"P<k>": symbolic feature} for the backbone's levels.
    """
    levels = backbone_levels(backbone)
    # A KerasTensor's producing layer is only reachable through `_keras_history`.
    history = getattr(inputs, "_keras_history", None)
    if history is None or not isinstance(history[0], keras.layers.InputLayer):
        raise ValueError(f"apply_backbone({backbone.name!r}, ...) needs a keras.Input; call "
                         "the backbone instead (`backbone(x)`) to nest it after other layers.")
    expected = input_channels(backbone)
    if inputs.shape[-1] != expected:
        raise ValueError(f"Backbone {backbone.name!r} takes {expected} input channels; got a "
                         f"tensor with {inputs.shape[-1]}. Build the backbone with "
                         f"input_channels={inputs.shape[-1]}.")
    inlined = keras.models.clone_model(backbone, input_tensors=inputs,
                                       clone_function=lambda layer: layer)
    return {key: inlined.output[key] for key in levels}
