"""Colourised depth / error / uncertainty maps: numpy and TF agree; colours mean the right
thing (near = bright, invalid = black, zero error = the colormap's low end)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import visualize


def _brightness(rgb):
    return rgb.astype(np.float64).sum(axis=-1)


def test_depth_colours_near_bright_far_dark_invalid_black():
    depth = np.array([[1.0, 2.0, 4.0, 8.0, 0.0, np.inf]], np.float32)
    rgb = visualize.colorize_depth(depth)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    brightness = _brightness(rgb[0, :4])
    assert np.all(np.diff(brightness[1:]) < 0)  # farther = darker
    assert np.all(rgb[0, 4:] == 0)  # 0 and inf are invalid
    lut = visualize.colormap_lut(visualize.DEPTH_CMAP)
    np.testing.assert_array_equal(rgb[0, 3], lut[0])  # the farthest valid pixel: low end
    # Inverse depth is scaled from its minimum to its 95th ('lower') percentile: with 4 valid
    # values that is the 3rd smallest disparity (1/2), so 1 m and 2 m both saturate.
    np.testing.assert_array_equal(rgb[0, 0], lut[255])
    np.testing.assert_array_equal(rgb[0, 1], lut[255])


def test_numpy_and_tf_versions_agree():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 80.0, (2, 6, 7, 1)).astype(np.float32)
    depth[0, :2] = 0.0  # invalid rows
    depth[1, 3, 3] = np.nan
    gt = depth * rng.uniform(0.8, 1.2, depth.shape).astype(np.float32)
    gt[1, 0] = 0.0
    uncertainty = rng.uniform(0.0, 0.5, depth.shape).astype(np.float32)

    tf_depth = visualize.colorize_depth_tf(tf.constant(depth)).numpy()
    tf_error = visualize.colorize_error_tf(tf.constant(depth), tf.constant(gt)).numpy()
    tf_unc = visualize.colorize_uncertainty_tf(tf.constant(uncertainty)).numpy()
    for i in range(2):
        np.testing.assert_array_equal(tf_depth[i], visualize.colorize_depth(depth[i]))
        np.testing.assert_array_equal(tf_error[i], visualize.colorize_error(depth[i], gt[i]))
        np.testing.assert_array_equal(tf_unc[i], visualize.colorize_uncertainty(uncertainty[i]))
    assert np.all(tf_depth[0, :2] == 0) and np.all(tf_error[1, 0] == 0)


def test_error_map_scale():
    gt = np.full((1, 3), 10.0)
    pred = np.array([[10.0, 11.0, 20.0]])
    rgb = visualize.colorize_error(pred, gt, max_rel=0.2)
    lut = visualize.colormap_lut(visualize.ERROR_CMAP)
    np.testing.assert_array_equal(rgb[0, 0], lut[0])  # no error
    np.testing.assert_array_equal(rgb[0, 1], lut[128])  # 0.1 / 0.2 of the range (127.5 -> 128)
    np.testing.assert_array_equal(rgb[0, 2], lut[255])  # clipped at max_rel


def test_images_side_by_side():
    image = np.zeros((4, 5, 3), np.float32)
    grey = np.full((4, 2), 7, np.uint8)
    joined = visualize.side_by_side([image, grey], gap=3)
    assert joined.shape == (4, 10, 3) and joined.dtype == np.uint8
    assert np.all(joined[:, 5:8] == 255) and np.all(joined[:, 8:] == 7)
    with pytest.raises(ValueError, match="equal heights"):
        visualize.side_by_side([image, np.zeros((3, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match="unknown colormap"):
        visualize.colormap_lut("no_such_map")
