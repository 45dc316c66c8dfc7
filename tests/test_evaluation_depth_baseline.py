"""The constant-depth baseline under median scaling (monocular depth, tools/evaluate
--baselines): no training depth is needed, and its numbers are those of predicting each image's
ground-truth median, whatever the constant."""

import numpy as np
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import config as cfg
from tf_depthseg.evaluation import depth as depth_eval


def test_median_scaled_baseline_reads_no_training_records(tmp_path):
    # A pattern that matches nothing: reading it would raise. An SDE's video records (e.g.
    # Cityscapes sequences) carry no depth at all.
    missing = str(tmp_path / "no-such-*.tfrecord")
    evaluation = cfg.EvalConfig(median_scaling=True, crop="none")
    assert depth_eval.constant_baseline_depth(missing, evaluation) is None


def test_median_scaled_constant_is_each_images_ground_truth_median():
    rng = np.random.default_rng(0)
    depth = rng.uniform(2.0, 60.0, size=(3, 8, 12, 1)).astype(np.float32)
    depth[0, :2] = 0.0  # invalid pixels are left out of the median and the metrics
    images = np.zeros((3, 8, 12, 3), np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(
        {common.IMAGE: images, common.DEPTH: depth}).batch(2)
    evaluation = cfg.EvalConfig(median_scaling=True, crop="none", min_depth=1e-3,
                                max_depth=80.0)

    def constant(value):
        return lambda batch: tf.fill(tf.concat([tf.shape(batch)[:3], [1]], 0), value)

    results = [depth_eval.evaluate_predictor(constant(c), dataset, evaluation)
               for c in (1.0, 7.5)]
    expected = []
    for d in depth:
        valid = d[d > 0]
        expected.append(np.mean(np.abs(np.median(valid) - valid) / valid))
    for result in results:
        np.testing.assert_allclose(result["abs_rel"], np.mean(expected), rtol=1e-5)
        assert result["num_images"] == 3
