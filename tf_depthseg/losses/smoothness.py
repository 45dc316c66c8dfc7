"""Edge-aware disparity smoothness (Monodepth/Monodepth2)."""

from __future__ import annotations

import tensorflow as tf


def edge_aware_smoothness(disparity, image):
    """`mean |dx d*| exp(-mean_c |dx I|) + mean |dy d*| exp(-mean_c |dy I|)` per example.

    `d* = d / mean(d)` (per image): normalising by the mean disparity stops the loss from
    being lowered by shrinking the depth scale, which is free under monocular supervision.

    Args:
      disparity: `[B, H, W, 1]`.
      image: `[B, H, W, C]` the target frame at the disparity's resolution.
    Returns:
      `[B]` per-example smoothness.
    """
    disparity = tf.convert_to_tensor(disparity)
    image = tf.cast(image, disparity.dtype)
    mean_disparity = tf.reduce_mean(disparity, axis=[1, 2, 3], keepdims=True)
    disparity = disparity / (mean_disparity + 1e-7)
    grad_disp_x = tf.abs(disparity[:, :, :-1] - disparity[:, :, 1:])
    grad_disp_y = tf.abs(disparity[:, :-1] - disparity[:, 1:])
    grad_image_x = tf.reduce_mean(tf.abs(image[:, :, :-1] - image[:, :, 1:]), -1, keepdims=True)
    grad_image_y = tf.reduce_mean(tf.abs(image[:, :-1] - image[:, 1:]), -1, keepdims=True)
    smooth_x = tf.reduce_mean(grad_disp_x * tf.exp(-grad_image_x), axis=[1, 2, 3])
    smooth_y = tf.reduce_mean(grad_disp_y * tf.exp(-grad_image_y), axis=[1, 2, 3])
    return smooth_x + smooth_y
