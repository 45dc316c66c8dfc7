"""The student's loss (berHu) and the difficulty score, as TensorFlow functions.

Both follow the reference (`lhoyer/improving_segmentation_with_selfsupervised_depth`):
loss/loss.py `berhu` and label_selection.py `acquire_scores` with depth_error_type "abs_log".
Disparities are normalised per image to [0, 1] (the teacher's, as the records store them) or
sigmoid outputs trained to match them (the student's); larger = closer.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

BERHU_THRESHOLD = 0.2  # reference berhu(): C = 0.2 max|e|
LOSS_BOTTOM_FRACTION = 0.1  # reference train.py: rows from 0.9 H on are out of the loss
FAR_THRESHOLD = 0.07  # reference: mask dilate(disp_pseudo < 0.07, 7, 3)
FAR_DILATION = 7
DIFFICULTY_BOTTOM_FRACTION = 0.13  # reference: rows from 0.87 H on are zeroed (own car)


def bottom_mask(shape, bottom_fraction: float) -> tf.Tensor:
    """float32 `[1, H, 1, 1]`: 1 above row int((1 - bottom_fraction) H), 0 from there on (the
    reference's `mask[int(0.9 * H):] = 0`)."""
    height = shape[1]
    first_masked = tf.cast(tf.cast(height, tf.float64) * (1.0 - bottom_fraction), tf.int32)
    rows = tf.range(height)
    return tf.cast(rows < first_masked, tf.float32)[None, :, None, None]


def berhu(prediction: tf.Tensor, target: tf.Tensor, mask: Optional[tf.Tensor] = None,
          threshold: float = BERHU_THRESHOLD) -> tf.Tensor:
    """The reference's reverse Huber loss over a batch: e = |target - prediction| * mask,
    c = threshold * max(e) over the whole batch (a constant: no gradient through it), per
    pixel e if e <= c else (e^2 + c^2) / (2c); the mean over all pixels, masked ones (0)
    included.

    Args:
      prediction, target: float `[B, H, W, 1]`.
      mask: float broadcastable to them (1 = in the loss), or None.
    Returns:
      float32 `[B]`: each image's mean (their mean is the reference's batch loss).
    """
    prediction = tf.cast(prediction, tf.float32)
    error = tf.abs(tf.cast(target, tf.float32) - prediction)
    if mask is not None:
        error = error * tf.cast(mask, tf.float32)
    c = tf.stop_gradient(threshold * tf.reduce_max(error))
    # c = 0 only when every error is 0: then every pixel takes the linear branch; the
    # guarded divisor keeps the unused branch (and its gradient) finite.
    squared = (tf.square(error) + tf.square(c)) / (2.0 * tf.maximum(c, 1e-12))
    per_pixel = tf.where(error <= c, error, squared)
    return tf.reduce_mean(per_pixel, axis=[1, 2, 3])


def difficulty_mask(teacher: tf.Tensor, far_threshold: float = FAR_THRESHOLD,
                    dilation: int = FAR_DILATION,
                    bottom_fraction: float = DIFFICULTY_BOTTOM_FRACTION) -> tf.Tensor:
    """float32 `[B, H, W, 1]`: 1 where the difficulty counts. 0 within the `dilation` x
    `dilation` square around any pixel whose teacher disparity is below `far_threshold`, and
    on the bottom `bottom_fraction` of the rows."""
    far = tf.cast(tf.cast(teacher, tf.float32) < far_threshold, tf.float32)
    # Max pooling with 'SAME' padding ignores the border: a binary dilation with zero padding
    # (the reference's clamp(conv2d(mask, ones(7, 7), padding=3), 0, 1)).
    far = tf.nn.max_pool2d(far, ksize=dilation, strides=1, padding="SAME")
    return (1.0 - far) * bottom_mask(tf.shape(teacher), bottom_fraction)


def difficulty(student: tf.Tensor, teacher: tf.Tensor, far_threshold: float = FAR_THRESHOLD,
               dilation: int = FAR_DILATION,
               bottom_fraction: float = DIFFICULTY_BOTTOM_FRACTION) -> tf.Tensor:
    """Per image: mean over ALL pixels of |log(1 + d_s) - log(1 + d_t)| x `difficulty_mask`
    (the reference averages the zeroed map, so masked pixels count as 0).

    Args:
      student, teacher: disparities float `[B, H, W, 1]`.
    Returns:
      float32 `[B]`.
    """
    student = tf.cast(student, tf.float32)
    teacher = tf.cast(teacher, tf.float32)
    error = tf.abs(tf.math.log1p(student) - tf.math.log1p(teacher))
    error = error * difficulty_mask(teacher, far_threshold, dilation, bottom_fraction)
    return tf.reduce_mean(error, axis=[1, 2, 3])
