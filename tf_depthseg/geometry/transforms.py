"""Rigid transforms (SE(3)) as `[..., 4, 4]` matrices: build, invert, compose, apply.

Conventions used across tf_depthseg:

* Camera axes are OpenCV's: x right, y down, z forward.
* `T_a_to_b` (or `b_from_a`) maps a point's coordinates in frame a to its coordinates in frame b:
  `p_b = R p_a + t`. Composition reads right to left: `c_from_a = compose(c_from_b, b_from_a)`.
* A pose vector is 6 numbers, axis-angle rotation (3, radians, Rodrigues) then translation (3),
  the layout the pose networks output (`common.OUT_POSE`).
* Euler angles are `(rx, ry, rz)` radians with `R = Rz @ Ry @ Rx`: rotate about the fixed x axis
  first, then y, then z.

Every function takes tensors or numpy arrays of any float dtype (float64 generator poses stay
float64) with arbitrary leading batch dimensions, works inside `tf.function` and under XLA, and
has finite gradients at the identity (pose networks start there).
"""

from __future__ import annotations

import tensorflow as tf

# Below this squared angle the Rodrigues coefficients switch to their Taylor series: sin and
# 1 - cos lose all precision there, and the series keeps gradients finite at exactly zero.
_SMALL_ANGLE_SQ = 1e-8


def _float_tensor(value) -> tf.Tensor:
    """Tensor of `value`; integer input becomes float32."""
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_floating:
        value = tf.cast(value, tf.float32)
    return value


def skew(vector) -> tf.Tensor:
    """Cross-product matrix `[v]_x` with `[v]_x @ u == cross(v, u)`.

    Args:
      vector: `[..., 3]`.
    Returns:
      `[..., 3, 3]`.
    """
    vector = _float_tensor(vector)
    x, y, z = tf.unstack(vector, axis=-1)
    zero = tf.zeros_like(x)
    return tf.stack([tf.stack([zero, -z, y], axis=-1),
                     tf.stack([z, zero, -x], axis=-1),
                     tf.stack([-y, x, zero], axis=-1)], axis=-2)


def axis_angle_to_matrix(axis_angle) -> tf.Tensor:
    """Rotation matrix from an axis-angle vector (Rodrigues' formula).

    `R = I + sin(theta)/theta [w]_x + (1 - cos(theta))/theta^2 [w]_x^2` with `theta = |w|`.

    Args:
      axis_angle: `[..., 3]`, direction = rotation axis, norm = angle in radians
        (right-handed).
    Returns:
      `[..., 3, 3]` rotation matrices.
    """
    axis_angle = _float_tensor(axis_angle)
    theta_sq = tf.reduce_sum(tf.square(axis_angle), axis=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    # Double-where: sqrt and division only ever see a safe value, so their gradients stay
    # finite in the branch that is not selected (NaN * 0 would still poison the sum).
    safe_theta_sq = tf.where(small, tf.ones_like(theta_sq), theta_sq)
    safe_theta = tf.sqrt(safe_theta_sq)
    sin_coeff = tf.where(small, 1.0 - theta_sq / 6.0, tf.sin(safe_theta) / safe_theta)
    cos_coeff = tf.where(small, 0.5 - theta_sq / 24.0,
                         (1.0 - tf.cos(safe_theta)) / safe_theta_sq)
    k = skew(axis_angle)
    eye = tf.eye(3, dtype=axis_angle.dtype)
    return (eye + sin_coeff[..., None, None] * k
            + cos_coeff[..., None, None] * tf.linalg.matmul(k, k))


def matrix_to_axis_angle(rotation) -> tf.Tensor:
    """Inverse of `axis_angle_to_matrix`: angle in [0, pi], robust near 0 and near pi.

    Args:
      rotation: `[..., 3, 3]` rotation matrices.
    Returns:
      `[..., 3]` axis-angle vectors.
    """
    rotation = _float_tensor(rotation)
    dtype = rotation.dtype
    trace = tf.linalg.trace(rotation)
    cos_theta = tf.clip_by_value((trace - 1.0) / 2.0, -1.0, 1.0)
    # The antisymmetric part gives sin(theta) * axis.
    sin_axis = 0.5 * tf.stack([rotation[..., 2, 1] - rotation[..., 1, 2],
                               rotation[..., 0, 2] - rotation[..., 2, 0],
                               rotation[..., 1, 0] - rotation[..., 0, 1]], axis=-1)
    sin_theta = tf.norm(sin_axis, axis=-1)
    theta = tf.atan2(sin_theta, cos_theta)
    small = sin_theta < 1e-6
    factor = tf.where(small, 1.0 + tf.square(theta) / 6.0,
                      theta / tf.where(small, tf.ones_like(sin_theta), sin_theta))
    generic = sin_axis * factor[..., None]

    # Near pi the antisymmetric part vanishes; the symmetric part is
    # (1 - cos) a a^T + cos I, so the largest-diagonal column of it gives the axis.
    outer = ((rotation + tf.linalg.matrix_transpose(rotation)) / 2.0
             - cos_theta[..., None, None] * tf.eye(3, dtype=dtype))
    column = tf.one_hot(tf.argmax(tf.linalg.diag_part(outer), axis=-1), 3, dtype=dtype)
    axis = tf.reduce_sum(outer * column[..., None, :], axis=-1)
    axis = axis / tf.maximum(tf.norm(axis, axis=-1, keepdims=True), tf.cast(1e-12, dtype))
    # The axis sign is ambiguous at exactly pi; elsewhere it must agree with sin_axis.
    sign = tf.where(tf.reduce_sum(axis * sin_axis, axis=-1, keepdims=True) < 0.0,
                    -tf.ones_like(axis), tf.ones_like(axis))
    near_pi = tf.logical_and(small, cos_theta < 0.0)
    return tf.where(near_pi[..., None], axis * sign * theta[..., None], generic)


def euler_to_matrix(angles) -> tf.Tensor:
    """Rotation matrix `Rz(rz) @ Ry(ry) @ Rx(rx)` from Euler angles.

    Args:
      angles: `[..., 3]` radians `(rx, ry, rz)`.
    Returns:
      `[..., 3, 3]`.
    """
    angles = _float_tensor(angles)
    rx, ry, rz = tf.unstack(angles, axis=-1)
    cx, sx, cy, sy, cz, sz = tf.cos(rx), tf.sin(rx), tf.cos(ry), tf.sin(ry), tf.cos(rz), tf.sin(rz)
    # Expanded product Rz @ Ry @ Rx.
    return tf.stack([
        tf.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], axis=-1),
        tf.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], axis=-1),
        tf.stack([-sy, cy * sx, cy * cx], axis=-1),
    ], axis=-2)


def matrix_to_euler(rotation) -> tf.Tensor:
    """Inverse of `euler_to_matrix`, with ry in [-pi/2, pi/2].

    At gimbal lock (|ry| = pi/2) only rx - rz (or rx + rz) is defined; rz is set to 0 there.

    Args:
      rotation: `[..., 3, 3]`.
    Returns:
      `[..., 3]` radians `(rx, ry, rz)`.
    """
    rotation = _float_tensor(rotation)
    r = rotation
    cos_ry = tf.sqrt(tf.square(r[..., 0, 0]) + tf.square(r[..., 1, 0]))
    ry = tf.atan2(-r[..., 2, 0], cos_ry)
    locked = cos_ry < 1e-6
    rx = tf.where(locked, tf.atan2(-r[..., 1, 2], r[..., 1, 1]),
                  tf.atan2(r[..., 2, 1], r[..., 2, 2]))
    rz = tf.where(locked, tf.zeros_like(ry), tf.atan2(r[..., 1, 0], r[..., 0, 0]))
    return tf.stack([rx, ry, rz], axis=-1)


def make_transform(rotation, translation) -> tf.Tensor:
    """`[[R, t], [0, 1]]` from `R [..., 3, 3]` and `t [..., 3]`; returns `[..., 4, 4]`."""
    rotation = _float_tensor(rotation)
    translation = tf.cast(translation, rotation.dtype)
    top = tf.concat([rotation, translation[..., :, None]], axis=-1)
    bottom = tf.broadcast_to(tf.constant([0.0, 0.0, 0.0, 1.0], rotation.dtype),
                             tf.concat([tf.shape(top)[:-2], [1, 4]], axis=0))
    return tf.concat([top, bottom], axis=-2)


def pose_vec_to_matrix(pose_vec, invert: bool = False) -> tf.Tensor:
    """SE(3) matrix from a 6-number pose: axis-angle (3) then translation (3).

    `p' = R(axis_angle) p + t`. With `invert=True` returns the inverse transform
    (`p' = R^T (p - t)`), which is how Monodepth2 turns the pose predicted for the pair
    (t-1, t) into target-to-source for frame t-1.

    Args:
      pose_vec: `[..., 6]`.
      invert: return the inverse.
    Returns:
      `[..., 4, 4]`.
    """
    pose_vec = _float_tensor(pose_vec)
    transform = make_transform(axis_angle_to_matrix(pose_vec[..., :3]), pose_vec[..., 3:])
    return inverse_transform(transform) if invert else transform


def euler_pose_to_matrix(euler_and_translation) -> tf.Tensor:
    """SE(3) matrix from `(rx, ry, rz, tx, ty, tz)` (Euler convention of `euler_to_matrix`)."""
    values = _float_tensor(euler_and_translation)
    return make_transform(euler_to_matrix(values[..., :3]), values[..., 3:])


def inverse_transform(transform) -> tf.Tensor:
    """Closed-form inverse of rigid transforms: `[[R^T, -R^T t], [0, 1]]`.

    Args:
      transform: `[..., 4, 4]`.
    Returns:
      `[..., 4, 4]`.
    """
    transform = _float_tensor(transform)
    rotation_t = tf.linalg.matrix_transpose(transform[..., :3, :3])
    translation = -tf.linalg.matvec(rotation_t, transform[..., :3, 3])
    return make_transform(rotation_t, translation)


def compose(*transforms) -> tf.Tensor:
    """Matrix product `transforms[0] @ transforms[1] @ ...` (applies the last one first)."""
    if not transforms:
        raise ValueError("compose() needs at least one transform")
    result = _float_tensor(transforms[0])
    for transform in transforms[1:]:
        result = tf.linalg.matmul(result, tf.cast(transform, result.dtype))
    return result


def apply_transform(transform, points) -> tf.Tensor:
    """Applies rigid transforms to points.

    Args:
      transform: `[B, 4, 4]` (or `[4, 4]`, broadcast over the batch).
      points: `[B, ..., 3]`, e.g. `[B, H, W, 3]` camera points.
    Returns:
      `[B, ..., 3]`: `R p + t` for every point.
    """
    points = _float_tensor(points)
    transform = tf.cast(transform, points.dtype)
    if transform.shape.rank == 2:
        transform = transform[None]
    extra_dims = points.shape.rank - 2
    rotation = tf.reshape(transform[:, :3, :3], tf.concat(
        [tf.shape(transform)[:1], tf.ones([extra_dims], tf.int32), [3, 3]], axis=0))
    translation = tf.reshape(transform[:, :3, 3], tf.concat(
        [tf.shape(transform)[:1], tf.ones([extra_dims], tf.int32), [3]], axis=0))
    return tf.reduce_sum(rotation * points[..., None, :], axis=-1) + translation


def relative_pose(world_from_camera_target, world_from_camera_source) -> tf.Tensor:
    """Known camera motion -> `T_target_to_source = inv(world_from_source) @ world_from_target`.

    Use with `warp` when the dataset gives camera extrinsics (Mannequin Challenge, synthetic
    scenes) instead of a pose network.

    Args:
      world_from_camera_target: `[..., 4, 4]`.
      world_from_camera_source: `[..., 4, 4]`.
    Returns:
      `[..., 4, 4]` mapping target-camera coordinates to source-camera coordinates.
    """
    return compose(inverse_transform(world_from_camera_source), world_from_camera_target)


def object_motion_in_target_camera(world_from_camera_target, world_from_object_target,
                                   world_from_object_source) -> tf.Tensor:
    """A moving object's own rigid motion, expressed in the target camera's frame.

    Maps a point of the object at target time (target-camera coordinates) to where that same
    object point is at source time, still in target-camera coordinates (as if the camera had
    stood still). This is the `object_transforms` input of
    `warp.reconstruct_with_object_motion`, which composes it as `T_ego @ T_object`.

      T_object = inv(W_Ct) @ W_Os @ inv(W_Ot) @ W_Ct

    Args:
      world_from_camera_target: `[..., 4, 4]` camera pose at target time.
      world_from_object_target: `[..., 4, 4]` object pose at target time.
      world_from_object_source: `[..., 4, 4]` object pose at source time.
    Returns:
      `[..., 4, 4]`.
    """
    return compose(inverse_transform(world_from_camera_target), world_from_object_source,
                   inverse_transform(world_from_object_target), world_from_camera_target)


def mirror_transform_x(transform) -> tf.Tensor:
    """Transform seen in the horizontally flipped image: `D @ T @ D`, `D = diag(-1, 1, 1, 1)`.

    Flipping the image mirrors camera space (X -> -X, see `intrinsics.flip_intrinsics`); a
    rigid motion in the mirrored world is the conjugate by that reflection (still a rotation:
    the two reflections cancel in the determinant).

    Args:
      transform: `[..., 4, 4]`.
    Returns:
      `[..., 4, 4]`.
    """
    transform = _float_tensor(transform)
    flip = tf.constant([-1.0, 1.0, 1.0, 1.0], transform.dtype)
    return transform * flip[:, None] * flip[None, :]
