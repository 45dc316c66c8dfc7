"""Supervised depth losses: SUW soft classification over log-depth bins, and regressions.

Shapes: depth maps are `[batch, height, width, 1]` in metres with 0 (or any value <= 0, or a
non-finite value) marking a pixel without ground truth, as in KITTI's sparse depth. Every loss
averages over valid pixels only and returns exactly 0 (not NaN) when a batch has none.

Choices where the paper is silent (the bins of Eq. 1 and their centres are in
`tf_depthseg.depth_bins`, shared with the model head):

* The network's depth is the probability-weighted mean of the centres in log10 space
  (`10 ** sum_i p_i c_i`, a geometric mean), so the output and the loss live in the same space;
  the uncertainty is the std of that distribution in log10 units.
* Soft target (Cao et al. 2016): `t_i proportional to exp(-a (i - b*)^2)`, normalised over the
  B bins, a = 0.2 by default. b* is the continuous bin position (log10(x) - log10(alpha)) / q
  clipped to [0, B-1] by default (no quantisation error in the target); `continuous=False`
  uses the rounded index of Eq. 1 instead.
"""

from __future__ import annotations

import tensorflow as tf

from tf_depthseg.depth_bins import (depth_to_bin, depth_to_bin_position, safe_log10,
                                   valid_depth_mask)

DEFAULT_SOFT_TARGET_SHARPNESS = 0.2  # Cao et al. 2016, information gain exp(-0.2 (p - q)^2)
DEFAULT_SI_LAMBDA = 0.5  # Eigen et al. 2014 train with lambda = 0.5
DEFAULT_BERHU_FRACTION = 0.2  # Laina et al. 2016: c = 0.2 max |e|
_MIN_PRED_DEPTH = 1e-6  # keeps log() finite for a degenerate (<= 0) prediction


# ----------------------------------------------------------------------------------------------
# Masks and reductions
# ----------------------------------------------------------------------------------------------
def _masked_mean(values, mask):
    """Mean of `values` where `mask`, 0 if the mask is empty (never NaN)."""
    mask = tf.cast(mask, values.dtype)
    values = tf.where(mask > 0, values, tf.zeros_like(values))  # drop NaN/inf under the mask
    return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _check_same_spatial_size(prediction, target, what: str) -> None:
    p, t = prediction.shape, target.shape
    if p.rank is not None and t.rank is not None and p.rank >= 3 and t.rank >= 3:
        for axis in (1, 2):
            if p[axis] is not None and t[axis] is not None and p[axis] != t[axis]:
                raise ValueError(
                    f"{what}: prediction {p} and ground truth {t} differ in size; resize the "
                    "ground truth first (e.g. downsample_sparse_depth for the 1/4 SUW head).")


def downsample_sparse_depth(depth, factor: int):
    """Sparse ground truth at 1/factor resolution: geometric mean of the valid pixels per block.

    Matches the SUW head's grid: output pixel (i, j) covers input rows [f*i, f*i + f) and
    columns [f*j, f*j + f); the input is zero-padded (= invalid) at the bottom/right to a
    multiple of f, exactly as the network pads its input. Blocks without valid pixels are 0.

    Args:
      depth: float `[batch, height, width, 1]` metres, 0 = invalid.
      factor: integer downsampling factor (4 for the SUW head).
    Returns:
      float32 `[batch, ceil(height / f), ceil(width / f), 1]`.
    """
    if int(factor) < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}.")
    depth = tf.convert_to_tensor(depth, tf.float32)
    if factor == 1:
        return tf.where(valid_depth_mask(depth), depth, tf.zeros_like(depth))
    height, width = tf.shape(depth)[1], tf.shape(depth)[2]
    pad_h, pad_w = (-height) % factor, (-width) % factor
    valid = tf.cast(valid_depth_mask(depth), tf.float32)
    log_depth = safe_log10(depth) * valid
    stacked = tf.pad(tf.concat([log_depth, valid], axis=-1),
                     [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    sums = tf.nn.avg_pool2d(stacked, factor, factor, "VALID") * float(factor * factor)
    log_sum, count = sums[..., :1], sums[..., 1:]
    mean_depth = tf.pow(10.0, log_sum / tf.maximum(count, 1.0))
    return tf.where(count > 0.5, mean_depth, tf.zeros_like(mean_depth))


# ----------------------------------------------------------------------------------------------
# Soft classification (SUW L_cls)
# ----------------------------------------------------------------------------------------------
def soft_bin_targets(depth, num_bins: int, min_depth: float, max_depth: float,
                     sharpness: float = DEFAULT_SOFT_TARGET_SHARPNESS, continuous: bool = True):
    """Soft target over bins, `exp(-a (i - b*)^2)` normalised over i.

    Args:
      depth: float `[batch, height, width, 1]` metres.
      sharpness: a; larger = narrower target.
      continuous: b* = continuous bin position if True, else Eq. 1's rounded index.
    Returns:
      float32 `[batch, height, width, num_bins]`, each pixel summing to 1 (invalid pixels too;
      mask them).
    """
    if sharpness <= 0:
        raise ValueError(f"sharpness must be > 0, got {sharpness}.")
    if continuous:
        centre = depth_to_bin_position(depth, num_bins, min_depth, max_depth)
    else:
        centre = tf.cast(depth_to_bin(depth, num_bins, min_depth, max_depth), tf.float32)
    index = tf.range(num_bins, dtype=tf.float32)
    # softmax of -a d^2 == exp(-a d^2) / sum: the same normalisation, computed stably.
    return tf.nn.softmax(-sharpness * tf.square(index - centre), axis=-1)


def soft_classification_loss(logits, depth, num_bins: int, min_depth: float, max_depth: float,
                             sharpness: float = DEFAULT_SOFT_TARGET_SHARPNESS,
                             continuous: bool = True, kl: bool = False):
    """Cross-entropy between the soft bin target and softmax(logits), mean over valid pixels.

    Args:
      logits: float `[batch, height, width, num_bins]` (the SUW head's OUT_DEPTH_BIN_LOGITS).
      depth: float `[batch, height, width, 1]` ground truth at the logits' resolution
        (see `downsample_sparse_depth`), 0 = invalid.
      kl: if True return KL(target || softmax) = cross-entropy - entropy(target): the same
        gradient, but 0 at a perfect fit, which makes progress readable.
    Returns:
      float32 scalar.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    depth = tf.convert_to_tensor(depth, tf.float32)
    _check_same_spatial_size(logits, depth, "soft_classification_loss")
    if logits.shape[-1] is not None and logits.shape[-1] != num_bins:
        raise ValueError(f"soft_classification_loss: logits have {logits.shape[-1]} channels "
                         f"but num_bins={num_bins}.")
    target = soft_bin_targets(depth, num_bins, min_depth, max_depth, sharpness, continuous)
    per_pixel = -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1,
                               keepdims=True)
    if kl:
        per_pixel += tf.reduce_sum(target * tf.math.log(tf.maximum(target, 1e-30)), axis=-1,
                                   keepdims=True)
    return _masked_mean(per_pixel, valid_depth_mask(depth))


# ----------------------------------------------------------------------------------------------
# Regression alternatives
# ----------------------------------------------------------------------------------------------
def _log_error(pred_depth, gt_depth, what):
    """(natural-log error pred - gt, valid mask), both `[batch, height, width, 1]`."""
    pred_depth = tf.convert_to_tensor(pred_depth, tf.float32)
    gt_depth = tf.convert_to_tensor(gt_depth, tf.float32)
    _check_same_spatial_size(pred_depth, gt_depth, what)
    valid = valid_depth_mask(gt_depth)
    safe_gt = tf.where(valid, gt_depth, tf.ones_like(gt_depth))
    error = tf.math.log(tf.maximum(pred_depth, _MIN_PRED_DEPTH)) - tf.math.log(safe_gt)
    return error, valid


def l1_log_loss(pred_depth, gt_depth):
    """Mean |ln(pred) - ln(gt)| over valid pixels. Shapes `[batch, height, width, 1]`."""
    error, valid = _log_error(pred_depth, gt_depth, "l1_log_loss")
    return _masked_mean(tf.abs(error), valid)


def scale_invariant_log_loss(pred_depth, gt_depth, lam: float = DEFAULT_SI_LAMBDA):
    """Eigen et al. 2014: per image (1/n) sum e^2 - lam (1/n^2) (sum e)^2, e = ln pred - ln gt.

    n is the number of valid pixels of that image; the result is the mean over images that have
    at least one valid pixel (0 if none has). lam = 0 is plain MSE in log space, lam = 1 is
    fully scale invariant.
    """
    error, valid = _log_error(pred_depth, gt_depth, "scale_invariant_log_loss")
    mask = tf.cast(valid, tf.float32)
    error = error * mask
    count = tf.reduce_sum(mask, axis=[1, 2, 3])
    safe_count = tf.maximum(count, 1.0)
    per_image = (tf.reduce_sum(tf.square(error), axis=[1, 2, 3]) / safe_count
                 - lam * tf.square(tf.reduce_sum(error, axis=[1, 2, 3]) / safe_count))
    has_pixels = tf.cast(count > 0, tf.float32)
    return tf.reduce_sum(per_image * has_pixels) / tf.maximum(tf.reduce_sum(has_pixels), 1.0)


def berhu_loss(prediction, target, valid_mask=None,
               threshold_fraction: float = DEFAULT_BERHU_FRACTION):
    """Reverse Huber: |e| if |e| <= c else (e^2 + c^2) / (2c), c = 0.2 max |e| over the batch.

    Args:
      prediction, target: float `[batch, height, width, channels]` (depth or disparity).
      valid_mask: bool, same shape; default `valid_depth_mask(target)` (target > 0).
      threshold_fraction: c as a fraction of the batch's largest valid |e|.
    Returns:
      Mean over valid pixels (0 if none). c is treated as a constant (stop_gradient): it is a
      statistic of the batch that picks the branch, not something to optimise.
    """
    prediction = tf.convert_to_tensor(prediction, tf.float32)
    target = tf.convert_to_tensor(target, tf.float32)
    _check_same_spatial_size(prediction, target, "berhu_loss")
    valid = valid_depth_mask(target) if valid_mask is None else tf.cast(valid_mask, tf.bool)
    abs_error = tf.abs(tf.where(valid, prediction - target, tf.zeros_like(prediction)))
    c = tf.stop_gradient(threshold_fraction * tf.reduce_max(abs_error))
    safe_c = tf.maximum(c, 1e-12)  # all-zero error: every pixel takes the |e| branch
    per_pixel = tf.where(abs_error <= c, abs_error,
                         (tf.square(abs_error) + tf.square(c)) / (2.0 * safe_c))
    return _masked_mean(per_pixel, valid)
