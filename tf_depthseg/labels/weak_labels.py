"""Weak ordinal depth labels (pixel and patch pairs) from semantic masks (SUW-Learn, supp. 2.1.2).

A weak label is a pair of square patches A and B of the same size with an ordinal relation:
`common.RELATION_FARTHER` (+1, A is farther than B), `RELATION_CLOSER` (-1) or `RELATION_EQUAL`
(0). Pairs are stored as rows `(y_a, x_a, y_b, x_b, half_size, relation)` (`common.WEAK_PAIRS`)
in pixel coordinates of the stored image; a patch is `2 * half_size + 1` pixels wide (half size 0
is a pixel pair, 1..4 are the paper's 3x3..9x9 patches). The ranking loss compares the mean
predicted depth of the two patches.

Rules of the paper ("diff": the two patches come from different classes):

* `sky`: sky is farther than anything else.
* `background_ground`: building or vegetation in the left (right) part of the image is farther
  than road, fence or terrain below it and further out to the left (right). Why it holds: a
  roadside facade is roughly a plane at lateral distance L, so a pixel at column x on it has
  depth `fx * L / |cx - x|`; a point between the camera and that plane (|X| <= L) seen at a
  column further from the centre has depth `fx * |X| / |cx - x_b| <= fx * L / |cx - x_a|`.
  "Below" (and in the lower part of the image) is what makes B such a near point in a street.
* `object_road`: car, person, bicycle or traffic sign is farther than the road below it in the
  same column. Why: on flat ground the depth of a ground pixel is `fy * h / (y - y_horizon)`,
  which shrinks as the row grows; an object touches the ground at the bottom of its mask, so
  road further down the column is nearer.

Rule of the "same" strategy (both patches from one class; the paper does not say which
relation it used, this is ours):

* `same_ground`: two patches of the same ground class (road, sidewalk, terrain) in one column
  and in one uninterrupted stretch of that class: the upper one is farther. Same flat-ground
  argument as above (depth falls with the row). It needs no other class, so it also labels
  images where the "diff" rules find nothing, and it orders depth *within* the road, which the
  diff rules never do.

Both `object_road` and `same_ground` leave a vertical gap between the patches that grows with
the distance from the highest ground pixel (a stand-in for the horizon), so the true depth
ratio stays clear of "equal" even near the horizon. For `object_road` the gap is larger: the
bottom of a car's mask is its bumper, and the road seen just below it lies under the car,
farther than the car's face (see `WeakLabelConfig.object_gap_fraction`).

Plus the ablation of Table 3, `random_gt`: pixel pairs drawn from valid ground-truth depth,
ordered by the depth itself (not weak supervision; the paper's baseline row 7). And, for the
M&M setting, `ordinal_pairs_from_masks`: MegaDepth's foreground/background maps as pixel pairs.

Robustness ("skip, do not guess"): a patch is used only when every one of its pixels has a
class of its rule (patches never straddle a class boundary, where segmenters err), ignore
pixels (255) are never used, a rule without its classes yields no pairs, and an image whose
layout contradicts the rules (sky lower in the image than the ground) yields none.

All sampling is vectorised numpy (no per-pair Python loop); `bench/bench_weak_labels.py`
prints the images/s (42 per CPU-second for ~252 pairs of a 128x416 mask when measured).
"""

from __future__ import annotations

import dataclasses
import io
import json
import zlib
from typing import Dict, Optional, Tuple

import numpy as np

from tf_depthseg import common
from tf_depthseg.data import datasets
from tf_depthseg import errors
from tf_depthseg import utils

# Rule names: the keys of `generate_weak_pairs`' result and of the accuracy report.
RULE_SKY = "sky"
RULE_BACKGROUND_GROUND = "background_ground"
RULE_OBJECT_ROAD = "object_road"
RULE_SAME_GROUND = "same_ground"
RULE_RANDOM_GT = "random_gt"
DIFF_RULES = (RULE_SKY, RULE_BACKGROUND_GROUND, RULE_OBJECT_ROAD)
SAME_RULES = (RULE_SAME_GROUND,)
ALL_RULES = DIFF_RULES + SAME_RULES + (RULE_RANDOM_GT,)

# Strategy -> the rules it uses (Table 3 rows: "Diff", "Same", "Same+Diff", "Random from gt").
STRATEGIES: Dict[str, Tuple[str, ...]] = {
    "diff": DIFF_RULES,
    "same": SAME_RULES,
    "same+diff": DIFF_RULES + SAME_RULES,
    "random_gt": (RULE_RANDOM_GT,),
}


def _train_ids(*names: str) -> np.ndarray:
    return np.array([datasets.cityscapes_train_id(n) for n in names], np.uint8)


# Class groups by Cityscapes train id (the paper's "tree" is vegetation, "grass" is terrain).
SKY_IDS = _train_ids("sky")
BACKGROUND_IDS = _train_ids("building", "vegetation")
NEAR_GROUND_IDS = _train_ids("road", "fence", "terrain")
OBJECT_IDS = _train_ids("car", "person", "bicycle", "traffic sign")
ROAD_IDS = _train_ids("road")
SAME_GROUND_IDS = _train_ids("road", "sidewalk", "terrain")
NOT_SKY_IDS = np.setdiff1d(np.arange(datasets.CITYSCAPES_NUM_CLASSES), SKY_IDS).astype(np.uint8)
# Ground classes whose highest pixel stands in for the horizon row.
HORIZON_GROUND_IDS = _train_ids("road", "sidewalk", "terrain")


@dataclasses.dataclass(frozen=True)
class WeakLabelConfig:
    """How many pairs of which kind `generate_weak_pairs` draws per image.

    Attributes:
      strategy: one of `STRATEGIES` ("diff", "same", "same+diff", "random_gt").
      pairs_per_rule: pairs drawn per rule and image (fewer when a rule cannot find them).
      half_sizes: patch half sizes to draw from uniformly; (0,) gives pixel pairs, the paper's
        patches are 3x3..9x9 = half sizes (1, 2, 3, 4). `random_gt` always uses pixel pairs
        (sparse ground truth rarely fills a patch, as the paper notes).
      min_gap_rows: smallest vertical gap in pixels between the facing edges of the two patches
        of `object_road` and `same_ground`.
      gap_fraction: `same_ground`'s gap is at least this fraction of the rows between the
        upper patch and the highest ground pixel (horizon stand-in), so that the true depth
        ratio of the two ground patches is at least about 1 + gap_fraction.
      object_gap_fraction: the same for `object_road`, measured from the object's bottom. It is
        larger because the bottom of a car's mask is its bumper, ~0.3 m above the road: the
        road seen just below it lies *under* the car and is farther than the car's face (at
        camera height 1.65 m the bumper row corresponds to road ~1.65/1.35 = 1.22x farther).
        0.3 clears that plus the 5 % "equal" margin; 0.15 left 6 % of car pairs wrong on the
        synthetic drives.
      ground_min_row_fraction: `background_ground`'s near patch lies at or below this fraction
        of the image height ("bottom-left / bottom-right").
      depth_tolerance: `random_gt` skips pairs whose depths differ by less than this relative
        amount (the paper orders only clearly closer/farther pixels).
      max_tries: rounds of rejection sampling for rules with a geometric condition.
    """

    strategy: str = "same+diff"
    pairs_per_rule: int = 64
    half_sizes: Tuple[int, ...] = (1, 2, 3, 4)
    min_gap_rows: int = 2
    gap_fraction: float = 0.15
    object_gap_fraction: float = 0.3
    ground_min_row_fraction: float = 0.5
    depth_tolerance: float = 0.05
    max_tries: int = 4

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown weak-label strategy {self.strategy!r}; choose one of "
                             f"{sorted(STRATEGIES)}.")
        if self.pairs_per_rule < 0:
            raise ValueError(f"pairs_per_rule must be >= 0, got {self.pairs_per_rule}.")
        if not self.half_sizes or any(h < 0 or h > 16 for h in self.half_sizes):
            raise ValueError(f"half_sizes must be a non-empty list of 0..16 (0 = pixel pairs, "
                             f"1..4 = 3x3..9x9 patches), got {self.half_sizes}.")
        if min(self.min_gap_rows, self.gap_fraction, self.object_gap_fraction,
               self.depth_tolerance) < 0:
            raise ValueError("min_gap_rows, gap fractions and depth_tolerance must be >= 0.")

    @property
    def rules(self) -> Tuple[str, ...]:
        return STRATEGIES[self.strategy]


# --------------------------------------------------------------------------------------------
# Mask helpers.
# --------------------------------------------------------------------------------------------
def _erode_once(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by a 3x3 square, pixels outside the image counting as False."""
    vertical = np.zeros_like(mask)
    vertical[1:-1] = mask[:-2] & mask[1:-1] & mask[2:]
    eroded = np.zeros_like(mask)
    eroded[:, 1:-1] = vertical[:, :-2] & vertical[:, 1:-1] & vertical[:, 2:]
    return eroded


def pure_patch_centers(mask: np.ndarray, half_size: int) -> np.ndarray:
    """Pixels whose `(2 * half_size + 1)`-square patch lies inside the image and inside `mask`.

    Erosion by a (2h+1)-square is h erosions by a 3x3 square, which is cheaper on bool arrays
    than a windowed sum for the small h used here.

    Args:
      mask: bool `[H, W]`.
      half_size: >= 0; 0 returns a copy of `mask`.
    Returns:
      bool `[H, W]`.
    """
    centers = np.array(mask, bool)
    for _ in range(half_size):
        centers = _erode_once(centers)
    return centers


def _run_ends_below(mask: np.ndarray) -> np.ndarray:
    """For every pixel, the last row of the vertical run of `mask` that starts at or below it.

    For a pixel in `mask` that is the bottom row of its uninterrupted run in its column.
    Returns int `[H, W]` (rows; `y - 1` for pixels outside `mask`).
    """
    height = mask.shape[0]
    rows = np.arange(height)[:, None]
    first_outside = np.where(mask, height, rows)
    # Reverse cumulative minimum: the first row at or below y that is outside the mask.
    first_outside = np.minimum.accumulate(first_outside[::-1], axis=0)[::-1]
    return first_outside - 1


def _column_run_ids(semantic: np.ndarray) -> np.ndarray:
    """Ids (per column) of the uninterrupted vertical runs of one class: int `[H, W]`."""
    change = np.ones(semantic.shape, np.int32)
    change[1:] = semantic[1:] != semantic[:-1]
    return np.cumsum(change, axis=0)


def _sample_rows_in_columns(valid: np.ndarray, rng: np.random.Generator):
    """Draws one row uniformly among the True rows of each column of `valid` `[H, n]`.

    Returns:
      (rows int `[n]`, found bool `[n]`); rows of columns without a True entry are 0.
    """
    counts = valid.sum(axis=0)
    found = counts > 0
    rank = np.minimum((rng.random(valid.shape[1]) * counts).astype(np.int64),
                      np.maximum(counts - 1, 0))
    cumulative = np.cumsum(valid, axis=0)
    rows = np.argmax(valid & (cumulative == rank[None, :] + 1), axis=0)
    return rows, found


def _coords(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return ys.astype(np.int64), xs.astype(np.int64)


def _rows(y_a, x_a, y_b, x_b, half_size, relation) -> np.ndarray:
    n = len(y_a)
    return np.stack([y_a, x_a, y_b, x_b, np.full(n, half_size), np.full(n, relation)],
                    axis=1).astype(np.float32)


def _empty_pairs() -> np.ndarray:
    return np.zeros((0, common.WEAK_PAIR_FIELDS), np.float32)


def _gap(reference_rows: np.ndarray, horizon_row: int, fraction: float,
         config: WeakLabelConfig) -> np.ndarray:
    """Rows to leave below `reference_rows`: `fraction` of their distance to the horizon row."""
    distance = np.maximum(reference_rows - horizon_row, 0)
    return np.maximum(config.min_gap_rows, np.ceil(fraction * distance)).astype(np.int64)


class _MaskIndex:
    """Per-image caches shared by the rules: class-group masks, pure centres, their coords."""

    def __init__(self, semantic: np.ndarray):
        self.semantic = semantic
        self.height, self.width = semantic.shape
        self._masks = {}
        self._centers = {}
        self._coords = {}
        self._derived = {}

    def mask(self, ids: np.ndarray) -> np.ndarray:
        key = ids.tobytes()
        if key not in self._masks:
            table = np.zeros(256, bool)
            table[ids] = True
            self._masks[key] = table[self.semantic]
        return self._masks[key]

    def centers(self, ids: np.ndarray, half_size: int) -> np.ndarray:
        key = (ids.tobytes(), half_size)
        if key not in self._centers:
            self._centers[key] = (self.mask(ids) if half_size == 0 else
                                  _erode_once(self.centers(ids, half_size - 1)))
        return self._centers[key]

    def coords(self, ids: np.ndarray, half_size: int):
        key = (ids.tobytes(), half_size)
        if key not in self._coords:
            if half_size == 0:
                self._coords[key] = _coords(self.mask(ids))
            else:
                # Pure centres of a bigger patch are a subset of the smaller one's: filtering
                # those points is cheaper than scanning the whole image again.
                ys, xs = self.coords(ids, half_size - 1)
                inside = self.centers(ids, half_size)[ys, xs]
                self._coords[key] = (ys[inside], xs[inside])
        return self._coords[key]

    def horizon_row(self) -> Optional[int]:
        if "horizon" not in self._derived:
            rows = np.nonzero(self.mask(HORIZON_GROUND_IDS).any(axis=1))[0]
            self._derived["horizon"] = int(rows[0]) if rows.size else None
        return self._derived["horizon"]

    def object_bottoms(self) -> np.ndarray:
        """`_run_ends_below` of the object classes (the row each object stands on)."""
        if "bottoms" not in self._derived:
            self._derived["bottoms"] = _run_ends_below(self.mask(OBJECT_IDS))
        return self._derived["bottoms"]

    def run_ids(self) -> np.ndarray:
        """`_column_run_ids` of the whole mask."""
        if "run_ids" not in self._derived:
            self._derived["run_ids"] = _column_run_ids(self.semantic)
        return self._derived["run_ids"]


def layout_is_plausible(semantic: np.ndarray) -> bool:
    """False when the sky sits lower in the image than the ground (a flipped or broken mask).

    The rules assume an upright street scene; on a mask that contradicts this we skip the
    image instead of producing pairs that are probably wrong.
    """
    sky_rows = np.nonzero(np.isin(semantic, SKY_IDS))[0]
    ground_rows = np.nonzero(np.isin(semantic, HORIZON_GROUND_IDS))[0]
    if sky_rows.size == 0 or ground_rows.size == 0:
        return True
    return float(sky_rows.mean()) < float(ground_rows.mean())


# --------------------------------------------------------------------------------------------
# The rules. Each returns float32 [P, 6] pairs with the given half size, P <= num_pairs.
# --------------------------------------------------------------------------------------------
def _sky_pairs(index: _MaskIndex, half: int, num_pairs: int, rng, config) -> np.ndarray:
    y_a, x_a = index.coords(SKY_IDS, half)
    y_b, x_b = index.coords(NOT_SKY_IDS, half)
    if num_pairs == 0 or y_a.size == 0 or y_b.size == 0:
        return _empty_pairs()
    i = rng.integers(y_a.size, size=num_pairs)
    j = rng.integers(y_b.size, size=num_pairs)
    return _rows(y_a[i], x_a[i], y_b[j], x_b[j], half, common.RELATION_FARTHER)


def _background_ground_pairs(index: _MaskIndex, half: int, num_pairs: int, rng,
                             config) -> np.ndarray:
    y_a, x_a = index.coords(BACKGROUND_IDS, half)
    y_b, x_b = index.coords(NEAR_GROUND_IDS, half)
    lowest_row = int(np.ceil(config.ground_min_row_fraction * (index.height - 1)))
    low = y_b >= lowest_row
    y_b, x_b = y_b[low], x_b[low]
    if num_pairs == 0 or y_a.size == 0 or y_b.size == 0:
        return _empty_pairs()
    center_x = (index.width - 1) / 2.0
    found = []
    total = 0
    for _ in range(config.max_tries):
        # Rejection sampling: most random (A, B) combinations fail the geometry, so draw many.
        count = 8 * num_pairs
        i = rng.integers(y_a.size, size=count)
        j = rng.integers(y_b.size, size=count)
        ya, xa, yb, xb = y_a[i], x_a[i], y_b[j], x_b[j]
        left = xa < center_x
        right = xa > center_x
        outward = (left & (xb <= xa)) | (right & (xb >= xa))
        below = yb - half > ya + half  # the patches do not overlap vertically
        keep = outward & below
        found.append(_rows(ya[keep], xa[keep], yb[keep], xb[keep], half,
                           common.RELATION_FARTHER))
        total += int(keep.sum())
        if total >= num_pairs:
            break
    return np.concatenate(found)[:num_pairs]


def _object_road_pairs(index: _MaskIndex, half: int, num_pairs: int, rng, config) -> np.ndarray:
    road = index.centers(ROAD_IDS, half)
    horizon = index.horizon_row()
    y_a, x_a = index.coords(OBJECT_IDS, half)
    if num_pairs == 0 or y_a.size == 0 or horizon is None or not road.any():
        return _empty_pairs()
    # Bottom of each object's vertical run: where it stands on the ground in that column.
    bottoms = index.object_bottoms()
    rows = np.arange(index.height)[:, None]
    found = []
    total = 0
    for _ in range(config.max_tries):
        count = 2 * num_pairs
        i = rng.integers(y_a.size, size=count)
        ya, xa = y_a[i], x_a[i]
        bottom = bottoms[ya, xa]
        first_row = bottom + 1 + _gap(bottom, horizon, config.object_gap_fraction, config) + half
        valid = road[:, xa] & (rows >= first_row[None, :])
        yb, ok = _sample_rows_in_columns(valid, rng)
        found.append(_rows(ya[ok], xa[ok], yb[ok], xa[ok], half, common.RELATION_FARTHER))
        total += int(ok.sum())
        if total >= num_pairs:
            break
    return np.concatenate(found)[:num_pairs]


def _same_ground_pairs(index: _MaskIndex, half: int, num_pairs: int, rng, config) -> np.ndarray:
    # Pure per class (not per group): a patch straddling road and sidewalk is not "same".
    pure = np.zeros((index.height, index.width), bool)
    for class_id in SAME_GROUND_IDS:
        pure |= index.centers(np.array([class_id], np.uint8), half)
    horizon = index.horizon_row()
    y_a, x_a = _coords(pure)
    if num_pairs == 0 or y_a.size == 0 or horizon is None:
        return _empty_pairs()
    run_ids = index.run_ids()
    rows = np.arange(index.height)[:, None]
    found = []
    total = 0
    for _ in range(config.max_tries):
        count = 2 * num_pairs
        i = rng.integers(y_a.size, size=count)
        ya, xa = y_a[i], x_a[i]
        first_row = ya + 2 * half + 1 + _gap(ya + half, horizon, config.gap_fraction, config)
        valid = (pure[:, xa] & (run_ids[:, xa] == run_ids[ya, xa][None, :])
                 & (rows >= first_row[None, :]))
        yb, ok = _sample_rows_in_columns(valid, rng)
        # A (upper) is farther than B (lower, nearer on the ground plane).
        found.append(_rows(ya[ok], xa[ok], yb[ok], xa[ok], half, common.RELATION_FARTHER))
        total += int(ok.sum())
        if total >= num_pairs:
            break
    return np.concatenate(found)[:num_pairs]


_RULE_FUNCTIONS = {
    RULE_SKY: _sky_pairs,
    RULE_BACKGROUND_GROUND: _background_ground_pairs,
    RULE_OBJECT_ROAD: _object_road_pairs,
    RULE_SAME_GROUND: _same_ground_pairs,
}


def random_gt_pairs(depth: np.ndarray, num_pairs: int, rng: np.random.Generator,
                    tolerance: float = 0.05) -> np.ndarray:
    """Pixel pairs drawn from valid ground-truth depth and ordered by it (Table 3, row 7).

    Args:
      depth: float `[H, W]` metres, 0 (or non-finite) = no measurement (sparse LiDAR is fine).
      num_pairs: pairs to draw (fewer when too few clearly ordered pairs exist).
      rng: numpy random generator.
      tolerance: pairs whose depths differ by less than this relative amount are skipped.
    Returns:
      float32 `[P, 6]` pixel pairs (half size 0), relation +1 or -1.
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    valid = np.isfinite(depth) & (depth > 0)
    ys, xs = _coords(valid)
    if num_pairs == 0 or ys.size < 2:
        return _empty_pairs()
    count = 2 * num_pairs
    i = rng.integers(ys.size, size=count)
    j = rng.integers(ys.size, size=count)
    d_a, d_b = depth[ys[i], xs[i]], depth[ys[j], xs[j]]
    clear = np.abs(d_a - d_b) > tolerance * np.minimum(d_a, d_b)
    i, j = i[clear][:num_pairs], j[clear][:num_pairs]
    relation = np.where(depth[ys[i], xs[i]] > depth[ys[j], xs[j]], common.RELATION_FARTHER,
                        common.RELATION_CLOSER)
    pairs = _rows(ys[i], xs[i], ys[j], xs[j], 0, 0.0)
    pairs[:, 5] = relation
    return pairs


def generate_weak_pairs(semantic: Optional[np.ndarray], config: WeakLabelConfig,
                        rng: np.random.Generator, depth: Optional[np.ndarray] = None,
                        name: str = "<mask>") -> Dict[str, np.ndarray]:
    """All weak pairs of one image, per rule of `config.strategy`.

    Args:
      semantic: uint8 `[H, W]` Cityscapes train ids (255 = ignore); not needed for
        "random_gt".
      config: what to draw.
      rng: numpy random generator (seed it per image for reproducible labels, `image_rng`).
      depth: float `[H, W]` metres, needed for "random_gt" only.
      name: file or record name used in error messages.
    Returns:
      dict rule name -> float32 `[P_rule, 6]` rows (y_a, x_a, y_b, x_b, half_size, relation).
    Raises:
      errors.BadInputError: the mask is not a train-id map, or mask and depth differ in size.
    """
    if config.strategy == "random_gt":
        if depth is None:
            raise errors.BadInputError(f"{name}: strategy 'random_gt' needs ground-truth "
                                       "depth (records with depth/encoded).")
        if semantic is not None and np.shape(semantic)[:2] != np.shape(depth)[:2]:
            raise errors.BadInputError(f"{name}: semantic mask {np.shape(semantic)[:2]} and "
                                       f"depth {np.shape(depth)[:2]} differ in size.")
        return {RULE_RANDOM_GT: random_gt_pairs(depth, config.pairs_per_rule, rng,
                                                config.depth_tolerance)}
    if semantic is None:
        raise errors.BadInputError(f"{name}: strategy {config.strategy!r} needs a semantic "
                                   "mask (segmentation/class/encoded or --masks_dir).")
    semantic = datasets.check_train_ids(semantic, name)
    if depth is not None and np.shape(depth)[:2] != semantic.shape:
        raise errors.BadInputError(f"{name}: semantic mask {semantic.shape} and depth "
                                   f"{np.shape(depth)[:2]} differ in size.")
    if not layout_is_plausible(semantic):
        return {rule: _empty_pairs() for rule in config.rules}
    index = _MaskIndex(semantic)
    result = {}
    for rule in config.rules:
        # Split the rule's budget over the patch sizes at random, then draw each size at once.
        per_size = rng.multinomial(config.pairs_per_rule,
                                   np.full(len(config.half_sizes), 1.0 / len(config.half_sizes)))
        parts = [_RULE_FUNCTIONS[rule](index, half, int(n), rng, config)
                 for half, n in zip(config.half_sizes, per_size) if n > 0]
        result[rule] = np.concatenate(parts) if parts else _empty_pairs()
    return result


def concat_pairs(pairs_by_rule: Dict[str, np.ndarray]) -> np.ndarray:
    """The pairs of all rules in one float32 `[P, 6]` array (rule order kept)."""
    parts = [np.asarray(p, np.float32).reshape(-1, common.WEAK_PAIR_FIELDS)
             for p in pairs_by_rule.values()]
    return np.concatenate(parts) if parts else _empty_pairs()


def image_rng(seed: int, source_id: str) -> np.random.Generator:
    """A generator seeded by (seed, source id): labels do not depend on processing order."""
    return np.random.default_rng([seed, zlib.crc32(source_id.encode())])


# --------------------------------------------------------------------------------------------
# MegaDepth ordinal maps (M&M).
# --------------------------------------------------------------------------------------------
def ordinal_pairs_from_masks(foreground: np.ndarray, background: np.ndarray, num_pairs: int,
                             rng: np.random.Generator, name: str = "<ordinal>") -> np.ndarray:
    """Pixel pairs from MegaDepth's ordinal foreground/background maps: foreground is closer.

    MegaDepth's "ordinal" images (photos whose SfM depth is unusable) come with a foreground
    mask (transient objects such as people) and a background mask (the static scene they stand
    in front of). Every pixel of the first is closer than every pixel of the second (Li and
    Snavely 2018), so A is drawn from the foreground, B from the background, relation -1.

    Args:
      foreground, background: bool (or 0/non-zero) `[H, W]` masks of the same size.
      num_pairs: pairs to draw.
      rng: numpy random generator.
      name: used in error messages.
    Returns:
      float32 `[P, 6]` pixel pairs with `common.RELATION_CLOSER`; empty when a mask is empty.
    Raises:
      errors.BadInputError: the masks differ in size or overlap.
    """
    foreground = np.asarray(foreground) != 0
    background = np.asarray(background) != 0
    if foreground.shape != background.shape or foreground.ndim != 2:
        raise errors.BadInputError(f"{name}: foreground {foreground.shape} and background "
                                   f"{background.shape} must be [H, W] masks of one size.")
    if (foreground & background).any():
        raise errors.BadInputError(f"{name}: {(foreground & background).sum()} pixels are "
                                   "both foreground and background; the ordinal maps are "
                                   "swapped or corrupt.")
    y_a, x_a = _coords(foreground)
    y_b, x_b = _coords(background)
    if num_pairs == 0 or y_a.size == 0 or y_b.size == 0:
        return _empty_pairs()
    i = rng.integers(y_a.size, size=num_pairs)
    j = rng.integers(y_b.size, size=num_pairs)
    return _rows(y_a[i], x_a[i], y_b[j], x_b[j], 0, common.RELATION_CLOSER)


# --------------------------------------------------------------------------------------------
# Checking pairs against ground-truth depth.
# --------------------------------------------------------------------------------------------
def patch_mean_depth(depth: np.ndarray, centers_y: np.ndarray, centers_x: np.ndarray,
                     half_sizes: np.ndarray, infinite: Optional[np.ndarray] = None):
    """Mean depth of square patches, with invalid and infinitely far pixels tracked.

    Args:
      depth: float `[H, W]` metres, 0 = invalid.
      centers_y, centers_x, half_sizes: int `[P]`.
      infinite: optional bool `[H, W]` pixels that are infinitely far (sky); they count as
        valid and make the patch infinite when the whole patch is such.
    Returns:
      (mean float `[P]` (inf for all-infinite patches), usable bool `[P]`): a patch is usable
      when every pixel is inside the image and is either valid depth or (all pixels) infinite.
    """
    depth = np.asarray(depth, np.float64)
    height, width = depth.shape
    infinite = np.zeros(depth.shape, bool) if infinite is None else np.asarray(infinite, bool)
    max_half = int(np.max(half_sizes, initial=0))
    offsets = np.arange(-max_half, max_half + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    dy, dx = dy.ravel()[None, :], dx.ravel()[None, :]
    half = np.asarray(half_sizes, np.int64)[:, None]
    inside_patch = (np.abs(dy) <= half) & (np.abs(dx) <= half)
    ys = np.asarray(centers_y, np.int64)[:, None] + dy
    xs = np.asarray(centers_x, np.int64)[:, None] + dx
    in_image = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    ys_c, xs_c = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
    values = depth[ys_c, xs_c]
    is_inf = infinite[ys_c, xs_c] & inside_patch
    is_valid = (values > 0) & np.isfinite(values) & ~infinite[ys_c, xs_c] & inside_patch
    count = inside_patch.sum(axis=1)
    all_inside = ~(inside_patch & ~in_image).any(axis=1)
    all_valid = is_valid.sum(axis=1) == count
    all_inf = is_inf.sum(axis=1) == count
    mean = np.where(inside_patch & is_valid, values, 0.0).sum(axis=1) / np.maximum(count, 1)
    mean = np.where(all_inf, np.inf, mean)
    return mean, all_inside & (all_valid | all_inf)


def ground_truth_relations(pairs: np.ndarray, depth: np.ndarray,
                           infinite: Optional[np.ndarray] = None, tolerance: float = 0.05):
    """True relation of each pair from ground-truth depth.

    Relation +1 when mean depth of A > (1 + tolerance) * mean depth of B, -1 when B's exceeds
    (1 + tolerance) * A's, otherwise 0 (equal); two infinite patches are equal.

    Args:
      pairs: `[P, 6]` rows (y_a, x_a, y_b, x_b, half_size, relation).
      depth: float `[H, W]` metres, 0 = invalid.
      infinite: optional bool `[H, W]` infinitely far pixels (ground-truth sky).
      tolerance: relative depth difference below which two patches count as equal.
    Returns:
      (relations float32 `[P]`, usable bool `[P]`): pairs touching invalid depth are not usable.
    """
    pairs = np.asarray(pairs, np.float64).reshape(-1, common.WEAK_PAIR_FIELDS)
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if pairs.shape[0] == 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    half = pairs[:, 4].astype(np.int64)
    d_a, ok_a = patch_mean_depth(depth, pairs[:, 0].astype(np.int64),
                                 pairs[:, 1].astype(np.int64), half, infinite)
    d_b, ok_b = patch_mean_depth(depth, pairs[:, 2].astype(np.int64),
                                 pairs[:, 3].astype(np.int64), half, infinite)
    with np.errstate(invalid="ignore"):
        farther = (d_a > (1 + tolerance) * d_b) | (np.isinf(d_a) & ~np.isinf(d_b))
        closer = (d_b > (1 + tolerance) * d_a) | (np.isinf(d_b) & ~np.isinf(d_a))
    relation = np.where(farther, common.RELATION_FARTHER,
                        np.where(closer, common.RELATION_CLOSER, common.RELATION_EQUAL))
    return relation.astype(np.float32), ok_a & ok_b


def pair_accuracy(pairs: np.ndarray, depth: np.ndarray, infinite: Optional[np.ndarray] = None,
                  tolerance: float = 0.05) -> Tuple[int, int]:
    """(number of correct pairs, number of usable pairs) against ground-truth depth."""
    pairs = np.asarray(pairs, np.float32).reshape(-1, common.WEAK_PAIR_FIELDS)
    truth, usable = ground_truth_relations(pairs, depth, infinite, tolerance)
    correct = usable & (truth == pairs[:, 5])
    return int(correct.sum()), int(usable.sum())


def validate_pairs(pairs: np.ndarray, height: int, width: int, name: str = "<pairs>") -> None:
    """Raises BadInputError when a pair's patches leave the image or a relation is not -1/0/1."""
    pairs = np.asarray(pairs).reshape(-1, common.WEAK_PAIR_FIELDS)
    half = pairs[:, 4]
    for y, x in ((pairs[:, 0], pairs[:, 1]), (pairs[:, 2], pairs[:, 3])):
        if ((y - half < 0) | (x - half < 0) | (y + half >= height) | (x + half >= width)).any():
            raise errors.BadInputError(f"{name}: weak pairs reach outside the "
                                       f"{height}x{width} image.")
    if not np.isin(pairs[:, 5], (common.RELATION_FARTHER, common.RELATION_CLOSER,
                                 common.RELATION_EQUAL)).all():
        raise errors.BadInputError(f"{name}: weak pair relations must be -1, 0 or +1.")


def summarize(pairs_by_rule: Dict[str, np.ndarray]) -> Dict[str, int]:
    """Number of pairs per rule (for logs)."""
    return {rule: int(np.shape(p)[0]) for rule, p in pairs_by_rule.items()}



# --------------------------------------------------------------------------------------------
# The side file of pairs keyed by source id (the record rewriting itself is in
# labels/weak_label_records.py).
# --------------------------------------------------------------------------------------------
def write_side_file(path: str, pairs_by_source_id: Dict[str, np.ndarray],
                    config: WeakLabelConfig) -> None:
    """Writes weak pairs keyed by source id as one `.npz` file (atomic).

    Arrays: `source_ids` (str `[N]`), `row_splits` (int64 `[N + 1]`), `pairs` (float32
    `[P, 6]`, image i's pairs are `pairs[row_splits[i]:row_splits[i + 1]]`) and `config` (JSON
    of the `WeakLabelConfig`). A pipeline joins it with `tf.RaggedTensor.from_row_splits(pairs,
    row_splits)` and a `tf.lookup.StaticHashTable` from source id to row.
    """
    source_ids = list(pairs_by_source_id)
    if len(set(source_ids)) != len(source_ids):
        raise errors.BadInputError(f"{path}: duplicate source ids; a side file needs unique "
                                   "image/source_id values.")
    arrays = [np.asarray(pairs_by_source_id[s], np.float32).reshape(-1, common.WEAK_PAIR_FIELDS)
              for s in source_ids]
    row_splits = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])]).astype(np.int64)
    pairs = np.concatenate(arrays) if arrays else np.zeros((0, common.WEAK_PAIR_FIELDS),
                                                          np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, source_ids=np.array(source_ids, dtype=str), row_splits=row_splits,
             pairs=pairs, config=np.array(json.dumps(dataclasses.asdict(config))))
    utils.atomic_write_bytes(path, buffer.getvalue())


def read_side_file(path: str) -> Dict[str, np.ndarray]:
    """Inverse of `write_side_file`: dict source id -> float32 `[P, 6]` pairs."""
    try:
        with np.load(path) as data:
            source_ids, splits, pairs = data["source_ids"], data["row_splits"], data["pairs"]
    except (OSError, KeyError, ValueError) as error:
        raise errors.BadInputError(f"{path}: not a weak-pairs side file ({error}); "
                                   "regenerate it with tools/generate_weak_labels.py.") from error
    return {str(s): pairs[splits[i]:splits[i + 1]] for i, s in enumerate(source_ids)}
