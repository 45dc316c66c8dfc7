"""Mean teacher: EMA update and its alpha schedule against numpy, resume bit-exact,
pseudo-labels, confidence weighting and the pseudo-label loss against numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.losses import segmentation as seg_losses
from tf_depthseg.semisup import mean_teacher

IGNORE = 255


def _net(seed: int):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_alpha_schedule():
    steps = [0, 1, 2, 3, 9, 99, 100, 5000]
    alpha = [float(mean_teacher.ema_alpha(s)) for s in steps]
    expected = [min(1.0 - 1.0 / (s + 1), 0.99) for s in steps]
    np.testing.assert_allclose(alpha, expected, rtol=1e-6)
    assert alpha[0] == 0.0 and alpha[1] == 0.5 and alpha[-1] == pytest.approx(0.99)


def test_pairs_follow_the_reference_trainable_only_by_default():
    student, teacher = _net(0), _net(1)
    pairs = mean_teacher.teacher_variable_pairs(student, teacher)
    assert len(pairs) == len(student.trainable_variables) == 6  # 2 kernels, 2 biases, gamma, beta
    full = mean_teacher.teacher_variable_pairs(student, teacher, include_moving_statistics=True)
    assert len(full) == 8  # + moving mean and variance
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="variables"):
        mean_teacher.teacher_variable_pairs(student, other)


def test_ema_updates_in_a_compiled_step_match_numpy_and_resume_bit_exact(tmp_path):
    student, teacher = _net(0), _net(1)
    pairs = mean_teacher.teacher_variable_pairs(student, teacher)
    moving_before = [v.numpy().copy() for v in teacher.non_trainable_variables]
    mean_teacher.copy_to_teacher(pairs)
    rng = np.random.default_rng(0)
    new_students = [[rng.normal(size=s.shape).astype(np.float32) for _, s in pairs]
                    for _ in range(5)]

    @tf.function
    def step(values, count):
        for (_, s), value in zip(pairs, values):
            s.assign(value)  # stands in for the optimizer's update
        return mean_teacher.update_teacher(pairs, count)

    expected = [s.numpy().astype(np.float64) for _, s in pairs]
    for count in range(1, 6):  # the engine's step: 1 after the first update
        alpha = step(new_students[count - 1], tf.constant(count, tf.int64))
        a = min(1.0 - 1.0 / (count + 1), 0.99)
        assert float(alpha) == pytest.approx(a)
        expected = [a * e + (1 - a) * n for e, n in zip(expected, new_students[count - 1])]
        for (t, _), e in zip(pairs, expected):
            np.testing.assert_allclose(t.numpy(), e, rtol=1e-5, atol=1e-6)
    # The reference leaves the batch-norm moving statistics out of the average.
    for v, before in zip(teacher.non_trainable_variables, moving_before):
        np.testing.assert_array_equal(v.numpy(), before)
    straight = [t.numpy().copy() for t, _ in pairs]

    # Resume: 2 updates, checkpoint, a fresh teacher restored, 3 more: bit-identical.
    student2, teacher2 = _net(0), _net(2)
    pairs2 = mean_teacher.teacher_variable_pairs(student2, teacher2)
    mean_teacher.copy_to_teacher(pairs2)
    for count in (1, 2):
        for (_, s), value in zip(pairs2, new_students[count - 1]):
            s.assign(value)
        mean_teacher.update_teacher(pairs2, count)
    path = tf.train.Checkpoint(teacher=[t for t, _ in pairs2]).write(str(tmp_path / "ckpt"))
    student3, teacher3 = _net(0), _net(3)
    pairs3 = mean_teacher.teacher_variable_pairs(student3, teacher3)
    tf.train.Checkpoint(teacher=[t for t, _ in pairs3]).read(path).assert_consumed()

    @tf.function
    def step3(values, count):
        for (_, s), value in zip(pairs3, values):
            s.assign(value)
        return mean_teacher.update_teacher(pairs3, count)

    for count in (3, 4, 5):
        step3(new_students[count - 1], tf.constant(count, tf.int64))
    for (t, _), value in zip(pairs3, straight):
        np.testing.assert_array_equal(t.numpy(), value)


def test_moving_statistics_averaged_on_request():
    student, teacher = _net(0), _net(1)
    pairs = mean_teacher.teacher_variable_pairs(student, teacher, include_moving_statistics=True)
    student.get_layer("bn").moving_mean.assign(np.full(4, 2.0, np.float32))
    teacher.get_layer("bn").moving_mean.assign(np.zeros(4, np.float32))
    mean_teacher.update_teacher(pairs, 3)  # alpha 0.75
    np.testing.assert_allclose(teacher.get_layer("bn").moving_mean.numpy(), 0.5)


def _probabilities(seed: int, shape=(3, 5, 6, 4)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=shape)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def test_pseudo_labels_and_confidence_weight_against_numpy():
    probs = _probabilities(0)
    probs[0, 0, :3] = 0.0  # mixed-in ignored pixels of one-hot ground truth
    labels, max_prob = mean_teacher.pseudo_labels(tf.constant(probs))
    expected = np.where(probs.max(-1) > 0, probs.argmax(-1), IGNORE)
    np.testing.assert_array_equal(labels.numpy(), expected)
    confident = probs.max(-1) >= 0.968
    assert 0 < confident.mean() < 1  # the threshold splits this example
    weight = mean_teacher.confidence_weight(max_prob)
    assert float(weight) == pytest.approx(confident.mean())  # one weight per batch
    per_image = mean_teacher.confidence_weight(max_prob, per_image=True)
    np.testing.assert_allclose(per_image.numpy(), confident.mean(axis=(1, 2)), rtol=1e-6)


def test_soft_targets_one_hot_ground_truth_for_labelled_images():
    probs = _probabilities(3, (2, 2, 3, 4))
    labels = np.array([[[0, 1, IGNORE], [3, 2, 1]], [[9, 9, 9], [9, 9, 9]]], np.int32)
    targets = mean_teacher.soft_targets(probs, labels, [True, False]).numpy()
    expected = np.zeros((2, 3, 4), np.float32)
    for y in range(2):
        for x in range(3):
            if labels[0, y, x] != IGNORE:
                expected[y, x, labels[0, y, x]] = 1.0
    np.testing.assert_array_equal(targets[0], expected)
    np.testing.assert_array_equal(targets[1], probs[1])
    recovered, _ = mean_teacher.pseudo_labels(targets[:1])
    np.testing.assert_array_equal(recovered.numpy()[0], labels[0])


def test_pseudo_label_cross_entropy_against_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(2, 3, 4)).astype(np.int32)
    labels[1, 0] = IGNORE
    weight = np.float32(0.375)
    loss = seg_losses.pseudo_label_cross_entropy(logits, labels, weight).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_softmax, np.where(labels == IGNORE, 0, labels)[..., None],
                             -1)[..., 0]
    ce[labels == IGNORE] = 0.0
    # Mean over all pixels of the image (ignored ones count as 0), times the weight.
    np.testing.assert_allclose(loss, weight * ce.mean(axis=(1, 2)), rtol=1e-5)
    per_image = np.array([0.5, 0.25], np.float32)
    np.testing.assert_allclose(
        seg_losses.pseudo_label_cross_entropy(logits, labels[..., None], per_image).numpy(),
        per_image * ce.mean(axis=(1, 2)), rtol=1e-5)
    # The weight is a constant of the loss: no gradient flows into the teacher's confidence.
    weight_var = tf.Variable(0.5)
    logits_var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(seg_losses.pseudo_label_cross_entropy(logits_var, labels,
                                                                    weight_var * 1.0))
    grad_weight, grad_logits = tape.gradient(total, [weight_var, logits_var])
    assert grad_weight is None
    assert np.all(grad_logits.numpy()[1, 0] == 0)  # ignored pixels give no gradient
