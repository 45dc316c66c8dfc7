"""DepthMix (Hoyer et al. 2021): paste image i onto its partner j where i is in front.

The mask for image i over its partner j (`mix.partner_indices`, j = (i + 1) % B) is

    M_i = (d_i >= d_j - margin) & (d_i >= foreground_threshold)

on per-image normalised SDE disparity d in [0, 1] (larger = closer), margin 0.03 and
foreground threshold 0: the reference's "depthcomp" mix mask (`train.py`,
`generate_mix_mask`; constants `dc_m = 0.03`, `dc_ft = 0` in `experiments.py`, id 210/212).
The margin lets i's pixels win near-ties (the reference: "avoids too much of mixing road with
same depth"); with threshold 0 the second term is always true on normalised disparity. Where
the mask holds, i's pixel occludes j's: an occluder in front wins, whichever image it is in.

The same mask then mixes images, disparities, teacher probabilities and one-hot labels
(`mix.mix`); `depthmix` does all of it in one call.

Normalisation: per image, `(d - min) / (max - min)` over the whole map, as the reference does
both for precomputed pseudo depth (`loader/depth_estimator.py`, per full image before
cropping, saved as 8-bit PNG) and for online SDE output (`train.py`, per crop). A constant map
(max == min), where the reference divides by zero, maps to 0.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import tensorflow as tf

from tf_depthseg.semisup import mix as mix_lib

MARGIN = 0.03  # experiments.py: dc_m
FOREGROUND_THRESHOLD = 0.0  # experiments.py: dc_ft


def normalize_disparity(disparity: tf.Tensor) -> tf.Tensor:
    """Per-image min-max normalisation of disparity `[B, H, W, 1]` to [0, 1] (float32).

    Larger stays closer. A constant image becomes all zeros.
    """
    disparity = tf.cast(disparity, tf.float32)
    low = tf.reduce_min(disparity, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(disparity, axis=[1, 2, 3], keepdims=True)
    span = high - low
    return tf.where(span > 0, (disparity - low) / tf.where(span > 0, span, 1.0), 0.0)


def depthmix_mask(disparity: tf.Tensor, partner: Optional[tf.Tensor] = None,
                  margin: float = MARGIN,
                  foreground_threshold: float = FOREGROUND_THRESHOLD) -> tf.Tensor:
    """The DepthMix mask of each image over its partner (see module doc).

    Args:
      disparity: float `[B, H, W, 1]` normalised disparity in [0, 1] (`normalize_disparity`).
      partner: optional int32 `[B]` (default `mix.partner_indices(B)`).
      margin: image i wins where its disparity is at most this much below its partner's.
      foreground_threshold: and only where its own disparity is at least this.
    Returns:
      bool `[B, H, W, 1]`: True = the pixel comes from image i.
    """
    disparity = tf.cast(disparity, tf.float32)
    if disparity.shape.rank != 4:
        raise ValueError(f"disparity must be [B, H, W, 1], got {disparity.shape}")
    other = mix_lib.partner_values(disparity, partner)
    return (disparity >= other - margin) & (disparity >= foreground_threshold)


def depthmix(batch: Mapping[str, tf.Tensor], disparity: tf.Tensor,
             partner: Optional[tf.Tensor] = None, margin: float = MARGIN,
             foreground_threshold: float = FOREGROUND_THRESHOLD,
             normalize: bool = True) -> Dict[str, tf.Tensor]:
    """Mixes every per-pixel tensor of `batch` with the DepthMix mask from `disparity`.

    Args:
      batch: name -> `[B, H, W, C]` or `[B, H, W]` tensors to mix with the same mask (e.g.
        the images, the teacher's probabilities, one-hot or integer labels).
      disparity: `[B, H, W, 1]` SDE disparity (larger = closer).
      partner, margin, foreground_threshold: see `depthmix_mask`.
      normalize: normalise `disparity` per image first (False when it already is, e.g. the
        precomputed `common.PSEUDO_DISPARITY`).
    Returns:
      The mixed tensors under their names, plus "mask" (bool `[B, H, W, 1]`) and "disparity"
      (the mixed normalised disparity, float32 `[B, H, W, 1]`).
    """
    clash = {"mask", "disparity"} & set(batch)
    if clash:
        raise ValueError(f"depthmix returns its own {sorted(clash)}; rename those batch keys")
    if normalize:
        disparity = normalize_disparity(disparity)
    mask = depthmix_mask(disparity, partner, margin, foreground_threshold)
    mixed = {name: mix_lib.mix(mask, value, partner) for name, value in batch.items()}
    mixed["mask"] = mask
    mixed["disparity"] = mix_lib.mix(mask, tf.cast(disparity, tf.float32), partner)
    return mixed
