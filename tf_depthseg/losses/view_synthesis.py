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

Speed: the loss is hundreds of small element-wise ops per scale (warp, bilinear sampling,
SSIM's 3x3 means, the minimum, smoothness) and their gradients, which XLA fuses: compiled
together, forward and backward take ~0.4x their graph-mode time on the CPU (batch 4, 192x640;
issue 14 measured 0.31-0.38x Monodepth2's PyTorch loss with XLA against 1.0-1.1x without).
XLA's CPU convolutions are slower than oneDNN's, so the networks stay in graph mode and only
the loss is compiled, with its gradient: `jit_compile=None` (the default) compiles one XLA
function that returns the loss terms and their gradients w.r.t. the disparities and motions,
and a custom gradient hands those to the networks' graph-mode backward pass. (A compiled loss
whose gradient TensorFlow derives separately gains nothing: measured as slow as graph mode.)
The default is on where no GPU is visible and the target batch has at least
`JIT_MIN_PIXELS` pixels: compiling takes tens of seconds, which tiny batches never win back
(2 x 32 x 96: 28 ms vs 22 ms per call). GPUs were not measured, so nothing changes there.
Inside an XLA-compiled caller (`train.jit_compile`) the loss is compiled with the caller.
The compiled path draws the auto-mask's tie-break noise with TensorFlow's kernel and passes it
in: XLA's CPU random normal was the compiled loss's most expensive instruction (its XLA dump
and profile). docs/hoyer_speed.md has the train-step figures (`bench/bench_hoyer_step.py`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf
from tensorflow.python.ops import control_flow_util

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


# Smallest target batch (B * H * W) the default compiles the loss for (module docstring).
JIT_MIN_PIXELS = 2 ** 15


def default_jit_compile(target_shape) -> bool:
    """Whether the loss of a `target_shape` `[B, H, W, 3]` batch compiles with XLA by default:
    on a machine without a GPU, for batches of at least JIT_MIN_PIXELS pixels."""
    pixels = 1
    for size in list(target_shape)[:3]:
        if size is None:
            return False
        pixels *= int(size)
    return pixels >= JIT_MIN_PIXELS and not tf.config.list_logical_devices("GPU")


def multiscale_view_synthesis_loss(
        target, sources, disparities: Sequence, intrinsics, target_to_source, *,
        object_masks=None, object_transforms=None, min_depth: float = TRAIN_MIN_DEPTH,
        max_depth: float = TRAIN_MAX_DEPTH,
        ssim_weight: float = photometric.DEFAULT_SSIM_WEIGHT,
        smoothness_weight: float = SMOOTHNESS_WEIGHT, automask: bool = True,
        use_valid_masks: bool = True,
        identity_noise_std: float = photometric.IDENTITY_NOISE_STD, noise_seed=(0, 0),
        global_batch_size: Optional[int] = None, jit_compile: Optional[bool] = None):
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
      jit_compile: compute the loss and its gradient in one XLA function (None:
        `default_jit_compile(target.shape)`; module docstring). Its gradient reaches the
        disparities, `target_to_source` and `object_transforms` only; False: plain graph
        ops, differentiable w.r.t. every input. Inside an XLA-compiled caller the loss is
        compiled with the caller either way.
    Returns:
      dict: `photometric`, `smoothness` (weighted, averaged over scales), `total` (scalars) and
      `automask` `[B, H, W, 1]` (scale 0: 1 where the pixel trains depth and pose).
    """
    target = tf.convert_to_tensor(target)
    static = dict(min_depth=min_depth, max_depth=max_depth, ssim_weight=ssim_weight,
                  smoothness_weight=smoothness_weight, automask=automask,
                  use_valid_masks=use_valid_masks, identity_noise_std=identity_noise_std,
                  global_batch_size=global_batch_size)
    if jit_compile is None:
        jit_compile = default_jit_compile(target.shape)
    in_xla = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
    if not jit_compile or in_xla:
        return _multiscale_loss(target, sources, list(disparities), intrinsics,
                                target_to_source, object_masks=object_masks,
                                object_transforms=object_transforms, noise_seed=noise_seed,
                                **static)
    return _loss_with_compiled_gradients(target, sources, disparities, intrinsics,
                                         target_to_source, object_masks, object_transforms,
                                         noise_seed, static)


def _loss_with_compiled_gradients(target, sources, disparities, intrinsics, target_to_source,
                                  object_masks, object_transforms, noise_seed, static):
    """The loss from one XLA function that also returns its gradients (module docstring).

    Gradients flow to the disparities, `target_to_source` and `object_transforms` (the
    network outputs); the frames, intrinsics and masks are constants of the loss here.
    """
    disparities = [tf.convert_to_tensor(d) for d in disparities]
    moving = [tf.convert_to_tensor(target_to_source)]
    if object_transforms is not None:
        moving.append(tf.convert_to_tensor(object_transforms))
    sources = tf.convert_to_tensor(sources)
    # The identity errors' tie-break noise comes from TensorFlow's kernel, outside XLA, whose
    # CPU Philox + normal transform was the compiled loss's costliest instruction; the same
    # numbers either way (test).
    identity_noise = None
    if static["automask"] and static["identity_noise_std"]:
        identity_noise = photometric.identity_tie_break_noise(
            _identity_errors_shape(target, sources), target.dtype,
            static["identity_noise_std"], noise_seed)
    constants = dict(target=target, sources=sources,
                     intrinsics=tf.convert_to_tensor(intrinsics),
                     object_masks=(None if object_masks is None
                                   else tf.convert_to_tensor(object_masks)),
                     identity_noise=identity_noise)
    count = len(disparities)

    @tf.custom_gradient
    def loss(*inputs):
        terms, photometric_grads, smoothness_grads = _compiled_loss_and_gradients(
            list(inputs[:count]), list(inputs[count:]), **constants, **static)

        def gradient(d_photometric, d_smoothness, d_total, d_automask):
            del d_automask  # a mask: no gradient
            d_photometric, d_smoothness, d_total = (
                tf.zeros([]) if d is None else tf.cast(d, tf.float32)
                for d in (d_photometric, d_smoothness, d_total))
            photometric_weight = d_photometric + d_total  # total = photometric + smoothness
            smoothness_weight = d_smoothness + d_total
            grads = [photometric_weight * g for g in photometric_grads]
            for index, g in enumerate(smoothness_grads):  # only the disparities have one
                grads[index] += smoothness_weight * g
            return [tf.cast(g, x.dtype) for g, x in zip(grads, inputs)]

        return (terms[common.LOSS_PHOTOMETRIC], terms[common.LOSS_SMOOTHNESS],
                terms[common.LOSS_TOTAL], terms[common.AUTOMASK]), gradient

    photometric_loss, smoothness_loss, total, automask = loss(*disparities, *moving)
    return {common.LOSS_PHOTOMETRIC: photometric_loss, common.LOSS_SMOOTHNESS: smoothness_loss,
            common.LOSS_TOTAL: total, common.AUTOMASK: automask}


def _identity_errors_shape(target, sources):
    """`[B, H, W, N]`: one identity error per source frame."""
    shape = tf.shape(target)
    return tf.stack([shape[0], shape[1], shape[2], tf.shape(sources)[1]])


def _loss_and_gradients(disparities, moving, *, target, sources, intrinsics, object_masks,
                        identity_noise, **static):
    """(terms, d photometric / d [disparities + moving], d smoothness / d disparities):
    the body of the compiled function; `moving` = [target_to_source(, object_transforms)]."""
    variables = list(disparities) + list(moving)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(variables)
        terms = _multiscale_loss(target, sources, disparities, intrinsics, moving[0],
                                 object_masks=object_masks,
                                 object_transforms=moving[1] if len(moving) > 1 else None,
                                 identity_noise=identity_noise, **static)
    zero = tf.UnconnectedGradients.ZERO
    photometric_grads = tape.gradient(terms[common.LOSS_PHOTOMETRIC], variables,
                                      unconnected_gradients=zero)
    smoothness_grads = tape.gradient(terms[common.LOSS_SMOOTHNESS], list(disparities),
                                     unconnected_gradients=zero)
    return terms, photometric_grads, smoothness_grads


def _multiscale_loss(target, sources, disparities, intrinsics, target_to_source, *,
                     object_masks, object_transforms, min_depth, max_depth, ssim_weight,
                     smoothness_weight, automask, use_valid_masks, identity_noise_std,
                     global_batch_size, noise_seed=(0, 0), identity_noise=None):
    """`multiscale_view_synthesis_loss` without the choice of compilation; `identity_noise`
    `[B, H, W, N]` replaces the tie-break noise it would draw from `noise_seed`."""
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
    # SSIM on channel planes where XLA compiles the loss (photometric._planar_ssim_mean).
    planar = control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())

    identity_errors = None
    if automask:
        identity_errors = tf.concat(
            [photometric.photometric_error(target, s, ssim_weight, planar)
             for s in source_list], -1)
        if identity_noise is not None:
            identity_errors += tf.cast(identity_noise, identity_errors.dtype)
        elif identity_noise_std:
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
            errors.append(photometric.photometric_error(target, reconstruction, ssim_weight,
                                                        planar))
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


# One function for every call: its traces (one per input shapes and static arguments) and their
# XLA executables are reused by every train step that calls the loss with the same shapes.
_compiled_loss_and_gradients = tf.function(_loss_and_gradients, jit_compile=True,
                                           autograph=False)
