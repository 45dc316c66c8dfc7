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


# --------------------------------------------------------------------------------------------
# Prediction figures: titles and colour bars.
# --------------------------------------------------------------------------------------------


def _find_block(picture, block):
    """(row, col) where `block` appears in `picture` exactly, or None."""
    rows, cols = block.shape[:2]
    for r in range(picture.shape[0] - rows + 1):
        for c in np.flatnonzero(np.all(picture[r, :picture.shape[1] - cols + 1] == block[0, 0],
                                       axis=-1)):
            if np.array_equal(picture[r:r + rows, c:c + cols], block):
                return r, c
    return None


def test_depth_colorbar_ticks_sit_at_their_inverse_depth():
    width, size = 601, 12
    bar = visualize.depth_colorbar(width, near=2.0, far=50.0, font_size=size)
    lut = visualize.colormap_lut(visualize.DEPTH_CMAP)
    bar_height = max(8, size)
    # Near (bright, top of the colormap) on the left, far (dark) on the right.
    np.testing.assert_array_equal(bar[0, 0], lut[255])
    np.testing.assert_array_equal(bar[0, -1], lut[0])
    # Tick marks: black pixels right under the bar, at x = (1/near - 1/d) / (1/near - 1/far).
    ticks = set(np.flatnonzero(np.all(bar[bar_height] == 0, axis=-1)).tolist())
    def x(d):
        return round((0.5 - 1.0 / d) / (0.5 - 0.02) * (width - 1))

    assert {0, width - 1, x(5.0), x(10.0)} <= ticks
    # 20 m would sit under the "far 50 m" label: left out rather than overprinted.
    assert x(20.0) not in ticks
    assert bar.shape[1] == width and bar.shape[0] > bar_height + size  # room for the labels
    # Below the ticks there is text (dark pixels) under the left end ("near 2 m").
    assert (bar[bar_height + 2:, :20].min(axis=-1) < 100).any()


def test_prediction_figure_has_titles_panels_and_colour_bars():
    height, width = 24, 40  # narrower than PANEL_MIN_WIDTH: panels are enlarged
    rows = np.linspace(0.0, 1.0, height)[:, None] * np.ones((1, width))
    depth = 2.0 + 40.0 * (1.0 - rows) ** 2
    uncertainty = 0.05 + 0.2 * rows
    image = np.round(np.stack([rows, 1 - rows, 0.5 * np.ones_like(rows)], -1) * 255).astype(
        np.uint8)
    figure = visualize.prediction_figure(image, depth, uncertainty)
    factor = -(-visualize.PANEL_MIN_WIDTH // width)
    panel = width * factor
    assert figure.dtype == np.uint8
    assert figure.shape[1] == 3 * panel + 2 * visualize.PANEL_GAP

    def enlarged(picture):
        return np.repeat(np.repeat(picture, factor, 0), factor, 1)

    # The three panels, at the same rows, one after the other.
    top, left = _find_block(figure, enlarged(image))
    assert left == 0 and top > 0  # a title strip above
    assert np.array_equal(figure[top:top + height * factor, panel + visualize.PANEL_GAP:
                                 2 * panel + visualize.PANEL_GAP],
                          enlarged(visualize.colorize_depth(depth)))
    start = 2 * (panel + visualize.PANEL_GAP)
    assert np.array_equal(figure[top:top + height * factor, start:],
                          enlarged(visualize.colorize_uncertainty(uncertainty)))
    # Titles: dark text pixels in the strip above each panel.
    for offset in (0, panel + visualize.PANEL_GAP, start):
        assert (figure[:top, offset:offset + panel].min(axis=-1) < 100).any()
    # Under the depth panel: its colour bar in metres for the map's own near / far range;
    # under the uncertainty panel: its own scale, 0 .. the 99th percentile.
    size = visualize.figure_font_size(panel)
    near, far = visualize.depth_display_range(depth)
    assert near == pytest.approx(1.0 / np.percentile(1.0 / depth, 95, method="lower"))
    assert far == pytest.approx(depth.max())
    depth_bar = visualize.depth_colorbar(panel, near, far, size)
    below = top + height * factor
    found = _find_block(figure[below:], depth_bar)
    assert found is not None and found[1] == panel + visualize.PANEL_GAP
    vmax = visualize.uncertainty_display_max(uncertainty)
    assert vmax == pytest.approx(np.percentile(uncertainty, 99, method="lower"))
    unc_bar = visualize.uncertainty_colorbar(panel, vmax, size)
    found = _find_block(figure[below:], unc_bar)
    assert found is not None and found[1] == start
    lut = visualize.colormap_lut(visualize.UNCERTAINTY_CMAP)
    np.testing.assert_array_equal(unc_bar[0, 0], lut[0])
    np.testing.assert_array_equal(unc_bar[0, -1], lut[255])
    # Under the input: white.
    assert np.all(figure[below:, :panel] == 255)
    # Without uncertainty: two panels.
    assert visualize.prediction_figure(image, depth).shape[1] == 2 * panel + visualize.PANEL_GAP


def test_segmentation_pictures_use_the_palette_and_blend_over_the_image():
    palette = np.array([(128, 64, 128), (0, 0, 142), (70, 130, 180)], np.uint8)
    ids = np.array([[0, 1, 2, 4], [2, 2, 1, 0]])  # 4: beyond the given palette
    image = np.full((2, 4, 3), 200, np.uint8)
    colours = visualize.class_palette(5, palette)
    np.testing.assert_array_equal(colours[:3], palette)
    assert colours.shape == (5, 3) and len({tuple(c) for c in colours}) == 5  # distinct
    np.testing.assert_array_equal(visualize.class_palette(5)[4], colours[4])  # stable
    picture = visualize.colorize_classes(ids, palette)
    np.testing.assert_array_equal(picture[0, :3], palette[[0, 1, 2]])
    np.testing.assert_array_equal(picture[0, 3], [0, 0, 0])  # no colour: black
    blended = visualize.overlay_classes(image, ids, palette, alpha=0.25)
    np.testing.assert_array_equal(blended[0, 1], np.round(0.75 * 200 + 0.25 * np.array(
        [0, 0, 142])).astype(np.uint8))
    np.testing.assert_array_equal(blended[0, 3], [200, 200, 200])  # no colour: the image


def test_prediction_figure_draws_classes_with_a_legend():
    height, width = 12, 80  # 320 / 80: enlarged 4x
    ids = np.zeros((height, width), np.int64)
    ids[:, 20:] = 2  # class 2 covers most pixels, class 0 the rest
    palette = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255)], np.uint8)
    image = np.full((height, width, 3), 100, np.uint8)
    figure = visualize.prediction_figure(image, class_ids=ids, palette=palette,
                                         class_names=["road", "car", "sky"])
    factor = visualize.PANEL_MIN_WIDTH // width
    panel = width * factor

    def enlarged(picture):
        return np.repeat(np.repeat(picture, factor, 0), factor, 1)

    # input | classes | classes over input.
    assert figure.shape[1] == 3 * panel + 2 * visualize.PANEL_GAP
    top, left = _find_block(figure, enlarged(image))
    assert left == 0
    second = panel + visualize.PANEL_GAP
    np.testing.assert_array_equal(figure[top:top + height * factor, second:second + panel],
                                  enlarged(palette[ids]))
    np.testing.assert_array_equal(
        figure[top:top + height * factor, 2 * second:],
        enlarged(visualize.overlay_classes(image, ids, palette)))
    # Under the class map: the legend, most frequent class first (a sky-blue swatch left of a
    # red one), nothing for the class that was not predicted (green).
    legend = figure[top + height * factor:, second:second + panel]
    blue = np.argwhere(np.all(legend == (0, 0, 255), axis=-1))
    red = np.argwhere(np.all(legend == (255, 0, 0), axis=-1))
    assert len(blue) and len(red) and blue[:, 1].max() < red[:, 1].min()
    assert not np.all(legend == (0, 255, 0), axis=-1).any()
    with pytest.raises(ValueError, match="depth map or class ids"):
        visualize.prediction_figure(image)


# --------------------------------------------------------------------------------------------
# Label previews.
# --------------------------------------------------------------------------------------------
def test_weak_pairs_drawn_with_farther_blue_and_closer_red():
    image = np.zeros((20, 30, 3), np.uint8)
    pairs = np.array([[2, 3, 15, 20, 1, 1.0],    # A farther: A blue, B red
                      [10, 25, 17, 5, 0, -1.0],  # A closer: A red, B blue
                      [5, 12, 5, 18, 0, 0.0]],   # equal: both yellow
                     np.float32)
    drawn = visualize.draw_weak_pairs(image, pairs)
    assert drawn.dtype == np.uint8 and drawn.shape == (20, 30, 3)
    assert tuple(drawn[2, 3]) == visualize.PAIR_FARTHER_COLOR
    assert tuple(drawn[1, 2]) == visualize.PAIR_FARTHER_COLOR  # 3x3 patch of half size 1
    assert tuple(drawn[15, 20]) == visualize.PAIR_CLOSER_COLOR
    assert tuple(drawn[10, 25]) == visualize.PAIR_CLOSER_COLOR
    assert tuple(drawn[17, 5]) == visualize.PAIR_FARTHER_COLOR
    assert tuple(drawn[5, 12]) == tuple(drawn[5, 18]) == visualize.PAIR_EQUAL_COLOR
    assert tuple(drawn[5, 15]) == visualize.PAIR_LINE_COLOR  # the line between them
    assert not drawn[0, 29].any()  # untouched background
    assert not image.any()  # the input is not drawn on
    only_first = visualize.draw_weak_pairs(image, pairs, max_pairs=1)
    assert not only_first[5, 12].any()


def test_overlay_gives_each_aligned_id_one_colour_and_unaligned_grey():
    image = np.full((6, 8, 3), 100, np.uint8)
    aligned = np.zeros((6, 8), np.int32)
    aligned[1:3, 1:3] = 26001
    aligned[4:6, 5:8] = 24002
    others = aligned.copy()
    others[0, 7] = 26005  # kept but not aligned
    out = visualize.overlay_instances(image, aligned, others)
    alpha = visualize.OVERLAY_ALPHA
    for object_id, (y, x) in ((26001, (1, 1)), (24002, (5, 7))):
        expected = np.round(100 * (1 - alpha) + visualize.instance_color(object_id) * alpha)
        np.testing.assert_array_equal(out[y, x], expected)
    grey = np.round(100 * (1 - alpha) + np.array(visualize.UNALIGNED_COLOR) * alpha)
    np.testing.assert_array_equal(out[0, 7], grey)
    np.testing.assert_array_equal(out[3, 0], [100, 100, 100])
    colours = {tuple(visualize.instance_color(i)) for i in range(26001, 26011)}
    assert len(colours) == 10  # neighbouring ids get distinct colours
    np.testing.assert_array_equal(visualize.instance_color(26001),
                                  visualize.instance_color(26001))


def test_preview_writer_limits_and_names(tmp_path):
    from tf_depthseg.data import image_io
    writer = visualize.PreviewWriter(str(tmp_path / "previews"), limit=2)
    picture = np.zeros((4, 5, 3), np.uint8)
    for source_id in ("drive_a/0001", "drive_a/0002"):
        assert writer.wants_more()
        writer.write(source_id, picture)
    assert not writer.wants_more()
    assert sorted(p.name for p in (tmp_path / "previews").iterdir()) == [
        "drive_a__0001.png", "drive_a__0002.png"]
    assert image_io.read_image(writer.paths[0]).shape == (4, 5, 3)
    assert not visualize.PreviewWriter(None).wants_more()
