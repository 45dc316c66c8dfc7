"""SE(3) helpers against independent numpy constructions and round trips."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.geometry import intrinsics as intrinsics_lib
from tf_depthseg.geometry import transforms


def _numpy_rotation_about(axis, angle):
    """Rotation by `angle` about unit `axis` via the exponential series (independent of
    Rodrigues' closed form)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    k = k * angle
    result, term = np.eye(3), np.eye(3)
    for n in range(1, 80):
        term = term @ k / n
        result = result + term
    return result


def _elementary(axis_index, angle):
    c, s = np.cos(angle), np.sin(angle)
    if axis_index == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis_index == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_axis_angle_matches_matrix_exponential():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(16, 3)) * rng.uniform(0.0, 3.0, size=(16, 1))
    got = transforms.axis_angle_to_matrix(vectors).numpy()
    for vector, rotation in zip(vectors, got):
        angle = np.linalg.norm(vector)
        expected = _numpy_rotation_about(vector / angle, angle)
        np.testing.assert_allclose(rotation, expected, atol=1e-10)


def test_axis_angle_round_trip_including_small_and_near_pi():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(40, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0.0, np.pi - 1e-3, 30), [0.0, 1e-9, 1e-5, 1e-3],
                             [np.pi - 1e-7, np.pi - 1e-4, np.pi - 1e-2, 2.0, 0.5, 3.0]])
    vectors = axes * angles[:, None]
    recovered = transforms.matrix_to_axis_angle(transforms.axis_angle_to_matrix(vectors)).numpy()
    np.testing.assert_allclose(recovered, vectors, atol=2e-6)


def test_euler_matches_elementary_product_and_round_trips():
    rng = np.random.default_rng(2)
    angles = np.stack([rng.uniform(-np.pi, np.pi, 20), rng.uniform(-1.5, 1.5, 20),
                       rng.uniform(-np.pi, np.pi, 20)], axis=1)
    got = transforms.euler_to_matrix(angles).numpy()
    for (rx, ry, rz), rotation in zip(angles, got):
        expected = _elementary(2, rz) @ _elementary(1, ry) @ _elementary(0, rx)
        np.testing.assert_allclose(rotation, expected, atol=1e-12)
    np.testing.assert_allclose(transforms.matrix_to_euler(got).numpy(), angles, atol=1e-9)
    # Gimbal lock: the rotation, not the angles, must survive the round trip.
    locked = transforms.euler_to_matrix([[0.3, np.pi / 2, 0.2]]).numpy()
    again = transforms.euler_to_matrix(transforms.matrix_to_euler(locked)).numpy()
    np.testing.assert_allclose(again, locked, atol=1e-6)


def test_inverse_compose_relative_pose_and_apply():
    rng = np.random.default_rng(3)
    pose_a = transforms.pose_vec_to_matrix(rng.normal(size=(4, 6))).numpy()
    pose_b = transforms.euler_pose_to_matrix(rng.normal(size=(4, 6))).numpy()
    np.testing.assert_allclose(transforms.inverse_transform(pose_a).numpy(),
                               np.linalg.inv(pose_a), atol=1e-12)
    np.testing.assert_allclose(transforms.compose(pose_a, pose_b).numpy(), pose_a @ pose_b,
                               atol=1e-12)
    relative = transforms.relative_pose(pose_a, pose_b).numpy()
    np.testing.assert_allclose(relative, np.linalg.inv(pose_b) @ pose_a, atol=1e-12)
    points = rng.normal(size=(4, 5, 7, 3))
    homogeneous = np.concatenate([points, np.ones((4, 5, 7, 1))], axis=-1)
    expected = np.einsum("bij,bhwj->bhwi", pose_a, homogeneous)[..., :3]
    np.testing.assert_allclose(transforms.apply_transform(pose_a, points).numpy(), expected,
                               atol=1e-12)
    # invert=True is the inverse transform (Monodepth2's t-1 convention).
    vec = rng.normal(size=(4, 6))
    np.testing.assert_allclose(transforms.pose_vec_to_matrix(vec, invert=True).numpy(),
                               np.linalg.inv(transforms.pose_vec_to_matrix(vec).numpy()),
                               atol=1e-12)


def test_object_motion_in_target_camera_matches_world_motion():
    rng = np.random.default_rng(4)
    camera, object_t, object_s = (transforms.pose_vec_to_matrix(rng.normal(size=6)).numpy()
                                  for _ in range(3))
    point_object = np.array([0.3, -0.2, 1.1, 1.0])  # a point fixed on the object
    at_t_camera = np.linalg.inv(camera) @ object_t @ point_object
    at_s_camera = np.linalg.inv(camera) @ object_s @ point_object
    motion = transforms.object_motion_in_target_camera(camera, object_t, object_s).numpy()
    np.testing.assert_allclose(motion @ at_t_camera, at_s_camera, atol=1e-12)


def test_mirror_transform_matches_flipped_intrinsics():
    """Projecting with the flipped K and mirrored motion gives the flipped pixel."""
    rng = np.random.default_rng(5)
    width = 40
    k = intrinsics_lib.make_intrinsics(30.0, 30.0, 17.3, 12.0)
    k_flipped = intrinsics_lib.flip_intrinsics(k, width)
    motion = transforms.pose_vec_to_matrix(rng.normal(size=6) * 0.2).numpy()
    mirrored = transforms.mirror_transform_x(motion).numpy()
    np.testing.assert_allclose(np.linalg.det(mirrored[:3, :3]), 1.0, atol=1e-12)
    point = np.array([0.4, 0.1, 3.0, 1.0])
    moved = motion @ point
    pixel = k @ moved[:3] / moved[2]
    point_mirrored = point * np.array([-1, 1, 1, 1])
    moved_m = mirrored @ point_mirrored
    pixel_m = k_flipped @ moved_m[:3] / moved_m[2]
    np.testing.assert_allclose(pixel_m[0], (width - 1) - pixel[0], atol=1e-9)
    np.testing.assert_allclose(pixel_m[1], pixel[1], atol=1e-9)


def test_gradients_finite_at_identity_and_xla():
    vec = tf.Variable(tf.zeros([2, 6]))
    with tf.GradientTape() as tape:
        matrix = transforms.pose_vec_to_matrix(vec, invert=True)
        loss = tf.reduce_sum(matrix * tf.random.stateless_normal([2, 4, 4], (1, 2)))
    grad = tape.gradient(loss, vec)
    assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0.0)
    compiled = tf.function(transforms.pose_vec_to_matrix, jit_compile=True)
    eager = transforms.pose_vec_to_matrix(tf.constant([[0.1, -0.2, 0.3, 1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(compiled(tf.constant([[0.1, -0.2, 0.3, 1.0, 2.0, 3.0]])), eager,
                               atol=1e-6)


def test_make_transform_rejects_nothing_silently():
    with pytest.raises(ValueError):
        transforms.compose()
