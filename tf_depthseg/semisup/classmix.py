"""ClassMix (Olsson et al. 2021), the baseline of Hoyer et al.: paste half of image i's classes
onto its partner j.

For each image i: the classes present in its label map (the teacher's argmax, or ground truth;
the ignore label and any id outside [0, num_classes) are never chosen), a uniformly random
subset of `n // 2` of the `n` present classes (the reference, `train.py` `generate_mix_mask`
mode "class": `np.random.choice(n, (n - n % 2) / 2, replace=False)`, i.e. rounded down), and
the mask = the pixels of image i showing one of those classes. The mask then goes through the
same `mix.mix` as DepthMix, with the same pairing (j = (i + 1) % B by default).

Randomness is stateless (`seed`, int `[2]`, drawn with `semisup.rng`): the same seed gives the
same classes, eagerly, in a graph and under XLA, so a resumed run draws what the uninterrupted
run drew.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import tensorflow as tf

from tf_depthseg.semisup import mix as mix_lib
from tf_depthseg.semisup import rng


def present_classes(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """bool `[B, num_classes]`: which classes occur in each label map `[B, H, W(, 1)]`."""
    labels = _class_ids(labels, num_classes)
    flat = tf.reshape(labels, [tf.shape(labels)[0], -1, 1])
    # A comparison with every class id (id num_classes, "no class", matches none). Not
    # tf.math.bincount: its output size is computed at run time, which XLA rejects.
    return tf.reduce_any(tf.equal(flat, tf.range(num_classes)[None, None, :]), axis=1)


def _class_ids(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """int32 `[B, H, W]` ids; the ignore label and other ids outside [0, C) become C."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    labels = tf.cast(labels, tf.int32)
    return tf.where((labels >= 0) & (labels < num_classes), labels, num_classes)


def choose_classes(labels: tf.Tensor, num_classes: int, seed) -> tf.Tensor:
    """bool `[B, num_classes]`: a random half (rounded down) of each image's present classes.

    Args:
      labels: int `[B, H, W]` or `[B, H, W, 1]` class ids (ignore label allowed).
      num_classes: number of classes C.
      seed: int32/int64 `[2]` stateless seed.
    """
    present = present_classes(labels, num_classes)
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1)  # [B]
    wanted = count // 2
    # A uniform random subset of size k of the present classes: rank them by uniform noise
    # (absent classes sort last) and keep the k lowest ranks.
    noise = rng.uniform(tf.shape(present), seed)
    noise = tf.where(present, noise, 2.0)
    order = tf.argsort(noise, axis=1, stable=True)
    rank = tf.argsort(order, axis=1, stable=True)  # inverse permutation: rank of each class
    return present & (rank < wanted[:, None])


def classmix_mask(labels: tf.Tensor, num_classes: int, seed) -> tf.Tensor:
    """The ClassMix mask of each image: bool `[B, H, W, 1]`, True = a chosen class of image i.

    Args: as `choose_classes`.
    """
    index = _class_ids(labels, num_classes)
    chosen = choose_classes(index, num_classes, seed)
    # Column num_classes stands for "no class" (ignore and out-of-range ids): never chosen.
    chosen = tf.pad(chosen, [[0, 0], [0, 1]], constant_values=False)
    batch = tf.shape(index)[0]
    flat = tf.reshape(index, [batch, -1])
    mask = tf.gather(chosen, flat, batch_dims=1)
    return tf.reshape(mask, tf.shape(index))[..., None]


def classmix(batch: Mapping[str, tf.Tensor], labels: tf.Tensor, num_classes: int, seed,
             partner: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Mixes every per-pixel tensor of `batch` with the ClassMix mask from `labels`.

    Args:
      batch: name -> `[B, H, W, C]` or `[B, H, W]` tensors to mix with the same mask.
      labels, num_classes, seed: see `choose_classes` (labels of the unmixed images).
      partner: optional int32 `[B]` (default `mix.partner_indices(B)`).
    Returns:
      The mixed tensors under their names, plus "mask" (bool `[B, H, W, 1]`).
    """
    if "mask" in batch:
        raise ValueError("classmix returns its own 'mask'; rename that batch key")
    mask = classmix_mask(labels, num_classes, seed)
    mixed = {name: mix_lib.mix(mask, value, partner) for name, value in batch.items()}
    mixed["mask"] = mask
    return mixed
