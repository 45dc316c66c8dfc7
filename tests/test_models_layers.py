"""Blocks and custom layers: shapes, get_config round trips, head maths, exact alignment."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import depth_bins
from tf_depthseg.models import layers

B, ALPHA, BETA = 16, 1.0, 80.0


def _round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # Through Keras' registry too (what model loading uses).
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("tf_depthseg>")
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config
    return clone


def test_depth_bins_head_matches_numpy_and_round_trips():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5, B)).astype(np.float32) * 2
    reference = np.zeros((2, 11, 19, 3), np.float32)
    head = layers.DepthBinsHead(B, ALPHA, BETA, upsample_factor=4)
    probs, depth_low, depth, uncertainty = head([logits, reference])
    assert tuple(depth.shape) == (2, 11, 19, 1) == tuple(uncertainty.shape)
    assert tuple(depth_low.shape) == (2, 3, 5, 1) and tuple(probs.shape) == (2, 3, 5, B)

    centres = math.log10(ALPHA) + np.arange(B) * (math.log10(BETA) - math.log10(ALPHA)) / B
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mean = (p * centres).sum(-1)
    std = np.sqrt((p * (centres - mean[..., None]) ** 2).sum(-1))
    np.testing.assert_allclose(probs.numpy(), p, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(depth_low.numpy()[..., 0], 10 ** mean, rtol=1e-4)
    # Full resolution = log10 mean / std upsampled x4 with half-pixel centres, cropped.
    upsampled = tf.image.resize(np.stack([mean, std], -1), (12, 20)).numpy()[:, :11, :19]
    np.testing.assert_allclose(depth.numpy()[..., 0], 10 ** upsampled[..., 0], rtol=1e-4)
    np.testing.assert_allclose(uncertainty.numpy()[..., 0], upsampled[..., 1], atol=1e-5)

    clone = _round_trip(head)
    np.testing.assert_allclose(clone([logits, reference])[2].numpy(), depth.numpy())


def test_uncertainty_grows_with_the_width_of_the_bin_distribution():
    num_bins, mode = 40, 20
    head = layers.DepthBinsHead(num_bins, ALPHA, BETA, upsample_factor=1)
    index = np.arange(num_bins, dtype=np.float32)
    widths = np.array([0.5, 1.0, 2.0, 4.0], np.float32)  # Gaussian logits, growing width
    logits = -0.5 * ((index - mode) / widths[:, None]) ** 2
    _, _, depth, uncertainty = head([logits.reshape(1, 1, 4, num_bins), np.zeros((1, 1, 4, 1))])
    spread = uncertainty.numpy().ravel()
    assert np.all(np.diff(spread) > 0)
    q = depth_bins.log_bin_width(num_bins, ALPHA, BETA)
    np.testing.assert_allclose(spread[1:], widths[1:] * q, rtol=0.01)  # std = width * q
    # The distribution stays centred on the mode: same depth for every width.
    np.testing.assert_allclose(depth.numpy().ravel(),
                               depth_bins.bin_to_depth(mode, num_bins, ALPHA, BETA), rtol=1e-3)


def test_pad_and_upsample_crop_align_exactly_with_the_input_grid():
    pad = layers.PadToMultiple(4)
    image = np.arange(2 * 7 * 10, dtype=np.float32).reshape(1, 7, 10, 2)
    padded = pad(image).numpy()
    assert padded.shape == (1, 8, 12, 2)
    np.testing.assert_array_equal(padded[:, :7, :10], image)  # pixel (0, 0) does not move
    assert pad.compute_output_shape((None, 7, None, 2)) == (None, 8, None, 2)
    _round_trip(pad)

    # A stride-4 map sampled at the centres of 4x4 blocks of the padded grid: value = row index.
    rows = 4 * np.arange(2) + 1.5
    low = np.broadcast_to(rows[None, :, None, None], (1, 2, 3, 1)).astype(np.float32)
    upsample = layers.UpsampleCropToReference(4)
    full = upsample([low, image]).numpy()
    assert full.shape == (1, 7, 10, 1)
    # Bilinear interpolation of a linear ramp is exact between the first and last centres.
    np.testing.assert_allclose(full[0, 2:6, :, 0], np.arange(2, 6)[:, None] * np.ones((1, 10)),
                               atol=1e-5)
    _round_trip(upsample)


def test_blocks_shapes_and_names():
    x = keras.Input((None, None, 8))
    y = layers.apply_separable_conv_bn(x, 12, strides=2, name="sep")
    z = layers.apply_sam(y, 6, (1, 2, 4), name="sam")
    w = layers.apply_inception(z, 16, 5, (3, 5, 7), name="inc")
    model = keras.Model(x, [y, z, w])
    outputs = model(np.zeros((2, 9, 13, 8), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(2, 5, 7, 12), (2, 5, 7, 6), (2, 5, 7, 16)]
    names = {layer.name for layer in model.layers}
    assert {"sep_dwconv", "sep_pwconv", "sam_atrous3_d4_conv", "sam_proj2_conv",
            "inc_conv4_7x7_conv", "inc_concat"} <= names
    assert model.get_layer("sam_atrous3_d4_conv").dilation_rate == (4, 4)
    assert model.get_layer("sep_dwconv").strides == (2, 2)
    with pytest.raises(ValueError):
        layers.apply_sam(y, 6, (), name="bad")
    with pytest.raises(ValueError):
        layers.apply_inception(z, 10, 5, (3, 5, 7), name="bad")


def test_nearest_upsample_crop_equals_resize_and_compiles_with_xla():
    """Integer nearest upsampling is a repeat (row i -> i // f), the same as tf.image.resize's
    nearest; unlike resize, its gradient compiles with XLA (the Hoyer decoder trains with it)."""
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=(2, 4, 5, 3)).astype(np.float32))
    reference = tf.zeros((2, 7, 9, 1))
    layer = layers.UpsampleCropToReference(2, "nearest")
    expected = tf.image.resize(x, (8, 10), method="nearest")[:, :7, :9]
    np.testing.assert_array_equal(layer([x, reference]).numpy(), expected.numpy())
    np.testing.assert_array_equal(layer([x, reference]).numpy()[:, 5, 7], x.numpy()[:, 2, 3])

    @tf.function(jit_compile=True)
    def gradient(value):
        with tf.GradientTape() as tape:
            tape.watch(value)
            loss = tf.reduce_sum(layer([value, reference]) ** 2)
        return tape.gradient(loss, value)
    # Each input pixel is repeated into a 2x2 patch, minus what the crop removes.
    copies = np.full((4, 5), 4.0)
    copies[3, :] /= 2
    copies[:, 4] /= 2
    np.testing.assert_allclose(gradient(x).numpy(), 2 * x.numpy() * copies[None, :, :, None],
                               rtol=1e-6)
