"""Learning-rate schedules against hand values; optimizers and clipping against numpy."""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.config import OptimConfig
from tf_depthseg.training import optimizers, schedules


def _rates(schedule, steps):
    return [float(schedule(tf.constant(step, tf.int64))) for step in steps]


def test_paper_encoder_decoder_schedule():
    # Adam 1e-4, then 1e-5 after 10 epochs; 100 steps per epoch.
    schedule = schedules.paper_encoder_decoder(1e-4, steps_per_epoch=100)
    np.testing.assert_allclose(_rates(schedule, [0, 999, 1000, 5000]),
                               [1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)


def test_paper_hourglass_schedule():
    # Adam 5e-4 divided by 10 every 5 epochs; 100 steps per epoch.
    schedule = schedules.paper_hourglass(5e-4, steps_per_epoch=100, decay_epochs=5)
    np.testing.assert_allclose(_rates(schedule, [0, 499, 500, 999, 1000, 1499]),
                               [5e-4, 5e-4, 5e-5, 5e-5, 5e-6, 5e-6], rtol=1e-5)


def test_step_poly_cosine_and_warmup():
    optim = OptimConfig(learning_rate=0.1, schedule="step", decay_steps=(10, 20),
                        decay_rate=0.5)
    np.testing.assert_allclose(_rates(schedules.build_schedule(optim, 100), [0, 9, 10, 19, 20]),
                               [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-6)

    poly = schedules.PolyDecay(1.0, total_steps=100, power=2.0, end_rate=0.1)
    np.testing.assert_allclose(_rates(poly, [0, 50, 100, 150]),
                               [1.0, 0.1 + 0.9 * 0.25, 0.1, 0.1], rtol=1e-6)

    cosine = schedules.CosineDecay(1.0, total_steps=100)
    np.testing.assert_allclose(_rates(cosine, [0, 25, 50, 100]),
                               [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0],
                               rtol=1e-6, atol=1e-7)

    # Warmup ramps (step + 1) / 10 up to the peak, then the cosine decays over the remaining
    # 100 steps (it starts after the warmup).
    optim = OptimConfig(learning_rate=1.0, schedule="cosine", warmup_steps=10)
    warm = schedules.build_schedule(optim, total_steps=110)
    np.testing.assert_allclose(_rates(warm, [0, 4, 9, 10, 60, 110]),
                               [0.1, 0.5, 1.0, 1.0, 0.5, 0.0], rtol=1e-6, atol=1e-7)

    constant = schedules.build_schedule(OptimConfig(learning_rate=3e-4), 10)
    np.testing.assert_allclose(_rates(constant, [0, 7]), [3e-4, 3e-4], rtol=1e-6)


def test_build_schedule_errors_and_config_round_trip():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedules.build_schedule(OptimConfig(schedule="paper_hourglass"), 100, 0)
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.build_schedule(OptimConfig(schedule="step"), 100)
    optim = OptimConfig(learning_rate=1e-4, schedule="paper_encoder_decoder")
    schedule = schedules.build_schedule(optim, 100, steps_per_epoch=7)
    assert schedule.get_config() == {"boundaries": [70], "values": [1e-4, 1e-4 * 0.1]}
    rebuilt = schedules.PiecewiseConstant(**schedule.get_config())
    assert _rates(rebuilt, [69, 70]) == _rates(schedule, [69, 70])


def _run_optimizer(optimizer, w0, grad_fn, steps):
    variable = keras.Variable(np.array(w0, np.float32))
    for _ in range(steps):
        optimizer.apply([tf.constant(grad_fn(variable.numpy()), tf.float32)], [variable])
    return variable.numpy()


def test_sgd_momentum_with_l2_matches_numpy():
    optim = OptimConfig(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    optimizer = optimizers.build_optimizer(optim, optim.learning_rate)
    c = np.array([1.0, -2.0], np.float32)
    result = _run_optimizer(optimizer, [0.5, 1.5], lambda w: c, steps=3)
    # PyTorch-style coupled L2: g' = g + wd * w, velocity v = mu v - lr g', w += v.
    w, v = np.array([0.5, 1.5], np.float64), np.zeros(2)
    for _ in range(3):
        g = c + 0.01 * w
        v = 0.9 * v - 0.1 * g
        w = w + v
    np.testing.assert_allclose(result, w, rtol=1e-6)


def test_adam_l2_is_coupled_and_adamw_is_decoupled():
    c = np.array([0.3, -0.7], np.float32)
    w0 = np.array([2.0, -1.0], np.float64)
    lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-7

    def adam_step(w, g):  # first Adam step: the update is lr * g / (|g| + eps') = ~ lr sign(g)
        m, v = (1 - b1) * g, (1 - b2) * g * g
        alpha = lr * math.sqrt(1 - b2) / (1 - b1)
        return w - alpha * m / (np.sqrt(v) + eps)

    adam = optimizers.build_optimizer(
        OptimConfig(optimizer="adam", learning_rate=lr, weight_decay=wd), lr)
    np.testing.assert_allclose(_run_optimizer(adam, w0, lambda w: c, 1),
                               adam_step(w0, c + wd * w0), rtol=1e-5)
    adamw = optimizers.build_optimizer(
        OptimConfig(optimizer="adamw", learning_rate=lr, weight_decay=wd), lr)
    np.testing.assert_allclose(_run_optimizer(adamw, w0, lambda w: c, 1),
                               adam_step(w0 - lr * wd * w0, c), rtol=1e-5)


def test_fused_adam_matches_numpy_over_steps_and_under_a_strategy():
    """Our Adam runs TensorFlow's fused kernel: numpy's Adam over several steps, with a group
    learning-rate multiplier, and the same numbers inside a distribution strategy's update
    (mirrored variables: the replica's copies)."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(2, 5)).astype(np.float32)
    grads = rng.normal(size=(6, 2, 5)).astype(np.float32)
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-7

    def numpy_adam(multipliers):
        w, m, v = w0.astype(np.float64), np.zeros((2, 5)), np.zeros((2, 5))
        for t, g in enumerate(grads, start=1):
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            alpha = lr * np.asarray(multipliers)[:, None] * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            w = w - alpha * m / (np.sqrt(v) + eps)
        return w

    def run(strategy=None):
        with (strategy or tf.distribute.get_strategy()).scope():
            variables = [keras.Variable(row) for row in w0]
            optimizer = optimizers.build_optimizer(
                OptimConfig(optimizer="adam", learning_rate=lr), lr)
            optimizer.build(variables)
            optimizer.set_lr_multipliers([1.0, 0.1])

        @tf.function
        def apply(step_grads):
            optimizer.apply(list(tf.unstack(step_grads)), variables)

        for g in grads:
            if strategy is None:
                apply(tf.constant(g))
            else:
                strategy.run(apply, args=(tf.constant(g),))
        return np.stack([v.numpy() for v in variables])

    fused = run()
    np.testing.assert_allclose(fused, numpy_adam([1.0, 0.1]), rtol=1e-5, atol=1e-6)
    in_strategy = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    np.testing.assert_allclose(fused, in_strategy, rtol=1e-5, atol=1e-6)


def test_clip_by_global_norm_reports_unscaled_norm():
    grads = [tf.constant([3.0]), None, tf.constant([4.0])]
    clipped, norm = optimizers.clip_by_global_norm(grads, clip_norm=1.0)
    assert clipped[1] is None and float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose([float(clipped[0][0]), float(clipped[2][0])], [0.6, 0.8],
                               rtol=1e-6)
    # Gradients of a loss scaled by 8: clipped at 8 * clip_norm, norm reported unscaled.
    scaled = [tf.constant([24.0]), tf.constant([32.0])]
    clipped, norm = optimizers.clip_by_global_norm(scaled, clip_norm=1.0, scale=8.0)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose([float(clipped[0][0]), float(clipped[1][0])], [4.8, 6.4],
                               rtol=1e-6)
    unclipped, norm = optimizers.clip_by_global_norm(scaled, clip_norm=0.0, scale=8.0)
    assert float(unclipped[1][0]) == 32.0 and float(norm) == pytest.approx(5.0)


def test_mixed_float16_gets_loss_scaling():
    optim = dataclasses.replace(OptimConfig(), optimizer="sgd")
    wrapped = optimizers.build_optimizer(optim, 0.1, "mixed_float16")
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert isinstance(wrapped.inner_optimizer, optimizers.SGD)
    assert not isinstance(optimizers.build_optimizer(optim, 0.1, "mixed_bfloat16"),
                          keras.optimizers.LossScaleOptimizer)
