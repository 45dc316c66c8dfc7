"""Depth evaluation: KITTI Eigen-protocol metrics of a depth predictor over a dataset.

`depth_eval_outputs` (per batch, in TensorFlow) and `update_depth_accumulator` (on the host)
are what a task's `eval_outputs` / `update_metrics` hooks call; `evaluate_predictor` runs any
predictor over a dataset with them (tools/evaluate.py, the studies);
`median_training_depth` is the constant baseline's one number. The metrics themselves are
`tf_depthseg.metrics.depth`.

Networks that predict a sigmoid disparity (self-supervised depth, Monodepth2 / Hoyer et al.)
are evaluated with Monodepth2's convention (`disparity_eval_outputs`): the disparity is
resized to the ground truth's size and only then turned into depth, so the interpolation runs
in disparity space as in the published numbers (resizing depth instead gives other values at
depth edges).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg.data import pipeline
from tf_depthseg.losses import view_synthesis
from tf_depthseg.metrics import depth as depth_metrics

# Evaluation output: 1.0 for images with valid ground truth in range (counted), else 0.0.
EVAL_COUNTED = "counted"


def depth_eval_outputs(prediction, ground_truth, eval_config) -> Dict[str, tf.Tensor]:
    """Per-image Eigen metrics `{name: [B]}` plus EVAL_COUNTED `[B]` (1 = image counted)."""
    metrics, counted = depth_metrics.per_image_depth_metrics(
        prediction, tf.cast(ground_truth, tf.float32), crop=eval_config.crop,
        min_depth=eval_config.min_depth, max_depth=eval_config.max_depth,
        median_scaling=eval_config.median_scaling)
    outputs = {name: metrics[:, i] for i, name in enumerate(depth_metrics.DEPTH_METRIC_NAMES)}
    outputs[EVAL_COUNTED] = tf.cast(counted, tf.float64)
    return outputs


def depth_from_disparity(disparity, size, min_depth: float, max_depth: float):
    """Monodepth2's evaluation step: sigmoid disparity `[B, h, w, 1]` resized bilinearly
    (half-pixel centres) to `size` = (H, W), then `disp_to_depth(., min_depth, max_depth)`.

    Returns depth `[B, H, W, 1]` float32 (metres up to the scale of monocular training).
    """
    disparity = tf.cast(disparity, tf.float32)
    static = isinstance(size, (tuple, list)) and None not in size
    # A dynamic size (a symbolic tf.shape, e.g. native-resolution splits of several sizes)
    # cannot be compared in Python: always resize then (to the same size it is the identity:
    # half-pixel centres sample the pixels themselves).
    if not static or tuple(disparity.shape[1:3]) != tuple(size):
        disparity = tf.image.resize(disparity, size, method="bilinear")
    return view_synthesis.disp_to_depth(disparity, min_depth, max_depth)[1]


def disparity_eval_outputs(disparity, ground_truth, eval_config, min_depth: float,
                           max_depth: float) -> Dict[str, tf.Tensor]:
    """`depth_eval_outputs` of a disparity network with Monodepth2's convention: the
    disparity `[B, h, w, 1]` resized to the ground truth's size before inverting
    (`depth_from_disparity`); `min_depth`/`max_depth` are the training range of
    `disp_to_depth` (0.1 / 100 m), the evaluation range is `eval_config`'s."""
    size = tf.shape(ground_truth)[1:3]
    static = tuple(ground_truth.shape[1:3])
    depth = depth_from_disparity(disparity, static if None not in static else size,
                                 min_depth, max_depth)
    return depth_eval_outputs(depth, ground_truth, eval_config)


def update_depth_accumulator(accumulator: depth_metrics.DepthMetricAccumulator,
                             outputs: Mapping[str, np.ndarray]):
    """Adds one batch of `depth_eval_outputs` (numpy) to the accumulator; returns it."""
    counted = np.asarray(outputs[EVAL_COUNTED], np.float64).reshape(-1)
    values = np.stack([np.asarray(outputs[n], np.float64).reshape(-1)
                       for n in depth_metrics.DEPTH_METRIC_NAMES], axis=1)
    # Images without valid ground truth have undefined metrics: weight 0 (and no NaN leaks).
    values = np.where(counted[:, None] > 0, values, 0.0)
    accumulator.add({"sums": (values * counted[:, None]).sum(axis=0),
                     "count": counted.sum()})
    return accumulator


def evaluate_predictor(predict_fn, dataset: tf.data.Dataset, eval_config,
                       max_examples: int = 0) -> Dict[str, float]:
    """Eigen-protocol metrics of any depth predictor over a dataset of IMAGE/DEPTH batches.

    Args:
      predict_fn: images `[B, h, w, 3]` -> depth `[B, h', w', 1]` (resized to the ground
        truth by the metrics).
      dataset: finite batches with common.IMAGE and common.DEPTH.
      eval_config: `config.EvalConfig`.
      max_examples: stop after this many images (0 = all).
    Returns:
      {metric: mean over counted images, "num_images": count}.
    """
    # One trace per call: the signature has the dataset's unknown batch size, so the last,
    # smaller batch does not retrace (and each model evaluated gets its own function).
    @tf.function(input_signature=[dataset.element_spec], autograph=False)
    def step(batch):
        return depth_eval_outputs(predict_fn(batch[common.IMAGE]), batch[common.DEPTH],
                                  eval_config)

    accumulator = depth_metrics.DepthMetricAccumulator()
    seen = 0
    for batch in dataset:
        outputs = step(batch)
        update_depth_accumulator(accumulator, {k: v.numpy() for k, v in outputs.items()})
        seen += int(batch[common.IMAGE].shape[0])
        if max_examples and seen >= max_examples:
            break
    result = accumulator.result()
    result["num_images"] = int(accumulator.count)
    return result


def median_training_depth(pattern: str, eval_config, max_examples: int = 1000,
                          resolution: float = 0.01, allow_incomplete: bool = False,
                          tfds_data_dir: Optional[str] = None) -> float:
    """Median ground-truth depth of (up to `max_examples`) training records, in metres.

    Pixels with depth in (eval min, eval max) count, all of each image (no crop: the baseline
    predicts one number for the whole image). A histogram with `resolution`-metre bins keeps
    memory flat for large sets; the result is exact to that resolution.
    """
    dataset = pipeline.make_dataset(pattern, [common.DEPTH], 1, training=False,
                                    image_size=None, num_context=0, deterministic=True,
                                    allow_incomplete=allow_incomplete,
                                    tfds_data_dir=tfds_data_dir)
    edges = np.arange(0.0, eval_config.max_depth + resolution, resolution)
    histogram = np.zeros(len(edges) - 1, np.int64)
    for index, batch in enumerate(dataset):
        if max_examples and index >= max_examples:
            break
        depth = batch[common.DEPTH].numpy().ravel()
        depth = depth[(depth > eval_config.min_depth) & (depth < eval_config.max_depth)]
        histogram += np.histogram(depth, edges)[0]
    total = histogram.sum()
    if total == 0:
        raise errors.BadInputError(
            f"{pattern}: no ground-truth depth in ({eval_config.min_depth}, "
            f"{eval_config.max_depth}) m; the constant-median baseline needs training records "
            "with depth.")
    middle = int(np.searchsorted(np.cumsum(histogram), (total + 1) / 2.0))
    return float((edges[middle] + edges[middle + 1]) / 2.0)


def constant_baseline_depth(pattern: str, eval_config, max_examples: int = 1000,
                            allow_incomplete: bool = False,
                            tfds_data_dir: Optional[str] = None) -> Optional[float]:
    """The depth the constant baseline predicts everywhere, in metres; None = any constant.

    Median-scaled protocols (monocular depth, known only up to scale): each image's prediction
    is scaled to its ground truth's median, so every constant gives the same numbers, those of
    predicting each image's ground-truth median; no training record is read (an SDE trains on
    video, whose records carry no depth). Otherwise: `median_training_depth` of `pattern`.
    """
    if eval_config.median_scaling:
        return None
    return median_training_depth(pattern, eval_config, max_examples,
                                 allow_incomplete=allow_incomplete, tfds_data_dir=tfds_data_dir)
