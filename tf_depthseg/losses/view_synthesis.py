"""The multi-scale self-supervised view-synthesis loss (Monodepth2; struct2depth object motion).

For every scale s (disparity at 1/2^s resolution):
  1. upsample the disparity to full resolution and convert it to depth (`disp_to_depth`);
  2. reconstruct the target from each source frame with the target-to-source motion
     (`geometry.warp.warp`, or `reconstruct_with_object_motion` when object masks and motions are
     given);
  3. per-pixel minimum reprojection error over sources with auto-masking
     (`photometric.min_reprojection_from_errors`);
  4. edge-aware smoothness of the native-resolution disparity against the target resized to it,
     weighted `smoothness_weight / 2^s`.
The total is the sum over scales divided by the number of scales.

Known camera motion (Mannequin Challenge, synthetic scenes) uses the same function with
`target_to_source` from `geometry.transforms.relative_pose`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.geometry import warp as warp_lib
from tf_depthseg.losses import photometric, smoothness

# Keys of the returned dict (candidates for common.py).

TRAIN_MIN_DEPTH = 0.1  # metres, Monodepth2 training range
TRAIN_MAX_DEPTH = 100.0
SMOOTHNESS_WEIGHT = 1e-3


def disp_to_depth(disparity, min_depth: float = TRAIN_MIN_DEPTH,
                  max_depth: float = TRAIN_MAX_DEPTH):
    """Sigmoid disparity -> (scaled disparity, depth) with depth in [min_depth, max_depth].

    `scaled = 1/max + (1/min - 1/max) * disparity`, `depth = 1 / scaled`.

    Args:
      disparity: `[B, H, W, 1]` network output in [0, 1].
    Returns:
      (scaled_disparity, depth), both `[B, H, W, 1]`.
    """
    disparity = tf.convert_to_tensor(disparity)
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disparity
    return scaled, 1.0 / scaled


def _reduce_batch(per_example, global_batch_size):
    """Sum over the local batch divided by the global batch size.

    Under a tf.distribute strategy each replica sees batch/num_replicas examples and gradients
    are summed across replicas, so dividing by the global batch (not the local one) makes the
    summed gradient the true batch mean. Without a global size, the local mean.
    """
    if global_batch_size is None:
        return tf.reduce_mean(per_example)
    return tf.reduce_sum(per_example) / tf.cast(global_batch_size, per_example.dtype)


def _downsample_to(image, reference):
    """`image` `[B, H, W, C]` resized to `reference`'s height and width.

    Box-filter (area) average for exact integer factors, via average pooling because XLA has
    no ResizeArea kernel; bilinear otherwise.
    """
    (height, width), (out_height, out_width) = image.shape[1:3], reference.shape[1:3]
    if None not in (height, width, out_height, out_width):
        if (height, width) == (out_height, out_width):
            return image
        factor = height // out_height
        if factor * out_height == height and factor * out_width == width:
            return tf.nn.avg_pool2d(image, ksize=factor, strides=factor, padding="VALID")
    return tf.image.resize(image, tf.shape(reference)[1:3], method="bilinear")


def multiscale_view_synthesis_loss(
        target, sources, disparities: Sequence, intrinsics, target_to_source, *,
        object_masks=None, object_transforms=None, min_depth: float = TRAIN_MIN_DEPTH,
        max_depth: float = TRAIN_MAX_DEPTH,
        ssim_weight: float = photometric.DEFAULT_SSIM_WEIGHT,
        smoothness_weight: float = SMOOTHNESS_WEIGHT, automask: bool = True,
        use_valid_masks: bool = True,
        identity_noise_std: float = photometric.IDENTITY_NOISE_STD, noise_seed=(0, 0),
        global_batch_size: Optional[int] = None):
    """Monodepth2's multi-scale loss, optionally with per-object motion (struct2depth).

    Args:
      target: `[B, H, W, 3]` target frame in [0, 1].
      sources: `[B, N, H, W, 3]` source frames (the batch's `common.CONTEXT`).
      disparities: list over scales s = 0.. of `[B, H/2^s, W/2^s, 1]` sigmoid disparities.
      intrinsics: `[B, 3, 3]` (or `[3, 3]`) K at full resolution `H x W`.
      target_to_source: `[B, N, 4, 4]` target-to-source camera motion of each source.
      object_masks: optional `[B, H, W, M]` target-frame object masks (disjoint, 0/1).
      object_transforms: `[B, N, M, 4, 4]` each object's motion towards each source, in the
        target camera frame (see `warp.reconstruct_with_object_motion`); required with masks.
      min_depth, max_depth: depth range of `disp_to_depth`.
      ssim_weight: SSIM share of the photometric error.
      smoothness_weight: smoothness weight at scale 0 (divided by 2^s at scale s).
      automask: Monodepth2 auto-masking with the unwarped sources.
      use_valid_masks: skip out-of-view reconstructions in the per-pixel minimum.
      identity_noise_std, noise_seed: tie-break noise on identity errors.
      global_batch_size: divide batch sums by this (distributed training); None = local mean.
    Returns:
      dict: `photometric`, `smoothness` (weighted, averaged over scales), `total` (scalars) and
      `automask` `[B, H, W, 1]` (scale 0: 1 where the pixel trains depth and pose).
    """
    target = tf.convert_to_tensor(target)
    sources = tf.cast(sources, target.dtype)
    target_to_source = tf.cast(target_to_source, target.dtype)
    if sources.shape.rank != 5:
        raise ValueError(f"sources must be [B, N, H, W, C], got {sources.shape}")
    num_sources = sources.shape[1]
    if num_sources is None:
        raise ValueError("sources needs a static number of frames (axis 1)")
    if (object_masks is None) != (object_transforms is None):
        raise ValueError("object_masks and object_transforms go together")
    if not disparities:
        raise ValueError("disparities must hold at least one scale")
    height, width = target.shape[1], target.shape[2]
    if height is None or width is None:
        height, width = tf.shape(target)[1], tf.shape(target)[2]
    source_list = tf.unstack(sources, axis=1)

    identity_errors = None
    if automask:
        identity_errors = tf.concat(
            [photometric.photometric_error(target, s, ssim_weight) for s in source_list], -1)
        if identity_noise_std:
            identity_errors += photometric.identity_tie_break_noise(
                tf.shape(identity_errors), identity_errors.dtype, identity_noise_std, noise_seed)

    photometric_terms, smoothness_terms = [], []
    automask_scale0 = None
    for scale, disparity in enumerate(disparities):
        disparity = tf.cast(disparity, target.dtype)
        full_disparity = tf.image.resize(disparity, [height, width], method="bilinear")
        _, depth = disp_to_depth(full_disparity, min_depth, max_depth)
        errors, valids = [], []
        for index, source in enumerate(source_list):
            if object_masks is None:
                reconstruction, valid = warp_lib.warp(source, depth, intrinsics,
                                                      target_to_source[:, index])
            else:
                reconstruction, valid = warp_lib.reconstruct_with_object_motion(
                    source, depth, intrinsics, target_to_source[:, index], object_masks,
                    tf.cast(object_transforms, target.dtype)[:, index])
            errors.append(photometric.photometric_error(target, reconstruction, ssim_weight))
            valids.append(valid)
        per_example, mask = photometric.min_reprojection_from_errors(
            tf.concat(errors, -1), identity_errors,
            tf.concat(valids, -1) if use_valid_masks else None)
        if scale == 0:
            automask_scale0 = mask
        photometric_terms.append(per_example)
        # Monodepth2 compares the native-resolution disparity with the image at that size.
        scaled_target = _downsample_to(target, disparity)
        smoothness_terms.append(smoothness_weight / (2.0 ** scale)
                                * smoothness.edge_aware_smoothness(disparity, scaled_target))

    num_scales = float(len(disparities))
    photometric_loss = _reduce_batch(tf.add_n(photometric_terms) / num_scales,
                                     global_batch_size)
    smoothness_loss = _reduce_batch(tf.add_n(smoothness_terms) / num_scales, global_batch_size)
    return {
        common.LOSS_PHOTOMETRIC: photometric_loss,
        common.LOSS_SMOOTHNESS: smoothness_loss,
        common.LOSS_TOTAL: photometric_loss + smoothness_loss,
        common.AUTOMASK: automask_scale0,
    }
