"""SUW-Learn encoder-decoder (Ren et al. 2020, supplement Table 1).

Layout (channels at the end; s = stride relative to the input):

    image [H, W, 3]
      -> PadToMultiple(4)                      bottom/right, so every stride divides exactly
      -> encoding block 1, first convbn        3x3, 32, s2        (the "stem": own per network)
      -> encoder body (a nested keras.Model, shared with the pose / object-motion nets):
           block 1: convbn 3x3 64                                  -> 64  @ 1/2
           block 2: [dw 3x3 64] x3, dw 3x3 128 s2                  -> 128 @ 1/4
           block 3: [dw 3x3 128] x3, dw 3x3 256                    -> 256 @ 1/4
           block 4: [dw 3x3 32 d2] x12, dw 3x3 256                 -> 256 @ 1/4
           block 5: dw 3x3 256, convbn 1x1 128                     -> 128 @ 1/4
      -> decoding block 1: concat(block5, block4) -> convbn 3x3 32 x2      32 @ 1/4
      -> decoding block 2: concat(dec1, block3)   -> convbn 3x3 32 x2      32 @ 1/4
      -> decoding block 3: concat(dec2, block2)   -> SAM (32 channels)     32 @ 1/4
      -> output: convbn 3x3 B (no ReLU), softmax, weighted sum of log10 bin centres

"dw" rows are depthwise 3x3 (+BN+ReLU) then pointwise 1x1 to the listed channels (+BN+ReLU);
the first row of block 4 maps 256 -> 32 in its pointwise conv and its last row 32 -> 256.

Choices where the text is silent:
* U-Net concatenation (Fig. 1 is missing from the text): every decoding block concatenates
  its input with one encoder output at the same 1/4 resolution, deepest first (block 4 into
  decoding block 1, block 3 into 2, block 2 into the SAM), mirroring U-Net's pairing of deep
  decoder stages with deep encoder stages. Block 1 (1/2 resolution) is not concatenated: the
  decoder never leaves 1/4 resolution.
* ReLU after every BN except the output convbn (its outputs are logits). No residuals.
* Sizes not divisible by 4 (KITTI 375x1242): the input is padded at the bottom/right to a
  multiple of 4 (SYMMETRIC), so the 1/4 maps are ceil(H/4) x ceil(W/4) and their pixel (i, j)
  covers input pixels [4i, 4i+4) x [4j, 4j+4) (half-pixel convention, intrinsics scaled by
  exactly 1/4 via `geometry.intrinsics.scale_intrinsics`; the last row/column reaches into the
  padding). OUT_DEPTH is the log10 mean upsampled x4 (bilinear, half-pixel) and cropped to
  exactly H x W.
* Defaults B = 80, alpha = 1 m, beta = 80 m (KITTI's 80 m cap); the training configs set them.

As a backbone (`models.backbones` protocol), the encoder is `build_suw_backbone`: its own stem
on any number of input channels followed by the shared body, with features "P1" = block 1
(stride 2, 64 channels) and "P2" = block 5 (stride 4, 128 channels), the last output of each
level. Blocks 2-4 also sit at stride 4, so they stay internal block keys of the body (the
decoder above reads them by those keys); the protocol has one key per level.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from tf_depthseg import common
from tf_depthseg.models import backbones, layers

OUTPUT_STRIDE = 4
STEM_CHANNELS = 32  # encoding block 1, first convbn
ENCODER_BODY_SUFFIX = "encoder_body"
# Keys of the encoder body's feature dict: per Table 1 block. Four of the five blocks share
# stride 4, so level keys ("P2") would not tell them apart; the backbone exposes the last block
# of each level under its level key (BACKBONE_LEVELS).
ENCODER_BLOCKS = ("block1", "block2", "block3", "block4", "block5")
BACKBONE_LEVELS = {backbones.level_key(1): "block1", backbones.level_key(2): "block5"}
ENCODER_CHANNELS = {"block1": 64, "block2": 128, "block3": 256, "block4": 256, "block5": 128}
DECODER_CHANNELS = 32
DEFAULT_NUM_BINS = 80
DEFAULT_MIN_DEPTH = 1.0
DEFAULT_MAX_DEPTH = 80.0
DEFAULT_SAM_DILATIONS = (1, 2, 2, 4, 4, 8)


def apply_suw_stem(x, *, name: str):
    """First layer of encoding block 1: convbn 3x3, 32, s2. Not shared (input channels differ
    between the depth net (3) and the pose nets (3 frames x 3)).

    `[batch, H, W, c] -> [batch, ceil(H/2), ceil(W/2), 32]`.
    """
    return layers.apply_conv_bn(x, STEM_CHANNELS, 3, strides=2, name=name)


def build_suw_encoder_body(name: str = f"suw_{ENCODER_BODY_SUFFIX}") -> keras.Model:
    """Table 1 encoder after its first layer, as a standalone model that networks share.

    Input `[batch, h, w, 32]` (the stem output at 1/2 resolution). Output dict:
    "block1" `[batch, h, w, 64]`, "block2" `[batch, ceil(h/2), ceil(w/2), 128]`, "block3" 256,
    "block4" 256, "block5" 128 channels, all at `ceil(h/2) x ceil(w/2)`.
    """
    stem_features = keras.Input((None, None, STEM_CHANNELS), name=f"{name}_input")
    features = {}
    x = layers.apply_conv_bn(stem_features, 64, 3, name=f"{name}_b1_conv2")
    features["block1"] = x
    for row in range(1, 4):
        x = layers.apply_separable_conv_bn(x, 64, name=f"{name}_b2_dw{row}")
    x = layers.apply_separable_conv_bn(x, 128, strides=2, name=f"{name}_b2_dw4")
    features["block2"] = x
    for row in range(1, 4):
        x = layers.apply_separable_conv_bn(x, 128, name=f"{name}_b3_dw{row}")
    x = layers.apply_separable_conv_bn(x, 256, name=f"{name}_b3_dw4")
    features["block3"] = x
    for row in range(1, 13):
        x = layers.apply_separable_conv_bn(x, 32, dilation_rate=2, name=f"{name}_b4_dw{row}")
    x = layers.apply_separable_conv_bn(x, 256, name=f"{name}_b4_dw13")
    features["block4"] = x
    x = layers.apply_separable_conv_bn(x, 256, name=f"{name}_b5_dw1")
    x = layers.apply_conv_bn(x, 128, 1, name=f"{name}_b5_conv2")
    features["block5"] = x
    return keras.Model(stem_features, features, name=name)


def find_encoder_body(model_or_body: keras.Model) -> keras.Model:
    """The shared encoder body: `model_or_body` itself or the one nested in a SUW depth model,
    SUW backbone (`build_suw_backbone`) or SUW pose / object-motion net."""
    if model_or_body.name.endswith(ENCODER_BODY_SUFFIX):
        return model_or_body
    bodies = [layer for layer in model_or_body.layers
              if isinstance(layer, keras.Model) and layer.name.endswith(ENCODER_BODY_SUFFIX)]
    if len(bodies) != 1:
        raise ValueError(f"Model {model_or_body.name!r} does not contain exactly one SUW encoder "
                         f"body (a nested model named '*{ENCODER_BODY_SUFFIX}'); pass a model "
                         "from build_suw_encoder_decoder or build_suw_encoder_body.")
    return bodies[0]


def build_suw_backbone(input_channels: int = 3, body: Optional[keras.Model] = None,
                       stem_name: Optional[str] = None,
                       name: str = "suw_backbone") -> keras.Model:
    """The Table 1 encoder as a backbone: own stem on `input_channels`, then the (shared) body.

    Args:
      input_channels: C of the input (3 for an image, 3 * frames for a pose net).
      body: the encoder body to share (`find_encoder_body` of a depth model); None builds a
        new one named f"{name}_{ENCODER_BODY_SUFFIX}".
      stem_name: layer-name prefix of the stem; default f"{name}_stem".
    Returns:
      Model, input "image" `[batch, H, W, input_channels]` (any size, not padded: callers that
      need pixel-exact alignment pad first, as the depth network does), output
      {"P1": `[batch, ceil(H/2), ceil(W/2), 64]`, "P2": `[batch, ceil(H/4), ceil(W/4), 128]`}.
    """
    if int(input_channels) < 1:
        raise ValueError(f"input_channels must be >= 1, got {input_channels}.")
    if body is None:
        body = build_suw_encoder_body(name=f"{name}_{ENCODER_BODY_SUFFIX}")
    image = keras.Input((None, None, int(input_channels)), name="image")
    blocks = body(apply_suw_stem(image, name=stem_name or f"{name}_stem"))
    features = {level: blocks[block] for level, block in BACKBONE_LEVELS.items()}
    return keras.Model(image, features, name=name)


def build_suw_encoder_decoder(input_shape=(None, None, 3), num_bins: int = DEFAULT_NUM_BINS,
                              min_depth: float = DEFAULT_MIN_DEPTH,
                              max_depth: float = DEFAULT_MAX_DEPTH,
                              sam_dilations: Sequence[int] = DEFAULT_SAM_DILATIONS,
                              name: str = "suw_depth") -> keras.Model:
    """The SUW depth network (Table 1) with a soft-classification head.

    Args:
      input_shape: `(height, width, 3)`; any size (None = dynamic).
      num_bins, min_depth, max_depth: B, alpha, beta of Eq. 1.
      sam_dilations: dilation of each 3x3 layer of the SAM module.
    Returns:
      A functional model, input "image" `[batch, H, W, 3]` (RGB in [0, 1]), output dict:
        OUT_DEPTH_BIN_LOGITS `[batch, ceil(H/4), ceil(W/4), B]`,
        OUT_DEPTH_BIN_PROBS  same shape (softmax),
        OUT_DEPTH_LOW        `[batch, ceil(H/4), ceil(W/4), 1]` metres,
        OUT_DEPTH            `[batch, H, W, 1]` metres,
        OUT_UNCERTAINTY      `[batch, H, W, 1]` std of the bin distribution in log10 depth.
      The model nests the encoder body (`find_encoder_body`) for sharing with the pose nets.
    """
    layers.DepthBinsHead(num_bins, min_depth, max_depth)  # validates the range early
    image = keras.Input(input_shape, name="image")
    padded = layers.PadToMultiple(OUTPUT_STRIDE, name=f"{name}_pad")(image)
    stem = apply_suw_stem(padded, name=f"{name}_b1_conv1")
    features = build_suw_encoder_body(name=f"{name}_{ENCODER_BODY_SUFFIX}")(stem)

    x = keras.layers.Concatenate(name=f"{name}_dec1_concat")([features["block5"],
                                                              features["block4"]])
    x = layers.apply_conv_bn(x, DECODER_CHANNELS, 3, name=f"{name}_dec1_conv1")
    x = layers.apply_conv_bn(x, DECODER_CHANNELS, 3, name=f"{name}_dec1_conv2")
    x = keras.layers.Concatenate(name=f"{name}_dec2_concat")([x, features["block3"]])
    x = layers.apply_conv_bn(x, DECODER_CHANNELS, 3, name=f"{name}_dec2_conv1")
    x = layers.apply_conv_bn(x, DECODER_CHANNELS, 3, name=f"{name}_dec2_conv2")
    x = keras.layers.Concatenate(name=f"{name}_dec3_concat")([x, features["block2"]])
    x = layers.apply_sam(x, DECODER_CHANNELS, sam_dilations, name=f"{name}_dec3_sam")
    logits = layers.apply_conv_bn(x, num_bins, 3, activation=None, name=f"{name}_out")
    probs, depth_low, depth, uncertainty = layers.DepthBinsHead(
        num_bins, min_depth, max_depth, upsample_factor=OUTPUT_STRIDE,
        name=f"{name}_bins_head")([logits, image])
    outputs = {
        common.OUT_DEPTH: depth,
        common.OUT_DEPTH_LOW: depth_low,
        common.OUT_DEPTH_BIN_LOGITS: logits,
        common.OUT_DEPTH_BIN_PROBS: probs,
        common.OUT_UNCERTAINTY: uncertainty,
    }
    return keras.Model(image, outputs, name=name)
