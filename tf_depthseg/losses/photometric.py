"""Photometric reconstruction error (SSIM + L1) and the per-pixel minimum reprojection with
auto-masking (Monodepth2, Godard et al. 2019).

Pure functions of tensors; images are `[B, H, W, C]` floats in [0, 1]. They run in eager mode,
in `tf.function` and under `jit_compile=True`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
DEFAULT_SSIM_WEIGHT = 0.85  # Monodepth2: 0.85 * (1 - SSIM) / 2 + 0.15 * L1
IDENTITY_NOISE_STD = 1e-5  # Monodepth2's tie-break noise on the identity (unwarped) error


def _avg_pool3x3(x):
    return tf.nn.avg_pool2d(x, ksize=3, strides=1, padding="VALID")


def ssim_dissimilarity(a, b, c1: float = SSIM_C1, c2: float = SSIM_C2):
    """Per-pixel `(1 - SSIM) / 2` on 3x3 windows after 1-pixel reflection padding, in [0, 1].

    Args:
      a, b: `[B, H, W, C]` images in [0, 1].
      c1, c2: SSIM stabilisers ((0.01 L)^2, (0.03 L)^2 with dynamic range L = 1).
    Returns:
      `[B, H, W, C]`.
    """
    a = tf.convert_to_tensor(a)
    b = tf.cast(b, a.dtype)
    padding = [[0, 0], [1, 1], [1, 1], [0, 0]]
    a = tf.pad(a, padding, mode="REFLECT")
    b = tf.pad(b, padding, mode="REFLECT")
    mu_a = _avg_pool3x3(a)
    mu_b = _avg_pool3x3(b)
    sigma_a = _avg_pool3x3(a * a) - mu_a * mu_a
    sigma_b = _avg_pool3x3(b * b) - mu_b * mu_b
    sigma_ab = _avg_pool3x3(a * b) - mu_a * mu_b
    numerator = (2.0 * mu_a * mu_b + c1) * (2.0 * sigma_ab + c2)
    denominator = (mu_a * mu_a + mu_b * mu_b + c1) * (sigma_a + sigma_b + c2)
    return tf.clip_by_value((1.0 - numerator / denominator) / 2.0, 0.0, 1.0)


def photometric_error(a, b, ssim_weight: float = DEFAULT_SSIM_WEIGHT, planar: bool = False):
    """Channel-averaged `ssim_weight * (1 - SSIM)/2 + (1 - ssim_weight) * |a - b|`.

    Args:
      a, b: `[B, H, W, C]` images in [0, 1].
      ssim_weight: weight of the SSIM term; the L1 term gets `1 - ssim_weight`.
      planar: compute SSIM on channel planes (`_planar_ssim_mean`; for XLA).
    Returns:
      `[B, H, W, 1]`.
    """
    a = tf.convert_to_tensor(a)
    b = tf.cast(b, a.dtype)
    l1 = tf.reduce_mean(tf.abs(a - b), axis=-1, keepdims=True)
    if ssim_weight == 0.0:
        return l1
    if planar:
        ssim = _planar_ssim_mean(a, b)
    else:
        ssim = tf.reduce_mean(ssim_dissimilarity(a, b), axis=-1, keepdims=True)
    return ssim_weight * ssim + (1.0 - ssim_weight) * l1


def _planar_ssim_mean(a, b):
    """The channel mean of `ssim_dissimilarity(a, b)`, computed on `[B * C, H, W, 1]` planes.

    The same numbers; the layout is for XLA on a CPU, whose 3x3 means (reduce-window) are
    slow with the 3 channels innermost and vectorise along the width. In graph mode the
    transposes cost more than they save, so view_synthesis uses it under XLA only
    (docs/hoyer_speed.md). `[B, H, W, C] -> [B, H, W, 1]`.
    """
    shape = tf.shape(a)

    def planes(x):
        return tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, shape[1], shape[2], 1])

    dissimilarity = tf.reshape(ssim_dissimilarity(planes(a), planes(b)),
                               [shape[0], -1, shape[1], shape[2]])
    return tf.transpose(tf.reduce_mean(dissimilarity, axis=1, keepdims=True), [0, 2, 3, 1])


def identity_tie_break_noise(shape, dtype=tf.float32, std: float = IDENTITY_NOISE_STD,
                             seed=(0, 0)):
    """Tiny Gaussian noise added to identity errors so exact ties (static frames) break
    randomly instead of always going to the same side. Stateless, so XLA-friendly; pass a
    step-dependent `seed` (`[2]` ints) for fresh noise each step."""
    return std * tf.random.stateless_normal(shape, seed=tf.cast(seed, tf.int32), dtype=dtype)


def min_reprojection_from_errors(reprojection_errors, identity_errors=None, valid_masks=None):
    """Per-pixel minimum over sources, optionally with auto-masking, from precomputed errors.

    * A reprojection flagged invalid (`valid_masks` = 0: out of view, behind the camera) is
      skipped in the minimum when another valid candidate exists; a pixel with no valid
      candidate falls back to the minimum of all its errors (border-padded samples, as
      Monodepth2), so moving pixels out of view can never lower the loss.
    * With `identity_errors` (auto-masking), the minimum also runs over the unwarped sources'
      errors; pixels where an identity error wins (static scene, objects moving with the camera)
      carry no gradient to depth or pose.

    Args:
      reprojection_errors: `[B, H, W, N]` error of each source's reconstruction.
      identity_errors: `[B, H, W, N']` errors of the unwarped sources (noise included), or None.
      valid_masks: `[B, H, W, N]` 0/1 validity of each reconstruction, or None (all valid).
    Returns:
      (per_example `[B]` mean over pixels of the minimum, automask `[B, H, W, 1]` float 0/1:
      1 where a reprojection gave the minimum, i.e. the pixel trains depth and pose).
    """
    reprojection_errors = tf.convert_to_tensor(reprojection_errors)
    dtype = reprojection_errors.dtype
    best = tf.reduce_min(reprojection_errors, axis=-1, keepdims=True)
    if valid_masks is not None:
        valid = tf.cast(valid_masks, dtype) > 0.5
        # Large finite stand-in (errors are O(1)); never selected when a valid one exists.
        masked = tf.where(valid, reprojection_errors, tf.fill(tf.shape(reprojection_errors),
                                                              tf.constant(1e4, dtype)))
        any_valid = tf.reduce_any(valid, axis=-1, keepdims=True)
        best = tf.where(any_valid, tf.reduce_min(masked, axis=-1, keepdims=True), best)
    if identity_errors is None:
        minimum = best
        automask = tf.ones_like(best)
    else:
        best_identity = tf.reduce_min(tf.cast(identity_errors, dtype), axis=-1, keepdims=True)
        minimum = tf.minimum(best, best_identity)
        automask = tf.cast(best < best_identity, dtype)
    return tf.reduce_mean(minimum, axis=[1, 2, 3]), automask


def min_reprojection_loss(target, reconstructions: Sequence,
                          identity_sources: Optional[Sequence] = None,
                          valid_masks: Optional[Sequence] = None, automask: bool = True,
                          ssim_weight: float = DEFAULT_SSIM_WEIGHT,
                          identity_noise_std: float = IDENTITY_NOISE_STD, noise_seed=(0, 0)):
    """Monodepth2's per-pixel minimum reprojection loss with auto-masking.

    Args:
      target: `[B, H, W, C]` target frame.
      reconstructions: list of `[B, H, W, C]`, the target reconstructed from each source.
      identity_sources: list of `[B, H, W, C]` unwarped source frames (required when
        `automask`).
      valid_masks: optional list of `[B, H, W, 1]` validity of each reconstruction.
      automask: also minimise over the identity errors (Monodepth2 auto-masking).
      ssim_weight: see `photometric_error`.
      identity_noise_std: std of the tie-break noise added to identity errors (0 disables).
      noise_seed: `[2]` ints for the stateless noise.
    Returns:
      (per_example loss `[B]`, automask `[B, H, W, 1]`), see `min_reprojection_from_errors`.
    """
    if not reconstructions:
        raise ValueError("min_reprojection_loss needs at least one reconstruction")
    target = tf.convert_to_tensor(target)
    errors = tf.concat([photometric_error(target, r, ssim_weight) for r in reconstructions],
                       axis=-1)
    valid = None
    if valid_masks is not None:
        if len(valid_masks) != len(reconstructions):
            raise ValueError(f"got {len(valid_masks)} valid masks for {len(reconstructions)} "
                             "reconstructions")
        valid = tf.concat([tf.cast(v, target.dtype) for v in valid_masks], axis=-1)
    identity = None
    if automask:
        if not identity_sources:
            raise ValueError("automask=True needs identity_sources (the unwarped source frames)")
        identity = tf.concat([photometric_error(target, s, ssim_weight)
                              for s in identity_sources], axis=-1)
        if identity_noise_std:
            identity += identity_tie_break_noise(tf.shape(identity), identity.dtype,
                                                 identity_noise_std, noise_seed)
    return min_reprojection_from_errors(errors, identity, valid)
