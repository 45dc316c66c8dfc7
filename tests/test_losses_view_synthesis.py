"""SSIM, photometric error, smoothness, min-reprojection/auto-mask against independent numpy
code, and the multi-scale view-synthesis loss on an analytic scene (eager vs XLA, gradients)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.geometry import transforms
from tf_depthseg.losses import photometric, smoothness, view_synthesis
from tests.test_geometry_warp import _analytic_pair


def _numpy_ssim_dissimilarity(a, b, c1=0.01 ** 2, c2=0.03 ** 2):
    """Loops over 3x3 windows of reflect-padded images (np.pad 'reflect' == TF REFLECT)."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    a = np.pad(a.astype(np.float64), pad, mode="reflect")
    b = np.pad(b.astype(np.float64), pad, mode="reflect")
    batch, height, width, channels = a.shape[0], a.shape[1] - 2, a.shape[2] - 2, a.shape[3]
    out = np.zeros((batch, height, width, channels))
    for i in range(height):
        for j in range(width):
            wa = a[:, i:i + 3, j:j + 3].reshape(batch, 9, channels)
            wb = b[:, i:i + 3, j:j + 3].reshape(batch, 9, channels)
            mu_a, mu_b = wa.mean(1), wb.mean(1)
            var_a = ((wa - mu_a[:, None]) ** 2).mean(1)
            var_b = ((wb - mu_b[:, None]) ** 2).mean(1)
            cov = ((wa - mu_a[:, None]) * (wb - mu_b[:, None])).mean(1)
            ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                    / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
            out[:, i, j] = np.clip((1 - ssim) / 2, 0, 1)
    return out


def _numpy_smoothness(disparity, image):
    d = disparity / (disparity.mean(axis=(1, 2, 3), keepdims=True) + 1e-7)
    total = np.zeros(disparity.shape[0])
    for axis in (1, 2):
        grad_d = np.abs(np.diff(d, axis=axis))
        grad_i = np.abs(np.diff(image, axis=axis)).mean(axis=-1, keepdims=True)
        total += (grad_d * np.exp(-grad_i)).mean(axis=(1, 2, 3))
    return total


def _numpy_min_reprojection(reprojection, identity, valid):
    """Per pixel: the smallest valid reprojection (any if none valid), then min with
    identity."""
    batch, height, width, num = reprojection.shape
    loss = np.zeros(batch)
    mask = np.zeros((batch, height, width, 1))
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                candidates = [reprojection[b, i, j, n] for n in range(num) if valid[b, i, j, n]]
                best = min(candidates) if candidates else reprojection[b, i, j].min()
                best_identity = identity[b, i, j].min()
                loss[b] += min(best, best_identity)
                mask[b, i, j] = float(best < best_identity)
    return loss / (height * width), mask


def test_ssim_and_photometric_error_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(2, 7, 9, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1).astype(np.float32)
    expected = _numpy_ssim_dissimilarity(a, b)
    np.testing.assert_allclose(photometric.ssim_dissimilarity(a, b).numpy(), expected,
                               atol=2e-5)
    l1 = np.abs(a - b).mean(-1, keepdims=True)
    np.testing.assert_allclose(photometric.photometric_error(a, b).numpy(),
                               0.85 * expected.mean(-1, keepdims=True) + 0.15 * l1, atol=2e-5)
    np.testing.assert_allclose(photometric.photometric_error(a, b, ssim_weight=0.5).numpy(),
                               0.5 * expected.mean(-1, keepdims=True) + 0.5 * l1, atol=2e-5)
    # The layout the loss uses under XLA (SSIM on channel planes), eager and compiled.
    planar = photometric.photometric_error(a, b, planar=True).numpy()
    np.testing.assert_allclose(planar, photometric.photometric_error(a, b).numpy(), atol=1e-6)
    compiled = tf.function(lambda x, y: photometric.photometric_error(x, y, planar=True),
                           jit_compile=True)
    np.testing.assert_allclose(compiled(a, b).numpy(), planar, atol=1e-6)
    assert np.allclose(photometric.ssim_dissimilarity(a, a).numpy(), 0.0, atol=1e-5)


def test_smoothness_matches_numpy():
    rng = np.random.default_rng(1)
    disparity = rng.uniform(0.1, 1.0, size=(3, 6, 8, 1)).astype(np.float32)
    image = rng.uniform(size=(3, 6, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(smoothness.edge_aware_smoothness(disparity, image).numpy(),
                               _numpy_smoothness(disparity.astype(np.float64),
                                                 image.astype(np.float64)), rtol=1e-5)
    # Scale invariance: the mean normalisation removes the disparity's scale.
    np.testing.assert_allclose(smoothness.edge_aware_smoothness(disparity * 7.0, image),
                               smoothness.edge_aware_smoothness(disparity, image), rtol=1e-5)


def test_min_reprojection_and_automask_match_numpy():
    rng = np.random.default_rng(2)
    shape = (2, 5, 6, 3)
    target = rng.uniform(size=shape).astype(np.float32)
    reconstructions = [np.clip(target + rng.normal(scale=s, size=shape), 0, 1).astype(np.float32)
                       for s in (0.05, 0.3)]
    sources = [rng.uniform(size=shape).astype(np.float32) for _ in range(2)]
    sources[0][0, :4] = target[0, :4]  # a static patch: identity must win there
    valid = [(rng.uniform(size=shape[:3] + (1,)) > 0.3).astype(np.float32) for _ in range(2)]
    valid[0][1, 0, 0] = valid[1][1, 0, 0] = 0.0  # no valid source at all
    loss, mask = photometric.min_reprojection_loss(target, reconstructions, sources, valid,
                                                   identity_noise_std=0.0)
    reprojection = np.concatenate([photometric.photometric_error(target, r).numpy()
                                   for r in reconstructions], -1)
    identity = np.concatenate([photometric.photometric_error(target, s).numpy()
                               for s in sources], -1)
    expected_loss, expected_mask = _numpy_min_reprojection(reprojection, identity,
                                                           np.concatenate(valid, -1) > 0.5)
    np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-5)
    np.testing.assert_array_equal(mask.numpy(), expected_mask)
    assert np.all(mask.numpy()[0, :3] == 0.0)  # static patch (3x3 windows inside) masked out
    # Without automask: plain minimum over (valid) reconstructions, all pixels train.
    loss_no_mask, ones = photometric.min_reprojection_loss(target, reconstructions, None, valid,
                                                           automask=False)
    expected_no_mask, _ = _numpy_min_reprojection(reprojection, np.full_like(identity, np.inf),
                                                  np.concatenate(valid, -1) > 0.5)
    np.testing.assert_allclose(loss_no_mask.numpy(), expected_no_mask, rtol=1e-5)
    assert np.all(ones.numpy() == 1.0)
    with pytest.raises(ValueError, match="identity_sources"):
        photometric.min_reprojection_loss(target, reconstructions, None)


def test_identity_noise_breaks_exact_ties():
    rng = np.random.default_rng(3)
    target = rng.uniform(size=(1, 16, 16, 3)).astype(np.float32)
    # Static camera: reconstruction == source == target, every pixel is an exact tie.
    _, mask = photometric.min_reprojection_loss(target, [target], [target])
    fraction = mask.numpy().mean()
    assert 0.3 < fraction < 0.7


def test_disp_to_depth_range():
    scaled, depth = view_synthesis.disp_to_depth(tf.constant([0.0, 1.0, 0.5]))
    np.testing.assert_allclose(depth.numpy()[:2], [100.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(scaled.numpy()[2], 0.5 * (0.01 + 10.0), rtol=1e-6)


def _loss_inputs():
    """Target + 2 sources of the analytic scene, true disparities at 3 scales, true poses."""
    target, depth, source, k, relative = _analytic_pair()
    height, width = target.shape[:2]
    disparity = ((1.0 / depth - 1.0 / 100.0) / (1.0 / 0.1 - 1.0 / 100.0))[None, ..., None]
    disparities = [tf.image.resize(disparity, [height // 2 ** s, width // 2 ** s])
                   for s in range(3)]
    disparities[0] = tf.constant(disparity, tf.float32)
    # Second source: the same frame shifted back along z (reconstructed with the inverse pose).
    sources = np.stack([source, source])[None]
    poses = np.stack([relative, relative])[None].astype(np.float32)
    return target[None], sources, disparities, k.astype(np.float32), poses


def test_multiscale_loss_prefers_true_motion_and_compiles_with_xla():
    target, sources, disparities, k, poses = _loss_inputs()
    terms = view_synthesis.multiscale_view_synthesis_loss(target, sources, disparities, k, poses)
    assert set(terms) == {"photometric", "smoothness", "total", "automask"}
    assert terms["automask"].shape == (1, 48, 64, 1)
    np.testing.assert_allclose(terms["total"], terms["photometric"] + terms["smoothness"])
    wrong = poses @ transforms.pose_vec_to_matrix([0.0, 0.03, 0.0, 0.2, 0.0, 0.0]).numpy()
    wrong_terms = view_synthesis.multiscale_view_synthesis_loss(target, sources, disparities, k,
                                                                wrong.astype(np.float32))
    assert terms["photometric"] < 0.5 * wrong_terms["photometric"]
    assert terms["automask"].numpy().mean() > wrong_terms["automask"].numpy().mean()

    # global batch reduction: sum over the local batch / global size.
    halved = view_synthesis.multiscale_view_synthesis_loss(target, sources, disparities, k,
                                                           poses, global_batch_size=2)
    np.testing.assert_allclose(halved["total"], terms["total"] / 2, rtol=1e-6)

    # XLA compilation dominates this test's time on CPU: one source and two scales keep it to
    # seconds while still covering sampler, warp, SSIM, min-reprojection and scale handling.
    pose_vec = tf.Variable(tf.zeros([1, 1, 6]))
    disparity_vars = [tf.Variable(d) for d in disparities[:2]]

    def loss_and_grads():
        with tf.GradientTape() as tape:
            motion = tf.linalg.matmul(transforms.pose_vec_to_matrix(pose_vec), poses[:, :1])
            out = view_synthesis.multiscale_view_synthesis_loss(target, sources[:, :1],
                                                                disparity_vars, k, motion)
        return out["total"], tape.gradient(out["total"], [pose_vec] + disparity_vars)

    eager_loss, eager_grads = loss_and_grads()
    xla_loss, xla_grads = tf.function(loss_and_grads, jit_compile=True)()
    np.testing.assert_allclose(xla_loss, eager_loss, rtol=1e-4)
    for eager_grad, xla_grad in zip(eager_grads, xla_grads):
        assert np.all(np.isfinite(xla_grad.numpy())) and np.abs(xla_grad.numpy()).sum() > 0
        # XLA reorders float sums; allow 1 % of the largest gradient.
        np.testing.assert_allclose(xla_grad, eager_grad, atol=1e-2 * np.abs(eager_grad).max())


def test_compiled_loss_draws_the_same_tie_break_noise_as_graph_mode():
    """The compiled path draws the identity errors' noise outside XLA (TensorFlow's kernel is
    ~25x faster on a CPU): with noise as large as the errors, it decides the auto-mask, so
    equal masks mean equal noise; another seed gives another mask."""
    target, sources, disparities, k, poses = _loss_inputs()
    sources, disparities, poses = sources[:, :1], disparities[:1], poses[:, :1]

    def automask(jit_compile, seed):
        return view_synthesis.multiscale_view_synthesis_loss(
            target, sources, disparities, k, poses, identity_noise_std=0.3,
            noise_seed=tf.constant(seed), jit_compile=jit_compile)["automask"].numpy()

    graph, compiled = automask(False, [3, 4]), automask(True, [3, 4])
    assert 0.2 < graph.mean() < 0.8  # the noise decides a good share of the pixels
    assert np.mean(graph != compiled) < 0.005
    assert np.mean(automask(True, [5, 6]) != compiled) > 0.05


def test_loss_compiled_with_its_gradients_equals_graph_mode():
    """jit_compile=True: one XLA function returns the terms and their gradients w.r.t. the
    disparities, the camera and the object motions, which a custom gradient hands to the
    caller's backward pass (each output weighted by its own upstream gradient); against the
    plain graph ops. The default compiles only batches of JIT_MIN_PIXELS pixels or more."""
    target, sources, disparities, k, poses = _loss_inputs()
    # XLA compilation dominates the time: one source and two scales keep it short.
    sources, disparities, poses = sources[:, :1], disparities[:2], poses[:, :1]
    masks = np.zeros((1, 48, 64, 2), np.float32)
    masks[0, 20:30, 10:30, 0] = 1.0
    rng = np.random.default_rng(0)
    disparity_vars = [tf.Variable(d) for d in disparities]
    pose_vec = tf.Variable(rng.normal(0.0, 0.01, (1, 1, 6)).astype(np.float32))
    object_vec = tf.Variable(rng.normal(0.0, 0.01, (1, 1, 2, 6)).astype(np.float32))
    variables = disparity_vars + [pose_vec, object_vec]

    def run(jit_compile):
        @tf.function
        def loss_and_grads():
            with tf.GradientTape() as tape:
                motion = tf.linalg.matmul(transforms.pose_vec_to_matrix(pose_vec), poses)
                terms = view_synthesis.multiscale_view_synthesis_loss(
                    target, sources, disparity_vars, k, motion, object_masks=masks,
                    object_transforms=transforms.pose_vec_to_matrix(object_vec),
                    noise_seed=tf.constant([1, 2]), jit_compile=jit_compile)
                # Smoothness (weight 1e-3) scaled up to weigh like the photometric term.
                objective = (terms["total"] + 0.5 * terms["photometric"]
                             + 1000.0 * terms["smoothness"])
            return terms, tape.gradient(objective, variables)
        return loss_and_grads()

    (graph_terms, graph_grads), (xla_terms, xla_grads) = run(False), run(True)
    for key in ("photometric", "smoothness", "total"):
        np.testing.assert_allclose(xla_terms[key], graph_terms[key], rtol=1e-4)
    # Rounding may flip a near-tie of the per-pixel minimum.
    assert np.mean(xla_terms["automask"].numpy() != graph_terms["automask"].numpy()) < 0.01
    for graph_grad, xla_grad in zip(graph_grads, xla_grads):
        graph_grad, xla_grad = graph_grad.numpy(), xla_grad.numpy()
        assert np.abs(graph_grad).max() > 0
        # XLA reorders float sums, which can flip the minimum's or the valid mask's choice at a
        # few pixels: 99 % of the entries within 1 % of the largest, all within 5 % in norm.
        close = np.abs(xla_grad - graph_grad) <= 1e-2 * np.abs(graph_grad).max()
        assert close.mean() >= 0.99
        assert np.linalg.norm(xla_grad - graph_grad) <= 0.05 * np.linalg.norm(graph_grad)
    assert not view_synthesis.default_jit_compile((1, 48, 64, 3))  # this test's batch
    assert view_synthesis.default_jit_compile((4, 64, 208, 3))  # no GPU in the tests
    assert not view_synthesis.default_jit_compile((None, 64, 208, 3))


def test_multiscale_loss_with_object_motion_equals_ego_when_objects_static():
    target, sources, disparities, k, poses = _loss_inputs()
    masks = np.zeros((1, 48, 64, 2), np.float32)
    masks[0, 20:30, 10:30, 0] = 1.0
    identity = np.broadcast_to(np.eye(4, dtype=np.float32), (1, 2, 2, 4, 4))
    with_objects = view_synthesis.multiscale_view_synthesis_loss(
        target, sources, disparities, k, poses, object_masks=masks, object_transforms=identity)
    ego_only = view_synthesis.multiscale_view_synthesis_loss(target, sources, disparities, k,
                                                             poses)
    np.testing.assert_allclose(with_objects["total"], ego_only["total"], rtol=1e-5)
    with pytest.raises(ValueError, match="go together"):
        view_synthesis.multiscale_view_synthesis_loss(target, sources, disparities, k, poses,
                                                      object_masks=masks)
