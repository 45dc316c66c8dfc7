"""Batch-norm statistics of whole models: momentum, and calls that leave them unchanged.

Keras sets a BatchNormalization layer's momentum at construction; these helpers reach every
BN layer of a built model (nested models included), e.g. to use faster statistics in short
CPU runs (`model.bn_momentum`) or to keep a shared encoder's statistics those of one input.
"""

from __future__ import annotations

import contextlib

import keras


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
