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


def _table_row(abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3):
    return dict(abs_rel=abs_rel, sq_rel=sq_rel, rmse=rmse, rmse_log=rmse_log, a1=a1, a2=a2,
                a3=a3, num_images=22)


def test_reading_of_a_hand_made_table():
    results = {
        "suw": _table_row(0.30, 3.0, 10.0, 0.50, 0.60, 0.80, 0.90),
        "constant": _table_row(0.60, 6.0, 20.0, 0.40, 0.20, 0.40, 0.90),
        "s": _table_row(0.20, 3.05, 12.0, 0.60, 0.70, 0.75, 0.905),
    }
    lines = depth_metrics.read_depth_results(results, baseline="constant",
                                             pairs=[("suw", "s")], tie=0.02)
    assert len(lines) == 4
    best = lines[0]
    # Errors: lower wins; accuracies: higher wins; within 2 % / 0.02 of the best: shared.
    assert "s on AbsRel 0.200, d1 0.700" in best
    assert "suw = s on SqRel 3.00" in best  # 3.05 is within 2 % of 3.00
    assert "suw on RMSE 10.00 m, d2 0.800" in best
    assert "constant on RMSElog 0.400" in best  # the baseline wins where it wins
    assert "suw = constant = s on d3 0.905" in best  # table order, all within 0.02
    suw_vs_constant = lines[1]
    assert suw_vs_constant.startswith("suw vs constant: AbsRel 0.300 vs 0.600 (-50 %), "
                                      "RMSE 10.00 m vs 20.00 m (-50 %), d1 0.600 vs 0.200 "
                                      "(+0.40);")
    assert "better on 5/7 (AbsRel, SqRel, RMSE, d1, d2)" in suw_vs_constant
    assert "worse on 1/7 (RMSElog)" in suw_vs_constant
    assert "tied on 1/7 (d3)" in suw_vs_constant
    assert lines[2].startswith("s vs constant: AbsRel 0.200 vs 0.600 (-67 %)")
    pair = lines[3]
    assert pair.startswith("suw vs s: AbsRel 0.300 vs 0.200 (+50 %), RMSE 10.00 m vs 12.00 m "
                           "(-17 %), d1 0.600 vs 0.700 (-0.10);")
    assert "better on 3/7 (RMSE, RMSElog, d2)" in pair
    assert "worse on 2/7 (AbsRel, d1)" in pair
    assert "tied on 2/7 (SqRel, d3)" in pair


def test_reading_extremes_and_missing_values():
    results = {"good": _table_row(0.1, 1.0, 5.0, 0.2, 0.9, 0.95, 0.99),
               "bad": _table_row(0.5, 5.0, 15.0, 0.8, 0.3, 0.5, 0.7),
               "broken": _table_row(float("nan"), None, 9.0, 0.5, 0.5, 0.6, 0.8)}
    lines = depth_metrics.read_depth_results(results, baseline="good",
                                             pairs=[("good", "bad"), ("good", "absent")])
    assert lines[0] == ("Best (lower is better, d1-d3 higher): good on AbsRel 0.100, "
                        "SqRel 1.00, RMSE 5.00 m, RMSElog 0.200, d1 0.900, d2 0.950, d3 0.990.")
    assert lines[1].endswith("WORSE on all 7 metrics.") and lines[1].startswith("bad vs good")
    # Non-finite / missing metrics are skipped, not compared.
    assert lines[2].startswith("broken vs good: RMSE 9.00 m vs 5.00 m (+80 %), d1 0.500 vs "
                               "0.900 (-0.40); WORSE on all 5 metrics.")
    assert lines[3].endswith("better on all 7 metrics.")
    assert len(lines) == 4  # the pair with an absent model is left out
    # Ties: relative for errors, absolute for accuracies.
    assert depth_metrics.compare_metric("rmse", 10.1, 10.0, tie=0.02) == 0
    assert depth_metrics.compare_metric("rmse", 10.3, 10.0, tie=0.02) == -1
    assert depth_metrics.compare_metric("a1", 0.51, 0.50, tie=0.02) == 0
    assert depth_metrics.compare_metric("a1", 0.53, 0.50, tie=0.02) == 1
    assert depth_metrics.compare_metric("abs_rel", 0.2, 0.3) == 1
