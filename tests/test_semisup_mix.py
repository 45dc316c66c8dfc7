"""DepthMix and ClassMix: masks and mixes against hand examples and numpy (semisup/)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_depthseg.semisup import classmix, depthmix, mean_teacher, mix

IGNORE = 255


def _pair():
    """Two 1x4 images with hand-chosen normalised disparity (larger = closer)."""
    disparity = np.array([[0.9, 0.5, 0.2, 0.51],    # image 0
                          [0.1, 0.5, 0.8, 0.53]],   # image 1
                         np.float32).reshape(2, 1, 4, 1)
    labels = np.array([[1, IGNORE, 2, 3],
                       [4, 5, IGNORE, 6]], np.int32).reshape(2, 1, 4)
    # Every pixel of every image has its own colour, so each mixed pixel names its source.
    images = (np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 1, 4, 3) / 24.0)
    return disparity, labels, images


def test_partner_is_next_image():
    np.testing.assert_array_equal(mix.partner_indices(3).numpy(), [1, 2, 0])
    np.testing.assert_array_equal(mix.partner_indices(2).numpy(), [1, 0])


def test_depthmix_mask_hand_example_occluder_in_front_wins():
    disparity, _, _ = _pair()
    mask = depthmix.depthmix_mask(tf.constant(disparity)).numpy()[:, 0, :, 0]
    # Image 0 over 1: d0 >= d1 - 0.03 -> closer (0), tie (1), farther (2), within margin (3).
    np.testing.assert_array_equal(mask[0], [True, True, False, True])
    # Image 1 over 0: pixel 3 is 0.02 closer, pixel 1 a tie: both pasted.
    np.testing.assert_array_equal(mask[1], [False, True, True, True])
    # Where one image is clearly in front, both mixes show it: the occluder wins whichever
    # image is pasted onto which.
    _, _, images = _pair()
    mixed = mix.mix(tf.constant(mask.reshape(2, 1, 4, 1)), images).numpy()
    np.testing.assert_array_equal(mixed[0, 0, 0], images[0, 0, 0])  # 0 closer at pixel 0
    np.testing.assert_array_equal(mixed[1, 0, 0], images[0, 0, 0])
    np.testing.assert_array_equal(mixed[0, 0, 2], images[1, 0, 2])  # 1 closer at pixel 2
    np.testing.assert_array_equal(mixed[1, 0, 2], images[1, 0, 2])


def test_depthmix_mixes_everything_with_one_mask_and_keeps_ignore():
    disparity, labels, images = _pair()
    one_hot = mix.one_hot_labels(labels, 7)
    out = depthmix.depthmix({"image": images, "labels": labels, "one_hot": one_hot},
                            tf.constant(disparity), normalize=False)
    mask = out["mask"].numpy()[..., 0]
    # Integer labels: each pixel keeps its source's label, the ignore label included.
    np.testing.assert_array_equal(out["labels"].numpy(),
                                  [[[1, IGNORE, IGNORE, 3]], [[1, 5, IGNORE, 6]]])
    # Images, disparity and labels come from the same source at every pixel.
    own = np.arange(2).reshape(2, 1, 1)
    expected_source = np.where(mask, own, 1 - own)  # [2, 1, 4]
    for b in range(2):
        for x in range(4):
            source = expected_source[b, 0, x]
            np.testing.assert_array_equal(out["image"][b, 0, x], images[source, 0, x])
            assert out["disparity"][b, 0, x, 0] == disparity[source, 0, x, 0]
            assert out["labels"][b, 0, x] == labels[source, 0, x]
    # One-hot ground truth mixed like the integer labels: the pseudo-labels recover them,
    # ignored pixels (all-zero vectors) included.
    recovered, max_prob = mean_teacher.pseudo_labels(out["one_hot"])
    np.testing.assert_array_equal(recovered.numpy(), out["labels"].numpy())
    np.testing.assert_array_equal(max_prob.numpy() == 0, out["labels"].numpy() == IGNORE)


def test_depthmix_explicit_partner_and_margin():
    disparity = np.random.default_rng(0).uniform(size=(3, 5, 6, 1)).astype(np.float32)
    partner = np.array([2, 0, 1], np.int32)
    for margin in (0.0, 0.03, 0.2):
        mask = depthmix.depthmix_mask(tf.constant(disparity), tf.constant(partner),
                                      margin=margin).numpy()
        np.testing.assert_array_equal(mask, disparity >= disparity[partner] - margin)
    threshold = depthmix.depthmix_mask(tf.constant(disparity), foreground_threshold=0.5)
    plain = depthmix.depthmix_mask(tf.constant(disparity))
    np.testing.assert_array_equal(threshold.numpy(), plain.numpy() & (disparity >= 0.5))


def test_normalize_disparity_per_image_min_max():
    rng = np.random.default_rng(1)
    disparity = rng.uniform(0.01, 0.3, size=(3, 4, 5, 1)).astype(np.float32)
    disparity[2] = 0.2  # constant: no depth order, all zeros (the reference divides by 0)
    out = depthmix.normalize_disparity(tf.constant(disparity)).numpy()
    for b in range(2):
        d = disparity[b].astype(np.float64)
        np.testing.assert_allclose(out[b], (d - d.min()) / (d.max() - d.min()), atol=1e-6)
        assert out[b].min() == 0.0 and out[b].max() == 1.0
    np.testing.assert_array_equal(out[2], 0.0)


def _classmix_labels():
    labels = np.zeros((3, 4, 5), np.int32)
    labels[0] = np.array([0, 1, 2, 3, 4] * 4).reshape(4, 5)  # 5 classes
    labels[0, 0, :2] = IGNORE
    labels[1] = 7  # one class: nothing is pasted
    labels[1, 2:] = IGNORE
    labels[2, :, :3] = 2  # 4 classes
    labels[2, :, 3] = 5
    labels[2, 0, 4], labels[2, 1:, 4] = 6, 8
    return labels


def test_classmix_chooses_half_of_the_present_classes_never_ignore():
    labels = _classmix_labels()
    present = [{0, 1, 2, 3, 4}, {7}, {2, 5, 6, 8}]
    seen = set()
    for seed in range(20):
        chosen = classmix.choose_classes(tf.constant(labels), 9, [seed, 3]).numpy()
        mask = classmix.classmix_mask(tf.constant(labels), 9, [seed, 3]).numpy()[..., 0]
        for b in range(3):
            picked = set(np.flatnonzero(chosen[b]).tolist())
            assert picked <= present[b]
            assert len(picked) == len(present[b]) // 2  # rounded down, as the reference
            np.testing.assert_array_equal(mask[b], np.isin(labels[b], list(picked)))
            assert not mask[b][labels[b] == IGNORE].any()
        seen.add(tuple(np.flatnonzero(chosen[0])))
    assert len(seen) > 3  # the subset is random, not always the same classes


def test_classmix_mixes_with_its_mask_and_is_deterministic():
    labels = _classmix_labels()
    images = np.random.default_rng(2).uniform(size=(3, 4, 5, 3)).astype(np.float32)
    out = classmix.classmix({"image": images, "labels": labels}, labels, 9, [5, 6])
    again = classmix.classmix({"image": images, "labels": labels}, labels, 9, [5, 6])
    mask = out["mask"].numpy()
    np.testing.assert_array_equal(mask, again["mask"].numpy())
    partner = [1, 2, 0]
    np.testing.assert_array_equal(out["image"].numpy(),
                                  np.where(mask, images, images[partner]))
    np.testing.assert_array_equal(out["labels"].numpy(),
                                  np.where(mask[..., 0], labels, labels[partner]))
    assert not mask[1].any()  # one class present: half of it rounds to none
    # Compiled with XLA, from pseudo-labels computed in the same step (as in training).
    probs = mix.one_hot_labels(labels, 9)

    @tf.function(jit_compile=True)
    def compiled(probs, seed):
        return classmix.classmix_mask(mean_teacher.pseudo_labels(probs)[0], 9, seed)

    np.testing.assert_array_equal(compiled(probs, tf.constant([5, 6])).numpy(), mask)
