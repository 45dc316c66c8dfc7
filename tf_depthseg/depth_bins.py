"""Log-depth bins of SUW (supplement, Eq. 1): the one place both the model head and the losses
take them from, so models never import losses.

Depth maps are metres with 0 (or any value <= 0, or a non-finite value) marking a pixel without
ground truth.

Log-depth quantisation (SUW supplement, Eq. 1):

    q = (log10(beta) - log10(alpha)) / B,   b = round((log10(x) - log10(alpha)) / q).

Choice where the paper is silent:

* Bin centres. `round()` puts bin b at log10(alpha) + b * q, so the centre of bin b is
  `c_b = log10(alpha) + b * q`. Eq. 1 can yield B + 1 indices 0..B, but Table 1's output layer
  has B channels, so we keep B centres (b = 0..B-1) and clip indices to [0, B-1]. Consequence:
  depths in [alpha, beta * 10**(-q/2)] round-trip within half a bin; depths in the top half bin
  (and outside [alpha, beta]) saturate at the end centres.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def valid_depth_mask(depth):
    """bool mask of pixels carrying ground truth: finite and > 0."""
    depth = tf.convert_to_tensor(depth, tf.float32)
    return tf.logical_and(depth > 0.0, tf.math.is_finite(depth))


def _check_range(num_bins: int, min_depth: float, max_depth: float) -> None:
    if int(num_bins) < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}.")
    if not 0.0 < min_depth < max_depth:
        raise ValueError(f"Need 0 < min_depth < max_depth, got min_depth={min_depth}, "
                         f"max_depth={max_depth}.")


def log_bin_width(num_bins: int, min_depth: float, max_depth: float) -> float:
    """q of Eq. 1: width of one bin in log10 depth."""
    _check_range(num_bins, min_depth, max_depth)
    return (math.log10(max_depth) - math.log10(min_depth)) / num_bins


def bin_centres_log10(num_bins: int, min_depth: float, max_depth: float) -> np.ndarray:
    """Bin centres in log10 depth, float32 `[num_bins]`: log10(alpha) + b * q, b = 0..B-1."""
    q = log_bin_width(num_bins, min_depth, max_depth)
    return (math.log10(min_depth) + q * np.arange(num_bins, dtype=np.float64)).astype(np.float32)


def safe_log10(depth):
    """log10 of a depth tensor with invalid (<= 0 / non-finite) entries replaced by log10(1)."""
    depth = tf.convert_to_tensor(depth, tf.float32)
    valid = valid_depth_mask(depth)
    return tf.math.log(tf.where(valid, depth, tf.ones_like(depth))) / math.log(10.0)


def depth_to_bin_position(depth, num_bins: int, min_depth: float, max_depth: float):
    """Continuous bin position (log10(x) - log10(alpha)) / q, clipped to [0, B-1].

    Args:
      depth: float `[...]` metres (> 0).
    Returns:
      float32 `[...]`; invalid depths map to the position of 1 m (mask them yourself).
    """
    q = log_bin_width(num_bins, min_depth, max_depth)
    position = (safe_log10(depth) - math.log10(min_depth)) / q
    return tf.clip_by_value(position, 0.0, float(num_bins - 1))


def depth_to_bin(depth, num_bins: int, min_depth: float, max_depth: float):
    """Eq. 1: int32 bin index round((log10(x) - log10(alpha)) / q), clipped to [0, B-1]."""
    position = depth_to_bin_position(depth, num_bins, min_depth, max_depth)
    # tf.round is round-half-to-even; ties are measure-zero for real data.
    return tf.cast(tf.round(position), tf.int32)


def depth_from_log10(log10_depth):
    """`10 ** x` as `exp(x ln 10)`: the same values to float rounding, and TFLite runs EXP in
    XNNPACK but POW in its reference kernel (`bench/bench_export.py`, int8 at 240x320: p50
    21.14 -> 20.16 ms in two quiet runs; docs/suw_speed.md)."""
    return tf.exp(log10_depth * math.log(10.0))


def bin_to_depth(bins, num_bins: int, min_depth: float, max_depth: float):
    """Inverse of Eq. 1: depth (metres) at the centre of bin `bins` (int or float positions)."""
    q = log_bin_width(num_bins, min_depth, max_depth)
    bins = tf.cast(bins, tf.float32)
    return depth_from_log10(math.log10(min_depth) + q * bins)
