"""The contact sheet of a selection step: the chosen images as titled thumbnails in rank order.

Built from `visualize.labelled_panels` (one titled row of panels) stacked into a grid under
header lines.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from tf_depthseg import visualize

GAP = 4


def thumbnail(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """uint8 `[h, w, 3]` of `image` resized (area-averaging) to `size` = (h, w)."""
    from PIL import Image
    picture = Image.fromarray(visualize.to_rgb_uint8(image))
    return np.asarray(picture.resize((size[1], size[0]), Image.Resampling.BOX))


def _font(size: int):
    """Pillow's bundled scalable font, as `visualize` draws its titles."""
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def wrap_text(text: str, width: int, font_size: int) -> List[str]:
    """`text` broken at spaces into lines at most `width` pixels wide (a longer word stays
    whole on its own line)."""
    font = _font(font_size)
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and font.getlength(candidate) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return lines + ([line] if line else [])


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str],
                  header: Sequence[str], thumbnail_width: int = 160,
                  columns: int = 0) -> np.ndarray:
    """Thumbnails left to right, top to bottom, each under its title, below header lines.

    Args:
      images: uint8 or float `[H_i, W_i, 3]`; all are resized to `thumbnail_width` wide and
        the height the first image's aspect ratio gives.
      titles: one per image (e.g. "#3 s=12.1 d=0.041").
      header: the sheet's first lines (wrapped to its width).
      columns: thumbnails per row (0: about a 4:3 sheet, at most 12).
    Returns:
      uint8 `[h, w, 3]`.
    """
    from PIL import Image, ImageDraw
    if not images or len(images) != len(titles):
        raise ValueError(f"contact_sheet needs one title per image, got {len(images)} images "
                         f"and {len(titles)} titles")
    first = np.asarray(images[0])
    height = max(1, int(round(thumbnail_width * first.shape[0] / first.shape[1])))
    size = (height, int(thumbnail_width))
    if columns <= 0:
        # Columns x rows of (w x h) tiles about 4:3 overall.
        columns = int(np.clip(np.ceil(np.sqrt(len(images) * 4.0 * height /
                                              (3.0 * thumbnail_width))), 1, 12))
    rows = []
    for start in range(0, len(images), columns):
        panels = [(title, thumbnail(image, size), None) for image, title in
                  zip(images[start:start + columns], titles[start:start + columns])]
        rows.append(visualize.labelled_panels(panels, gap=GAP))
    width = max(row.shape[1] for row in rows)
    font_size = visualize.figure_font_size(thumbnail_width)
    lines = [wrapped for line in header for wrapped in wrap_text(line, width - 4, font_size)]
    line_height = font_size + 4
    header_height = line_height * len(lines) + 6
    total = header_height + sum(row.shape[0] for row in rows) + GAP * (len(rows) - 1)
    sheet = np.full((total, width, 3), visualize.BACKGROUND, np.uint8)
    top = header_height
    for row in rows:
        sheet[top:top + row.shape[0], :row.shape[1]] = row
        top += row.shape[0] + GAP
    picture = Image.fromarray(sheet)
    draw = ImageDraw.Draw(picture)
    font = _font(font_size)
    for number, line in enumerate(lines):
        draw.text((2, 3 + number * line_height), line, fill=visualize.TEXT_COLOR, font=font)
    return np.asarray(picture)
