"""Depth losses: Eq. 1 quantisation and every loss against an independent numpy computation."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import depth_bins
from tf_depthseg.losses import depth as losses

B, ALPHA, BETA = 40, 1.0, 80.0
Q = (math.log10(BETA) - math.log10(ALPHA)) / B


def _sparse_depth(rng, shape, valid_fraction=0.5):
    depth = rng.uniform(1.5, 60.0, size=shape).astype(np.float32)
    depth[rng.uniform(size=shape) > valid_fraction] = 0.0
    return depth


def test_quantisation_matches_eq1_and_round_trips_within_half_a_bin():
    q_hat = depth_bins.log_bin_width(B, ALPHA, BETA)
    assert q_hat == pytest.approx(Q)
    # Domain where Eq. 1's round() lands on one of the B kept centres.
    top = 10 ** (math.log10(ALPHA) + (B - 0.5) * Q)
    depth = np.geomspace(ALPHA, top * 0.9999, 5000).astype(np.float32)
    bins = depth_bins.depth_to_bin(depth, B, ALPHA, BETA).numpy()
    expected = np.round((np.log10(depth.astype(np.float64)) - math.log10(ALPHA)) / Q)
    # float32 vs float64 may disagree only for depths a hair from a rounding boundary.
    assert np.mean(bins == expected) > 0.999
    restored = depth_bins.bin_to_depth(bins, B, ALPHA, BETA).numpy()
    log_error = np.abs(np.log10(restored) - np.log10(depth))
    assert log_error.max() < 0.5 * Q + 1e-5
    centres = depth_bins.bin_centres_log10(B, ALPHA, BETA)
    np.testing.assert_allclose(centres, math.log10(ALPHA) + Q * np.arange(B), atol=1e-6)


def test_quantisation_clips_out_of_range_and_top_half_bin():
    depth = np.array([0.1, ALPHA, BETA, 500.0], np.float32)
    bins = depth_bins.depth_to_bin(depth, B, ALPHA, BETA).numpy()
    np.testing.assert_array_equal(bins, [0, 0, B - 1, B - 1])
    positions = depth_bins.depth_to_bin_position(depth, B, ALPHA, BETA).numpy()
    np.testing.assert_allclose(positions, [0.0, 0.0, B - 1, B - 1], atol=1e-4)


@pytest.mark.parametrize("bad", [dict(num_bins=1), dict(min_depth=0.0), dict(max_depth=0.5)])
def test_quantisation_rejects_bad_ranges(bad):
    args = {**dict(num_bins=B, min_depth=ALPHA, max_depth=BETA), **bad}
    with pytest.raises(ValueError):
        depth_bins.log_bin_width(**args)


def _numpy_soft_targets(depth, a, continuous):
    position = (np.log10(np.where(depth > 0, depth, 1.0)) - math.log10(ALPHA)) / Q
    position = np.clip(position, 0, B - 1)
    if not continuous:
        position = np.round(position)
    weights = np.exp(-a * (np.arange(B) - position) ** 2)
    return weights / weights.sum(-1, keepdims=True)


@pytest.mark.parametrize("continuous", [True, False])
def test_soft_classification_loss_against_numpy(continuous):
    rng = np.random.default_rng(0)
    depth = _sparse_depth(rng, (2, 5, 6, 1))
    logits = rng.normal(size=(2, 5, 6, B)).astype(np.float32) * 3
    a = 0.3
    target = _numpy_soft_targets(depth, a, continuous)
    np.testing.assert_allclose(
        losses.soft_bin_targets(depth, B, ALPHA, BETA, a, continuous).numpy(), target,
        atol=1e-5)
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    cross_entropy = -(target * log_softmax).sum(-1)
    valid = depth[..., 0] > 0
    expected = cross_entropy[valid].mean()
    got = losses.soft_classification_loss(logits, depth, B, ALPHA, BETA, sharpness=a,
                                          continuous=continuous)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    entropy = -(target * np.log(target + 1e-30)).sum(-1)
    got_kl = losses.soft_classification_loss(logits, depth, B, ALPHA, BETA, sharpness=a,
                                             continuous=continuous, kl=True)
    assert float(got_kl) == pytest.approx((cross_entropy - entropy)[valid].mean(), rel=1e-4)


def test_soft_classification_rejects_mismatched_sizes_and_bins():
    logits = tf.zeros([1, 4, 4, B])
    with pytest.raises(ValueError, match="downsample_sparse_depth"):
        losses.soft_classification_loss(logits, tf.ones([1, 16, 16, 1]), B, ALPHA, BETA)
    with pytest.raises(ValueError, match="num_bins"):
        losses.soft_classification_loss(logits, tf.ones([1, 4, 4, 1]), B + 1, ALPHA, BETA)


def test_regression_losses_against_numpy():
    rng = np.random.default_rng(1)
    gt = _sparse_depth(rng, (3, 6, 7, 1))
    gt[2] = 0.0  # an image without any ground truth
    pred = rng.uniform(1.0, 70.0, size=gt.shape).astype(np.float32)
    valid = gt > 0
    error = np.log(pred) - np.log(np.where(valid, gt, 1.0))

    assert float(losses.l1_log_loss(pred, gt)) == pytest.approx(np.abs(error[valid]).mean(),
                                                                rel=1e-5)
    lam = 0.85
    per_image = []
    for image in range(2):  # image 2 has no valid pixel and must not count
        e = error[image][valid[image]]
        per_image.append((e ** 2).mean() - lam * e.mean() ** 2)
    got = losses.scale_invariant_log_loss(pred, gt, lam=lam)
    assert float(got) == pytest.approx(np.mean(per_image), rel=1e-4)

    abs_error = np.abs(pred - gt)[valid]
    c = 0.2 * abs_error.max()
    berhu = np.where(abs_error <= c, abs_error, (abs_error ** 2 + c ** 2) / (2 * c))
    assert float(losses.berhu_loss(pred, gt)) == pytest.approx(berhu.mean(), rel=1e-5)


def test_scale_invariant_loss_ignores_global_scale_at_lambda_one():
    rng = np.random.default_rng(2)
    gt = _sparse_depth(rng, (2, 8, 8, 1))
    pred = np.where(gt > 0, gt, 5.0) * 3.7
    assert float(losses.scale_invariant_log_loss(pred, gt, lam=1.0)) == pytest.approx(
        0.0, abs=1e-6)
    assert float(losses.l1_log_loss(pred, gt)) == pytest.approx(math.log(3.7), rel=1e-5)


@pytest.mark.parametrize("loss_fn", [
    lambda p, g: losses.soft_classification_loss(tf.math.log(p) * tf.ones([1, 1, 1, B]), g, B,
                                                 ALPHA, BETA),
    losses.l1_log_loss,
    losses.scale_invariant_log_loss,
    losses.berhu_loss,
])
def test_losses_are_zero_with_finite_gradient_without_ground_truth(loss_fn):
    pred = tf.Variable(tf.fill([2, 4, 4, 1], 3.0))
    gt = tf.zeros([2, 4, 4, 1])
    diagonal = tf.eye(4)[None, :, :, None] > 0
    gt_with_garbage = tf.where(diagonal, -1.0, float("nan")) * tf.ones_like(gt)
    for target in (gt, gt_with_garbage):
        with tf.GradientTape() as tape:
            value = loss_fn(pred, target)
        gradient = tape.gradient(value, pred)
        assert float(value) == 0.0
        assert gradient is None or np.all(np.isfinite(gradient.numpy()))


def test_downsample_sparse_depth_against_numpy_blocks():
    rng = np.random.default_rng(3)
    depth = _sparse_depth(rng, (2, 9, 11, 1), valid_fraction=0.3)
    got = losses.downsample_sparse_depth(depth, 4).numpy()
    assert got.shape == (2, 3, 3, 1)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                block = depth[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4, 0]
                values = block[block > 0]
                expected = 10 ** np.log10(values).mean() if values.size else 0.0
                assert got[b, i, j, 0] == pytest.approx(expected, rel=1e-5)
