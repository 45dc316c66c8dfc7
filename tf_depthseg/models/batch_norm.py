"""Batch norm: the fused training layer, and the statistics of whole models (momentum, calls
that leave them unchanged).

`FusedBatchNormalization` is the BN layer of every network here (ResNets, the SUW blocks of
`models.layers`): Keras' layer whose training step runs TensorFlow's fused kernel.
Keras sets a BatchNormalization layer's momentum at construction; these helpers reach every
BN layer of a built model (nested models included), e.g. to use faster statistics in short
CPU runs (`model.bn_momentum`) or to keep a shared encoder's statistics those of one input.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


def batch_norm_layers(model: keras.Model) -> list:
    """Every BatchNormalization layer of `model`, nested models included, each once."""
    found, stack, seen = [], [model], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return found


def set_bn_momentum(model: keras.Model, momentum: float) -> int:
    """Sets the moving-average momentum of every BatchNormalization layer (nested models
    included) before the first call; returns how many layers were changed."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"model.bn_momentum must be in [0, 1), got {momentum}")
    layers = batch_norm_layers(model)
    for layer in layers:
        layer.momentum = float(momentum)  # read by call(): takes effect when traced
    return len(layers)


@contextlib.contextmanager
def frozen_bn_statistics(model: keras.Model):
    """Inside the block, calls of `model` in training mode normalise with batch statistics but
    leave every BatchNormalization moving average (nested models included) unchanged.

    For the motion nets that share the depth net's encoder body: only the depth net runs at
    inference, so the shared layers' moving statistics must be those of its inputs. Without
    this each training step pulled them towards the statistics of the stacked pose frames
    (called after the depth net), and the evaluated depth drifted from the trained one
    (docs/u_term.md). Works by a momentum of exactly 1 while the calls are traced
    (`moving * 1 + batch * 0`), so nothing changes in the graph outside the block.
    """
    layers = [(layer, layer.momentum) for layer in batch_norm_layers(model)]
    try:
        for layer, _ in layers:
            layer.momentum = 1.0
        yield
    finally:
        for layer, momentum in layers:
            layer.momentum = momentum


@keras.saving.register_keras_serializable(package="tf_depthseg")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training-mode call is TensorFlow's fused kernel.

    Keras 3 normalises with separate ops (moments, then scale and shift; under mixed
    precision every activation is first cast to float32 and back), and their gradient is a
    few dozen ops more per layer. `FusedBatchNormV3` does the forward pass in one kernel and
    its gradient in another, on bfloat16/float16 activations directly (statistics in float32):
    the Hoyer et al. training step in graph mode spends far less time in batch norm
    (docs/hoyer_speed.md). Same weights, same arithmetic up to float rounding: batch mean and
    biased variance normalise, and the moving averages are updated as Keras does
    (`moving * momentum + batch * (1 - momentum)`, the biased batch variance; the kernel
    returns the unbiased one, rescaled here), so checkpoints, momentum changes
    (`models.batch_norm`) and parameter counts are unchanged. Inference mode, masks, renorm
    and synchronized BN take Keras' own path. Under XLA both forms compile alike.
    """

    def call(self, inputs, training=None, mask=None):
        if (not (training and self.trainable) or mask is not None or self.renorm
                or self.synchronized or len(inputs.shape) != 4
                or self.axis not in (-1, 3) or not (self.center and self.scale)):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        outputs, mean, unbiased_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=tf.constant([], tf.float32), variance=tf.constant([], tf.float32),
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        shape = tf.shape(x)
        count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        variance = unbiased_variance * ((count - 1.0) / count)  # count 1: the kernel gives 0
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum
                                    + variance * (1.0 - momentum))
        return outputs
