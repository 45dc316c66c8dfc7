"""Pinhole back-projection of depth maps to camera points, and projection back to pixels.

Pixel (x, y) has its centre at integer coordinates (see `intrinsics.py`), so pixel (x, y)
back-projects along `K^-1 [x, y, 1]^T`. Depth is z-depth (distance along the optical axis),
not ray length. Intrinsics are `[B, 3, 3]` or a single `[3, 3]` shared by the batch.
"""

from __future__ import annotations

import tensorflow as tf

# Points closer to the camera plane than this (metres) do not project: the division blows up
# and the point is behind or at the camera in any real scene.
MIN_PROJECTION_DEPTH = 1e-3


def _batched_intrinsics(intrinsics, dtype) -> tf.Tensor:
    intrinsics = tf.cast(intrinsics, dtype)
    if intrinsics.shape.rank == 2:
        intrinsics = intrinsics[None]
    if intrinsics.shape.rank != 3 or intrinsics.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics must be [B, 3, 3] or [3, 3], got {intrinsics.shape}")
    return intrinsics


def pixel_grid(height: int, width: int, dtype=tf.float32) -> tf.Tensor:
    """Pixel-centre coordinates `[H, W, 2]` holding (x, y) = (column, row)."""
    xs = tf.range(width, dtype=dtype)
    ys = tf.range(height, dtype=dtype)
    grid_x, grid_y = tf.meshgrid(xs, ys)
    return tf.stack([grid_x, grid_y], axis=-1)


def backproject(depth, intrinsics) -> tf.Tensor:
    """Camera-frame 3D points of every pixel.

    Args:
      depth: `[B, H, W, 1]` z-depth (metres or any unit; the points share it).
      intrinsics: `[B, 3, 3]` or `[3, 3]`.
    Returns:
      `[B, H, W, 3]` points (X, Y, Z) with Z == depth.
    """
    depth = tf.convert_to_tensor(depth)
    if depth.shape.rank != 4 or depth.shape[-1] != 1:
        raise ValueError(f"depth must be [B, H, W, 1], got {depth.shape}")
    intrinsics = _batched_intrinsics(intrinsics, depth.dtype)
    height, width = tf.shape(depth)[1], tf.shape(depth)[2]
    grid = pixel_grid(height, width, depth.dtype)
    fx = intrinsics[:, 0, 0][:, None, None]
    fy = intrinsics[:, 1, 1][:, None, None]
    cx = intrinsics[:, 0, 2][:, None, None]
    cy = intrinsics[:, 1, 2][:, None, None]
    skew = intrinsics[:, 0, 1][:, None, None]
    # Closed-form K^-1 for an upper-triangular K (skew kept for completeness).
    y_norm = (grid[None, ..., 1] - cy) / fy
    x_norm = (grid[None, ..., 0] - cx - skew * y_norm) / fx
    rays = tf.stack([x_norm, y_norm, tf.ones_like(x_norm)], axis=-1)
    return rays * depth


def project(points, intrinsics, min_depth: float = MIN_PROJECTION_DEPTH) -> tf.Tensor:
    """Pixel coordinates of camera-frame points.

    Points with Z below `min_depth` are divided by `min_depth` instead, so the result and its
    gradients stay finite; callers mask them out with `points[..., 2] > min_depth`
    (`warp.warp` does).

    Args:
      points: `[B, ..., 3]` camera-frame points.
      intrinsics: `[B, 3, 3]` or `[3, 3]`.
      min_depth: smallest Z used as divisor.
    Returns:
      `[B, ..., 2]` pixel coordinates (x, y), pixel centres at integers.
    """
    points = tf.convert_to_tensor(points)
    intrinsics = _batched_intrinsics(intrinsics, points.dtype)
    extra_dims = points.shape.rank - 2
    shape = tf.concat([tf.shape(intrinsics)[:1], tf.ones([extra_dims], tf.int32)], axis=0)
    fx, fy, cx, cy, skew = (tf.reshape(intrinsics[:, i, j], shape)
                            for i, j in ((0, 0), (1, 1), (0, 2), (1, 2), (0, 1)))
    z = tf.maximum(points[..., 2], tf.cast(min_depth, points.dtype))
    x_norm = points[..., 0] / z
    y_norm = points[..., 1] / z
    return tf.stack([fx * x_norm + skew * y_norm + cx, fy * y_norm + cy], axis=-1)
