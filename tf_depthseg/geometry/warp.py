"""View synthesis: reconstruct the target frame from a source frame, depth and motion.

For every target pixel p with depth D(p):

    P_target = D(p) K^-1 p            (back-project, `projection.backproject`)
    P_source = T P_target             (rigid motion, T = T_target_to_source)
    p_source = K P_source / Z_source  (project, `projection.project`)
    I_rec(p) = I_source(p_source)     (bilinear sample, `sampler.bilinear_sample`)

`T_target_to_source` maps target-camera coordinates to source-camera coordinates. From a pose
network use `transforms.pose_vec_to_matrix`; from known extrinsics use
`transforms.relative_pose(world_from_target, world_from_source)`.

Moving objects (struct2depth manner, used by SUW's unsupervised loss): the static background
moves with the ego-motion only; a pixel inside object m's target-frame mask moves with
`T_ego @ T_object[m]`, where `T_object[m]` is the object's own motion expressed in the target
camera frame (see `transforms.object_motion_in_target_camera`): first the object moves, then the
camera. All functions run in `tf.function` and under `jit_compile=True`.
"""

from __future__ import annotations

import tensorflow as tf

from tf_depthseg.geometry import projection, sampler, transforms


def _source_coords(points_source, intrinsics):
    """Pixel coords `[B, H, W, 2]` and in-front mask `[B, H, W, 1]` of source-frame points."""
    coords = projection.project(points_source, intrinsics)
    in_front = points_source[..., 2:3] > projection.MIN_PROJECTION_DEPTH
    return coords, in_front


def _sample(source, coords, in_front, depth):
    reconstruction, inside = sampler.bilinear_sample(source, coords)
    # A target pixel without depth (0 = sky / no measurement) cannot be reconstructed.
    has_depth = depth > 0.0
    valid = inside * tf.cast(tf.logical_and(in_front, has_depth), inside.dtype)
    return reconstruction, valid


def warp(source, depth, intrinsics, target_to_source):
    """Reconstructs the target frame by sampling `source` where target pixels project.

    Args:
      source: `[B, H, W, C]` source frame.
      depth: `[B, H, W, 1]` target z-depth; 0 marks pixels without depth (invalid).
      intrinsics: `[B, 3, 3]` or `[3, 3]`, for both frames (same camera).
      target_to_source: `[B, 4, 4]` (or `[4, 4]`) rigid transform, target camera coordinates
        to source camera coordinates.
    Returns:
      (reconstruction `[B, H, W, C]`, valid `[B, H, W, 1]` float 0/1). Valid pixels have depth,
      land in front of the source camera and inside the source image.
    """
    source = tf.convert_to_tensor(source)
    depth = tf.cast(depth, source.dtype)
    target_to_source = tf.cast(target_to_source, source.dtype)
    points = projection.backproject(depth, intrinsics)
    points_source = transforms.apply_transform(target_to_source, points)
    coords, in_front = _source_coords(points_source, intrinsics)
    return _sample(source, coords, in_front, depth)


def reconstruct_with_object_motion(source, depth, intrinsics, ego_target_to_source,
                                   object_masks, object_transforms):
    """Reconstruction with the ego-motion for the background and a rigid motion per object.

    Pixels inside object m's target-frame mask use `T_ego @ object_transforms[:, m]`; all other
    pixels use `T_ego`. One sampling pass: the per-pixel transform is selected by the masks, so
    the result is the ego-warped static background with each object warped by its own motion and
    placed by the target frame's mask.

    Args:
      source: `[B, H, W, C]`.
      depth: `[B, H, W, 1]` target z-depth (0 = invalid).
      intrinsics: `[B, 3, 3]` or `[3, 3]`.
      ego_target_to_source: `[B, 4, 4]` camera motion, target to source camera coordinates.
      object_masks: `[B, H, W, M]` target-frame masks (bool or 0/1 float); masks must not
        overlap. An all-zero mask (padding slot) has no effect.
      object_transforms: `[B, M, 4, 4]` each object's own motion from target to source time,
        expressed in target-camera coordinates (`transforms.object_motion_in_target_camera`;
        identity for a static object).
    Returns:
      (reconstruction `[B, H, W, C]`, valid `[B, H, W, 1]`), as `warp`.
    """
    source = tf.convert_to_tensor(source)
    dtype = source.dtype
    depth = tf.cast(depth, dtype)
    ego = tf.cast(ego_target_to_source, dtype)
    if ego.shape.rank == 2:
        ego = ego[None]
    masks = tf.cast(object_masks, dtype)
    object_transforms = tf.cast(object_transforms, dtype)
    if masks.shape.rank != 4:
        raise ValueError(f"object_masks must be [B, H, W, M], got {masks.shape}")
    if object_transforms.shape.rank != 4 or object_transforms.shape[-2:] != (4, 4):
        raise ValueError(f"object_transforms must be [B, M, 4, 4], got {object_transforms.shape}")

    # A single [4, 4] ego-motion is shared by the batch; concat below needs explicit batch.
    ego = tf.broadcast_to(ego, tf.concat([tf.shape(object_transforms)[:1], [4, 4]], axis=0))
    full_object = tf.linalg.matmul(ego[:, None], object_transforms)  # [B, M, 4, 4]
    candidates = tf.concat([ego[:, None], full_object], axis=1)  # [B, 1 + M, 4, 4]
    background = 1.0 - tf.reduce_sum(masks, axis=-1, keepdims=True)
    weights = tf.concat([background, masks], axis=-1)  # [B, H, W, 1 + M], one-hot per pixel
    # Masks are binary and disjoint, so this mixture selects exactly one rigid transform.
    per_pixel = tf.einsum("bhwm,bmij->bhwij", weights, candidates[:, :, :3, :])

    points = projection.backproject(depth, intrinsics)
    points_source = (tf.linalg.matvec(per_pixel[..., :3], points) + per_pixel[..., 3])
    coords, in_front = _source_coords(points_source, intrinsics)
    return _sample(source, coords, in_front, depth)


def mask_objects(frames, masks):
    """Frames with the objects blacked out: the ego-motion network's input.

    struct2depth estimates camera motion from frames without the (possibly moving) objects;
    pass the union of the objects' masks over all frames of the clip if the objects move.
    (The object-motion network's input, frames keeping only one object, is
    `tf_depthseg.models.pose.mask_frames`.)

    Args:
      frames: `[..., H, W, C]`.
      masks: `[..., H, W, M]` object masks (bool or 0/1), broadcastable to `frames`' leading
        dims; any pixel inside any of the M masks is zeroed.
    Returns:
      `[..., H, W, C]`.
    """
    frames = tf.convert_to_tensor(frames)
    union = tf.reduce_max(tf.cast(masks, frames.dtype), axis=-1, keepdims=True)
    return frames * (1.0 - union)

