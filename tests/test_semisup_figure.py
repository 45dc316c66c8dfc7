"""DepthMix figure (paper Fig. S2): size, panels, mask border colours, PNG and TensorBoard."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_depthseg import visualize
from tf_depthseg.data import datasets
from tf_depthseg.semisup import depthmix

H, W = 6, 8
GAP = visualize.PANEL_GAP


def _inputs():
    images = np.zeros((2, H, W, 3), np.uint8)
    images[0] = (200, 10, 10)
    images[1] = (10, 200, 10)
    disparity = np.zeros((2, H, W, 1), np.float32)
    disparity[0, 1:4, 2:5] = 1.0  # a close square in image 0
    disparity[1] = 0.5
    labels = np.stack([np.full((H, W), 3), np.full((H, W), 5)]).astype(np.int32)
    labels[0, 1, 2] = datasets.IGNORE_ID
    mask = depthmix.depthmix_mask(tf.constant(disparity)).numpy()[0, ..., 0]
    return images, disparity, labels, mask


def _panel(figure, index):
    left = index * (W + GAP)
    return figure[:, left:left + W]


def test_figure_panels_and_border_colours():
    images, disparity, labels, mask = _inputs()
    expected_mask = np.zeros((H, W), bool)
    expected_mask[1:4, 2:5] = True  # image 0 is in front only on its square
    np.testing.assert_array_equal(mask, expected_mask)
    figure = visualize.depthmix_figure(images, disparity, mask, labels,
                                       datasets.CAMVID_PALETTE, titles=False, min_width=0)
    assert figure.dtype == np.uint8 and figure.shape == (H, 8 * W + 7 * GAP, 3)
    np.testing.assert_array_equal(_panel(figure, 0), images[0])
    np.testing.assert_array_equal(_panel(figure, 2), images[1])
    mixed = _panel(figure, 5)
    np.testing.assert_array_equal(mixed, np.where(expected_mask[..., None], images[0], images[1]))
    # Mask border: orange on image i's side (the square's rim), blue just outside it.
    bordered = _panel(figure, 4)
    inside_rim = np.zeros((H, W), bool)
    inside_rim[1:4, 2:5] = True
    inside_rim[2, 3] = False  # the square's centre has all four neighbours inside
    outside_rim = np.zeros((H, W), bool)
    outside_rim[0, 2:5] = outside_rim[4, 2:5] = True
    outside_rim[1:4, 1] = outside_rim[1:4, 5] = True
    np.testing.assert_array_equal(np.all(bordered == visualize.MIX_BORDER_I_COLOR, -1),
                                  inside_rim)
    np.testing.assert_array_equal(np.all(bordered == visualize.MIX_BORDER_J_COLOR, -1),
                                  outside_rim)
    np.testing.assert_array_equal(bordered[2, 3], images[0, 2, 3])
    np.testing.assert_array_equal(bordered[5, 0], images[1, 5, 0])
    # Mixed disparity on the fixed [0, 1] scale: 1 (brightest) on the square, 0.5 elsewhere.
    lut = visualize.colormap_lut(visualize.MIX_DISPARITY_CMAP)
    mixed_sde = _panel(figure, 6)
    np.testing.assert_array_equal(mixed_sde[2, 3], lut[255])
    np.testing.assert_array_equal(mixed_sde[0, 0], lut[128])
    # Mixed labels in the palette, the pasted ignore pixel black.
    seg = _panel(figure, 7)
    np.testing.assert_array_equal(seg[2, 3], datasets.CAMVID_PALETTE[3])
    np.testing.assert_array_equal(seg[0, 0], datasets.CAMVID_PALETTE[5])
    np.testing.assert_array_equal(seg[1, 2], 0)


def test_titled_figure_and_tensorboard(tmp_path):
    images, disparity, labels, mask = _inputs()
    bare = visualize.depthmix_figure(images, disparity, mask, titles=False)  # no labels
    factor = -(-visualize.PANEL_MIN_WIDTH // W)
    assert bare.shape == (H * factor, 7 * W * factor + 6 * GAP, 3)
    titled = visualize.depthmix_figure(images, disparity, mask, labels)
    assert titled.shape[1] == 8 * W * factor + 7 * GAP and titled.shape[0] > H * factor
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        assert tf.summary.image("depthmix", titled[None], step=0)
    writer.flush()
