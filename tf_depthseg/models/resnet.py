"""ResNet-18/34/50/101 backbones (He et al. 2016) following the backbone protocol.

`build_resnet(depth, ...)` returns a functional model `[batch, H, W, C] -> {"P1".."P5"}`
(`models.backbones`), C = `input_channels` (3 for one RGB frame in [0, 1]; 3 * n for n stacked
frames, e.g. 6 or 9 for a pose net):

    level  layers                                   channels (18/34 | 50/101)   real stride
    P1     conv 7x7/2 -> BN -> ReLU                 64                         2
    P2     max pool 3x3/2, stage conv2              64 | 256                   4
    P3     stage conv3 (first block strided)        128 | 512                  8 (4 dilated)
    P4     stage conv4                              256 | 1024                 16 (8 dilated)
    P5     stage conv5                              512 | 2048                 32 (16 dilated)

These are exactly Monodepth2's / Hoyer et al.'s encoder features (relu(conv1), layer1..layer4).
Any input size: every strided layer pads symmetrically by (k - 1) / 2 as torchvision does, so
level k has `ceil(size / real stride)` rows and columns and pixel i of a stride-s map is
centred on input pixel s * i, in the main path and the projection shortcut alike.

Choices (where the papers are silent, or implementations differ):
* `version="v1.5"` (default) strides the 3x3 conv of a bottleneck, as torchvision and hence
  Hoyer et al.'s reference code do; `"v1"` strides the first 1x1 conv as He et al. and
  `keras.applications` do (use it with keras.applications' ImageNet weights). Parameter counts
  are identical; basic blocks (18/34) have no 1x1 conv and are the same in both.
* `replace_stride_with_dilation` (torchvision's argument, one flag per stage conv3..conv5):
  a flagged stage keeps its resolution and multiplies the dilation by 2 instead; as in
  torchvision the stage's first block still uses the previous dilation and the later blocks
  the new one. Hoyer et al. ("ResNet101 with dilated (instead of strided) convolutions in the
  last block"): `(False, False, True)`, output stride 16. Unlike torchvision, basic blocks
  accept dilation too (both 3x3 convs of a block use the block's dilation).
* Convolutions have no bias (BN follows each), BN epsilon 1e-5 (torchvision; the epsilon the
  ImageNet weights were trained with, to 1e-8), conv kernels He-normal with fan-out
  (torchvision's init); BN momentum is Keras' default until the task sets it. The BN layers
  are `FusedBatchNormalization` (Keras' layer, trained with TensorFlow's fused kernel: the
  same arithmetic, a faster training step).
* Input normalisation is part of the model: "monodepth2" (default) is `(x - 0.45) / 0.225` on
  every channel (Monodepth2's and Hoyer et al.'s encoder); "caffe" is keras.applications'
  ResNet preprocessing expressed on RGB in [0, 1] (`255 x - ImageNet mean`, per frame; the
  weight copy reverses conv1's input channels, which Keras trained on BGR); None = identity.
* Layer names are keras.applications' (`conv2_block1_1_conv`, `conv4_block23_3_bn`, ...)
  prefixed with the model name, so weights copy by name (`copy_keras_applications_weights`).

ImageNet weights (issue 14's policy; never downloaded, never loaded by tests):
* `weights="imagenet"`: keras.applications' ResNet50/101 `..._notop.h5` file **when it is
  already in Keras' cache** (`$KERAS_HOME/models/`, else `~/.keras/models/` or
  `/tmp/.keras/models/`: `cached_imagenet_weights`) is copied in; when it is not there the
  network keeps its random init and ONE warning line says so and how to fix it (nothing is
  downloaded: the machines this runs on are often offline, and a silent download in a test
  or a training job is worse than a clear line).
* `weights="<file>.h5"` (any name not ending in `.weights.h5`): such a keras.applications
  file given by path, copied the same way.
Both need `version="v1"` and `input_normalization="caffe"` (the graph those weights were
trained in). Dilation does not change kernel shapes, so the dilated network takes them too.
Stacked-frame inputs get conv1's kernel tiled per frame and divided by the number of frames
(Monodepth2). `weights="<file>.weights.h5"` loads weights saved from a model built with the
same arguments (`model.save_weights`). ResNet-18/34 have no keras.applications weights; give
a `.weights.h5` file.

Parameters without the classifier, trainable (convolutions + BN gamma/beta, the figures
torchvision's `parameters()` reports): ResNet-18 11,176,512; ResNet-34 21,284,672;
ResNet-50 23,508,032; ResNet-101 42,500,160 (tests/test_models_param_counts.py derives them).
`count_params()` adds the BN moving statistics (2 per BN channel).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import keras
import numpy as np
from absl import logging

from tf_depthseg import errors
from tf_depthseg.models import backbones
from tf_depthseg.models.batch_norm import FusedBatchNormalization

# depth -> (block type, blocks per stage conv2..conv5)
RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # 3x3 conv channels of stages conv2..conv5
BOTTLENECK_EXPANSION = 4
STEM_CHANNELS = 64
BN_EPSILON = 1e-5
VERSIONS = ("v1", "v1.5")
INPUT_NORMALIZATIONS = ("monodepth2", "caffe", None)
MONODEPTH2_MEAN, MONODEPTH2_STD = 0.45, 0.225
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)  # keras.applications.imagenet_utils, in RGB order
_KERAS_APPLICATIONS = {50: "ResNet50", 101: "ResNet101"}
# keras.applications.resnet: f"{weights_name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
# in the cache subfolder "models" of Keras' home.
_NOTOP_FILE = "resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _kernel_initializer():
    # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
    return keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                              distribution="untruncated_normal")


def apply_resnet_conv_bn(x, filters: int, kernel_size: int, *, strides: int = 1,
                         dilation_rate: int = 1, activation: Optional[str] = "relu", name: str):
    """Conv (no bias) -> BN (epsilon 1e-5) -> optional ReLU, padded as torchvision pads.

    A strided conv pads `dilation * (k - 1) / 2` on every side and then convolves 'valid'
    (Keras' 'same' would pad only bottom/right and shift the samples by one pixel against the
    1x1 strided shortcut); an unstrided conv uses 'same', which is that same symmetric padding.

    `[batch, h, w, c] -> [batch, ceil(h / strides), ceil(w / strides), filters]`.
    """
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(dilation_rate * (kernel_size - 1) // 2,
                                       name=f"{name}_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
                            padding=padding, use_bias=False,
                            kernel_initializer=_kernel_initializer(), name=f"{name}_conv")(x)
    x = FusedBatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def _shortcut(x, out_channels: int, strides: int, *, name: str):
    """Identity, or 1x1 conv + BN when the block changes resolution or width ("_0")."""
    if strides == 1 and x.shape[-1] == out_channels:
        return x
    return apply_resnet_conv_bn(x, out_channels, 1, strides=strides, activation=None,
                                name=f"{name}_0")


def apply_basic_block(x, width: int, *, strides: int = 1, dilation_rate: int = 1, name: str):
    """ResNet-18/34 block: 3x3 (strided) -> 3x3, both dilated, plus shortcut, ReLU.

    `[batch, h, w, c] -> [batch, ceil(h / strides), ceil(w / strides), width]`.
    """
    shortcut = _shortcut(x, width, strides, name=name)
    y = apply_resnet_conv_bn(x, width, 3, strides=strides, dilation_rate=dilation_rate,
                             name=f"{name}_1")
    y = apply_resnet_conv_bn(y, width, 3, dilation_rate=dilation_rate, activation=None,
                             name=f"{name}_2")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def apply_bottleneck_block(x, width: int, *, strides: int = 1, dilation_rate: int = 1,
                           version: str = "v1.5", name: str):
    """ResNet-50/101 block: 1x1 width -> 3x3 width -> 1x1 4*width, plus shortcut, ReLU.

    The stride sits on the 3x3 conv ("v1.5") or the first 1x1 conv ("v1"); the 3x3 conv
    carries the dilation. `[batch, h, w, c] -> [batch, ceil(h/s), ceil(w/s), 4 * width]`.
    """
    out_channels = BOTTLENECK_EXPANSION * width
    shortcut = _shortcut(x, out_channels, strides, name=name)
    stride_1x1, stride_3x3 = (strides, 1) if version == "v1" else (1, strides)
    y = apply_resnet_conv_bn(x, width, 1, strides=stride_1x1, name=f"{name}_1")
    y = apply_resnet_conv_bn(y, width, 3, strides=stride_3x3, dilation_rate=dilation_rate,
                             name=f"{name}_2")
    y = apply_resnet_conv_bn(y, out_channels, 1, activation=None, name=f"{name}_3")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def _normalization_layer(mode, channels: int, name: str):
    if mode == "monodepth2":
        return keras.layers.Rescaling(1.0 / MONODEPTH2_STD, -MONODEPTH2_MEAN / MONODEPTH2_STD,
                                      name=name)
    if channels % 3:
        raise ValueError(f"input_normalization='caffe' needs RGB frames (a multiple of 3 "
                         f"channels); got {channels}.")
    offset = [-mean for mean in CAFFE_MEAN_RGB] * (channels // 3)
    return keras.layers.Rescaling(255.0, offset, name=name)


def build_resnet(depth: int, input_channels: int = 3,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False),
                 version: str = "v1.5", input_normalization: Optional[str] = "monodepth2",
                 weights: Optional[str] = None, name: Optional[str] = None) -> keras.Model:
    """A ResNet backbone (see the module docstring for every choice).

    Args:
      depth: 18, 34, 50 or 101.
      input_channels: C of the input `[batch, H, W, C]` (3 * frames for stacked frames).
      replace_stride_with_dilation: three flags for stages conv3, conv4, conv5.
      version: "v1.5" (stride on the bottleneck's 3x3, torchvision) or "v1" (on its 1x1).
      input_normalization: "monodepth2", "caffe" or None.
      weights: None or "" (random init); "imagenet" (keras.applications' ResNet50/101 file
        from Keras' cache, else random init and one warning line); a keras.applications
        `..._notop.h5` file; or a `.weights.h5` file saved from a model built with the same
        arguments (module docstring).
      name: model name and layer-name prefix; default f"resnet{depth}".
    Returns:
      Model with input "image" `[batch, H, W, input_channels]` (any H, W) and output
      {"P1".."P5"} (channels and strides in the module docstring).
    """
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}.")
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}.")
    if input_normalization not in INPUT_NORMALIZATIONS:
        raise ValueError(f"input_normalization must be one of {INPUT_NORMALIZATIONS}, got "
                         f"{input_normalization!r}.")
    dilate = tuple(bool(flag) for flag in replace_stride_with_dilation)
    if len(dilate) != 3:
        raise ValueError("replace_stride_with_dilation needs one flag per stage conv3, conv4, "
                         f"conv5; got {replace_stride_with_dilation!r}.")
    if int(input_channels) < 1:
        raise ValueError(f"input_channels must be >= 1, got {input_channels}.")
    keras_file = weights == "imagenet" or (bool(weights) and not _is_own_weights_file(weights))
    if keras_file and (version, input_normalization) != ("v1", "caffe"):
        raise errors.ConfigError(
            "weights='imagenet' (or a keras.applications .h5 file) are ResNet v1 weights trained "
            "on caffe-preprocessed input: build with version='v1' and "
            "input_normalization='caffe' (resnet.build_backbone does).")
    if keras_file and depth not in _KERAS_APPLICATIONS:
        raise errors.ConfigError(f"keras.applications has no ImageNet weights for ResNet{depth}; "
                                 "pass weights=<file>.weights.h5 or weights=None.")
    name = name or f"resnet{depth}"
    block_type, blocks_per_stage = RESNET_DEPTHS[depth]

    image = keras.Input((None, None, int(input_channels)), name="image")
    x = image
    if input_normalization is not None:
        x = _normalization_layer(input_normalization, int(input_channels),
                                 f"{name}_normalize")(x)
    x = apply_resnet_conv_bn(x, STEM_CHANNELS, 7, strides=2, name=f"{name}_conv1")
    features = {backbones.level_key(1): x}
    # Max pooling after a ReLU: zero padding equals torchvision's -inf padding.
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name=f"{name}_pool1_pool")(x)

    dilation = 1
    for stage, (width, num_blocks) in enumerate(zip(STAGE_WIDTHS, blocks_per_stage), start=2):
        strides = 1 if stage == 2 else 2
        previous_dilation = dilation
        if stage > 2 and dilate[stage - 3]:
            dilation, strides = dilation * strides, 1
        for block in range(1, num_blocks + 1):
            block_name = f"{name}_conv{stage}_block{block}"
            # torchvision: the first block of a dilated stage keeps the previous dilation.
            block_args = {"strides": strides, "dilation_rate": previous_dilation}
            if block > 1:
                block_args = {"strides": 1, "dilation_rate": dilation}
            if block_type == "basic":
                x = apply_basic_block(x, width, name=block_name, **block_args)
            else:
                x = apply_bottleneck_block(x, width, version=version, name=block_name,
                                           **block_args)
        features[backbones.level_key(stage)] = x
    model = keras.Model(image, features, name=name)

    if weights == "imagenet":
        weights = cached_imagenet_weights(depth)
        if weights is None:
            logging.warning(
                "%s: keras.applications' ImageNet weights are not in Keras' cache (%s): random "
                "init. To start from ImageNet, put %s there or pass its path as the weights.",
                name, " or ".join(_keras_cache_folders()), _NOTOP_FILE.format(depth=depth))
            return model
    if weights:
        if not os.path.isfile(weights):
            raise errors.BadInputError(f"{name}: weights file {weights!r} does not exist; give "
                                       "a .weights.h5 file of this backbone, a keras.applications"
                                       " ResNet50/101 ..._notop.h5 file, or 'imagenet'.")
        try:
            if _is_own_weights_file(weights):
                model.load_weights(weights)
            else:
                reference = getattr(keras.applications, _KERAS_APPLICATIONS[depth])(
                    weights=weights, include_top=False)
                copy_keras_applications_weights(model, reference)
        except (ValueError, OSError, KeyError) as error:  # wrong network, not HDF5, truncated
            raise errors.BadInputError(
                f"{name}: cannot load weights {weights!r} ({error}). A .weights.h5 file must "
                f"come from this backbone (ResNet-{depth}, same input channels and version); "
                "other .h5 files must be keras.applications' ResNet50/101 ..._notop.h5."
            ) from error
    return model


def _is_own_weights_file(path: str) -> bool:
    """Keras 3 `save_weights` files end in .weights.h5; other .h5 files are keras.applications'."""
    return path.endswith(".weights.h5")


def _keras_cache_folders():
    """Where keras.applications caches its files (keras.src.backend.config: KERAS_HOME, else
    ~/.keras, or /tmp/.keras when the home folder is not writable)."""
    if "KERAS_HOME" in os.environ:
        homes = [os.environ["KERAS_HOME"]]
    else:
        homes = [os.path.join(os.path.expanduser("~"), ".keras"), os.path.join("/tmp", ".keras")]
    return [os.path.join(home, "models") for home in homes]


def cached_imagenet_weights(depth: int) -> Optional[str]:
    """Path of keras.applications' ResNet{depth} ImageNet file (no top) if it is already in
    Keras' cache, else None. Never downloads."""
    if depth not in _KERAS_APPLICATIONS:
        return None
    for folder in _keras_cache_folders():
        path = os.path.join(folder, _NOTOP_FILE.format(depth=depth))
        if os.path.isfile(path):
            return path
    return None


def copy_keras_applications_weights(model: keras.Model, reference: keras.Model) -> None:
    """Copies a `keras.applications.ResNet50/101(include_top=False)` into `model`, by name.

    `model` must be `build_resnet(50 or 101, version="v1", input_normalization="caffe")` (any
    dilation and input channels, any name). Conv biases (Keras' convs have them, ours do not)
    fold into the following BN exactly: BN(z + b) with mean m equals BN(z) with mean m - b.
    conv1's input channels are reversed (Keras trained on BGR) and, for n stacked frames,
    tiled n times and divided by n (Monodepth2's multi-frame initialisation).

    Raises:
      ValueError: a layer of `model` has no counterpart in `reference` or another shape.
    """
    prefix = f"{model.name}_"
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        base = layer.name[len(prefix):-len("_conv")]  # e.g. "conv2_block1_1"
        try:
            conv = reference.get_layer(f"{base}_conv")
            bn_ref = reference.get_layer(f"{base}_bn")
        except ValueError as error:
            raise ValueError(f"{reference.name} has no layer {base}_conv/_bn for "
                             f"{layer.name}; is it a ResNet of the same depth?") from error
        kernel, bias = (np.asarray(w) for w in conv.get_weights())
        if base == "conv1":
            frames = layer.kernel.shape[2] // 3
            kernel = np.tile(kernel[:, :, ::-1, :], (1, 1, frames, 1)) / frames
        if tuple(kernel.shape) != tuple(layer.kernel.shape):
            raise ValueError(f"{layer.name}: kernel {tuple(layer.kernel.shape)} but "
                             f"{conv.name} has {kernel.shape}.")
        layer.kernel.assign(kernel)
        gamma, beta, mean, variance = bn_ref.get_weights()
        model.get_layer(f"{prefix}{base}_bn").set_weights([gamma, beta, mean - bias, variance])


# Backbone names: f"resnet{depth}{suffix}", suffix -> replace_stride_with_dilation.
OUTPUT_STRIDE_SUFFIXES = {
    "": (False, False, False),  # output stride 32
    "_dilated": (False, False, True),  # 16: Hoyer et al.'s "dilated ... last block"
    "_os8": (False, True, True),  # 8 (DeepLab's denser setting)
}


def _named_backbones():
    return {f"resnet{depth}{suffix}": (depth, flags) for depth in RESNET_DEPTHS
            for suffix, flags in OUTPUT_STRIDE_SUFFIXES.items()}


def backbone_names() -> Sequence[str]:
    """Every name `build_backbone` accepts ("resnet18", "resnet101_dilated", ...)."""
    return tuple(_named_backbones())


def build_backbone(backbone: str, input_channels: int = 3, weights: Optional[str] = None,
                   name: Optional[str] = None) -> keras.Model:
    """A backbone by name, with the ImageNet policy of the module docstring.

    Args:
      backbone: f"resnet{18|34|50|101}" (output stride 32), + "_dilated" (last stage dilated,
        output stride 16, Hoyer et al.) or + "_os8" (last two stages dilated).
      input_channels: 3 for one RGB frame in [0, 1], 3 * n for n stacked frames.
      weights: None or "" = random init (the encoder of Monodepth2/Hoyer et al.: v1.5 graph,
        `(x - 0.45) / 0.225` input); "imagenet" = the v1 graph with caffe input normalisation,
        keras.applications' weights copied in when Keras' cache has them (ResNet-50/101), else
        random init and one warning line (ResNet-18/34 have none: also one warning line); a
        keras.applications `..._notop.h5` path (v1/caffe graph, copied); a `.weights.h5` path
        saved from the same backbone (v1.5 graph, loaded).
      name: model name and layer prefix; default f"resnet{depth}".
    Returns:
      `build_resnet`'s model: "image" `[batch, H, W, input_channels]` -> {"P1".."P5"}.
    Raises:
      errors.ConfigError: an unknown backbone name.
    """
    if backbone not in _named_backbones():
        raise errors.ConfigError(f"Unknown backbone {backbone!r}; valid: "
                                 f"{', '.join(backbone_names())}.")
    depth, dilation = _named_backbones()[backbone]
    weights = weights or None
    keras_weights = weights == "imagenet" or (weights is not None
                                              and not _is_own_weights_file(weights))
    if weights == "imagenet" and depth not in _KERAS_APPLICATIONS:
        logging.warning("%s: keras.applications has no ImageNet weights for ResNet-%d: random "
                        "init. Pass a .weights.h5 file of this backbone to start from weights.",
                        name or backbone, depth)
        weights, keras_weights = None, False
    return build_resnet(depth, input_channels=input_channels,
                        replace_stride_with_dilation=dilation,
                        version="v1" if keras_weights else "v1.5",
                        input_normalization="caffe" if keras_weights else "monodepth2",
                        weights=weights, name=name)
