"""Mixing two images of a batch with one binary mask (shared by DepthMix and ClassMix).

Pairing: image i is mixed with its *partner* `partner[i]`; the default partner is the next
image in the batch, `(i + 1) % B`, as in the reference (`loader/transformsgpu.py`, `mix`:
`mask[i] * x[i] + (1 - mask[i]) * x[(i + 1) % B]`; its DepthMix ("depthcomp" in `train.py`)
pairs (0, 1) and (1, 0) for its batch of 2, which is the same rule). Mixed sample i shows image
i where `mask[i]` is True (the pasted part, "in front") and its partner elsewhere.

Every per-pixel quantity (images, disparities, teacher probabilities, one-hot or integer
labels) goes through the *same* `mix` with the same mask, so the mixed labels describe the
mixed image. A mixed pixel is an exact copy of its source pixel (a select, never a blend):
integer labels keep their source's value, including the ignore label 255; a one-hot label of
an ignored pixel is all zeros (`one_hot_labels`) and stays all zeros after mixing, which
`mean_teacher.pseudo_labels` turns back into the ignore label (the reference's
`pseudo_label[max_probs == 0] = ignore_index`).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def partner_indices(batch_size) -> tf.Tensor:
    """int32 `[B]`: the default partner of each image, `(i + 1) % B` (see module doc)."""
    batch_size = tf.convert_to_tensor(batch_size, tf.int32)
    return tf.math.floormod(tf.range(batch_size) + 1, batch_size)


def partner_values(values: tf.Tensor, partner: Optional[tf.Tensor] = None) -> tf.Tensor:
    """`values[partner[i]]` for each i: `[B, ...]` -> `[B, ...]` (default partner (i + 1) % B)."""
    values = tf.convert_to_tensor(values)
    if partner is None:
        partner = partner_indices(tf.shape(values)[0])
    return tf.gather(values, tf.convert_to_tensor(partner, tf.int32), axis=0)


def mix(mask: tf.Tensor, values: tf.Tensor, partner: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Mixed sample i = `values[i]` where `mask[i]`, else `values[partner[i]]`.

    Args:
      mask: bool `[B, H, W, 1]` (or `[B, H, W]`): True = take the pixel from image i.
      values: `[B, H, W, C]` (images, disparity, probabilities, one-hot labels) or `[B, H, W]`
        (integer labels), any dtype.
      partner: optional int32 `[B]` partner of each image (default `partner_indices(B)`).
    Returns:
      `values`' shape and dtype.
    """
    values = tf.convert_to_tensor(values)
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        raise ValueError(f"mix mask must be bool, got {mask.dtype.name}")
    if mask.shape.rank == 4:
        if values.shape.rank == 3:
            mask = mask[..., 0]
    elif mask.shape.rank == 3:
        if values.shape.rank == 4:
            mask = mask[..., None]
    else:
        raise ValueError(f"mix mask must be [B, H, W, 1] or [B, H, W], got {mask.shape}")
    return tf.where(mask, values, partner_values(values, partner))


def one_hot_labels(labels: tf.Tensor, num_classes: int, dtype=tf.float32) -> tf.Tensor:
    """Integer labels `[B, H, W]` or `[B, H, W, 1]` -> one-hot `[B, H, W, num_classes]`.

    The ignore label (and any id outside [0, num_classes)) becomes an all-zero vector, which
    mixes like any other label and marks the pixel as ignored again in
    `mean_teacher.pseudo_labels` (maximum probability 0).
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    labels = tf.cast(labels, tf.int32)
    # tf.one_hot gives zeros for ids >= depth, but also for negative ids: both are "no class".
    return tf.one_hot(labels, num_classes, dtype=dtype)

