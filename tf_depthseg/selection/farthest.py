"""Diversity: pooled teacher features and biased iterative farthest-point selection (numpy).

Pure functions (no TensorFlow), following the reference's label_selection.py
(`lhoyer/improving_segmentation_with_selfsupervised_depth`): `_calc_feature_distance` and
`iterative_farthest_point`.

* Features: the SDE teacher's decoder block output `[h, w, C]` per image, adaptively pooled
  to a fixed grid (PyTorch's `adaptive_avg_pool2d` bins: rows floor(i h / H) ..
  ceil((i + 1) h / H)), standardised per channel over all images and grid cells (the
  reference's `torch.std_mean(dim=[0, 2, 3])`: unbiased std), flattened.
* Distances: Euclidean between flattened features; the reference adds image j's bias to
  every distance *to* j (`feature_distances += bias`, a row vector), then zeroes the diagonal.
* Iterative farthest point: given the chosen set S, the next image is
  argmax_j min_{c in S} D[c, j]; chosen images score 0 (the zero diagonal), so an argmax on a
  chosen image means every remaining score is 0 and the reference stops there.

`iterative_farthest_point` works on the features and keeps each image's distance to its
nearest chosen image up to date (O(N D) per pick instead of the reference's N x N matrix), which
gives the same picks: min_c (|f_c - f_j| + b_j) = min_c |f_c - f_j| + b_j. Ties go to the
lowest index (numpy's argmax), so the result depends only on the inputs.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

import numpy as np


def adaptive_pool(features: np.ndarray, size: Sequence[int], mode: str = "avg") -> np.ndarray:
    """PyTorch's adaptive average / max pooling of one feature map.

    Args:
      features: `[h, w, C]`.
      size: (rows, columns) of the output grid (may exceed h, w: bins then repeat cells).
      mode: "avg" or "max".
    Returns:
      float64 `[rows, columns, C]`.
    """
    features = np.asarray(features, np.float64)
    if features.ndim != 3:
        raise ValueError(f"adaptive_pool takes one [h, w, C] map, got shape {features.shape}")
    reduce = {"avg": np.mean, "max": np.max}.get(mode)
    if reduce is None:
        raise ValueError(f"pooling mode must be 'avg' or 'max', got {mode!r}")
    height, width = features.shape[:2]
    rows, columns = (int(s) for s in size)
    out = np.empty((rows, columns, features.shape[2]), np.float64)
    for i in range(rows):
        top, bottom = (i * height) // rows, -((-(i + 1) * height) // rows)
        for j in range(columns):
            left, right = (j * width) // columns, -((-(j + 1) * width) // columns)
            out[i, j] = reduce(features[top:bottom, left:right], axis=(0, 1))
    return out


def standardize(features: np.ndarray) -> np.ndarray:
    """Per-channel standardisation over images and grid cells.

    Args:
      features: `[N, rows, columns, C]`.
    Returns:
      float64, same shape: (x - mean_c) / std_c with the unbiased std (a constant channel
      keeps std 1: it adds no distance either way).
    """
    features = np.asarray(features, np.float64)
    axes = tuple(range(features.ndim - 1))
    mean = features.mean(axis=axes, keepdims=True)
    count = int(np.prod([features.shape[a] for a in axes]))
    std = features.std(axis=axes, keepdims=True, ddof=1) if count > 1 else np.zeros_like(mean)
    return (features - mean) / np.where(std > 0, std, 1.0)


def pairwise_distances(features: np.ndarray, bias: Optional[np.ndarray] = None) -> np.ndarray:
    """The reference's distance matrix: D[i, j] = |f_i - f_j|_2 + bias[j], D[i, i] = 0.

    Args:
      features: `[N, ...]` (flattened per image).
      bias: `[N]` or None.
    Returns:
      float64 `[N, N]`.
    """
    flat = np.asarray(features, np.float64).reshape(len(features), -1)
    squared = np.sum(flat ** 2, axis=1)
    gram = squared[:, None] + squared[None, :] - 2.0 * flat @ flat.T
    distances = np.sqrt(np.maximum(gram, 0.0))
    if bias is not None:
        distances = distances + np.asarray(bias, np.float64)[None, :]
    np.fill_diagonal(distances, 0.0)
    return distances


def first_index(num_images: int, seed: int) -> int:
    """The seeded first pick: element 0 of `RandomState(seed).permutation(num_images)` (the
    reference draws its first sample so, from the images in dataset order)."""
    if num_images < 1:
        raise ValueError("there is no image to choose from")
    return int(np.random.RandomState(seed).permutation(num_images)[0])


@dataclasses.dataclass
class Picks:
    """What `iterative_farthest_point` chose, in order."""

    indices: List[int]  # the new picks
    scores: List[float]  # each pick's biased distance to the chosen set when it was picked


def iterative_farthest_point(features: np.ndarray, count: int,
                             chosen: Sequence[int] = (),
                             bias: Optional[np.ndarray] = None, seed: int = 0) -> Picks:
    """Picks `count` more images, each the farthest (plus its bias) from those chosen so far.

    Args:
      features: `[N, ...]` per-image features (flattened; e.g. `standardize`d pooled maps).
      count: how many to add.
      chosen: indices already chosen (the labelled set). Empty: the first pick is
        `first_index(N, seed)` (its score is recorded as 0) and `count - 1` follow.
      bias: `[N]` >= 0 added to every distance to image j (e.g. bias_weight x difficulty;
        the chosen images' entries are never used). None = pure farthest point.
      seed: only for the first pick of an empty `chosen`.
    Returns:
      Picks (fewer than `count` only when every remaining image has score 0, e.g. duplicates
      of chosen ones without bias: the reference stops there too).
    Raises:
      ValueError: `count` exceeds the images not chosen yet, an index is out of range or
        repeated, or a bias is negative or has the wrong shape.
    """
    flat = np.asarray(features, np.float64).reshape(len(features), -1)
    num_images = len(flat)
    chosen = [int(i) for i in chosen]
    if len(set(chosen)) != len(chosen) or any(not 0 <= i < num_images for i in chosen):
        raise ValueError(f"chosen indices must be distinct and in [0, {num_images}), got "
                         f"{chosen}")
    if count < 0 or count > num_images - len(chosen):
        raise ValueError(f"cannot add {count} images: {num_images - len(chosen)} of "
                         f"{num_images} are not chosen yet")
    bias = np.zeros(num_images) if bias is None else np.asarray(bias, np.float64)
    if bias.shape != (num_images,) or np.any(bias < 0) or not np.all(np.isfinite(bias)):
        raise ValueError(f"bias must be {num_images} finite values >= 0, got shape "
                         f"{bias.shape}")
    picks = Picks([], [])
    if count == 0:
        return picks
    if not chosen:
        first = first_index(num_images, seed)
        chosen, picks = [first], Picks([first], [0.0])
        count -= 1
    # Each image's distance to its nearest chosen image.
    nearest = np.full(num_images, np.inf)
    for index in chosen:
        nearest = np.minimum(nearest, np.linalg.norm(flat - flat[index], axis=1))
    is_chosen = np.zeros(num_images, bool)
    is_chosen[chosen] = True
    for _ in range(count):
        scores = np.where(is_chosen, 0.0, nearest + bias)
        best = int(np.argmax(scores))
        if is_chosen[best]:
            break
        picks.indices.append(best)
        picks.scores.append(float(scores[best]))
        is_chosen[best] = True
        nearest = np.minimum(nearest, np.linalg.norm(flat - flat[best], axis=1))
    return picks
