"""SUW-Learn inception hourglass (supplement section 1.2, Table 2; Chen et al. 2016).

Inception blocks A-G exactly as Table 2 (#in/#out, inter dim, Conv1..Conv4 kernels); each has
four conv-BN-ReLU branches of #out/4 channels (`layers.apply_inception`). Block H is a 3x3
convolution to the output.

Figure 2 is missing from the text; the nesting is inferred from Chen et al. 2016's hourglass,
whose inception configurations are exactly blocks A-G, with 4 nested levels. Each level adds a
same-resolution skip branch to a branch that pools 2x2, runs inception blocks and an inner
level at half resolution, and upsamples 2x back:

    stem:    conv 7x7, 128 + BN + ReLU                       (3 -> 128, full resolution)
    level 4 (128 -> 64,  1/1):  skip = A;     down = pool, B, B, [level 3], B, A, up
    level 3 (128 -> 128, 1/2):  skip = B, C;  down = pool, B, D, [level 2], E, G, up
    level 2 (256 -> 256, 1/4):  skip = E, F;  down = pool, E, E, [level 1], E, F, up
    level 1 (256 -> 256, 1/8):  skip = E, E;  down = pool, E, E, E, up
    H:       conv 3x3 (64 -> 1 for log depth, or 64 -> B logits for the bins head)

Our choices: pooling is 2x2 max pooling and upsampling 2x nearest neighbour (both
parameter-free); the stem (not in Table 2, needed to reach block A's 128 input channels)
follows Chen et al.; convolutions before BN have no bias, H has one.

Output head (`head`):
* "log_depth" (default): H predicts natural-log depth, OUT_DEPTH = exp(H) (Chen et al. and
  MegaDepth regress log depth; fits the L1-log / scale-invariant / ranking losses).
* "bins": H predicts B logits and the SUW soft-classification head gives OUT_DEPTH,
  OUT_DEPTH_BIN_LOGITS/PROBS and OUT_UNCERTAINTY at full resolution.

Any input size: the input is padded at the bottom/right to a multiple of 16 (four poolings)
and the output cropped back to exactly H x W.
"""

from __future__ import annotations

import keras

from tf_depthseg import common
from tf_depthseg import depth_bins
from tf_depthseg.models import layers

# Table 2: block -> (#in, #out, inter dim, (Conv2, Conv3, Conv4) kernel sizes); Conv1 is 1x1.
INCEPTION_BLOCKS = {
    "A": (128, 64, 64, (3, 7, 11)),
    "B": (128, 128, 32, (3, 5, 7)),
    "C": (128, 128, 64, (3, 7, 11)),
    "D": (128, 256, 32, (3, 5, 7)),
    "E": (256, 256, 32, (3, 5, 7)),
    "F": (256, 256, 64, (3, 7, 11)),
    "G": (256, 128, 32, (3, 5, 7)),
}
# Figure 2 as inferred (see module docstring): level -> (skip blocks, before inner, after inner).
LEVELS = {
    4: ("A", "BB", "BA"),
    3: ("BC", "BD", "EG"),
    2: ("EF", "EE", "EF"),
    1: ("EE", "EEE", ""),
}
NUM_LEVELS = 4
STEM_CHANNELS = 128
STEM_KERNEL = 7
HEADS = ("log_depth", "bins")


def apply_block(x, block_id: str, *, name: str):
    """One Table 2 inception block; checks the input width against the table."""
    in_channels, out_channels, inter, kernels = INCEPTION_BLOCKS[block_id]
    if x.shape[-1] != in_channels:
        raise ValueError(f"Block {block_id} expects {in_channels} input channels, got "
                         f"{x.shape[-1]} at {name}.")
    return layers.apply_inception(x, out_channels, inter, kernels, name=f"{name}_{block_id}")


def apply_hourglass_level(x, level: int, *, name: str):
    """One nested level: skip branch + (pool, blocks, inner level, blocks, upsample), added.

    `[batch, h, w, c_in] -> [batch, h, w, c_out]` with h, w divisible by 2**level.
    """
    skip_ids, before_ids, after_ids = LEVELS[level]
    prefix = f"{name}_l{level}"
    skip = x
    for index, block_id in enumerate(skip_ids, start=1):
        skip = apply_block(skip, block_id, name=f"{prefix}_skip{index}")
    down = keras.layers.MaxPooling2D(2, name=f"{prefix}_pool")(x)
    for index, block_id in enumerate(before_ids, start=1):
        down = apply_block(down, block_id, name=f"{prefix}_pre{index}")
    if level > 1:
        down = apply_hourglass_level(down, level - 1, name=name)
    for index, block_id in enumerate(after_ids, start=1):
        down = apply_block(down, block_id, name=f"{prefix}_post{index}")
    up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{prefix}_up")(down)
    return keras.layers.Add(name=f"{prefix}_add")([skip, up])


def build_hourglass(input_shape=(None, None, 3), head: str = "log_depth",
                    num_bins: int = 80, min_depth: float = 1.0, max_depth: float = 80.0,
                    name: str = "hourglass") -> keras.Model:
    """The SUW inception hourglass.

    Args:
      input_shape: `(height, width, 3)`, any size.
      head: "log_depth" or "bins" (see module docstring).
      num_bins, min_depth, max_depth: Eq. 1 parameters, used by the "bins" head only.
    Returns:
      Model with input "image" `[batch, H, W, 3]` and outputs
      {OUT_DEPTH `[batch, H, W, 1]` metres} for "log_depth"; for "bins" additionally
      OUT_DEPTH_BIN_LOGITS, OUT_DEPTH_BIN_PROBS `[batch, H, W, B]` and OUT_UNCERTAINTY
      `[batch, H, W, 1]`.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}.")
    if head == "bins":
        depth_bins.log_bin_width(num_bins, min_depth, max_depth)  # validates the range
    image = keras.Input(input_shape, name="image")
    x = layers.PadToMultiple(2 ** NUM_LEVELS, name=f"{name}_pad")(image)
    x = layers.apply_conv_bn(x, STEM_CHANNELS, STEM_KERNEL, name=f"{name}_stem")
    x = apply_hourglass_level(x, NUM_LEVELS, name=name)
    channels = 1 if head == "log_depth" else num_bins
    x = keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_H")(x)
    x = layers.UpsampleCropToReference(1, name=f"{name}_crop")([x, image])
    if head == "log_depth":
        depth = keras.layers.Activation("exponential", name=f"{name}_depth")(x)
        return keras.Model(image, {common.OUT_DEPTH: depth}, name=name)
    probs, _, depth, uncertainty = layers.DepthBinsHead(
        num_bins, min_depth, max_depth, upsample_factor=1, name=f"{name}_bins_head")([x, image])
    outputs = {common.OUT_DEPTH: depth, common.OUT_DEPTH_BIN_LOGITS: x,
               common.OUT_DEPTH_BIN_PROBS: probs, common.OUT_UNCERTAINTY: uncertainty}
    return keras.Model(image, outputs, name=name)
