"""Ranking losses on pixel and patch pairs against a numpy loop."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.losses import ranking

H, W = 12, 15


def _numpy_pair_loss(depth, row):
    """Independent reference: explicit patch mean with border clipping, Chen et al. loss."""
    y_a, x_a, y_b, x_b, half, relation = row
    half = int(half)
    log_depth = np.log(depth)

    def patch_mean(y, x):
        y, x = int(y), int(x)
        patch = log_depth[max(y - half, 0):y + half + 1, max(x - half, 0):x + half + 1]
        return patch.mean()

    difference = patch_mean(y_a, x_a) - patch_mean(y_b, x_b)
    if relation == 0:
        return difference ** 2
    return np.log1p(np.exp(-relation * difference))


def _random_pairs(rng, batch, count):
    rows = np.stack([
        rng.integers(0, H, (batch, count)), rng.integers(0, W, (batch, count)),
        rng.integers(0, H, (batch, count)), rng.integers(0, W, (batch, count)),
        rng.integers(0, 5, (batch, count)),  # pixel pairs and 3x3 .. 9x9 patches
        rng.choice([common.RELATION_FARTHER, common.RELATION_CLOSER, common.RELATION_EQUAL],
                   (batch, count)),
    ], axis=-1)
    return rows.astype(np.float32)


def test_pixel_and_patch_pairs_against_numpy():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 50.0, (2, H, W, 1)).astype(np.float32)
    pairs = _random_pairs(rng, 2, 30)
    pairs[0, 0] = [0, 0, H - 1, W - 1, 4, common.RELATION_FARTHER]  # patches cut by borders
    loss, per_pair = ranking.ranking_loss(depth, pairs, return_per_pair=True)
    expected = np.array([[_numpy_pair_loss(depth[b, :, :, 0], row) for row in pairs[b]]
                         for b in range(2)])
    np.testing.assert_allclose(per_pair.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert float(loss) == pytest.approx(expected.mean(), rel=1e-5)


def test_sign_convention_farther_means_larger_depth_at_a():
    depth = np.ones((1, H, W, 1), np.float32)
    depth[0, :4] = 30.0  # far band at the top
    far_a = [1, 3, 10, 3, 1, common.RELATION_FARTHER]
    near_a = [10, 3, 1, 3, 1, common.RELATION_CLOSER]
    wrong = [1, 3, 10, 3, 1, common.RELATION_CLOSER]
    correct_loss = ranking.ranking_loss(depth, np.array([[far_a, near_a]], np.float32))
    wrong_loss = ranking.ranking_loss(depth, np.array([[wrong]], np.float32))
    assert float(correct_loss) < 0.04 < 3.0 < float(wrong_loss)


def test_valid_mask_and_counts_select_rows_and_empty_gives_zero():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 50.0, (2, H, W, 1)).astype(np.float32)
    pairs = _random_pairs(rng, 2, 6)
    _, per_pair = ranking.ranking_loss(depth, pairs, return_per_pair=True)
    per_pair = per_pair.numpy()
    mask = np.array([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]], bool)
    got = ranking.ranking_loss(depth, pairs, valid_mask=mask)
    assert float(got) == pytest.approx(per_pair[mask].mean(), rel=1e-5)
    got = ranking.ranking_loss(depth, pairs, num_valid=np.array([2, 0]))
    assert float(got) == pytest.approx(per_pair[0, :2].mean(), rel=1e-5)
    variable = tf.Variable(depth)
    with tf.GradientTape() as tape:
        empty = ranking.ranking_loss(variable, pairs, num_valid=np.array([0, 0]))
    assert float(empty) == 0.0
    assert np.all(np.isfinite(tape.gradient(empty, variable).numpy()))


def test_xla_compiles_and_matches_eager_and_gradient_orders_depth():
    rng = np.random.default_rng(2)
    depth = rng.uniform(1.0, 50.0, (2, H, W, 1)).astype(np.float32)
    pairs = _random_pairs(rng, 2, 8)
    compiled = tf.function(ranking.ranking_loss, jit_compile=True)
    assert float(compiled(depth, pairs)) == pytest.approx(
        float(ranking.ranking_loss(depth, pairs)), rel=1e-5)

    # Gradient descent on an ordinal pair pushes A's patch farther than B's.
    log_depth = tf.Variable(tf.zeros([1, H, W, 1]))
    pair = np.array([[[2, 2, 9, 9, 2, common.RELATION_FARTHER]]], np.float32)
    for _ in range(20):
        with tf.GradientTape() as tape:
            value = ranking.ranking_loss(tf.exp(log_depth), pair)
        log_depth.assign_sub(5.0 * tape.gradient(value, log_depth))
    z = log_depth.numpy()[0, :, :, 0]
    assert z[0:5, 0:5].mean() > 0.1 > -0.1 > z[7:12, 7:12].mean()
    assert np.all(z[0:5, 8:] == 0.0)  # pixels outside both patches are untouched


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="pairs"):
        ranking.ranking_loss(tf.ones([1, 4, 4, 1]), tf.zeros([1, 3, 5]))
    with pytest.raises(ValueError, match="pred_depth"):
        ranking.ranking_loss(tf.ones([4, 4]), tf.zeros([1, 3, 6]))
