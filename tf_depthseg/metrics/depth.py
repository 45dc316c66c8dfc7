"""Depth evaluation, KITTI Eigen protocol (Eigen et al. 2014; crop of Garg et al. 2016; as in
Monodepth2's evaluation script).

Per image: resize the prediction to the ground truth's size, keep pixels with ground truth in
(min_depth, max_depth) inside the crop, optionally scale the prediction by
median(gt) / median(pred) (monocular models, whose scale is unknown), clip it to
[min_depth, max_depth], and compute the seven metrics. The dataset score is the mean over images.

Accumulation across batches and replicas: `depth_metric_sums` returns the per-batch sums of the
per-image metrics and the number of images; both are plain tensors that a `tf.distribute`
strategy can all-reduce with `ReduceOp.SUM` and a Python loop (or a `tf.function` loop) can add
up; `finalize_depth_metrics` divides at the end. `DepthMetricAccumulator` does the adding.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
EVAL_MIN_DEPTH = 1e-3
EVAL_MAX_DEPTH = 80.0

# Crops as fractions (top, bottom, left, right) of the ground-truth size.
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
EIGEN_CROP = (0.3324324, 0.91351351, 0.0359477, 0.96405229)
CROPS = {"garg": GARG_CROP, "eigen": EIGEN_CROP, "none": None}


def crop_mask(height, width, crop: str = "garg") -> tf.Tensor:
    """Boolean `[H, W]` mask of the evaluation crop (`"garg"`, `"eigen"` or `"none"`).

    Bounds are truncated to integers as in the reference evaluation code
    (`mask[int(t*H):int(b*H), int(l*W):int(r*W)]`).
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; use one of {sorted(CROPS)}")
    fractions = CROPS[crop]
    height = tf.convert_to_tensor(height, tf.int32)
    width = tf.convert_to_tensor(width, tf.int32)
    if fractions is None:
        return tf.ones(tf.stack([height, width]), tf.bool)
    # float64 so the truncated bounds equal numpy's for any image size.
    h64, w64 = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    top, bottom = (tf.cast(f * h64, tf.int32) for f in fractions[:2])
    left, right = (tf.cast(f * w64, tf.int32) for f in fractions[2:])
    rows = tf.range(height)
    cols = tf.range(width)
    row_in = tf.logical_and(rows >= top, rows < bottom)
    col_in = tf.logical_and(cols >= left, cols < right)
    return tf.logical_and(row_in[:, None], col_in[None, :])


def _masked_median(values, mask):
    """Median of `values [B, N]` over `mask [B, N]` per row (numpy's convention: mean of the two
    middle values for an even count). Rows without valid values give an arbitrary value."""
    count = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    large = tf.fill(tf.shape(values), tf.constant(np.inf, values.dtype))
    ordered = tf.sort(tf.where(mask, values, large), axis=1)
    lower = tf.maximum((count - 1) // 2, 0)
    upper = tf.maximum(count // 2, 0)
    upper = tf.minimum(upper, tf.maximum(count - 1, 0))
    low_value = tf.gather(ordered, lower, axis=1, batch_dims=1)
    high_value = tf.gather(ordered, upper, axis=1, batch_dims=1)
    return tf.where(count > 0, (low_value + high_value) / 2.0, tf.ones_like(low_value))


def per_image_depth_metrics(prediction, ground_truth, *, crop: str = "garg",
                            min_depth: float = EVAL_MIN_DEPTH,
                            max_depth: float = EVAL_MAX_DEPTH, median_scaling: bool = True):
    """The seven metrics of every image.

    Args:
      prediction: `[B, h, w, 1]` predicted depth in metres (any resolution; resized bilinearly
        to the ground truth's).
      ground_truth: `[B, H, W, 1]` depth in metres, 0 (or anything outside the range) = invalid.
      crop: `"garg"` (default, Eigen split standard), `"eigen"` or `"none"`.
      min_depth, max_depth: valid ground-truth range (exclusive) and the prediction's clip range;
        e.g. max_depth=50 for the 50 m cap.
      median_scaling: per-image median scaling (monocular models); False for metric models.
    Returns:
      (metrics `[B, 7]` float64 in `DEPTH_METRIC_NAMES` order, has_pixels `[B]` bool: images
      without a valid pixel have undefined metrics and must not be counted).
    """
    ground_truth = tf.cast(ground_truth, tf.float64)
    prediction = tf.cast(prediction, tf.float64)
    if ground_truth.shape.rank != 4 or prediction.shape.rank != 4:
        raise ValueError(f"prediction and ground_truth must be [B, H, W, 1], got "
                         f"{prediction.shape} and {ground_truth.shape}")
    gt_size = tf.shape(ground_truth)[1:3]
    if prediction.shape[1:3] != ground_truth.shape[1:3] or None in prediction.shape[1:3]:
        prediction = tf.cast(tf.image.resize(tf.cast(prediction, tf.float32), gt_size,
                                             method="bilinear"), tf.float64)
    batch = tf.shape(ground_truth)[0]
    gt = tf.reshape(ground_truth, tf.stack([batch, -1]))
    pred = tf.reshape(prediction, tf.stack([batch, -1]))
    region = tf.reshape(crop_mask(gt_size[0], gt_size[1], crop), [1, -1])
    mask = tf.logical_and(tf.logical_and(gt > min_depth, gt < max_depth), region)
    count = tf.reduce_sum(tf.cast(mask, tf.float64), axis=1)

    if median_scaling:
        ratio = _masked_median(gt, mask) / tf.maximum(_masked_median(pred, mask), 1e-12)
        pred = pred * ratio[:, None]
    pred = tf.clip_by_value(pred, min_depth, max_depth)
    # Invalid pixels get gt = pred = 1 so no division by zero leaks NaN into the masked sums.
    gt = tf.where(mask, gt, tf.ones_like(gt))
    pred = tf.where(mask, pred, tf.ones_like(pred))
    weights = tf.cast(mask, tf.float64)
    safe_count = tf.maximum(count, 1.0)

    def masked_mean(values):
        return tf.reduce_sum(values * weights, axis=1) / safe_count

    threshold = tf.maximum(gt / pred, pred / gt)
    metrics = tf.stack([
        masked_mean(tf.abs(gt - pred) / gt),
        masked_mean(tf.square(gt - pred) / gt),
        tf.sqrt(masked_mean(tf.square(gt - pred))),
        tf.sqrt(masked_mean(tf.square(tf.math.log(gt) - tf.math.log(pred)))),
        masked_mean(tf.cast(threshold < 1.25, tf.float64)),
        masked_mean(tf.cast(threshold < 1.25 ** 2, tf.float64)),
        masked_mean(tf.cast(threshold < 1.25 ** 3, tf.float64)),
    ], axis=1)
    return metrics, count > 0


def depth_metric_sums(prediction, ground_truth, **kwargs) -> Dict[str, tf.Tensor]:
    """Batch contribution to the dataset means: all-reducible sums and counts.

    Args:
      prediction, ground_truth, **kwargs: as `per_image_depth_metrics`.
    Returns:
      `{"sums": [7] float64 sum over counted images, "count": [] float64 images counted}`.
    """
    metrics, has_pixels = per_image_depth_metrics(prediction, ground_truth, **kwargs)
    weights = tf.cast(has_pixels, tf.float64)
    return {"sums": tf.reduce_sum(metrics * weights[:, None], axis=0),
            "count": tf.reduce_sum(weights)}


def finalize_depth_metrics(sums, count) -> Dict[str, float]:
    """Dataset means `{name: value}` from accumulated sums and image count."""
    sums = np.asarray(sums, np.float64)
    count = float(np.asarray(count))
    if count <= 0:
        raise ValueError("no image had valid ground truth in range: check the depth maps' "
                         "units (metres) and the min/max depth")
    return {name: float(value) for name, value in zip(DEPTH_METRIC_NAMES, sums / count)}


class DepthMetricAccumulator:
    """Adds up `depth_metric_sums` results (after any cross-replica reduction) in Python.

    Usage:
      accumulator = DepthMetricAccumulator()
      for batch in dataset:
          accumulator.add(eval_step(batch))   # a tf.function returning depth_metric_sums(...)
      print(accumulator.result())
    """

    def __init__(self):
        self.sums = np.zeros(len(DEPTH_METRIC_NAMES), np.float64)
        self.count = 0.0

    def add(self, batch_sums: Dict[str, object]) -> None:
        self.sums += np.asarray(batch_sums["sums"], np.float64)
        self.count += float(np.asarray(batch_sums["count"]))

    def result(self) -> Dict[str, float]:
        return finalize_depth_metrics(self.sums, self.count)


# ----------------------------------------------------------------------------------------------
# A reading of a results table (what tools/evaluate prints under the table)
# ----------------------------------------------------------------------------------------------
DEPTH_METRIC_TITLES = {"abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE",
                       "rmse_log": "RMSElog", "a1": "d1", "a2": "d2", "a3": "d3"}
HIGHER_IS_BETTER = frozenset({"a1", "a2", "a3"})  # delta accuracies; the rest are errors
HEADLINE_METRICS = ("abs_rel", "rmse", "a1")


def _format_value(metric: str, value: float) -> str:
    if metric in ("rmse", "sq_rel"):
        return f"{value:.2f}" + (" m" if metric == "rmse" else "")
    return f"{value:.3f}"


def compare_metric(metric: str, value: float, reference: float, tie: float = 0.0) -> int:
    """+1 if `value` is better than `reference` on `metric`, -1 if worse, 0 if within `tie`.

    Errors are compared relatively (|value - reference| <= tie * reference is a tie), delta
    accuracies (fractions of pixels) absolutely (|difference| <= tie).
    """
    difference = value - reference
    margin = tie if metric in HIGHER_IS_BETTER else tie * abs(reference)
    if abs(difference) <= margin:
        return 0
    better = difference > 0 if metric in HIGHER_IS_BETTER else difference < 0
    return 1 if better else -1


def _change(metric: str, value: float, reference: float) -> str:
    """'-52 %' (errors: relative change) or '+0.40' (accuracies: absolute change)."""
    if metric in HIGHER_IS_BETTER:
        return f"{value - reference:+.2f}"
    if reference == 0:
        return "n/a"
    return f"{100.0 * (value - reference) / abs(reference):+.0f} %"


def _finite_metrics(row: Mapping, metrics: Sequence[str]) -> Dict[str, float]:
    out = {}
    for metric in metrics:
        value = row.get(metric)
        if isinstance(value, (int, float)) and np.isfinite(value):
            out[metric] = float(value)
    return out


def _head_to_head(name: str, row: Dict[str, float], other: str, other_row: Dict[str, float],
                  headline: Sequence[str], tie: float) -> str:
    shared = [m for m in row if m in other_row]
    details = ", ".join(
        f"{DEPTH_METRIC_TITLES.get(m, m)} {_format_value(m, row[m])} vs "
        f"{_format_value(m, other_row[m])} ({_change(m, row[m], other_row[m])})"
        for m in headline if m in shared)
    verdicts = {m: compare_metric(m, row[m], other_row[m], tie) for m in shared}
    better = [DEPTH_METRIC_TITLES.get(m, m) for m in shared if verdicts[m] > 0]
    worse = [DEPTH_METRIC_TITLES.get(m, m) for m in shared if verdicts[m] < 0]
    if len(better) == len(shared):
        summary = f"better on all {len(shared)} metrics"
    elif len(worse) == len(shared):
        summary = f"WORSE on all {len(shared)} metrics"
    else:
        parts = []
        if better:
            parts.append(f"better on {len(better)}/{len(shared)} ({', '.join(better)})")
        if worse:
            parts.append(f"worse on {len(worse)}/{len(shared)} ({', '.join(worse)})")
        ties = [DEPTH_METRIC_TITLES.get(m, m) for m in shared if verdicts[m] == 0]
        if ties:
            parts.append(f"tied on {len(ties)}/{len(shared)} ({', '.join(ties)})")
        summary = "; ".join(parts)
    return f"{name} vs {other}: {details}; {summary}."


def read_depth_results(results: Mapping[str, Mapping[str, float]], *,
                       baseline: Optional[str] = None,
                       pairs: Sequence[Tuple[str, str]] = (),
                       metrics: Sequence[str] = DEPTH_METRIC_NAMES,
                       headline: Sequence[str] = HEADLINE_METRICS,
                       tie: float = 0.0) -> List[str]:
    """A short reading of an Eigen results table, generated from its numbers.

    Args:
      results: `{model name: {metric: value}}` (tools/evaluate's rows; other keys ignored,
        missing or non-finite values skipped).
      baseline: a row every other model is measured against (e.g. the constant-median
        baseline), or None.
      pairs: `(a, b)` rows to compare head to head ("a vs b").
      metrics: the metrics read (DEPTH_METRIC_NAMES order).
      headline: metrics quoted with their values in the comparisons.
      tie: values closer than this count as equal: relative for errors (0.02 = 2 %),
        absolute for delta accuracies (0.02 = 2 points).
    Returns:
      Lines of text: the best model per metric (grouped), each model against the baseline,
      then each pair. Lower is better except for d1..d3.
    """
    rows = {name: _finite_metrics(row, metrics) for name, row in results.items()}
    rows = {name: row for name, row in rows.items() if row}
    lines = []
    winners: Dict[str, List[str]] = {}
    for metric in metrics:
        candidates = [(name, row[metric]) for name, row in rows.items() if metric in row]
        if not candidates:
            continue
        sign = -1.0 if metric in HIGHER_IS_BETTER else 1.0
        best_name, best_value = min(candidates, key=lambda item: sign * item[1])
        # Models within `tie` of the best share the place, in table order.
        key = " = ".join(name for name, value in candidates if name == best_name
                         or compare_metric(metric, value, best_value, tie) == 0)
        winners.setdefault(key, []).append(
            f"{DEPTH_METRIC_TITLES.get(metric, metric)} {_format_value(metric, best_value)}")
    if winners:
        groups = "; ".join(f"{name} on {', '.join(items)}" for name, items in winners.items())
        tied = (f"; '=': within {100 * tie:g} % (errors) or {tie:g} (d1-d3) of the best"
                if tie and any(" = " in name for name in winners) else "")
        lines.append(f"Best (lower is better, d1-d3 higher{tied}): {groups}.")
    if baseline is not None and baseline in rows:
        for name, row in rows.items():
            if name != baseline:
                lines.append(_head_to_head(name, row, baseline, rows[baseline], headline, tie))
    for first, second in pairs:
        if first in rows and second in rows:
            lines.append(_head_to_head(first, rows[first], second, rows[second], headline, tie))
    return lines
