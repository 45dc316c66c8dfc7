"""Pinhole intrinsics under image resize, crop and horizontal flip.

Pixel convention (used everywhere in tf_depthseg): pixel (x, y) has its centre at integer
coordinates, and the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. This matches
`tf.image.resize` (half-pixel centres), so resizing by s maps x to s * (x + 0.5) - 0.5, and a
projection with the updated K lands on exactly the pixel the resized image shows.

Every function takes K as `[..., 3, 3]` (numpy array or tf.Tensor) and returns the same kind,
so converters (numpy) and tf.data augmentation (TF) share one definition. Each change is a
left-multiplication `K' = A @ K` by an image-plane affine map A.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _apply(intrinsics, affine_rows):
    """Returns `A @ K` for A given as 3 rows of 3 scalars (Python numbers or scalar tensors)."""
    if isinstance(intrinsics, np.ndarray):
        return np.array(affine_rows, dtype=intrinsics.dtype) @ intrinsics
    intrinsics = tf.convert_to_tensor(intrinsics)
    affine = tf.stack([tf.stack([tf.cast(v, intrinsics.dtype) for v in row])
                       for row in affine_rows])
    return tf.linalg.matmul(tf.broadcast_to(affine, tf.shape(intrinsics)), intrinsics)


def scale_intrinsics(intrinsics, scale_x, scale_y):
    """K after resizing the image by (scale_x, scale_y) = (new_w / old_w, new_h / old_h).

    Args:
      intrinsics: `[..., 3, 3]`.
      scale_x, scale_y: scalars (float or scalar tensor).
    Returns:
      `[..., 3, 3]`: fx * sx, fy * sy, cx' = sx (cx + 0.5) - 0.5, cy' likewise.
    """
    return _apply(intrinsics, [[scale_x, 0.0, 0.5 * scale_x - 0.5],
                               [0.0, scale_y, 0.5 * scale_y - 0.5],
                               [0.0, 0.0, 1.0]])


def crop_intrinsics(intrinsics, offset_x, offset_y):
    """K after cropping with the crop's top-left pixel at (offset_x, offset_y)."""
    return _apply(intrinsics, [[1.0, 0.0, -offset_x], [0.0, 1.0, -offset_y], [0.0, 0.0, 1.0]])


def flip_intrinsics(intrinsics, width):
    """K' such that projecting the X-mirrored point gives the horizontally flipped pixel.

    Flipping maps x to (W - 1) - x. With the 3D point mirrored (X -> -X), fx stays positive and
    only the principal point moves: cx' = (W - 1) - cx. Callers that flip an image must also
    conjugate poses by diag(-1, 1, 1) (see `tf_depthseg.geometry` SE(3) helpers).
    """
    if isinstance(intrinsics, np.ndarray):
        out = intrinsics.copy()
        out[..., 0, 2] = (width - 1) - intrinsics[..., 0, 2]
        return out
    intrinsics = tf.convert_to_tensor(intrinsics)
    shift = (tf.cast(width, intrinsics.dtype) - 1.0) - 2.0 * intrinsics[..., 0, 2]
    only_cx = tf.constant([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], intrinsics.dtype)
    return intrinsics + shift[..., None, None] * only_cx


def make_intrinsics(fx, fy, cx, cy, dtype=np.float64) -> np.ndarray:
    """A `[3, 3]` numpy K from its four numbers."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)
