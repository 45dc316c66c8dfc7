"""Building blocks of the networks: conv-BN, depthwise separable, SAM, inception (SUW); the
Monodepth2 / Hoyer et al. blocks (PyTorch-initialised and reflection-padded convs, ASPP, the
PAD-Net distillation message); and the few layers that need a class (dynamic-size padding,
cropping and resizing, the depth-bins head).

Blocks are plain functions `apply_<block>(x, ..., name)` that create uniquely named Keras layers
(`f"{name}_conv"`, `f"{name}_bn"`, ...). Tensors are `[batch, height, width, channels]`.

Activation choice of the SUW blocks (the SUW tables list "convbn" only): every conv-BN is
followed by ReLU, except where a block feeds a softmax or a regression output. ReLU (not ReLU6)
keeps the nets plain and TFLite-friendly. Convolutions followed by BN have no bias (BN's beta
replaces it). The SUW blocks' BN layers are `batch_norm.FusedBatchNormalization` (Keras' layer and
variables, TensorFlow's fused kernel in training: BN's separate element-wise ops were ~45 % of
the SUW train step's busy time, docs/suw_speed.md).

The Hoyer et al. blocks reproduce the reference code's PyTorch modules (facts from
`lhoyer/improving_segmentation_with_selfsupervised_depth` models/model_parts.py and
models/monodepth_layers.py, torchvision's DeepLabV3 ASPP): PyTorch's default Conv2d
initialisation (`torch_default_conv`), BN epsilon 1e-5; BN momentum is Keras' default, as in
`models.resnet`, until a task sets it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from tf_depthseg import depth_bins
from tf_depthseg.models import batch_norm

_PACKAGE = "tf_depthseg"
TORCH_BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
def apply_conv_bn(x, filters: int, kernel_size: int, *, strides: int = 1,
                  dilation_rate: int = 1, activation: Optional[str] = "relu", name: str):
    """"convbn": Conv2D (no bias, 'same' padding) -> BatchNorm -> activation.

    Args:
      x: `[batch, height, width, c_in]`.
      activation: "relu" or None (e.g. before a softmax).
    Returns:
      `[batch, ceil(height / s), ceil(width / s), filters]`.
    """
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
                            padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = batch_norm.FusedBatchNormalization(name=f"{name}_bn")(x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def torch_default_conv(filters: int, kernel_size: int, in_channels: int, *, name: str,
                       activation=None, use_bias: bool = True, padding: str = "same",
                       dilation_rate: int = 1, dtype=None) -> keras.layers.Conv2D:
    """Conv2D initialised as PyTorch's nn.Conv2d: kernel and bias uniform in +-1/sqrt(fan_in).

    (kaiming_uniform_ with a = sqrt(5): bound = sqrt(6 / (1 + 5)) * sqrt(3 / fan_in).) The
    networks Monodepth2 and Hoyer et al. train from start there; their learning rates assume it.
    """
    limit = (in_channels * kernel_size * kernel_size) ** -0.5
    conv_class = DilatedConv2D if dilation_rate != 1 else keras.layers.Conv2D
    return conv_class(
        filters, kernel_size, padding=padding, dilation_rate=dilation_rate,
        activation=activation, use_bias=use_bias,
        kernel_initializer=keras.initializers.RandomUniform(-limit, limit),
        bias_initializer=keras.initializers.RandomUniform(-limit, limit), name=name, dtype=dtype)


def apply_reflect_conv3x3(x, filters: int, *, name: str, dtype=None):
    """Monodepth2's Conv3x3: reflection padding by 1, then a 3x3 'valid' conv with bias.

    Reflection (not zero) padding avoids dark borders in the predicted disparity. Needs
    height and width >= 2. `[batch, h, w, c] -> [batch, h, w, filters]`.
    """
    in_channels = int(x.shape[-1])
    x = ReflectionPadding2D(1, name=f"{name}_pad")(x)
    return torch_default_conv(filters, 3, in_channels, padding="valid", name=f"{name}_conv",
                              dtype=dtype)(x)


def apply_elu_block(x, filters: int, *, batch_norm: bool = False, name: str):
    """Monodepth2's ConvBlock: reflect-padded 3x3 conv (bias) -> optional BN -> ELU.

    `[batch, h, w, c] -> [batch, h, w, filters]`.
    """
    x = apply_reflect_conv3x3(x, filters, name=name)
    if batch_norm:
        x = keras.layers.BatchNormalization(epsilon=TORCH_BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("elu", name=f"{name}_elu")(x)


def _apply_torch_conv_bn_relu(x, filters: int, kernel_size: int, *, dilation_rate: int = 1,
                              name: str):
    """Conv (no bias, zero 'same' padding, PyTorch init) -> BN (eps 1e-5) -> ReLU."""
    x = torch_default_conv(filters, kernel_size, int(x.shape[-1]), use_bias=False,
                           dilation_rate=dilation_rate, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=TORCH_BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def apply_aspp(x, filters: int = 256, rates: Sequence[int] = (6, 12, 18), *,
               image_pooling: bool = True, dropout: float = 0.5, name: str):
    """Atrous spatial pyramid pooling (DeepLabv3; torchvision's module, as Hoyer et al. use it).

    Branches, each conv (no bias) -> BN -> ReLU with `filters` channels: a 1x1 conv; one 3x3
    conv per rate with that dilation (zero 'same' padding); with `image_pooling`, global
    average pooling -> 1x1 conv, broadcast back to the input size. Concatenated, then 1x1 conv
    (no bias) -> BN -> ReLU -> dropout (0.5 in torchvision's ASPP; active in training only).

    Args:
      x: `[batch, h, w, c]`.
    Returns:
      `[batch, h, w, filters]`.
    """
    rates = [int(rate) for rate in rates]
    if min(rates, default=1) < 1:
        raise ValueError(f"ASPP rates must be >= 1, got {rates}.")
    branches = [_apply_torch_conv_bn_relu(x, filters, 1, name=f"{name}_1x1")]
    for rate in rates:
        branches.append(_apply_torch_conv_bn_relu(x, filters, 3, dilation_rate=rate,
                                                  name=f"{name}_rate{rate}"))
    if image_pooling:
        pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
        pooled = _apply_torch_conv_bn_relu(pooled, filters, 1, name=f"{name}_pool")
        branches.append(ResizeToReference(name=f"{name}_pool_broadcast")([pooled, x]))
    y = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    y = _apply_torch_conv_bn_relu(y, filters, 1, name=f"{name}_project")
    if dropout > 0:
        y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
    return y


def apply_pad_message(x, *, name: str):
    """PAD-Net's attention-guided message from one task's features to the other's.

    `conv3x3(x) * sigmoid(conv3x3_att(x))`, both convs without bias, zero padded, as many
    channels as x (Hoyer et al.'s SelfAttention). The attention kernel starts at zero (as in
    the reference), so the gate starts at 0.5 everywhere; the feature conv has PyTorch's
    default init. The receiving decoder adds the message to its own features.
    `[batch, h, w, c] -> [batch, h, w, c]`.
    """
    channels = int(x.shape[-1])
    features = torch_default_conv(channels, 3, channels, use_bias=False,
                                  name=f"{name}_conv")(x)
    gate = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                               kernel_initializer="zeros", activation="sigmoid",
                               name=f"{name}_attention")(x)
    return keras.layers.Multiply(name=f"{name}_gated")([features, gate])


def apply_separable_conv_bn(x, filters: int, kernel_size: int = 3, *, strides: int = 1,
                            dilation_rate: int = 1, name: str):
    """"convbn ..., dw" (Xception/MobileNet style): depthwise kxk -> BN -> ReLU, then
    pointwise 1x1 to `filters` -> BN -> ReLU. Stride and dilation act on the depthwise conv.

    Args:
      x: `[batch, height, width, c_in]`.
    Returns:
      `[batch, ceil(height / s), ceil(width / s), filters]`.
    """
    x = keras.layers.DepthwiseConv2D(kernel_size, strides=strides, dilation_rate=dilation_rate,
                                     padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = batch_norm.FusedBatchNormalization(name=f"{name}_dwbn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_dwrelu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pwconv")(x)
    x = batch_norm.FusedBatchNormalization(name=f"{name}_pwbn")(x)
    return keras.layers.Activation("relu", name=f"{name}_pwrelu")(x)


def apply_sam(x, filters: int, dilations: Sequence[int], *, name: str):
    """Stacked atrous multi-scale module (AMNet, Du et al. 2019).

    3x3 conv-BN-ReLU layers applied in sequence with the given dilations (e.g. 1, 2, 2, 4, 4,
    8), then two 1x1 conv-BN-ReLU layers. All layers have `filters` channels (AMNet keeps the
    width constant; SUW Table 1 lists 32 output channels).

    Args:
      x: `[batch, height, width, c_in]`.
      dilations: one dilation rate per 3x3 layer; at least one.
    Returns:
      `[batch, height, width, filters]`.
    """
    dilations = [int(d) for d in dilations]
    if not dilations or min(dilations) < 1:
        raise ValueError(f"SAM needs at least one dilation, all >= 1; got {dilations}.")
    for index, rate in enumerate(dilations, start=1):
        x = apply_conv_bn(x, filters, 3, dilation_rate=rate, name=f"{name}_atrous{index}_d{rate}")
    x = apply_conv_bn(x, filters, 1, name=f"{name}_proj1")
    return apply_conv_bn(x, filters, 1, name=f"{name}_proj2")


def apply_inception(x, out_channels: int, inter_channels: int, kernel_sizes: Sequence[int], *,
                    name: str):
    """Inception block of Chen et al. 2016 (SUW supplement Fig. 3 / Table 2).

    Four branches concatenated, each producing out_channels / 4 channels:
    Conv1 = 1x1; Conv2..Conv4 = 1x1 reduction to `inter_channels` ("Inter Dim") then a kxk
    conv with k from `kernel_sizes`. Every conv is conv-BN-ReLU.

    Args:
      x: `[batch, height, width, c_in]`.
      kernel_sizes: the three kernel sizes of Conv2..Conv4, e.g. (3, 5, 7).
    Returns:
      `[batch, height, width, out_channels]`.
    """
    if out_channels % 4:
        raise ValueError(f"inception out_channels must be divisible by 4, got {out_channels}.")
    if len(kernel_sizes) != 3:
        raise ValueError(f"inception needs 3 kernel sizes (Conv2..Conv4), got {kernel_sizes}.")
    branch_channels = out_channels // 4
    branches = [apply_conv_bn(x, branch_channels, 1, name=f"{name}_conv1")]
    for index, size in enumerate(kernel_sizes, start=2):
        reduced = apply_conv_bn(x, inter_channels, 1, name=f"{name}_conv{index}_reduce")
        branches.append(apply_conv_bn(reduced, branch_channels, int(size),
                                      name=f"{name}_conv{index}_{size}x{size}"))
    return keras.layers.Concatenate(name=f"{name}_concat")(branches)


# ----------------------------------------------------------------------------------------------
# Layers with behaviour of their own
# ----------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=_PACKAGE)
class DilatedConv2D(keras.layers.Conv2D):
    """Conv2D (stride 1, 'same' zero padding) that skips the kernel taps which only ever see
    the padding: a tap `(i - k // 2) * dilation` rows off centre reads rows outside the map for
    every output row once that offset reaches the map's height (width alike). Those taps
    contribute zero to the output, and their kernel gradient is zero, so the convolution with
    the kernel cut to the reachable taps (SAME padding recomputed for the smaller kernel) is
    the same function with the same gradients, for less work.

    Where it matters: the ASPP's rates 6, 12, 18 on small maps. On Monodepth2's 192x640 input,
    ResNet-18's stride-32 map is 6 x 20: every rate keeps only the middle row (1x3 kernels),
    the largest of the session-8 gains of the SDE step (docs/hoyer_speed.md). On the paper
    network's 16 x 32 map (256x512, stride 16) rate 18 keeps one row. The kernel variable keeps its full shape (checkpoints, parameter counts); with
    unknown (dynamic) height or width, other strides or padding the whole kernel runs.
    `[batch, h, w, c] -> [batch, h, w, filters]`.
    """

    def convolution_op(self, inputs, kernel):
        height, width = inputs.shape[1], inputs.shape[2]
        if (self.padding == "same" and tuple(self.strides) == (1, 1) and height and width
                and self.data_format == "channels_last"):
            kernel = kernel[_reachable_taps(kernel.shape[0], self.dilation_rate[0], height),
                            _reachable_taps(kernel.shape[1], self.dilation_rate[1], width)]
        return super().convolution_op(inputs, kernel)


def _reachable_taps(size: int, dilation: int, extent: int) -> slice:
    """The centred taps of an odd `size` kernel with `dilation` whose offset stays inside a
    map of `extent` pixels (|offset| <= extent - 1); all taps for an even size."""
    if size % 2 == 0:
        return slice(None)
    centre = (size - 1) // 2
    keep = min(centre, (int(extent) - 1) // int(dilation))
    return slice(centre - keep, centre + keep + 1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Pads height and width at the bottom/right up to a multiple of `multiple`.

    A layer (not an op) because the padding depends on the run-time size. Padding at the
    bottom/right keeps pixel (0, 0) fixed, so a feature map at stride s covers input rows
    [s*i, s*i + s) exactly, for any input size. SYMMETRIC padding (edge mirrored) avoids an
    artificial black border; the padded rows are cropped away again at the output.

    Input `[batch, height, width, channels]` -> `[batch, ceil(h/m)*m, ceil(w/m)*m, channels]`.
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}.")
        self.multiple = int(multiple)

    def call(self, inputs):
        height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        return tf.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple
        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


def _upsample_crop(x, reference, factor: int, interpolation: str):
    """Resizes `x` by `factor` (half-pixel centres) and crops to `reference`'s height/width."""
    if factor != 1 and interpolation == "nearest":
        # Equal to tf.image.resize's nearest at an integer factor (row i -> i // factor), and
        # XLA-compilable with its gradient (XLA has no ResizeNearestNeighborGrad).
        x = tf.repeat(tf.repeat(x, factor, axis=1), factor, axis=2)
    elif factor != 1:
        size = tf.shape(x)[1:3] * factor
        # tf.image.resize returns float32 for every method but nearest: keep bf16/fp16.
        x = tf.cast(tf.image.resize(x, size, method=interpolation), x.dtype)
    return x[:, :tf.shape(reference)[1], :tf.shape(reference)[2], :]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UpsampleCropToReference(keras.layers.Layer):
    """Upsamples by an integer factor, then crops to the size of a reference tensor.

    The inverse of `PadToMultiple` + stride `factor`: a stride-f map of a bottom/right padded
    input upsampled by exactly f (tf.image.resize, half-pixel centres) lies on the padded input
    grid, and cropping the bottom/right returns the input's exact size and alignment.

    Call with `[x, reference]`: x `[batch, h, w, c]`, reference `[batch, H, W, any]` with
    H <= f*h, W <= f*w. Returns `[batch, H, W, c]`.
    """

    def __init__(self, factor: int = 1, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        if int(factor) < 1:
            raise ValueError(f"factor must be >= 1, got {factor}.")
        self.factor = int(factor)
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        return _upsample_crop(x, reference, self.factor, self.interpolation)

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor,
                "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by `padding` on every side by reflection (the edge row is not
    repeated: PyTorch's ReflectionPad2d). Each side must be larger than `padding`.

    `[batch, h, w, c] -> [batch, h + 2 p, w + 2 p, c]`.
    """

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(padding) < 0:
            raise ValueError(f"padding must be >= 0, got {padding}.")
        self.padding = int(padding)

    def call(self, inputs):
        p = self.padding
        return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else size + 2 * self.padding
        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResizeToReference(keras.layers.Layer):
    """Resizes `x` to the height and width of a reference tensor.

    A 1 x 1 map is broadcast (what any interpolation of a single pixel gives, without the
    resize op: the ASPP image-pooling branch); otherwise `tf.image.resize` with
    `interpolation` and half-pixel centres (PyTorch's `align_corners=False`).

    Call with `[x, reference]`: x `[batch, h, w, c]`, reference `[batch, H, W, any]`.
    Returns `[batch, H, W, c]`.
    """

    def __init__(self, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        if x.shape[1] == 1 and x.shape[2] == 1:
            target = tf.concat([tf.shape(x)[:1], size, tf.shape(x)[3:]], axis=0)
            return tf.broadcast_to(x, target)
        return tf.cast(tf.image.resize(x, size, method=self.interpolation), x.dtype)

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DepthBinsHead(keras.layers.Layer):
    """Soft-classification output: softmax over log10-depth bins -> depth and uncertainty.

    Holds the bin centres of Eq. 1 (`depth_bins.bin_centres_log10`, derived from its config,
    so they round-trip through get_config). Depth is `10 ** sum_i p_i c_i` (probability-weighted
    mean in log10 space, the space of the bins and of the loss); uncertainty is the std of the
    bin distribution in log10 depth, `sqrt(sum_i p_i (c_i - mean)^2)`.

    Call with `[logits, reference]`:
      logits: `[batch, h, w, num_bins]` at stride `upsample_factor` of the (padded) input.
      reference: `[batch, H, W, any]`, the network input (gives the full-resolution size).
    Returns a tuple:
      probs `[batch, h, w, num_bins]`, depth_low `[batch, h, w, 1]`,
      depth `[batch, H, W, 1]`, uncertainty `[batch, H, W, 1]`.
    The full-resolution maps upsample the log10 mean and the std bilinearly (half-pixel
    centres) by `upsample_factor` and crop to H x W, so they align with the input exactly.
    """

    def __init__(self, num_bins: int, min_depth: float, max_depth: float,
                 upsample_factor: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.num_bins = int(num_bins)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.upsample_factor = int(upsample_factor)
        self.centres = depth_bins.bin_centres_log10(self.num_bins, self.min_depth,
                                                      self.max_depth)

    def call(self, inputs):
        logits, reference = inputs
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        centres = tf.constant(self.centres, tf.float32)
        mean_log10 = tf.reduce_sum(probs * centres, axis=-1, keepdims=True)
        variance = tf.reduce_sum(probs * tf.square(centres - mean_log10), axis=-1, keepdims=True)
        # The epsilon keeps sqrt differentiable when the distribution collapses to one bin.
        std_log10 = tf.sqrt(tf.maximum(variance, 0.0) + 1e-12)
        full = _upsample_crop(tf.concat([mean_log10, std_log10], axis=-1), reference,
                              self.upsample_factor, "bilinear")
        depth_low = depth_bins.depth_from_log10(mean_log10)
        depth = depth_bins.depth_from_log10(full[..., :1])
        return probs, depth_low, depth, full[..., 1:]

    def compute_output_shape(self, input_shapes):
        logits_shape, reference_shape = input_shapes
        low = tuple(logits_shape[:3])
        high = (logits_shape[0], reference_shape[1], reference_shape[2])
        return (low + (self.num_bins,), low + (1,), high + (1,), high + (1,))

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins, "min_depth": self.min_depth,
                "max_depth": self.max_depth, "upsample_factor": self.upsample_factor}
