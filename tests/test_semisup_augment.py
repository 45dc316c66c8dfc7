"""Strong augmentation after mixing: deterministic per seed (also under XLA), identity at
probability 0, range kept, blur and jitter against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.semisup import augment, rng


def _images(seed=0, shape=(4, 20, 30, 3)):
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_kernel_size_as_the_reference():
    # Largest odd number <= ceil(0.1 side): 512 -> 51, 360 -> 35, 100 -> 9, 30 -> 3, 5 -> 1.
    assert [augment.blur_kernel_size(n) for n in (512, 672, 360, 100, 30, 5)] == \
        [51, 67, 35, 9, 3, 1]


def test_gaussian_blur_against_numpy():
    images = _images(1, (2, 12, 15, 3))
    sigma = np.array([0.4, 1.1], np.float32)
    out = augment.gaussian_blur(images, sigma, kernel_size=(5, 7)).numpy()
    for b in range(2):
        def kernel(size):
            x = np.arange(size) - (size - 1) / 2
            k = np.exp(-0.5 * (x / sigma[b]) ** 2)
            return k / k.sum()
        # Reflect without repeating the edge pixel (numpy "reflect" = TF "REFLECT").
        padded = np.pad(images[b].astype(np.float64), ((2, 2), (3, 3), (0, 0)), mode="reflect")
        ky, kx = kernel(5), kernel(7)
        rows = sum(ky[i] * padded[i:i + 12] for i in range(5))
        expected = sum(kx[j] * rows[:, j:j + 15] for j in range(7))
        np.testing.assert_allclose(out[b], expected, atol=1e-5)
    flat = np.full((1, 12, 15, 3), 0.3, np.float32)
    np.testing.assert_allclose(augment.gaussian_blur(flat, [1.0]).numpy(), 0.3, atol=1e-6)


def test_batched_jitter_equals_tf_image_per_image():
    images = _images(2)
    factors = augment.jitter_factors([5, 6], 4, strength=0.25, prob=1.0)
    out = augment.apply_color_jitter(images, factors).numpy()
    for b in range(4):
        x = images[b] * factors["brightness"][b]
        x = tf.image.adjust_contrast(x, factors["contrast"][b])
        x = tf.image.adjust_saturation(x, factors["saturation"][b])
        x = tf.clip_by_value(tf.image.adjust_hue(x, factors["hue"][b]), 0.0, 1.0)
        np.testing.assert_allclose(out[b], x.numpy(), atol=2e-6)
    for name in ("brightness", "contrast", "saturation"):
        assert np.all(np.abs(factors[name].numpy() - 1.0) <= 0.25)
    assert np.all(np.abs(factors["hue"].numpy()) <= 0.25)


def test_coin_flips_follow_the_probabilities():
    draws = augment.jitter_factors([1, 2], 4000, prob=0.8)["apply"].numpy()
    assert 0.77 < draws.mean() < 0.83
    uniform = rng.uniform([4000], [3, 4], 0.15, 1.15).numpy()
    assert uniform.min() >= 0.15 and uniform.max() < 1.15
    assert 0.62 < uniform.mean() < 0.68


def test_strong_augment_deterministic_identity_and_range():
    images = _images(3)
    first = augment.strong_augment(images, [7, 8]).numpy()
    np.testing.assert_array_equal(first, augment.strong_augment(images, [7, 8]).numpy())
    other = augment.strong_augment(images, [7, 9]).numpy()
    assert not np.array_equal(first, other)
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert not np.array_equal(first, images)
    # An image's augmentation does not depend on its batch neighbours.
    swapped = images.copy()
    swapped[1:] = images[1:][::-1]
    np.testing.assert_array_equal(augment.strong_augment(swapped, [7, 8]).numpy()[0], first[0])
    identity = augment.strong_augment(images, [7, 8], jitter_prob=0.0, blur_prob=0.0).numpy()
    np.testing.assert_array_equal(identity, images)
    compiled = tf.function(lambda x, s: augment.strong_augment(x, s), jit_compile=True)
    np.testing.assert_allclose(compiled(images, tf.constant([7, 8])).numpy(), first,
                               atol=1e-5)


def test_blur_only_and_jitter_only():
    images = _images(4, (4, 60, 80, 3))  # kernels 5 x 7 (20 x 30 would blur with 1 x 3)
    blurred = augment.strong_augment(images, [1, 1], jitter_prob=0.0, blur_prob=1.0).numpy()
    # Every image blurred: smoother than the input (a sigma near 0.15 barely changes it).
    roughness = [np.abs(np.diff(x, axis=1)).mean() for x in (blurred, images)]
    assert roughness[0] < 0.9 * roughness[1]
    for b in range(4):
        assert (np.abs(np.diff(blurred[b], axis=1)).mean()
                <= np.abs(np.diff(images[b], axis=1)).mean() + 1e-6)
    jittered = augment.strong_augment(images, [1, 1], jitter_prob=1.0, blur_prob=0.0).numpy()
    assert all(not np.array_equal(jittered[b], images[b]) for b in range(4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="jitter_prob"):
        augment.strong_augment(_images(), [1, 2], jitter_prob=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        augment.strong_augment(_images(), [1, 2], blur_sigma=(0.0, 1.0))
