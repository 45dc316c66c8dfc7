"""Segmentation losses: pixel-wise cross-entropy over labelled pixels.

`cross_entropy_with_ignore` returns one value per image (the mean cross-entropy over the
image's labelled pixels), so a task sums it over its replica's images and divides by the
global batch (`training.loop.global_mean`), as every loss of the engine does. PyTorch's
`CrossEntropyLoss(ignore_index=255)` of the reference code averages over the labelled pixels
of the whole batch instead; the two agree when the images of a batch have equally many
labelled pixels (always for fully labelled crops), and the per-image mean splits across
replicas without a cross-replica pixel count.
"""

from __future__ import annotations

import tensorflow as tf

from tf_depthseg import common


def _masked_pixel_cross_entropy(logits, labels, ignore_label: int):
    """Per-pixel softmax cross-entropy `[B, H, W]` float32, 0 on ignored pixels, and the
    bool `[B, H, W]` mask of the others. labels: integer `[B, H, W]` or `[B, H, W, 1]`."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 4:
        labels = tf.squeeze(labels, axis=-1)
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    # Ignored pixels get class 0 so the op sees a valid id; their loss is zeroed.
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels,
                                                               logits=logits)
    return tf.where(valid, per_pixel, 0.0), valid


def cross_entropy_with_ignore(logits, labels, ignore_label: int = common.IGNORE_LABEL):
    """Per-image mean softmax cross-entropy over the pixels whose label is not `ignore_label`.

    Args:
      logits: float `[B, H, W, C]` (any float dtype; computed in float32).
      labels: integer `[B, H, W]` or `[B, H, W, 1]` class ids in [0, C) or `ignore_label`
        (other values: undefined, as in `tf.nn.sparse_softmax_cross_entropy_with_logits`).
      ignore_label: the label of unlabelled pixels (common.IGNORE_LABEL = 255).
    Returns:
      float32 `[B]`: each image's mean over its labelled pixels; 0 (and no gradient) for an
      image without labelled pixels.
    """
    per_pixel, valid = _masked_pixel_cross_entropy(logits, labels, ignore_label)
    valid = tf.cast(valid, tf.float32)
    total = tf.reduce_sum(per_pixel, axis=[1, 2])
    count = tf.reduce_sum(valid, axis=[1, 2])
    return total / tf.maximum(count, 1.0)


def pseudo_label_cross_entropy(logits, pseudo_labels, weight,
                               ignore_label: int = common.IGNORE_LABEL):
    """The mean teacher's unlabelled loss: confidence-weighted cross-entropy to pseudo-labels.

    Per image: `weight * sum(CE over pixels with a pseudo-label) / (H * W)`. Pixels with the
    ignore label count in the denominator with loss 0, as in the reference (`train.py`
    `calc_pseudo_label_loss`: `cross_entropy2d` with `reduction="none"`, ignore index, pixel
    weights, then the mean over all pixels). Summed over the batch and divided by the batch
    size this is the reference's loss for equally sized images.

    Args:
      logits: float `[B, H, W, C]` student logits on the (mixed, augmented) images.
      pseudo_labels: integer `[B, H, W]` or `[B, H, W, 1]` (`semisup.mean_teacher.pseudo_labels`).
      weight: float `[]` (the reference: one confidence fraction per batch) or `[B]`
        (`semisup.mean_teacher.confidence_weight`); no gradient flows into it.
      ignore_label: the label of pixels without a pseudo-label.
    Returns:
      float32 `[B]`.
    """
    per_pixel, _ = _masked_pixel_cross_entropy(logits, pseudo_labels, ignore_label)
    per_image = tf.reduce_mean(per_pixel, axis=[1, 2])
    weight = tf.stop_gradient(tf.cast(weight, tf.float32))
    return weight * per_image
