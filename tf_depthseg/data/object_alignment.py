"""Aligning instance masks across t-1, t, t+1 for object-motion training (SUW supp. 2.1.1).

Input: one instance map per frame in the Cityscapes `instanceIds` convention (pixel value
`label_id * 1000 + k` for an object, a plain label id < 1000 or 0 elsewhere), as Mask R-CNN style
segmenters can save them. Only person, car and bicycle are kept (the classes whose motion
differs from the camera's in the paper's setting).

Rule (paper): an object is aligned when objects of the same class appear in all three frames,
IoU(mask_{t-1}, mask_t) > 0.3 and IoU(mask_t, mask_{t+1}) > 0.3 (strictly greater: exactly 0.3
is not aligned). Matching is one-to-one: candidate pairs are taken greedily by decreasing IoU,
so two objects of frame t can never claim the same object of a neighbour frame.

Output: the aligned maps, one per frame, in which every aligned object carries its id in the
target frame t in all frames (so id equality across frames is the alignment), and every other
pixel is 0. This runs offline, so it adds nothing to training time.

The module also holds what the tests and `bench/bench_weak_labels.py` use to check alignment
against the synthetic generator's true tracks: mask perturbations (erode, dilate, shift, drop,
random re-numbering) and precision / recall.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from tf_depthseg.data import datasets
from tf_depthseg.data import image_io

INSTANCE_DIVISOR = datasets.INSTANCE_ID_DIVISOR  # id = label_id * 1000 + k
IOU_THRESHOLD = 0.3
# Cityscapes label ids of the classes kept for object motion.
KEEP_LABEL_IDS = tuple(datasets.cityscapes_label_id(n) for n in ("person", "car", "bicycle"))


@dataclasses.dataclass(frozen=True)
class AlignedObject:
    """One object aligned across frames.

    Attributes:
      aligned_id: id written in every frame of the aligned maps (the object's target-frame id).
      label_id: Cityscapes label id of its class.
      source_ids: its original id in each input frame (input order).
      ious: IoU of each neighbour frame's mask with the target mask (input order, 1.0 for the
        target itself).
    """

    aligned_id: int
    label_id: int
    source_ids: Tuple[int, ...]
    ious: Tuple[float, ...]


def _check_frames(frames: Sequence[np.ndarray], name: str) -> List[np.ndarray]:
    if len(frames) < 2:
        raise ValueError(f"{name}: alignment needs the target and at least one neighbour frame, "
                         f"got {len(frames)} frame(s).")
    arrays = []
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[-1] == 1:
            frame = frame[..., 0]
        if frame.ndim != 2:
            raise image_io.BadInputError(f"{name}: instance map {i} must be [H, W], got shape "
                                         f"{frame.shape}.")
        if not np.issubdtype(frame.dtype, np.integer):
            raise image_io.BadInputError(f"{name}: instance map {i} must hold integer ids, "
                                         f"got {frame.dtype}.")
        if frame.size and (frame.min() < 0 or frame.max() > np.iinfo(np.uint16).max):
            raise image_io.BadInputError(f"{name}: instance map {i} has ids outside 0..65535; "
                                         "expected the Cityscapes instanceIds convention.")
        arrays.append(frame.astype(np.int64))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise image_io.BadInputError(
            f"{name}: instance maps differ in size {[a.shape for a in arrays]}; all frames of a "
            "clip must have the same size (resize the masks with nearest-neighbour first).")
    return arrays


def kept_objects(instance_ids: np.ndarray, keep_label_ids: Sequence[int] = KEEP_LABEL_IDS,
                 min_area: int = 1) -> np.ndarray:
    """Instance map with only objects of the kept classes (>= `min_area` pixels), else 0."""
    ids = np.asarray(instance_ids, np.int64)
    keep_label = np.zeros(max(int(ids.max(initial=0)) // INSTANCE_DIVISOR,
                              max(keep_label_ids, default=0)) + 1, bool)
    keep_label[list(keep_label_ids)] = True
    keep_label[0] = False  # ids below 1000 are plain label ids, not objects
    out = np.where(keep_label[ids // INSTANCE_DIVISOR], ids, 0)
    if min_area > 1 and out.any():
        counts = np.bincount(out.ravel())
        small = counts < min_area
        small[0] = False
        out = np.where(small[out], 0, out)
    return out


def object_ids(instance_map: np.ndarray) -> np.ndarray:
    """Sorted non-zero ids present in a non-negative int map (a histogram, no sort)."""
    if instance_map.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.bincount(instance_map.ravel())[1:]) + 1


def iou_matrix(a: np.ndarray, b: np.ndarray):
    """IoU between every object of map `a` and every object of map `b` (0 = background).

    Args:
      a, b: non-negative int `[H, W]` instance maps of the same size.
    Returns:
      (ids_a int `[Na]`, ids_b int `[Nb]`, iou float `[Na, Nb]`).
    """
    ids_a, ids_b = object_ids(a), object_ids(b)
    if ids_a.size == 0 or ids_b.size == 0:
        return ids_a, ids_b, np.zeros((ids_a.size, ids_b.size))
    # Compact indices (0 = background) and one joint histogram give all intersections at once.
    table_a = np.zeros(int(ids_a[-1]) + 1, np.int64)
    table_a[ids_a] = np.arange(1, ids_a.size + 1)
    table_b = np.zeros(int(ids_b[-1]) + 1, np.int64)
    table_b[ids_b] = np.arange(1, ids_b.size + 1)
    num_b = ids_b.size + 1
    joint = np.bincount((table_a[a] * num_b + table_b[b]).ravel(),
                        minlength=(ids_a.size + 1) * num_b).reshape(ids_a.size + 1, num_b)
    area_a = joint.sum(axis=1)[1:]
    area_b = joint.sum(axis=0)[1:]
    intersection = joint[1:, 1:]
    union = area_a[:, None] + area_b[None, :] - intersection
    return ids_a, ids_b, intersection / np.maximum(union, 1)


def match_objects(target: np.ndarray, neighbour: np.ndarray,
                  iou_threshold: float = IOU_THRESHOLD) -> Dict[int, Tuple[int, float]]:
    """One-to-one matches target id -> (neighbour id, IoU) of the same class, IoU > threshold.

    Greedy by decreasing IoU (ties broken by id for determinism).
    """
    ids_t, ids_n, iou = iou_matrix(target, neighbour)
    if iou.size == 0:
        return {}
    same_class = (ids_t[:, None] // INSTANCE_DIVISOR) == (ids_n[None, :] // INSTANCE_DIVISOR)
    candidates = np.argwhere(same_class & (iou > iou_threshold))
    order = np.lexsort((candidates[:, 1], candidates[:, 0],
                        -iou[candidates[:, 0], candidates[:, 1]]))
    matches, used = {}, set()
    for row, col in candidates[order]:
        if int(ids_t[row]) in matches or col in used:
            continue
        matches[int(ids_t[row])] = (int(ids_n[col]), float(iou[row, col]))
        used.add(col)
    return matches


def align_objects(frames: Sequence[np.ndarray], target_index: int = 0,
                  keep_label_ids: Sequence[int] = KEEP_LABEL_IDS,
                  iou_threshold: float = IOU_THRESHOLD, min_area: int = 1,
                  name: str = "<clip>") -> Tuple[List[np.ndarray], List[AlignedObject]]:
    """Aligns the objects of a clip's instance maps to the target frame.

    Args:
      frames: int `[H, W]` instance maps (Cityscapes instanceIds), e.g. in record order
        (target t, then t-1, t+1) with `target_index=0`.
      target_index: which of `frames` is frame t.
      keep_label_ids: Cityscapes label ids of the classes to keep (person, car, bicycle).
      iou_threshold: an object is aligned only when its IoU with the target object is strictly
        greater in every neighbour frame.
      min_area: objects smaller than this (pixels) are dropped before matching.
      name: record or file name for error messages.
    Returns:
      (aligned maps uint16 `[H, W]` per frame in input order, the aligned objects).
    Raises:
      image_io.BadInputError: maps of different sizes, non-integer or out-of-range ids.
      ValueError: fewer than two frames or a bad target index.
    """
    arrays = _check_frames(frames, name)
    if not 0 <= target_index < len(arrays):
        raise ValueError(f"target_index {target_index} outside [0, {len(arrays)}).")
    kept = [kept_objects(a, keep_label_ids, min_area) for a in arrays]
    target = kept[target_index]
    matches = {}
    for i, neighbour in enumerate(kept):
        if i != target_index:
            matches[i] = match_objects(target, neighbour, iou_threshold)
    aligned = []
    for object_id in object_ids(target).tolist():
        if all(object_id in m for m in matches.values()):
            source_ids = tuple(object_id if i == target_index else matches[i][object_id][0]
                               for i in range(len(arrays)))
            ious = tuple(1.0 if i == target_index else matches[i][object_id][1]
                         for i in range(len(arrays)))
            aligned.append(AlignedObject(object_id, object_id // INSTANCE_DIVISOR, source_ids,
                                         ious))
    maps = []
    for i, frame in enumerate(kept):
        # Lookup table source id -> aligned id: one gather per frame.
        table = np.zeros(int(frame.max(initial=0)) + 1, np.uint16)
        for obj in aligned:
            table[obj.source_ids[i]] = obj.aligned_id
        maps.append(table[frame])
    return maps, aligned


# --------------------------------------------------------------------------------------------
# Evaluation helpers: perturbed masks and precision / recall against true tracks.
# --------------------------------------------------------------------------------------------
def _shifted(ids: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`ids` moved by (dy, dx) pixels, zero-filled."""
    out = np.zeros_like(ids)
    height, width = ids.shape
    src_y = slice(max(-dy, 0), height - max(dy, 0))
    dst_y = slice(max(dy, 0), height - max(-dy, 0))
    src_x = slice(max(-dx, 0), width - max(dx, 0))
    dst_x = slice(max(dx, 0), width - max(-dx, 0))
    out[dst_y, dst_x] = ids[src_y, src_x]
    return out


def erode_instances(ids: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Removes object pixels whose 4-neighbours do not all carry the same id, `pixels` times."""
    out = np.asarray(ids).copy()
    for _ in range(pixels):
        same = np.ones(out.shape, bool)
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            same &= _shifted(out, dy, dx) == out
        out = np.where(same, out, 0)
    return out


def dilate_instances(ids: np.ndarray, pixels: int = 1) -> np.ndarray:
    """Grows objects into background (id 0) by one 4-neighbour ring, `pixels` times."""
    out = np.asarray(ids).copy()
    for _ in range(pixels):
        grown = out.copy()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            neighbour = _shifted(out, dy, dx)
            grown = np.where((grown == 0) & (neighbour != 0), neighbour, grown)
        out = grown
    return out


def perturb_instances(ids: np.ndarray, rng: np.random.Generator, erode: int = 0,
                      dilate: int = 0, max_shift: int = 0, drop_probability: float = 0.0,
                      renumber: bool = True) -> Tuple[np.ndarray, Dict[int, int]]:
    """Simulates a segmenter's output from true instance ids.

    Each object is shifted by up to `max_shift` pixels on its own, the map is eroded then
    dilated, objects are dropped with `drop_probability`, and (with `renumber`) objects get new
    random instance numbers within their class, like an independent per-frame segmentation.

    Returns:
      (perturbed int64 `[H, W]`, mapping perturbed id -> true id).
    """
    ids = np.asarray(ids, np.int64)
    objects = np.unique(ids[ids >= INSTANCE_DIVISOR])
    out = np.where(ids >= INSTANCE_DIVISOR, 0, ids)
    for object_id in objects.tolist():
        if rng.random() < drop_probability:
            continue
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2) if max_shift else (0, 0)
        moved = _shifted(np.where(ids == object_id, object_id, 0), int(dy), int(dx))
        out = np.where(moved != 0, moved, out)
    if erode:
        out = np.where(out >= INSTANCE_DIVISOR, erode_instances(out, erode), out)
    if dilate:
        objects_only = np.where(out >= INSTANCE_DIVISOR, out, 0)
        grown = dilate_instances(objects_only, dilate)
        out = np.where(grown != 0, grown, out)
    remaining = np.unique(out[out >= INSTANCE_DIVISOR])
    mapping = {}
    if renumber and remaining.size:
        new_numbers = rng.permutation(INSTANCE_DIVISOR - 1)[:remaining.size] + 1
        table = {}
        for old, number in zip(remaining.tolist(), new_numbers.tolist()):
            new = (old // INSTANCE_DIVISOR) * INSTANCE_DIVISOR + number
            table[old] = new
            mapping[new] = old
        lookup = np.arange(int(out.max()) + 1, dtype=np.int64)
        for old, new in table.items():
            lookup[old] = new
        out = lookup[out]
    else:
        mapping = {int(i): int(i) for i in remaining.tolist()}
    return out, mapping


def true_alignable_ids(true_frames: Sequence[np.ndarray],
                       keep_label_ids: Sequence[int] = KEEP_LABEL_IDS,
                       min_area: int = 1) -> set:
    """Ids of true tracks (same id in every frame) visible with >= `min_area` pixels in all."""
    present = None
    for frame in true_frames:
        ids = set(object_ids(kept_objects(frame, keep_label_ids, min_area)).tolist())
        present = ids if present is None else present & ids
    return present or set()


def true_trackable_ids(true_frames: Sequence[np.ndarray], target_index: int = 0,
                       keep_label_ids: Sequence[int] = KEEP_LABEL_IDS,
                       iou_threshold: float = IOU_THRESHOLD, min_area: int = 1) -> set:
    """True tracks whose own masks satisfy the alignment rule (IoU with the target frame's mask
    > `iou_threshold` in every other frame): the objects a perfect matcher can align."""
    visible = true_alignable_ids(true_frames, keep_label_ids, min_area)
    kept = [kept_objects(f, keep_label_ids, min_area) for f in true_frames]
    trackable = set(visible)
    for i, frame in enumerate(kept):
        if i == target_index:
            continue
        ids_t, ids_n, iou = iou_matrix(kept[target_index], frame)
        position_t = {v: k for k, v in enumerate(ids_t.tolist())}
        position_n = {v: k for k, v in enumerate(ids_n.tolist())}
        trackable = {t for t in trackable
                     if iou[position_t[t], position_n[t]] > iou_threshold}
    return trackable


def alignment_counts(aligned: Sequence[AlignedObject], mappings: Sequence[Dict[int, int]],
                     truth: set) -> Tuple[int, int, int, int]:
    """Counts for precision and recall of one clip's alignment.

    An aligned object is correct when its source ids in every frame map (through that frame's
    perturbation `mappings`) to one and the same true track: precision measures wrong
    associations, the harmful error for object-motion training. Recall counts the tracks of
    `truth` (e.g. `true_alignable_ids`) that were aligned correctly.

    Returns:
      (correct aligned objects, aligned objects, true tracks found, true tracks).
    """
    found = set()
    correct = 0
    for obj in aligned:
        true_ids = {mappings[i].get(source_id) for i, source_id in enumerate(obj.source_ids)}
        if len(true_ids) == 1 and None not in true_ids:
            correct += 1
            found |= true_ids & truth
    return correct, len(aligned), len(found), len(truth)
