"""Stateless random numbers that are the same eagerly, in a graph and under XLA.

TF's `stateless_uniform` floats differ between XLA and plain graph mode on the same seed (the
Philox integers underneath agree; the conversion to float does not), so a train step compiled
with `jit_compile` would mix or augment differently from the same step without it. These
helpers draw Philox integers and convert them here.
"""

from __future__ import annotations

import tensorflow as tf


def _bits(shape, seed) -> tf.Tensor:
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    return tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.int32,
                                       alg="philox")


def split_seed(seed, count) -> tf.Tensor:
    """int32 `[count, 2]`: `count` new seeds from an int `[2]` seed."""
    return _bits(tf.stack([count, 2]), seed)


def uniform(shape, seed, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    """float32 uniform in [low, high) of `shape` from an int `[2]` seed."""
    # The top 24 of the 32 bits give exactly representable floats in [0, 1).
    unit = tf.cast(tf.bitwise.right_shift(tf.bitcast(_bits(shape, seed), tf.uint32), 8),
                   tf.float32) * (1.0 / (1 << 24))
    return low + (high - low) * unit
