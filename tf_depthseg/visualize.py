"""Colourised depth, error and uncertainty maps as uint8 RGB, in numpy and in TensorFlow.

The numpy functions serve tools (predict, evaluation pictures); the `*_tf` twins work on
batches inside compiled functions for TensorBoard image summaries. Both use the same lookup
tables and the same "lower" percentile, so they agree pixel for pixel.

Conventions:

* depth is shown as inverse depth (near = bright, as in Monodepth2's pictures), scaled per
  image from its smallest valid value to the 95th percentile, so a few very close pixels do not
  wash out the rest ("magma"),
* error maps show the absolute relative error |pred - gt| / gt, 0 .. `max_rel` ("inferno"),
* uncertainty maps show the value from 0 to its 99th percentile per image ("viridis"),
* invalid pixels (depth <= 0 or not finite) are black.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

DEPTH_CMAP = "magma"
ERROR_CMAP = "inferno"
UNCERTAINTY_CMAP = "viridis"
DEPTH_PERCENTILE = 95.0
UNCERTAINTY_PERCENTILE = 99.0
MAX_REL_ERROR = 0.25


@functools.lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """A matplotlib colormap as a uint8 `[256, 3]` lookup table."""
    from matplotlib import colormaps  # imported lazily: only pictures need matplotlib
    if name not in colormaps:
        raise ValueError(f"unknown colormap {name!r}; e.g. magma, inferno, viridis, plasma")
    table = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(table * 255.0).astype(np.uint8)


def _squeeze_channel(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected a [H, W] or [H, W, 1] map, got shape {array.shape}")
    return array


def _lut_index(values, vmin, vmax):
    """Maps values to 0..255 (clipped) with numpy; vmax == vmin maps everything to 0."""
    span = np.maximum(vmax - vmin, 1e-12)
    scaled = np.clip((values - vmin) / span, 0.0, 1.0)
    return np.round(scaled * 255.0).astype(np.int64)


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, cmap: str,
                   valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Colours a `[H, W]` map; values outside [vmin, vmax] are clipped, invalid pixels black.

    Returns:
      uint8 `[H, W, 3]`.
    """
    values = _squeeze_channel(values).astype(np.float64)
    valid = np.isfinite(values) if valid is None else (_squeeze_channel(valid).astype(bool)
                                                       & np.isfinite(values))
    rgb = colormap_lut(cmap)[_lut_index(np.where(valid, values, vmin), vmin, vmax)]
    rgb[~valid] = 0
    return rgb


def _lower_percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q, method="lower"))


def colorize_depth(depth: np.ndarray, valid: Optional[np.ndarray] = None,
                   cmap: str = DEPTH_CMAP, percentile: float = DEPTH_PERCENTILE) -> np.ndarray:
    """Metric depth `[H, W(, 1)]` -> uint8 `[H, W, 3]` (inverse depth, near = bright)."""
    depth = _squeeze_channel(depth).astype(np.float64)
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= _squeeze_channel(valid).astype(bool)
    disparity = np.where(ok, 1.0 / np.where(ok, depth, 1.0), 0.0)
    if not ok.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    vmin = float(disparity[ok].min())
    vmax = _lower_percentile(disparity[ok], percentile)
    return apply_colormap(disparity, vmin, vmax, cmap, ok)


def colorize_error(pred: np.ndarray, gt: np.ndarray, max_rel: float = MAX_REL_ERROR,
                   cmap: str = ERROR_CMAP) -> np.ndarray:
    """|pred - gt| / gt where gt is valid (> 0) -> uint8 `[H, W, 3]`, 0 .. max_rel."""
    pred = _squeeze_channel(pred).astype(np.float64)
    gt = _squeeze_channel(gt).astype(np.float64)
    ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    rel = np.where(ok, np.abs(pred - gt) / np.where(ok, gt, 1.0), 0.0)
    return apply_colormap(rel, 0.0, max_rel, cmap, ok)


def colorize_uncertainty(uncertainty: np.ndarray, vmax: Optional[float] = None,
                         cmap: str = UNCERTAINTY_CMAP,
                         percentile: float = UNCERTAINTY_PERCENTILE) -> np.ndarray:
    """Uncertainty `[H, W(, 1)]` (>= 0) -> uint8 `[H, W, 3]`, 0 .. vmax (default: the
    per-image percentile)."""
    values = _squeeze_channel(uncertainty).astype(np.float64)
    ok = np.isfinite(values)
    if vmax is None:
        vmax = _lower_percentile(values[ok], percentile) if ok.any() else 1.0
    return apply_colormap(values, 0.0, vmax, cmap, ok)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] or uint8 image, grey or RGB -> uint8 `[H, W, 3]`."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def side_by_side(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Joins same-height pictures left to right with `gap` white columns between them."""
    pictures = [to_rgb_uint8(image) for image in images]
    heights = {p.shape[0] for p in pictures}
    if len(heights) != 1:
        raise ValueError(f"side_by_side needs equal heights, got {sorted(heights)}")
    spacer = np.full((pictures[0].shape[0], gap, 3), 255, np.uint8)
    parts = []
    for i, picture in enumerate(pictures):
        if i:
            parts.append(spacer)
        parts.append(picture)
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------
# TensorFlow versions for batches `[B, H, W, 1]` (TensorBoard image summaries).
# --------------------------------------------------------------------------------------------


def _lower_percentile_tf(values: tf.Tensor, valid: tf.Tensor, q: float) -> tf.Tensor:
    """Per-image 'lower' percentile of the valid values: `[B, H, W, 1]` -> `[B]`.

    Invalid entries sort to the end as +inf; the percentile index counts valid entries only
    (1.0 for images without valid pixels).
    """
    batch = tf.shape(values)[0]
    flat = tf.reshape(tf.where(valid, values, np.inf), [batch, -1])
    count = tf.reduce_sum(tf.cast(tf.reshape(valid, [batch, -1]), tf.int32), axis=1)
    ordered = tf.sort(flat, axis=1)
    index = tf.cast(tf.floor(q / 100.0 * tf.cast(tf.maximum(count - 1, 0), tf.float64)),
                    tf.int32)
    picked = tf.gather(ordered, index, batch_dims=1)
    return tf.where(count > 0, picked, tf.ones_like(picked))


def apply_colormap_tf(values: tf.Tensor, vmin: tf.Tensor, vmax: tf.Tensor, cmap: str,
                      valid: tf.Tensor) -> tf.Tensor:
    """Colours `[B, H, W, 1]` values with per-image `vmin`, `vmax` `[B]` -> uint8
    `[B, H, W, 3]`; invalid pixels black."""
    values = tf.cast(values, tf.float64)
    vmin = tf.reshape(tf.cast(vmin, tf.float64), [-1, 1, 1, 1])
    vmax = tf.reshape(tf.cast(vmax, tf.float64), [-1, 1, 1, 1])
    span = tf.maximum(vmax - vmin, 1e-12)
    scaled = tf.clip_by_value((tf.where(valid, values, vmin) - vmin) / span, 0.0, 1.0)
    # rint rounds half to even like np.round, so both versions pick the same table entry.
    index = tf.cast(tf.math.rint(scaled * 255.0), tf.int32)[..., 0]
    rgb = tf.gather(tf.constant(colormap_lut(cmap)), index)
    return tf.where(valid, rgb, tf.zeros_like(rgb))


def colorize_depth_tf(depth: tf.Tensor, valid: Optional[tf.Tensor] = None,
                      cmap: str = DEPTH_CMAP, percentile: float = DEPTH_PERCENTILE) -> tf.Tensor:
    """Metric depth `[B, H, W, 1]` -> uint8 `[B, H, W, 3]` (see `colorize_depth`)."""
    depth = tf.cast(depth, tf.float64)
    ok = tf.math.is_finite(depth) & (depth > 0)
    if valid is not None:
        ok &= tf.cast(valid, tf.bool)
    disparity = tf.where(ok, 1.0 / tf.where(ok, depth, 1.0), 0.0)
    vmin = tf.reduce_min(tf.where(ok, disparity, np.inf), axis=[1, 2, 3])
    vmax = _lower_percentile_tf(disparity, ok, percentile)
    return apply_colormap_tf(disparity, vmin, vmax, cmap, ok)


def colorize_error_tf(pred: tf.Tensor, gt: tf.Tensor, max_rel: float = MAX_REL_ERROR,
                      cmap: str = ERROR_CMAP) -> tf.Tensor:
    """Absolute relative error `[B, H, W, 1]` maps -> uint8 `[B, H, W, 3]`."""
    pred, gt = tf.cast(pred, tf.float64), tf.cast(gt, tf.float64)
    ok = tf.math.is_finite(gt) & (gt > 0) & tf.math.is_finite(pred)
    rel = tf.where(ok, tf.abs(pred - gt) / tf.where(ok, gt, 1.0), 0.0)
    batch = tf.shape(pred)[0]
    return apply_colormap_tf(rel, tf.zeros([batch], tf.float64),
                             tf.fill([batch], tf.constant(max_rel, tf.float64)), cmap, ok)


def colorize_uncertainty_tf(uncertainty: tf.Tensor, cmap: str = UNCERTAINTY_CMAP,
                            percentile: float = UNCERTAINTY_PERCENTILE) -> tf.Tensor:
    """Uncertainty `[B, H, W, 1]` -> uint8 `[B, H, W, 3]`, 0 .. per-image percentile."""
    values = tf.cast(uncertainty, tf.float64)
    ok = tf.math.is_finite(values)
    vmax = _lower_percentile_tf(values, ok, percentile)
    return apply_colormap_tf(values, tf.zeros_like(vmax), vmax, cmap, ok)


def to_rgb_uint8_tf(image: tf.Tensor) -> tf.Tensor:
    """float `[B, H, W, C]` in [0, 1] (C = 1 or 3) -> uint8 `[B, H, W, 3]`."""
    if image.dtype != tf.uint8:
        image = tf.cast(tf.math.rint(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0)
                                     * 255.0), tf.uint8)
    if image.shape[-1] == 1:
        image = tf.repeat(image, 3, axis=-1)
    return image
