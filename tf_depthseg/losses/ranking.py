"""Ordinal ranking losses for weak depth labels (Chen et al. 2016; SUW patch pairs).

A pair is a row (y_a, x_a, y_b, x_b, half_size, relation) in pixel coordinates of the
prediction (`common.WEAK_PAIR_FIELDS`). With z = ln(depth) and d = z_A - z_B:

    relation +1 (A farther, common.RELATION_FARTHER): log(1 + exp(-d))
    relation -1 (A closer,  common.RELATION_CLOSER):  log(1 + exp(+d))
    relation  0 (equal,     common.RELATION_EQUAL):   d^2

half_size 0 compares pixels; half_size h > 0 compares the mean log depth of the
(2h+1) x (2h+1) patches centred on A and B (SUW: 3x3 .. 9x9, so h <= 4). Patch pixels outside
the image are left out of the mean; centres are rounded to the nearest pixel and clipped into
the image. Everything is gathered at once (no Python loop over pairs): each pair gathers
(2 h_max + 1)^2 offsets and masks those beyond its own half size, so the function traces once
and compiles with XLA.
"""

from __future__ import annotations

import tensorflow as tf

from tf_depthseg import common

DEFAULT_MAX_HALF_SIZE = 4  # 9x9 patches, the largest in the SUW supplement
_MIN_DEPTH = 1e-6  # keeps ln() finite for a degenerate prediction


def _patch_mean_log_depth(log_depth, centre_y, centre_x, half_size, max_half_size: int):
    """Mean of `log_depth` over each pair's patch.

    Args:
      log_depth: `[batch, height, width]`.
      centre_y, centre_x, half_size: int32 `[batch, pairs]`.
    Returns:
      float32 `[batch, pairs]`.
    """
    height, width = tf.shape(log_depth)[1], tf.shape(log_depth)[2]
    offsets = tf.range(-max_half_size, max_half_size + 1)
    offset_y, offset_x = tf.meshgrid(offsets, offsets, indexing="ij")
    offset_y = tf.reshape(offset_y, [1, 1, -1])
    offset_x = tf.reshape(offset_x, [1, 1, -1])
    rows = centre_y[..., None] + offset_y  # [batch, pairs, k*k]
    cols = centre_x[..., None] + offset_x
    half = half_size[..., None]
    inside = ((tf.abs(offset_y) <= half) & (tf.abs(offset_x) <= half)
              & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width))
    rows = tf.clip_by_value(rows, 0, height - 1)
    cols = tf.clip_by_value(cols, 0, width - 1)
    values = tf.gather_nd(log_depth, tf.stack([rows, cols], axis=-1), batch_dims=1)
    weights = tf.cast(inside, log_depth.dtype)
    # The centre pixel is always inside, so the count is >= 1.
    return tf.reduce_sum(values * weights, axis=-1) / tf.reduce_sum(weights, axis=-1)


def ranking_loss(pred_depth, pairs, valid_mask=None, num_valid=None,
                 max_half_size: int = DEFAULT_MAX_HALF_SIZE, return_per_pair: bool = False):
    """Ordinal loss over pixel and patch pairs, mean over valid pairs (0 if there are none).

    Args:
      pred_depth: float `[batch, height, width, 1]` (or `[batch, height, width]`) predicted
        depth in metres, > 0.
      pairs: float `[batch, pairs, 6]` rows (y_a, x_a, y_b, x_b, half_size, relation).
      valid_mask: optional bool `[batch, pairs]`; rows where False are ignored (padding).
      num_valid: optional int `[batch]`: only the first num_valid rows of each image count.
        Either, both (combined with AND) or neither (all rows count) may be given.
      max_half_size: largest half size supported; larger half sizes are clipped to it.
      return_per_pair: also return the `[batch, pairs]` per-pair losses (0 for invalid rows).
    Returns:
      float32 scalar (and the per-pair losses if requested).
    """
    pred_depth = tf.convert_to_tensor(pred_depth, tf.float32)
    if pred_depth.shape.rank == 4:
        pred_depth = pred_depth[..., 0]
    if pred_depth.shape.rank != 3:
        raise ValueError(f"ranking_loss: pred_depth must be [batch, H, W(, 1)], got "
                         f"{pred_depth.shape}.")
    pairs = tf.convert_to_tensor(pairs, tf.float32)
    if pairs.shape.rank != 3 or pairs.shape[-1] != common.WEAK_PAIR_FIELDS:
        raise ValueError(f"ranking_loss: pairs must be [batch, pairs, "
                         f"{common.WEAK_PAIR_FIELDS}], got {pairs.shape}.")
    log_depth = tf.math.log(tf.maximum(pred_depth, _MIN_DEPTH))
    height, width = tf.shape(log_depth)[1], tf.shape(log_depth)[2]

    def pixel(value, size):
        return tf.clip_by_value(tf.cast(tf.round(value), tf.int32), 0, size - 1)

    half_size = tf.clip_by_value(tf.cast(tf.round(pairs[..., 4]), tf.int32), 0, max_half_size)
    z_a = _patch_mean_log_depth(log_depth, pixel(pairs[..., 0], height),
                                pixel(pairs[..., 1], width), half_size, max_half_size)
    z_b = _patch_mean_log_depth(log_depth, pixel(pairs[..., 2], height),
                                pixel(pairs[..., 3], width), half_size, max_half_size)
    difference = z_a - z_b
    relation = tf.sign(pairs[..., 5])  # sign: robust to float storage of +-1 and 0
    per_pair = tf.where(relation == 0.0, tf.square(difference),
                        tf.nn.softplus(-relation * difference))  # softplus = log(1 + exp(.))

    valid = tf.ones_like(per_pair, tf.bool)
    if valid_mask is not None:
        valid &= tf.cast(valid_mask, tf.bool)
    if num_valid is not None:
        row_index = tf.range(tf.shape(pairs)[1])[None, :]
        valid &= row_index < tf.cast(tf.reshape(num_valid, [-1, 1]), tf.int32)
    valid &= tf.math.is_finite(pairs[..., 5])
    weights = tf.cast(valid, tf.float32)
    per_pair = tf.where(valid, per_pair, tf.zeros_like(per_pair))
    loss = tf.reduce_sum(per_pair) / tf.maximum(tf.reduce_sum(weights), 1.0)
    if return_per_pair:
        return loss, per_pair
    return loss
