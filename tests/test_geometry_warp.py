"""Projection, bilinear sampler and warping: numpy references, an analytic scene, gradients,
XLA."""

import numpy as np
import tensorflow as tf

from tf_depthseg.geometry import intrinsics as intrinsics_lib
from tf_depthseg.geometry import projection, sampler, transforms, warp


def _numpy_bilinear_border(image, coords):
    """Reference sampler: clamp to the border, interpolate the four neighbours."""
    batch, height, width, _ = image.shape
    out = np.zeros(coords.shape[:3] + (image.shape[-1],))
    valid = np.zeros(coords.shape[:3] + (1,))
    for b in range(batch):
        for i in range(coords.shape[1]):
            for j in range(coords.shape[2]):
                x, y = coords[b, i, j]
                valid[b, i, j] = float(-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5)
                x = min(max(x, 0.0), width - 1.0)
                y = min(max(y, 0.0), height - 1.0)
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
                ax, ay = x - x0, y - y0
                out[b, i, j] = ((1 - ay) * ((1 - ax) * image[b, y0, x0] + ax * image[b, y0, x1])
                                + ay * ((1 - ax) * image[b, y1, x0] + ax * image[b, y1, x1]))
    return out, valid


def test_backproject_project_round_trip_and_reference():
    rng = np.random.default_rng(0)
    k = np.stack([intrinsics_lib.make_intrinsics(20.0, 22.0, 7.5, 4.2),
                  intrinsics_lib.make_intrinsics(15.0, 15.0, 8.0, 5.0)]).astype(np.float32)
    depth = rng.uniform(1.0, 10.0, size=(2, 6, 9, 1)).astype(np.float32)
    points = projection.backproject(depth, k).numpy()
    ys, xs = np.mgrid[0:6, 0:9]
    pixels_h = np.stack([xs, ys, np.ones_like(xs)], axis=-1).astype(np.float64)
    expected = np.einsum("bij,hwj->bhwi", np.linalg.inv(k.astype(np.float64)), pixels_h)
    np.testing.assert_allclose(points, expected * depth, rtol=1e-5)
    pixels = projection.project(points, k).numpy()
    np.testing.assert_allclose(pixels, np.broadcast_to(pixels_h[..., :2], pixels.shape),
                               atol=1e-4)


def test_sampler_matches_numpy_reference_with_border_and_mask():
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(2, 5, 7, 3)).astype(np.float32)
    coords = np.stack([rng.uniform(-2.0, 9.0, size=(2, 4, 6)),
                       rng.uniform(-2.0, 7.0, size=(2, 4, 6))], axis=-1).astype(np.float32)
    coords[0, 0, 0] = [np.nan, 1.0]  # non-finite: invalid, still finite output
    sampled, valid = sampler.bilinear_sample(image, coords)
    ref_coords = np.where(np.isfinite(coords), coords, 0.0)
    expected, expected_valid = _numpy_bilinear_border(image.astype(np.float64), ref_coords)
    expected_valid[0, 0, 0] = 0.0
    assert np.all(np.isfinite(sampled.numpy()))
    expected[0, 0, 0] = sampled.numpy()[0, 0, 0]  # any border value is fine where invalid
    np.testing.assert_allclose(sampled.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(valid.numpy(), expected_valid)
    # Integer coordinates return the pixels exactly.
    grid = projection.pixel_grid(5, 7)[None].numpy().repeat(2, axis=0)
    same, all_valid = sampler.bilinear_sample(image, grid)
    np.testing.assert_allclose(same.numpy(), image, atol=1e-6)
    assert np.all(all_valid.numpy() == 1.0)


def test_sampler_gradients_and_xla():
    rng = np.random.default_rng(2)
    image = tf.constant(rng.uniform(size=(1, 6, 8, 2)).astype(np.float32))
    coords = tf.Variable(rng.uniform(0.5, 5.5, size=(1, 3, 4, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        sampled, _ = sampler.bilinear_sample(image, coords)
        loss = tf.reduce_sum(sampled)
    grad = tape.gradient(loss, coords).numpy()
    # Finite-difference check of the coordinate gradient (away from integer kinks).
    eps = 1e-3
    numeric = np.zeros_like(grad)
    base = coords.numpy()
    for index in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (tf.reduce_sum(sampler.bilinear_sample(image, plus)[0])
                          - tf.reduce_sum(sampler.bilinear_sample(image, minus)[0])) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=2e-2)
    compiled = tf.function(sampler.bilinear_sample, jit_compile=True)
    xla_sampled, xla_valid = compiled(image, coords)
    eager_sampled, eager_valid = sampler.bilinear_sample(image, coords)
    np.testing.assert_allclose(xla_sampled, eager_sampled, atol=1e-6)
    np.testing.assert_array_equal(xla_valid, eager_valid)


# ---- an analytic scene: a textured ground plane and a wall, rendered by ray casting ----------

def _texture(world):
    """Smooth colour of a world point (X, Y, Z) -> [..., 3] in [0, 1]."""
    x, y, z = world[..., 0], world[..., 1], world[..., 2]
    return np.stack([0.5 + 0.4 * np.sin(1.3 * x + 0.7 * z),
                     0.5 + 0.4 * np.cos(0.9 * z - 0.5 * y),
                     0.5 + 0.4 * np.sin(0.8 * x + 1.1 * y + 0.4 * z)], axis=-1)


def _render(world_from_camera, k, height, width):
    """Ray-casts ground plane Y = 1.5 and wall Z = 12 (world frame, y down). Returns the image
    and the z-depth."""
    ys, xs = np.mgrid[0:height, 0:width]
    rays_cam = np.einsum("ij,hwj->hwi", np.linalg.inv(k),
                         np.stack([xs, ys, np.ones_like(xs)], axis=-1).astype(np.float64))
    rays_world = rays_cam @ world_from_camera[:3, :3].T
    origin = world_from_camera[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = (1.5 - origin[1]) / rays_world[..., 1]
        t_wall = (12.0 - origin[2]) / rays_world[..., 2]
    t_ground = np.where(t_ground > 0, t_ground, np.inf)
    t_wall = np.where(t_wall > 0, t_wall, np.inf)
    t = np.minimum(t_ground, t_wall)  # rays_cam has z = 1, so t is the z-depth
    world = origin + rays_world * t[..., None]
    return _texture(world).astype(np.float32), t.astype(np.float32)


def _analytic_pair():
    height, width = 48, 64
    k = intrinsics_lib.make_intrinsics(40.0, 40.0, 31.5, 23.5)
    target_pose = np.eye(4)
    source_pose = transforms.euler_pose_to_matrix([0.02, -0.05, 0.01, 0.3, -0.05, 0.8]).numpy()
    target, depth = _render(target_pose, k, height, width)
    source, _ = _render(source_pose, k, height, width)
    relative = transforms.relative_pose(target_pose, source_pose).numpy()
    return target, depth, source, k, relative


def test_warp_reconstructs_analytic_scene():
    target, depth, source, k, relative = _analytic_pair()
    reconstruction, valid = warp.warp(source[None], depth[None, ..., None], k.astype(np.float32),
                                      relative[None].astype(np.float32))
    valid = valid.numpy()[0, ..., 0] > 0
    assert valid.mean() > 0.6
    warped_error = np.abs(reconstruction.numpy()[0] - target)[valid].mean()
    unwarped_error = np.abs(source - target)[valid].mean()
    assert warped_error < 0.1 * unwarped_error, (warped_error, unwarped_error)
    assert warped_error < 0.01


def test_object_motion_reconstruction_selects_per_pixel_transforms():
    """An 'object' region moving with its own transform is reconstructed by composing it with
    the ego-motion; each region must equal a plain warp with its own transform."""
    target, depth, source, k, relative = _analytic_pair()
    batch = lambda array: tf.constant(array[None].astype(np.float32))
    masks = np.zeros((48, 64, 2), np.float32)
    masks[10:20, 5:25, 0] = 1.0
    masks[30:40, 30:60, 1] = 1.0
    object_motion = np.stack([transforms.pose_vec_to_matrix([0, 0.1, 0, 0.5, 0, -0.3]).numpy(),
                              np.eye(4)])
    got, got_valid = warp.reconstruct_with_object_motion(
        batch(source), batch(depth[..., None]), k.astype(np.float32), batch(relative),
        batch(masks), batch(object_motion))
    ego, ego_valid = warp.warp(batch(source), batch(depth[..., None]), k.astype(np.float32),
                               batch(relative))
    moved, moved_valid = warp.warp(batch(source), batch(depth[..., None]), k.astype(np.float32),
                                   batch(relative @ object_motion[0]))
    inside = masks[..., 0] > 0
    np.testing.assert_allclose(got.numpy()[0][inside], moved.numpy()[0][inside], atol=1e-5)
    np.testing.assert_allclose(got.numpy()[0][~inside], ego.numpy()[0][~inside], atol=1e-5)
    np.testing.assert_array_equal(got_valid.numpy()[0][inside], moved_valid.numpy()[0][inside])
    assert not np.allclose(moved.numpy()[0][inside], ego.numpy()[0][inside], atol=1e-2)


def test_warp_gradients_reach_depth_and_pose():
    # (The XLA-compiled gradient path is covered by the full loss in
    # tests/test_losses_view_synthesis.py; compiling it twice would double the test time.)
    target, depth, source, k, relative = _analytic_pair()
    pose = tf.Variable(tf.zeros([1, 6]))
    log_depth = tf.Variable(np.log(np.minimum(depth, 30.0))[None, ..., None])
    base = tf.constant(relative[None].astype(np.float32))

    def loss_and_grads():
        with tf.GradientTape() as tape:
            transform = tf.linalg.matmul(transforms.pose_vec_to_matrix(pose), base)
            reconstruction, valid = warp.warp(source[None], tf.exp(log_depth), k, transform)
            loss = tf.reduce_sum(tf.abs(reconstruction - target[None]) * valid) / tf.reduce_sum(
                valid)
        return loss, tape.gradient(loss, [pose, log_depth])

    loss, (pose_grad, depth_grad) = loss_and_grads()
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(pose_grad.numpy())) and np.abs(pose_grad.numpy()).sum() > 0
    assert np.all(np.isfinite(depth_grad.numpy())) and np.abs(depth_grad.numpy()).sum() > 0


def test_mask_objects():
    frames = np.ones((1, 4, 5, 3), np.float32)
    masks = np.zeros((1, 4, 5, 2), np.float32)
    masks[0, 1, 1, 0] = 1
    masks[0, 2, 3, 1] = 1
    masked = warp.mask_objects(frames, masks).numpy()
    assert masked.sum() == (20 - 2) * 3 and masked[0, 1, 1].sum() == 0


def test_object_reconstruction_with_shared_ego_motion_and_static_objects_equals_warp():
    rng = np.random.default_rng(4)
    source = rng.uniform(size=(2, 5, 6, 3)).astype(np.float32)
    depth = rng.uniform(2.0, 4.0, size=(2, 5, 6, 1)).astype(np.float32)
    k = intrinsics_lib.make_intrinsics(5.0, 5.0, 2.5, 2.0, dtype=np.float32)
    masks = np.zeros((2, 5, 6, 1), np.float32)
    masks[:, 1:3, 1:3] = 1.0
    ego = transforms.pose_vec_to_matrix([0.01, 0.02, 0.0, 0.1, 0.0, 0.2]).numpy()  # [4, 4]
    static = np.broadcast_to(np.eye(4, dtype=np.float32), (2, 1, 4, 4))
    got, got_valid = warp.reconstruct_with_object_motion(source, depth, k, ego, masks, static)
    expected, expected_valid = warp.warp(source, depth, k, ego)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)
    np.testing.assert_array_equal(got_valid.numpy(), expected_valid.numpy())
