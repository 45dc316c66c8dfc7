"""The SUW networks' batch norm trains with TensorFlow's fused kernel (issue 18) without changing
the networks: the same layers, variables and parameter count as with Keras' BatchNormalization,
a checkpoint written with Keras' layer restores, and training / inference calls give the same
outputs, gradients and moving statistics. (The layer alone against numpy, bf16 and XLA:
test_models_backbones.py::test_fused_batch_norm_trains_like_keras_batch_norm.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.models import batch_norm, hourglass, suw


def _build_suw(monkeypatch, fused: bool) -> keras.Model:
    """The SUW depth net (16 bins), with the fused layer or Keras' own (the previous one)."""
    with monkeypatch.context() as patch:
        if not fused:
            patch.setattr(batch_norm, "FusedBatchNormalization", keras.layers.BatchNormalization)
        keras.utils.set_random_seed(0)
        return suw.build_suw_encoder_decoder(num_bins=16, min_depth=1.0, max_depth=80.0)


@pytest.fixture(scope="module")
def nets():
    patch = pytest.MonkeyPatch()
    try:
        return _build_suw(patch, fused=False), _build_suw(patch, fused=True)
    finally:
        patch.undo()


def test_every_suw_block_bn_is_fused_and_the_networks_are_unchanged(nets):
    old, new = nets
    old_bn, new_bn = batch_norm.batch_norm_layers(old), batch_norm.batch_norm_layers(new)
    assert len(new_bn) == len(old_bn) > 50
    assert all(type(layer) is batch_norm.FusedBatchNormalization for layer in new_bn)
    assert not any(isinstance(layer, batch_norm.FusedBatchNormalization) for layer in old_bn)
    assert new.count_params() == old.count_params()
    assert ([(v.path, tuple(v.shape)) for v in new.weights]
            == [(v.path, tuple(v.shape)) for v in old.weights])
    net = hourglass.build_hourglass(head="bins", num_bins=8)
    assert all(type(layer) is batch_norm.FusedBatchNormalization
               for layer in batch_norm.batch_norm_layers(net))


def test_checkpoint_of_keras_bn_restores_and_trains_alike(nets, tmp_path):
    old, new = nets
    # Moving statistics away from their initial values, so the restore is visible.
    rng = np.random.default_rng(1)
    for layer in batch_norm.batch_norm_layers(old):
        for variable in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))
    path = tf.train.Checkpoint(model=old).write(str(tmp_path / "old"))
    tf.train.Checkpoint(model=new).read(path).assert_consumed()
    for old_value, new_value in zip(old.get_weights(), new.get_weights()):
        np.testing.assert_array_equal(new_value, old_value)

    images = tf.constant(rng.uniform(0, 1, (2, 32, 96, 3)), tf.float32)
    np.testing.assert_allclose(new(images, training=False)[common.OUT_DEPTH].numpy(),
                               old(images, training=False)[common.OUT_DEPTH].numpy(), rtol=1e-5)

    def train_call(model):
        @tf.function
        def step(images):
            with tf.GradientTape() as tape:
                outputs = model(images, training=True)
                loss = tf.reduce_mean(outputs[common.OUT_DEPTH_LOW])
            return outputs[common.OUT_DEPTH], tape.gradient(loss, model.trainable_weights)
        ops = {op.type for op in step.get_concrete_function(images).graph.get_operations()}
        depth, gradients = step(images)
        return ops, depth.numpy(), [g.numpy() for g in gradients]

    restored = [v.numpy() for v in new.non_trainable_weights]
    old_ops, old_depth, old_gradients = train_call(old)
    new_ops, new_depth, new_gradients = train_call(new)
    assert "FusedBatchNormV3" in new_ops and "FusedBatchNormGradV3" in new_ops
    assert "FusedBatchNormV3" not in old_ops
    np.testing.assert_allclose(new_depth, old_depth, rtol=1e-4)
    # Float32 rounding differs per BN (Keras' variance is E[x^2] - E[x]^2, the kernel's is
    # two-pass) and compounds through ~30 of them backwards: each gradient within 5e-3 of its
    # own norm (measured: at most 1.1e-3).
    for old_gradient, new_gradient in zip(old_gradients, new_gradients):
        assert (np.linalg.norm(new_gradient - old_gradient)
                <= 5e-3 * np.linalg.norm(old_gradient) + 1e-12)
    # One training call (tracing runs no updates) moved the statistics, alike in both nets.
    assert all(np.abs(v.numpy() - r).max() > 1e-4
               for v, r in zip(new.non_trainable_weights, restored))
    for old_layer, new_layer in zip(batch_norm.batch_norm_layers(old),
                                    batch_norm.batch_norm_layers(new)):
        for old_variable, new_variable in ((old_layer.moving_mean, new_layer.moving_mean),
                                           (old_layer.moving_variance,
                                            new_layer.moving_variance)):
            np.testing.assert_allclose(new_variable.numpy(), old_variable.numpy(),
                                       rtol=1e-5, atol=1e-6)
