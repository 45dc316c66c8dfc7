"""Differentiable bilinear image sampling with border padding and a validity mask.

Core TF ops only (gather + arithmetic), so it runs in eager mode, inside `tf.function` and with
`jit_compile=True`, and gradients reach both the image and the sampling coordinates (hence the
depth and pose that produced them). Replaces `tfa.image.resampler` / PyTorch `grid_sample(...,
padding_mode="border")` without tensorflow-addons.
"""

from __future__ import annotations

import tensorflow as tf


def bilinear_sample(image, coords):
    """Samples `image` at sub-pixel `coords` with bilinear interpolation.

    Coordinates use the library's pixel convention (pixel centres at integers, the image spans
    [-0.5, W - 0.5] x [-0.5, H - 0.5]). Out-of-image coordinates are clamped to the border
    (border padding: the nearest edge value, with zero gradient towards the outside), and
    reported in the mask instead.

    Args:
      image: `[B, H, W, C]` float.
      coords: `[B, h, w, 2]` (x, y) pixel coordinates into `image`; any h, w.
    Returns:
      (sampled `[B, h, w, C]`, valid `[B, h, w, 1]` float 0/1): valid is 1 where the
      coordinate is finite and lies inside the image span.
    """
    image = tf.convert_to_tensor(image)
    coords = tf.cast(coords, image.dtype)
    if image.shape.rank != 4:
        raise ValueError(f"image must be [B, H, W, C], got {image.shape}")
    if coords.shape.rank != 4 or coords.shape[-1] != 2:
        raise ValueError(f"coords must be [B, h, w, 2], got {coords.shape}")
    image_shape = tf.shape(image)
    batch, height, width, channels = (image_shape[0], image_shape[1], image_shape[2],
                                      image_shape[3])
    out_height, out_width = tf.shape(coords)[1], tf.shape(coords)[2]
    max_x = tf.cast(width - 1, image.dtype)
    max_y = tf.cast(height - 1, image.dtype)

    x, y = coords[..., 0], coords[..., 1]
    finite = tf.logical_and(tf.math.is_finite(x), tf.math.is_finite(y))
    # Non-finite coordinates would turn into garbage indices; sample pixel 0 and mark invalid.
    x = tf.where(finite, x, tf.zeros_like(x))
    y = tf.where(finite, y, tf.zeros_like(y))
    inside = ((x >= -0.5) & (x <= max_x + 0.5) & (y >= -0.5) & (y <= max_y + 0.5))
    valid = tf.cast(tf.logical_and(finite, inside), image.dtype)[..., None]

    x = tf.clip_by_value(x, 0.0, max_x)
    y = tf.clip_by_value(y, 0.0, max_y)
    x0 = tf.floor(x)
    y0 = tf.floor(y)
    # Interpolation weights carry the coordinate gradient (floor has none).
    weight_x1 = x - x0
    weight_y1 = y - y0
    x0_index = tf.cast(x0, tf.int32)
    y0_index = tf.cast(y0, tf.int32)
    x1_index = tf.minimum(x0_index + 1, width - 1)
    y1_index = tf.minimum(y0_index + 1, height - 1)

    flat_image = tf.reshape(image, tf.stack([batch, height * width, channels]))

    def gather(y_index, x_index):
        flat_index = tf.reshape(y_index * width + x_index, tf.stack([batch, -1]))
        values = tf.gather(flat_image, flat_index, batch_dims=1)
        return tf.reshape(values, tf.stack([batch, out_height, out_width, channels]))

    weight_x1 = weight_x1[..., None]
    weight_y1 = weight_y1[..., None]
    top = (1.0 - weight_x1) * gather(y0_index, x0_index) + weight_x1 * gather(y0_index, x1_index)
    bottom = (1.0 - weight_x1) * gather(y1_index, x0_index) + weight_x1 * gather(y1_index,
                                                                                 x1_index)
    sampled = (1.0 - weight_y1) * top + weight_y1 * bottom
    return sampled, valid
