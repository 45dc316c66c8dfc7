"""Colourised depth, error and uncertainty maps as uint8 RGB, in numpy and in TensorFlow,
class-id maps in a dataset's palette (and blended over the image), labelled figures
(`prediction_figure`: titled panels, a colour bar in metres under the depth, one on its own
scale under the uncertainty, a legend of the classes under the class map), and label previews
(weak pairs, aligned instance masks) for the labelling tools.

The numpy functions serve tools (predict, evaluation pictures); the `*_tf` twins work on
batches inside compiled functions for TensorBoard image summaries. Both use the same lookup
tables and the same "lower" percentile, so they agree pixel for pixel.

Conventions:

* depth is shown as inverse depth (near = bright, as in Monodepth2's pictures), scaled per
  image from its smallest valid value to the 95th percentile, so a few very close pixels do not
  wash out the rest ("magma"),
* error maps show the absolute relative error |pred - gt| / gt, 0 .. `max_rel` ("inferno"),
* uncertainty maps show the value from 0 to its 99th percentile per image ("viridis"),
* invalid pixels (depth <= 0 or not finite) are black.
"""

from __future__ import annotations

import functools
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_depthseg import common

DEPTH_CMAP = "magma"
ERROR_CMAP = "inferno"
UNCERTAINTY_CMAP = "viridis"
DEPTH_PERCENTILE = 95.0
UNCERTAINTY_PERCENTILE = 99.0
MAX_REL_ERROR = 0.25


@functools.lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """A matplotlib colormap as a uint8 `[256, 3]` lookup table."""
    from matplotlib import colormaps  # imported lazily: only pictures need matplotlib
    if name not in colormaps:
        raise ValueError(f"unknown colormap {name!r}; e.g. magma, inferno, viridis, plasma")
    table = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(table * 255.0).astype(np.uint8)


def _squeeze_channel(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected a [H, W] or [H, W, 1] map, got shape {array.shape}")
    return array


def _lut_index(values, vmin, vmax):
    """Maps values to 0..255 (clipped) with numpy; vmax == vmin maps everything to 0."""
    span = np.maximum(vmax - vmin, 1e-12)
    scaled = np.clip((values - vmin) / span, 0.0, 1.0)
    return np.round(scaled * 255.0).astype(np.int64)


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, cmap: str,
                   valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Colours a `[H, W]` map; values outside [vmin, vmax] are clipped, invalid pixels black.

    Returns:
      uint8 `[H, W, 3]`.
    """
    values = _squeeze_channel(values).astype(np.float64)
    valid = np.isfinite(values) if valid is None else (_squeeze_channel(valid).astype(bool)
                                                       & np.isfinite(values))
    rgb = colormap_lut(cmap)[_lut_index(np.where(valid, values, vmin), vmin, vmax)]
    rgb[~valid] = 0
    return rgb


def _lower_percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q, method="lower"))


def _inverse_depth(depth: np.ndarray, valid: Optional[np.ndarray]):
    """(inverse depth `[H, W]`, 0 where invalid; valid mask) of a depth map."""
    depth = _squeeze_channel(depth).astype(np.float64)
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= _squeeze_channel(valid).astype(bool)
    return np.where(ok, 1.0 / np.where(ok, depth, 1.0), 0.0), ok


def depth_display_range(depth: np.ndarray, valid: Optional[np.ndarray] = None,
                        percentile: float = DEPTH_PERCENTILE) -> Optional[Tuple[float, float]]:
    """(near, far) in metres that `colorize_depth` spans: far = the farthest valid pixel
    (darkest), near = the `percentile` of inverse depth (brightest; closer pixels saturate).
    None when no pixel is valid."""
    disparity, ok = _inverse_depth(depth, valid)
    if not ok.any():
        return None
    return 1.0 / _lower_percentile(disparity[ok], percentile), 1.0 / float(disparity[ok].min())


def colorize_depth(depth: np.ndarray, valid: Optional[np.ndarray] = None,
                   cmap: str = DEPTH_CMAP, percentile: float = DEPTH_PERCENTILE) -> np.ndarray:
    """Metric depth `[H, W(, 1)]` -> uint8 `[H, W, 3]` (inverse depth, near = bright)."""
    disparity, ok = _inverse_depth(depth, valid)
    if not ok.any():
        return np.zeros(disparity.shape + (3,), np.uint8)
    vmin = float(disparity[ok].min())
    vmax = _lower_percentile(disparity[ok], percentile)
    return apply_colormap(disparity, vmin, vmax, cmap, ok)


def colorize_error(pred: np.ndarray, gt: np.ndarray, max_rel: float = MAX_REL_ERROR,
                   cmap: str = ERROR_CMAP) -> np.ndarray:
    """|pred - gt| / gt where gt is valid (> 0) -> uint8 `[H, W, 3]`, 0 .. max_rel."""
    pred = _squeeze_channel(pred).astype(np.float64)
    gt = _squeeze_channel(gt).astype(np.float64)
    ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    rel = np.where(ok, np.abs(pred - gt) / np.where(ok, gt, 1.0), 0.0)
    return apply_colormap(rel, 0.0, max_rel, cmap, ok)


def colorize_uncertainty(uncertainty: np.ndarray, vmax: Optional[float] = None,
                         cmap: str = UNCERTAINTY_CMAP,
                         percentile: float = UNCERTAINTY_PERCENTILE) -> np.ndarray:
    """Uncertainty `[H, W(, 1)]` (>= 0) -> uint8 `[H, W, 3]`, 0 .. vmax (default: the
    per-image percentile)."""
    if vmax is None:
        vmax = uncertainty_display_max(uncertainty, percentile)
    return apply_colormap(uncertainty, 0.0, vmax, cmap)  # invalid = not finite


def uncertainty_display_max(uncertainty: np.ndarray,
                            percentile: float = UNCERTAINTY_PERCENTILE) -> float:
    """The value `colorize_uncertainty` shows brightest (its per-image `percentile`; 1.0 for a
    map without finite values)."""
    values = _squeeze_channel(uncertainty).astype(np.float64)
    ok = np.isfinite(values)
    return _lower_percentile(values[ok], percentile) if ok.any() else 1.0


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] or uint8 image, grey or RGB -> uint8 `[H, W, 3]`."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def side_by_side(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Joins same-height pictures left to right with `gap` white columns between them."""
    pictures = [to_rgb_uint8(image) for image in images]
    heights = {p.shape[0] for p in pictures}
    if len(heights) != 1:
        raise ValueError(f"side_by_side needs equal heights, got {sorted(heights)}")
    spacer = np.full((pictures[0].shape[0], gap, 3), 255, np.uint8)
    parts = []
    for i, picture in enumerate(pictures):
        if i:
            parts.append(spacer)
        parts.append(picture)
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------
# Labelled figures: panels with titles and colour bars (the prediction pictures).
# --------------------------------------------------------------------------------------------
PANEL_MIN_WIDTH = 320  # narrower inputs are enlarged (nearest) so the labels stay readable
PANEL_GAP = 4
TEXT_COLOR = (0, 0, 0)
BACKGROUND = 255
UNCERTAINTY_TITLE = "uncertainty (std of log10 depth)"


@functools.lru_cache(maxsize=None)
def _font(size: int):
    """Pillow's bundled scalable font (the same glyphs on every machine)."""
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def figure_font_size(panel_width: int) -> int:
    """Text height in pixels for panels `panel_width` wide (10 .. 24)."""
    return int(np.clip(round(panel_width / 30), 10, 24))


def _text_width(text: str, size: int) -> int:
    return int(np.ceil(_font(size).getlength(text)))


def _nice_steps(low: float, high: float) -> List[float]:
    """1-2-5 x 10^k values strictly between low and high (> 0)."""
    values = []
    for exponent in range(int(np.floor(np.log10(low))) - 1, int(np.ceil(np.log10(high))) + 1):
        for mantissa in (1.0, 2.0, 5.0):
            value = mantissa * 10.0 ** exponent
            if low < value < high:
                values.append(value)
    return values


def _format_tick(value: float) -> str:
    return f"{value:g}" if value >= 1 else f"{value:.2g}"


def colorbar(width: int, cmap: str, labels: Sequence[Tuple[float, str]], font_size: int,
             reverse: bool = False) -> np.ndarray:
    """A horizontal colour bar with tick labels, uint8 `[h, width, 3]`.

    Args:
      width: pixels (the panel's width).
      cmap: the colormap, drawn left (index 0) to right (255), or right to left if `reverse`.
      labels: (position in [0, 1] from the left, text). The first and last are drawn
        flush with the ends; the others centred on their tick and left out where they would
        overlap a label already drawn.
      font_size: text height in pixels.
    """
    from PIL import Image, ImageDraw
    bar_height, tick = max(8, font_size), max(3, font_size // 4)
    height = bar_height + tick + font_size + 6
    lut = colormap_lut(cmap)
    index = np.round(np.linspace(0.0, 255.0, width)).astype(np.int64)
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    canvas[:bar_height] = lut[index[::-1] if reverse else index][None]
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = _font(font_size)
    taken: List[Tuple[int, int]] = []
    gap = max(4, font_size // 2)
    ordered = list(labels)
    if len(ordered) > 2:  # the ends first: they are always drawn
        ordered = [ordered[0], ordered[-1]] + ordered[1:-1]
    for rank, (position, text) in enumerate(ordered):
        x = int(round(np.clip(position, 0.0, 1.0) * (width - 1)))
        text_width = _text_width(text, font_size)
        if rank == 0:
            left = 0
        elif rank == 1:
            left = width - text_width
        else:
            left = x - text_width // 2
        right = left + text_width
        if rank > 1 and (left < 0 or right > width or any(
                left < b + gap and right > a - gap for a, b in taken)):
            continue
        taken.append((left, right))
        draw.line([(x, bar_height), (x, bar_height + tick - 1)], fill=TEXT_COLOR)
        draw.text((left, bar_height + tick + 1), text, fill=TEXT_COLOR, font=font)
    return np.asarray(picture)


def depth_colorbar(width: int, near: float, far: float, font_size: int,
                   cmap: str = DEPTH_CMAP) -> np.ndarray:
    """Colour bar of `colorize_depth`: near (bright, left) to far (dark, right), ticks in
    metres at their inverse-depth positions (the colours are linear in inverse depth)."""
    if not far > near > 0:  # a flat map: one colour
        return colorbar(width, cmap, [(0.0, f"{near:.3g} m everywhere")], font_size,
                        reverse=True)
    span = 1.0 / near - 1.0 / far

    def position(depth):
        return (1.0 / near - 1.0 / depth) / span

    labels = [(0.0, f"near {near:.3g} m")]
    labels += [(position(value), _format_tick(value)) for value in _nice_steps(near, far)]
    labels.append((1.0, f"far {far:.3g} m"))
    return colorbar(width, cmap, labels, font_size, reverse=True)


def uncertainty_colorbar(width: int, vmax: float, font_size: int,
                         cmap: str = UNCERTAINTY_CMAP) -> np.ndarray:
    """Colour bar of `colorize_uncertainty`: 0 (left) to `vmax` (right), linear."""
    labels = [(0.0, "0")]
    if vmax > 0:
        step = next((t for t in _nice_steps(vmax / 10.0, vmax) if vmax / t <= 5), None)
        if step:
            labels += [(value / vmax, f"{value:g}")
                       for value in np.arange(step, vmax - step / 2, step)]
        labels.append((1.0, f"{vmax:.2g}"))
    return colorbar(width, cmap, labels, font_size)


def labelled_panels(panels: Sequence[Tuple[str, np.ndarray, Optional[np.ndarray]]],
                    gap: int = PANEL_GAP) -> np.ndarray:
    """Panels left to right, each with its title above and its colour bar (or blank) below.

    Args:
      panels: (title, picture uint8 `[H, W_i, 3]`, colour bar uint8 `[h_i, W_i, 3]` or None);
        the pictures share H.
      gap: white pixels between panels.
    Returns:
      uint8 `[title + H + max h_i, sum W_i + gaps, 3]`.
    """
    from PIL import Image, ImageDraw
    heights = {picture.shape[0] for _, picture, _ in panels}
    if len(heights) != 1:
        raise ValueError(f"labelled_panels needs equal heights, got {sorted(heights)}")
    height = heights.pop()
    font_size = figure_font_size(min(picture.shape[1] for _, picture, _ in panels))
    title_height = font_size + 8
    bar_height = max([0] + [bar.shape[0] for _, _, bar in panels if bar is not None])
    columns = []
    for title, picture, bar in panels:
        width = picture.shape[1]
        column = np.full((title_height + height + bar_height + (2 if bar_height else 0),
                          width, 3), BACKGROUND, np.uint8)
        column[title_height:title_height + height] = to_rgb_uint8(picture)
        if bar is not None:
            if bar.shape[1] != width:
                raise ValueError(f"colour bar of '{title}' is {bar.shape[1]} px wide, its "
                                 f"panel {width}")
            top = title_height + height + 2
            column[top:top + bar.shape[0]] = bar
        canvas = Image.fromarray(column)
        ImageDraw.Draw(canvas).text((2, 3), title, fill=TEXT_COLOR, font=_font(font_size))
        columns.append(np.asarray(canvas))
    return side_by_side(columns, gap)


def prediction_figure(image: np.ndarray, depth: Optional[np.ndarray] = None,
                      uncertainty: Optional[np.ndarray] = None,
                      min_width: int = PANEL_MIN_WIDTH, *,
                      class_ids: Optional[np.ndarray] = None,
                      palette: Optional[np.ndarray] = None,
                      class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """input | depth | uncertainty | classes | overlay, titled, for whatever was predicted: a
    colour bar in metres (near .. far) under the depth, one for the uncertainty's own scale
    (0 .. its 99th percentile), a legend of the classes present under the class map, and the
    class colours blended over the input.

    Args:
      image: uint8 or float `[H, W, 3]`; depth, uncertainty: `[H, W(, 1)]` at the same size.
      min_width: panels narrower than this are enlarged by an integer factor (nearest), so the
        text fits; the colours and ranges come from the maps at their own size.
      class_ids: int `[H, W]` predicted classes (segmentation).
      palette: `[>= C, 3]` class colours (default: `class_palette`).
      class_names: names for the legend (default: the class ids).
    Returns:
      uint8 picture.
    """
    if depth is None and class_ids is None:
        raise ValueError("prediction_figure needs a depth map or class ids to draw")
    rgb = to_rgb_uint8(image)
    factor = max(1, -(-int(min_width) // rgb.shape[1]))

    def enlarge(picture):
        return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)

    width = rgb.shape[1] * factor
    font_size = figure_font_size(width)
    panels = [("input", enlarge(rgb), None)]
    if depth is not None:
        depth = _squeeze_channel(depth)
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f"depth {depth.shape} and image {rgb.shape[:2]} differ in size")
        span = depth_display_range(depth)
        depth_bar = (depth_colorbar(width, span[0], span[1], font_size) if span is not None
                     else colorbar(width, DEPTH_CMAP, [(0.0, "no valid depth")], font_size))
        panels.append(("depth", enlarge(colorize_depth(depth)), depth_bar))
    if uncertainty is not None:
        vmax = uncertainty_display_max(uncertainty)
        panels.append((UNCERTAINTY_TITLE, enlarge(colorize_uncertainty(uncertainty, vmax)),
                       uncertainty_colorbar(width, vmax, font_size)))
    if class_ids is not None:
        class_ids = _squeeze_channel(class_ids)
        if class_ids.shape != rgb.shape[:2]:
            raise ValueError(f"class ids {class_ids.shape} and image {rgb.shape[:2]} differ in "
                             "size")
        palette = class_palette(int(class_ids.max()) + 1 if class_ids.size else 1, palette)
        panels.append(("classes", enlarge(colorize_classes(class_ids, palette)),
                       class_legend(width, class_ids, palette, class_names, font_size)))
        panels.append(("classes over input", enlarge(overlay_classes(rgb, class_ids, palette)),
                       None))
    return labelled_panels(panels)


# --------------------------------------------------------------------------------------------
# Segmentation pictures: class-id maps in a dataset's palette, blended over the image.
# --------------------------------------------------------------------------------------------
CLASS_OVERLAY_ALPHA = 0.5
LEGEND_MAX_ROWS = 3


def class_palette(num_classes: int, palette: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 `[max(C, len(palette)), 3]` class colours: the given palette (a dataset's, e.g.
    `datasets.CAMVID_PALETTE`), extended for classes beyond it with `instance_color` (stable,
    well separated hues), so a network of an unknown dataset is drawn too."""
    given = np.zeros((0, 3), np.uint8) if palette is None else np.asarray(palette, np.uint8)
    extra = [instance_color(index + 1) for index in range(len(given), num_classes)]
    return np.concatenate([given, np.array(extra, np.uint8).reshape(-1, 3)])


def colorize_classes(class_ids: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """int `[H, W]` class ids -> uint8 RGB `[H, W, 3]` in `palette`; ids without a colour
    (e.g. the ignore label 255) are black (`datasets.colorize`)."""
    from tf_depthseg.data import datasets
    return datasets.colorize(_squeeze_channel(class_ids), palette)


def overlay_classes(image: np.ndarray, class_ids: np.ndarray, palette: np.ndarray,
                    alpha: float = CLASS_OVERLAY_ALPHA) -> np.ndarray:
    """The class colours blended over the image: `(1 - alpha) * image + alpha * colour`,
    uint8 `[H, W, 3]` (pixels without a colour keep the image)."""
    rgb = to_rgb_uint8(image).astype(np.float64)
    class_ids = _squeeze_channel(class_ids)
    coloured = (class_ids >= 0) & (class_ids < len(palette))
    colours = colorize_classes(class_ids, palette).astype(np.float64)
    weight = np.where(coloured, alpha, 0.0)[..., None]
    return np.round(rgb * (1.0 - weight) + colours * weight).astype(np.uint8)


def class_legend(width: int, class_ids: np.ndarray, palette: np.ndarray,
                 class_names: Optional[Sequence[str]], font_size: int,
                 max_rows: int = LEGEND_MAX_ROWS) -> np.ndarray:
    """A legend `[h, width, 3]` of the classes present in `class_ids`, most pixels first: a
    colour swatch and the class name (or id) per entry, in up to `max_rows` rows; the classes
    that do not fit are counted ("+3 more")."""
    from PIL import Image, ImageDraw
    ids, counts = np.unique(_squeeze_channel(class_ids), return_counts=True)
    ordered = [int(i) for i in ids[np.argsort(-counts, kind="stable")] if 0 <= i < len(palette)]
    line = font_size + 6
    canvas = Image.fromarray(np.full((max_rows * line + 2, width, 3), BACKGROUND, np.uint8))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    x, row, drawn = 0, 0, 0
    for rank, class_id in enumerate(ordered):
        label = (str(class_names[class_id]) if class_names is not None
                 and class_id < len(class_names) else str(class_id))
        entry = font_size + 4 + _text_width(label, font_size) + 10
        rest = len(ordered) - rank - 1
        more = f"+{rest} more" if rest else ""
        # The last row keeps room for "+k more" unless this is the last entry.
        room = width - (_text_width(more, font_size) if row == max_rows - 1 else 0)
        if x and x + entry > room:
            if row == max_rows - 1:
                break
            x, row = 0, row + 1
        top = row * line + 2
        draw.rectangle([x, top, x + font_size, top + font_size],
                       fill=tuple(int(v) for v in palette[class_id]), outline=TEXT_COLOR)
        draw.text((x + font_size + 4, top), label, fill=TEXT_COLOR, font=font)
        x += entry
        drawn += 1
    if drawn < len(ordered):
        draw.text((x, row * line + 2), f"+{len(ordered) - drawn} more", fill=TEXT_COLOR,
                  font=font)
    used = (row + 1) * line + 2
    return np.asarray(canvas)[:used]


# --------------------------------------------------------------------------------------------
# DepthMix figure (Hoyer et al. 2021, Fig. S2).
# --------------------------------------------------------------------------------------------
MIX_BORDER_I_COLOR = (255, 140, 0)  # orange: mask border on the side of image i (pasted)
MIX_BORDER_J_COLOR = (0, 110, 255)  # blue: mask border on the side of partner j
MIX_DISPARITY_CMAP = DEPTH_CMAP


def mask_border(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The two sides of a binary mask's border: (pixels of the mask with a 4-neighbour outside
    it, pixels outside it with a 4-neighbour inside), bool `[H, W]` each."""
    mask = _squeeze_channel(mask).astype(bool)
    padded = np.pad(mask, 1, mode="edge")  # the image edge is no border
    neighbours = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    any_in = np.logical_or.reduce(neighbours)
    all_in = np.logical_and.reduce(neighbours)
    return mask & ~all_in, ~mask & any_in


def depthmix_figure(images: np.ndarray, disparities: np.ndarray, mask: np.ndarray,
                    labels: Optional[np.ndarray] = None, palette: Optional[np.ndarray] = None,
                    titles: bool = True, min_width: int = PANEL_MIN_WIDTH) -> np.ndarray:
    """DepthMix of one pair, left to right as in the paper's Fig. S2: image i, its SDE
    disparity, image j, its disparity, the mixed image with the mask border (orange on i's
    side, blue on j's), the mixed image, the mixed disparity and (with `labels`) the mixed
    segmentation.

    Mixed = i where `mask`, else j (`semisup.mix.mix`). Disparities (normalised, larger =
    closer, `semisup.depthmix.normalize_disparity`) are drawn on the fixed range [0, 1] in
    `MIX_DISPARITY_CMAP`, so the sources and the mix share one scale; classes in `palette`
    (a dataset's, e.g. `datasets.CAMVID_PALETTE`), the ignore label black.

    Args:
      images: `[2, H, W, 3]` float in [0, 1] or uint8: image i and its partner j.
      disparities: `[2, H, W]` or `[2, H, W, 1]` normalised disparity.
      mask: bool `[H, W]` or `[H, W, 1]`: True = the pixel comes from image i.
      labels: optional int `[2, H, W(, 1)]` class ids of the two images.
      palette: class colours for `labels` (default `class_palette`).
      titles: titled panels (`labelled_panels`), or bare panels side by side.
      min_width: panels narrower than this are enlarged by an integer factor (nearest).
    Returns:
      uint8 `[height, width, 3]`: a PNG as is, a TensorBoard image as `figure[None]`. Without
      titles and enlargement: height H, width n W + (n - 1) `PANEL_GAP` for n panels (7, or 8
      with labels).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] != 2:
        raise ValueError(f"depthmix_figure needs images [2, H, W, 3], got {images.shape}")
    size = images.shape[1:3]
    disparities = np.asarray(disparities, np.float64)
    if disparities.ndim == 4:
        disparities = disparities[..., 0]
    mask = _squeeze_channel(mask).astype(bool)
    if disparities.shape != (2,) + size or mask.shape != size:
        raise ValueError(f"depthmix_figure: disparities {disparities.shape} and mask "
                         f"{mask.shape} must match the images' [2, {size[0]}, {size[1]}]")
    rgb = [to_rgb_uint8(image) for image in images]
    mixed = np.where(mask[..., None], rgb[0], rgb[1])
    with_border = mixed.copy()
    side_i, side_j = mask_border(mask)
    with_border[side_i] = MIX_BORDER_I_COLOR
    with_border[side_j] = MIX_BORDER_J_COLOR

    def disparity_picture(values):
        return apply_colormap(values, 0.0, 1.0, MIX_DISPARITY_CMAP)

    panels = [("image i", rgb[0]), ("SDE i", disparity_picture(disparities[0])),
              ("image j", rgb[1]), ("SDE j", disparity_picture(disparities[1])),
              ("mixed, mask border", with_border), ("mixed image", mixed),
              ("mixed SDE", disparity_picture(np.where(mask, disparities[0], disparities[1])))]
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 4:
            labels = labels[..., 0]
        if labels.shape != (2,) + size:
            raise ValueError(f"depthmix_figure: labels {labels.shape} must be [2, {size[0]}, "
                             f"{size[1]}]")
        mixed_labels = np.where(mask, labels[0], labels[1])
        valid = labels[(labels >= 0) & (labels != common.IGNORE_LABEL)]
        palette = class_palette(int(valid.max()) + 1 if valid.size else 1, palette)
        panels.append(("mixed labels", colorize_classes(mixed_labels, palette)))
    factor = max(1, -(-int(min_width) // size[1]))
    panels = [(title, np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1))
              for title, picture in panels]
    if not titles:
        return side_by_side([picture for _, picture in panels], PANEL_GAP)
    return labelled_panels([(title, picture, None) for title, picture in panels])


# --------------------------------------------------------------------------------------------
# Label previews: weak ordinal pairs and aligned instance masks drawn on the image.
# --------------------------------------------------------------------------------------------
PAIR_FARTHER_COLOR = (40, 110, 255)  # blue: the farther end of a pair
PAIR_CLOSER_COLOR = (255, 60, 40)  # red: the closer end
PAIR_EQUAL_COLOR = (255, 220, 0)  # yellow: both ends of an "equal" pair
PAIR_LINE_COLOR = (255, 255, 255)
UNALIGNED_COLOR = (128, 128, 128)
OVERLAY_ALPHA = 0.55


def instance_color(object_id: int) -> np.ndarray:
    """A stable, saturated uint8 RGB colour for an instance id (same id -> same colour)."""
    hue = (int(object_id) * 0.6180339887) % 1.0  # golden-ratio steps spread the hues
    channel = np.clip(np.abs((hue * 6.0 + np.array([0.0, 4.0, 2.0])) % 6.0 - 3.0) - 1.0, 0, 1)
    return np.round(60 + 195 * channel).astype(np.uint8)


def _draw_line(canvas: np.ndarray, y0, x0, y1, x1, color) -> None:
    steps = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
    ys = np.clip(np.round(np.linspace(y0, y1, steps)).astype(int), 0, canvas.shape[0] - 1)
    xs = np.clip(np.round(np.linspace(x0, x1, steps)).astype(int), 0, canvas.shape[1] - 1)
    canvas[ys, xs] = color


def _draw_box(canvas: np.ndarray, y, x, half, color) -> None:
    """A filled square of side 2 * max(half, 1) + 1 centred on (y, x), clipped to the image."""
    half = max(int(half), 1)
    y, x = int(round(y)), int(round(x))
    canvas[max(y - half, 0):y + half + 1, max(x - half, 0):x + half + 1] = color


def draw_weak_pairs(image: np.ndarray, pairs: np.ndarray, max_pairs: int = 48) -> np.ndarray:
    """The first `max_pairs` weak pairs drawn on `image`.

    Each pair is a white line between its patches (boxes of the pair's size; pixel pairs get
    3x3 dots): blue at the farther end, red at the closer end, yellow at both ends of an
    "equal" pair.

    Args:
      image: uint8 or float `[H, W, 3]` (or grey) picture.
      pairs: float `[P, 6]` rows (y_a, x_a, y_b, x_b, half_size, relation), relation +1 when A
        is farther, -1 when closer, 0 equal (common.RELATION_*).
    Returns:
      uint8 `[H, W, 3]`.
    """
    canvas = to_rgb_uint8(image).copy()
    pairs = np.asarray(pairs, np.float64).reshape(-1, 6)[:max_pairs]
    for y_a, x_a, y_b, x_b, _, _ in pairs:
        _draw_line(canvas, y_a, x_a, y_b, x_b, PAIR_LINE_COLOR)
    for y_a, x_a, y_b, x_b, half, relation in pairs:
        if relation == 0:
            color_a = color_b = PAIR_EQUAL_COLOR
        elif relation > 0:
            color_a, color_b = PAIR_FARTHER_COLOR, PAIR_CLOSER_COLOR
        else:
            color_a, color_b = PAIR_CLOSER_COLOR, PAIR_FARTHER_COLOR
        _draw_box(canvas, y_a, x_a, half, color_a)
        _draw_box(canvas, y_b, x_b, half, color_b)
    return canvas


def overlay_instances(image: np.ndarray, aligned: np.ndarray,
                      others: Optional[np.ndarray] = None,
                      alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Instance masks blended over `image`: each non-zero id of `aligned` in its
    `instance_color` (so an object aligned across frames has one colour in all of them), the
    non-zero pixels of `others` (e.g. objects left unaligned) in grey.

    Args:
      image: uint8 or float `[H, W, 3]` picture.
      aligned, others: int `[H, W]` instance maps (0 = nothing).
    Returns:
      uint8 `[H, W, 3]`.
    """
    canvas = to_rgb_uint8(image).astype(np.float64)
    colors = np.zeros(canvas.shape, np.float64)
    weight = np.zeros(canvas.shape[:2], np.float64)
    if others is not None:
        grey = (np.asarray(others) != 0) & (np.asarray(aligned) == 0)
        colors[grey] = UNALIGNED_COLOR
        weight[grey] = alpha
    aligned = np.asarray(aligned)
    for object_id in np.unique(aligned[aligned != 0]).tolist():
        pixels = aligned == object_id
        colors[pixels] = instance_color(object_id)
        weight[pixels] = alpha
    blended = canvas * (1.0 - weight[..., None]) + colors * weight[..., None]
    return np.round(blended).astype(np.uint8)


class PreviewWriter:
    """Writes the first `limit` preview pictures of a tool run into `folder` (None = off) as
    `<source id, "/" -> "__">.png` (atomic writes)."""

    def __init__(self, folder: Optional[str], limit: int = 8):
        self.folder = folder
        self.limit = limit
        self.paths = []

    def wants_more(self) -> bool:
        return bool(self.folder) and len(self.paths) < self.limit

    def write(self, source_id: str, picture: np.ndarray) -> str:
        from tf_depthseg.data import image_io
        name = source_id.replace(os.sep, "__").replace("/", "__") + ".png"
        path = os.path.join(self.folder, name)
        image_io.write_png(path, to_rgb_uint8(picture))
        self.paths.append(path)
        return path


# --------------------------------------------------------------------------------------------
# TensorFlow versions for batches `[B, H, W, 1]` (TensorBoard image summaries).
# --------------------------------------------------------------------------------------------


def _lower_percentile_tf(values: tf.Tensor, valid: tf.Tensor, q: float) -> tf.Tensor:
    """Per-image 'lower' percentile of the valid values: `[B, H, W, 1]` -> `[B]`.

    Invalid entries sort to the end as +inf; the percentile index counts valid entries only
    (1.0 for images without valid pixels).
    """
    batch = tf.shape(values)[0]
    flat = tf.reshape(tf.where(valid, values, np.inf), [batch, -1])
    count = tf.reduce_sum(tf.cast(tf.reshape(valid, [batch, -1]), tf.int32), axis=1)
    ordered = tf.sort(flat, axis=1)
    index = tf.cast(tf.floor(q / 100.0 * tf.cast(tf.maximum(count - 1, 0), tf.float64)),
                    tf.int32)
    picked = tf.gather(ordered, index, batch_dims=1)
    return tf.where(count > 0, picked, tf.ones_like(picked))


def apply_colormap_tf(values: tf.Tensor, vmin: tf.Tensor, vmax: tf.Tensor, cmap: str,
                      valid: tf.Tensor) -> tf.Tensor:
    """Colours `[B, H, W, 1]` values with per-image `vmin`, `vmax` `[B]` -> uint8
    `[B, H, W, 3]`; invalid pixels black."""
    values = tf.cast(values, tf.float64)
    vmin = tf.reshape(tf.cast(vmin, tf.float64), [-1, 1, 1, 1])
    vmax = tf.reshape(tf.cast(vmax, tf.float64), [-1, 1, 1, 1])
    span = tf.maximum(vmax - vmin, 1e-12)
    scaled = tf.clip_by_value((tf.where(valid, values, vmin) - vmin) / span, 0.0, 1.0)
    # rint rounds half to even like np.round, so both versions pick the same table entry.
    index = tf.cast(tf.math.rint(scaled * 255.0), tf.int32)[..., 0]
    rgb = tf.gather(tf.constant(colormap_lut(cmap)), index)
    return tf.where(valid, rgb, tf.zeros_like(rgb))


def colorize_depth_tf(depth: tf.Tensor, valid: Optional[tf.Tensor] = None,
                      cmap: str = DEPTH_CMAP, percentile: float = DEPTH_PERCENTILE) -> tf.Tensor:
    """Metric depth `[B, H, W, 1]` -> uint8 `[B, H, W, 3]` (see `colorize_depth`)."""
    depth = tf.cast(depth, tf.float64)
    ok = tf.math.is_finite(depth) & (depth > 0)
    if valid is not None:
        ok &= tf.cast(valid, tf.bool)
    disparity = tf.where(ok, 1.0 / tf.where(ok, depth, 1.0), 0.0)
    vmin = tf.reduce_min(tf.where(ok, disparity, np.inf), axis=[1, 2, 3])
    vmax = _lower_percentile_tf(disparity, ok, percentile)
    return apply_colormap_tf(disparity, vmin, vmax, cmap, ok)


def colorize_disparity_tf(disparity: tf.Tensor, cmap: str = DEPTH_CMAP,
                          percentile: float = DEPTH_PERCENTILE) -> tf.Tensor:
    """Disparity (e.g. a sigmoid output, larger = closer) `[B, H, W, 1]` -> uint8
    `[B, H, W, 3]`: per image from its minimum to its `percentile` (the depth maps' colours,
    which show disparity too)."""
    values = tf.cast(disparity, tf.float64)
    ok = tf.math.is_finite(values)
    vmin = tf.reduce_min(tf.where(ok, values, np.inf), axis=[1, 2, 3])
    vmax = _lower_percentile_tf(values, ok, percentile)
    return apply_colormap_tf(values, vmin, vmax, cmap, ok)


def colorize_error_tf(pred: tf.Tensor, gt: tf.Tensor, max_rel: float = MAX_REL_ERROR,
                      cmap: str = ERROR_CMAP) -> tf.Tensor:
    """Absolute relative error `[B, H, W, 1]` maps -> uint8 `[B, H, W, 3]`."""
    pred, gt = tf.cast(pred, tf.float64), tf.cast(gt, tf.float64)
    ok = tf.math.is_finite(gt) & (gt > 0) & tf.math.is_finite(pred)
    rel = tf.where(ok, tf.abs(pred - gt) / tf.where(ok, gt, 1.0), 0.0)
    batch = tf.shape(pred)[0]
    return apply_colormap_tf(rel, tf.zeros([batch], tf.float64),
                             tf.fill([batch], tf.constant(max_rel, tf.float64)), cmap, ok)


def colorize_uncertainty_tf(uncertainty: tf.Tensor, cmap: str = UNCERTAINTY_CMAP,
                            percentile: float = UNCERTAINTY_PERCENTILE) -> tf.Tensor:
    """Uncertainty `[B, H, W, 1]` -> uint8 `[B, H, W, 3]`, 0 .. per-image percentile."""
    values = tf.cast(uncertainty, tf.float64)
    ok = tf.math.is_finite(values)
    vmax = _lower_percentile_tf(values, ok, percentile)
    return apply_colormap_tf(values, tf.zeros_like(vmax), vmax, cmap, ok)


def to_rgb_uint8_tf(image: tf.Tensor) -> tf.Tensor:
    """float `[B, H, W, C]` in [0, 1] (C = 1 or 3) -> uint8 `[B, H, W, 3]`."""
    if image.dtype != tf.uint8:
        image = tf.cast(tf.math.rint(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0)
                                     * 255.0), tf.uint8)
    if image.shape[-1] == 1:
        image = tf.repeat(image, 3, axis=-1)
    return image
