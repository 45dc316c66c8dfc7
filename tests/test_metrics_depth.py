"""Depth metrics (KITTI Eigen protocol) against an independent numpy implementation, inside
tf.function, and all-reduced across two replicas."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.metrics import depth as depth_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _numpy_eval_image(pred, gt, crop, min_depth, max_depth, median_scaling):
    """Monodepth2-style evaluation of one image (gt and pred the same size)."""
    height, width = gt.shape
    mask = np.logical_and(gt > min_depth, gt < max_depth)
    if crop is not None:
        top, bottom, left, right = crop
        crop_mask = np.zeros_like(mask)
        crop_mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = 1
        mask = np.logical_and(mask, crop_mask)
    pred, gt = pred[mask], gt[mask]
    if median_scaling:
        pred = pred * np.median(gt) / np.median(pred)
    pred = np.clip(pred, min_depth, max_depth)
    thresh = np.maximum(gt / pred, pred / gt)
    return np.array([np.mean(np.abs(gt - pred) / gt), np.mean((gt - pred) ** 2 / gt),
                     np.sqrt(np.mean((gt - pred) ** 2)),
                     np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
                     (thresh < 1.25).mean(), (thresh < 1.25 ** 2).mean(),
                     (thresh < 1.25 ** 3).mean()])


def _random_batch(seed, batch=3, height=37, width=61):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 100.0, size=(batch, height, width, 1))
    gt[rng.uniform(size=gt.shape) < 0.3] = 0.0  # sparse LiDAR-like ground truth
    pred = gt * rng.uniform(0.6, 1.5, size=gt.shape) * 0.5 + rng.uniform(0.1, 3.0, size=gt.shape)
    return pred, gt


@pytest.mark.parametrize("crop,median,max_depth", [("garg", True, 80.0), ("eigen", False, 50.0),
                                                   ("none", True, 80.0)])
def test_per_image_metrics_match_numpy(crop, median, max_depth):
    pred, gt = _random_batch(0)
    got, has_pixels = depth_metrics.per_image_depth_metrics(
        pred, gt, crop=crop, median_scaling=median, max_depth=max_depth)
    fractions = depth_metrics.CROPS[crop]
    expected = np.stack([_numpy_eval_image(p[..., 0], g[..., 0], fractions, 1e-3, max_depth,
                                           median) for p, g in zip(pred, gt)])
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    assert has_pixels.numpy().all()


def test_even_count_median_and_empty_image_and_resize():
    gt = np.zeros((2, 4, 4, 1))
    gt[0, 0, :4, 0] = [2.0, 4.0, 6.0, 10.0]  # median 5 (mean of the middle two, numpy's rule)
    pred = np.ones((2, 4, 4, 1))
    metrics, has_pixels = depth_metrics.per_image_depth_metrics(pred, gt, crop="none")
    np.testing.assert_array_equal(has_pixels.numpy(), [True, False])
    expected = _numpy_eval_image(pred[0, ..., 0] * 1.0, gt[0, ..., 0], None, 1e-3, 80.0, True)
    np.testing.assert_allclose(metrics.numpy()[0], expected)
    sums = depth_metrics.depth_metric_sums(pred, gt, crop="none")
    assert sums["count"].numpy() == 1.0
    np.testing.assert_allclose(sums["sums"].numpy(), expected)
    # A half-resolution constant prediction is resized to the ground truth's size.
    small = np.full((2, 2, 2, 1), 3.0)
    full = np.full((2, 4, 4, 1), 3.0)
    a, _ = depth_metrics.per_image_depth_metrics(small, gt, crop="none", median_scaling=False)
    b, _ = depth_metrics.per_image_depth_metrics(full, gt, crop="none", median_scaling=False)
    np.testing.assert_allclose(a.numpy()[0], b.numpy()[0])
    with pytest.raises(ValueError, match="no image"):
        depth_metrics.finalize_depth_metrics(np.zeros(7), 0.0)
    with pytest.raises(ValueError, match="unknown crop"):
        depth_metrics.crop_mask(4, 4, "kitti")


def test_accumulation_inside_tf_function_equals_per_image_mean():
    batches = [_random_batch(seed, batch=2) for seed in range(3)]
    step = tf.function(lambda p, g: depth_metrics.depth_metric_sums(p, g))
    accumulator = depth_metrics.DepthMetricAccumulator()
    for pred, gt in batches:
        accumulator.add(step(pred, gt))
    result = accumulator.result()
    all_images = np.stack([_numpy_eval_image(p[..., 0], g[..., 0], depth_metrics.GARG_CROP,
                                             1e-3, 80.0, True)
                           for pred, gt in batches for p, g in zip(pred, gt)])
    np.testing.assert_allclose([result[name] for name in depth_metrics.DEPTH_METRIC_NAMES],
                               all_images.mean(axis=0), rtol=1e-9)


_DISTRIBUTED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tf_depthseg.training import distribute
    distribute.configure_logical_cpus(2)
    from tf_depthseg.metrics import depth, segmentation
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 90.0, size=(8, 12, 20, 1)).astype(np.float32)
    pred = (gt * rng.uniform(0.7, 1.4, size=gt.shape)).astype(np.float32)
    labels = rng.integers(0, 6, size=(8, 12, 20)).astype(np.int32)
    labels[labels == 5] = 255
    predictions = rng.integers(0, 5, size=(8, 12, 20)).astype(np.int32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = tf.data.Dataset.from_tensor_slices((pred, gt, labels, predictions)).batch(4)
    @tf.function
    def step(batch):
        def replica_fn(p, g, l, q):
            sums = depth.depth_metric_sums(p, g)
            return sums["sums"], sums["count"], segmentation.confusion_matrix(l, q, 5)
        per_replica = strategy.run(replica_fn, args=batch)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]
    accumulator = depth.DepthMetricAccumulator()
    confusion = np.zeros((5, 5), np.int64)
    for batch in strategy.experimental_distribute_dataset(dataset):
        sums, count, matrix = step(batch)
        accumulator.add({"sums": sums, "count": count})
        confusion += matrix.numpy()
    single = depth.depth_metric_sums(pred, gt)
    json.dump({"replicas": strategy.num_replicas_in_sync, "result": accumulator.result(),
               "single": depth.finalize_depth_metrics(single["sums"], single["count"]),
               "confusion": confusion.tolist(),
               "confusion_single": segmentation.confusion_matrix(labels, predictions, 5)
               .numpy().tolist()}, sys.stdout)
""")


def test_sums_all_reduce_across_two_replicas():
    """Runs in a subprocess: logical devices must be configured before TF initialises."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    completed = subprocess.run([sys.executable, "-c", _DISTRIBUTED_SCRIPT], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    import json
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for name in depth_metrics.DEPTH_METRIC_NAMES:
        np.testing.assert_allclose(out["result"][name], out["single"][name], rtol=1e-9)
    assert out["confusion"] == out["confusion_single"]
    assert sum(map(sum, out["confusion"])) == int(np.sum(np.array(out["confusion"])))
