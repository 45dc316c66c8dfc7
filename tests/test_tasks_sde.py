"""SDE task (Hoyer et al. self-supervised depth): evaluation convention, pose wiring, feature
distance, export, tools/train with resume, and a learning check on tiny synthetic drives.

The records are the tiny synthetic drives of test_tasks_suw (32x96, neighbours t-1/t+1, K,
dense depth). Networks are the real ones (`models.hoyer.build_depth_net` on ResNet-18, the
Monodepth2 pose net) at tiny sizes.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from test_tasks_suw import write_tiny_records
from test_tools_train_evaluate import check, run_tool
from tf_depthseg import common
from tf_depthseg import config as cfg
from tf_depthseg.evaluation import depth as depth_eval
from tf_depthseg.export import exporter, saved_model
from tf_depthseg.geometry import transforms
from tf_depthseg.training import loop
from tf_depthseg.training.tasks import TASKS, make_task
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks.sde_config import SDEConfig

HEIGHT, WIDTH = 32, 96


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
    return write_tiny_records(str(tmp_path_factory.mktemp("sde_records")), train_seeds=(1, 2),
                              eval_seeds=(3,), frames=8)


def tiny_config(patterns, steps=2, **sde):
    return cfg.ExperimentConfig(
        name="tiny_sde", task="sde",
        data=cfg.DataConfig(train_pattern=patterns["train"], eval_pattern=patterns["val"],
                            keys=("image",), image_size=(HEIGHT, WIDTH), batch_size=2,
                            eval_batch_size=2, shuffle_buffer=8, color_jitter=0.0),
        optim=cfg.OptimConfig(learning_rate=1e-3),
        model=cfg.ModelConfig(bn_momentum=0.9),
        train=cfg.TrainConfig(steps=steps, log_every=1, checkpoint_every=0, eval_every=0,
                              image_summaries_every=0, best_metric=""),
        eval=cfg.EvalConfig(median_scaling=True, crop="none"),
        task_sections={"sde": SDEConfig(**{"backbone": "resnet18", "dilate_last_stage": False,
                                           **sde})})


def test_sde_is_a_registered_task_with_its_section():
    assert TASKS["sde"] is sde_task.SDETask
    config = cfg.apply_overrides(cfg.ExperimentConfig(task="sde"),
                                 ["sde.backbone=resnet18", "sde.feature_distance_weight=0.01"])
    assert (config.sde.backbone, config.sde.feature_distance_weight) == ("resnet18", 0.01)
    # The reference's constants are the defaults.
    default = SDEConfig()
    assert (default.min_depth, default.max_depth, default.smoothness_weight,
            default.num_scales, default.pose_input) == (0.1, 100.0, 1e-3, 4, "pairs")
    with pytest.raises(cfg.ConfigError, match="data.num_context"):
        make_task(config).check_config(cfg.apply_overrides(config, ["data.num_context=1"]))


def test_evaluation_resizes_the_disparity_before_inverting():
    """Monodepth2's convention: a 1x2 disparity ramp [0, 1] resized (half-pixel bilinear) to
    1x4 is [0, 0.25, 0.75, 1]; depth = 1 / (1/max + (1/min - 1/max) d)."""
    min_depth, max_depth = 0.5, 10.0
    disparity = tf.constant([0.0, 1.0], shape=[1, 1, 2, 1])
    expected_disp = np.array([0.0, 0.25, 0.75, 1.0])
    expected = 1.0 / (1.0 / max_depth + (1.0 / min_depth - 1.0 / max_depth) * expected_disp)
    depth = depth_eval.depth_from_disparity(disparity, (1, 4), min_depth, max_depth)
    np.testing.assert_allclose(depth.numpy().ravel(), expected, rtol=1e-6)
    # Against a ground truth equal to that depth the disparity-first error is 0; resizing the
    # depth instead (the other convention) would not be.
    eval_config = cfg.EvalConfig(crop="none", median_scaling=False, max_depth=80.0)
    gt = tf.constant(expected, tf.float32, shape=[1, 1, 4, 1])
    outputs = depth_eval.disparity_eval_outputs(disparity, gt, eval_config, min_depth,
                                                max_depth)
    assert float(outputs["abs_rel"][0]) < 1e-6
    depth_first = tf.image.resize(1.0 / (1.0 / max_depth + (1.0 / min_depth - 1.0 / max_depth)
                                         * disparity), (1, 4))
    other = depth_eval.depth_eval_outputs(depth_first, gt, eval_config)
    assert float(other["abs_rel"][0]) > 0.1


class _FakePose:
    """Pose "net" whose 6 numbers identify the pair it saw: rotation about y by the mean of
    the first frame's channels, x translation by the mean of the second frame's."""

    def __init__(self):
        self.inputs = []

    def __call__(self, frames, training=False):
        self.inputs.append(frames)
        first = tf.reduce_mean(frames[..., :3], axis=[1, 2, 3])
        second = tf.reduce_mean(frames[..., 3:], axis=[1, 2, 3])
        zeros = tf.zeros_like(first)
        vec = tf.stack([zeros, first, zeros, second, zeros, zeros], axis=-1)
        return {common.OUT_POSE: vec[:, None, :]}


def test_disparity_evaluation_traces_with_unknown_sizes():
    """Native-resolution splits of several sizes evaluate through a relaxed-shape trace."""
    from tf_depthseg.evaluation import depth as depth_eval
    eval_config = cfg.EvalConfig(median_scaling=True, crop="none")
    spec = tf.TensorSpec([None, None, None, 1], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def evaluate(disparity, ground_truth):
        return depth_eval.disparity_eval_outputs(disparity, ground_truth, eval_config, 0.1, 100.0)

    disparity = tf.fill([1, 4, 6, 1], 0.5)
    ground_truth = tf.fill([1, 8, 12, 1], 5.0)
    outputs = evaluate(disparity, ground_truth)
    # A constant disparity, median-scaled onto a constant ground truth: no error at all.
    np.testing.assert_allclose(outputs["abs_rel"].numpy(), [0.0], atol=1e-6)
    assert float(outputs[depth_eval.EVAL_COUNTED][0]) == 1.0


def test_pairs_are_fed_in_temporal_order_and_t_minus_1_is_inverted():
    config = cfg.ExperimentConfig(task="sde")
    image = tf.fill([1, 4, 4, 3], 0.5)
    context = tf.stack([tf.fill([1, 4, 4, 3], 0.1), tf.fill([1, 4, 4, 3], 0.9)], axis=1)
    fake = _FakePose()
    result = sde_task.SDETask().target_to_source(config, {common.MODEL_POSE: fake}, image,
                                                 context, training=False)
    # (t-1, t): first frame t-1 (0.1), then t (0.5); (t, t+1): t (0.5) then t+1 (0.9).
    np.testing.assert_allclose([float(tf.reduce_mean(f[..., :3])) for f in fake.inputs],
                               [0.1, 0.5])
    np.testing.assert_allclose([float(tf.reduce_mean(f[..., 3:])) for f in fake.inputs],
                               [0.5, 0.9])
    m_earlier = transforms.pose_vec_to_matrix(tf.constant([[0.0, 0.1, 0.0, 0.5, 0.0, 0.0]]))
    m_later = transforms.pose_vec_to_matrix(tf.constant([[0.0, 0.5, 0.0, 0.9, 0.0, 0.0]]))
    np.testing.assert_allclose(result[:, 0].numpy(), np.linalg.inv(m_earlier.numpy()),
                               atol=1e-6)
    np.testing.assert_allclose(result[:, 1].numpy(), m_later.numpy(), atol=1e-6)


def test_feature_distance_frozen_encoder_and_groups(tiny_records, caplog):
    config = tiny_config(tiny_records, feature_distance_weight=0.01)
    task = make_task(config)
    with caplog.at_level(logging.WARNING):
        models = task.build(config)
    assert any("without ImageNet weights" in r.getMessage() for r in caplog.records)
    assert task.frozen_models(config) == (sde_task.MODEL_IMAGENET_ENCODER,)
    groups = task.param_groups(config, models)
    ids = [id(v) for vs in groups.values() for v in vs]
    frozen = {id(v) for v in models[sde_task.MODEL_IMAGENET_ENCODER].variables}
    assert len(ids) == len(set(ids)) and not frozen & set(ids)
    trainable = {id(v) for role in (common.MODEL_DEPTH, common.MODEL_POSE)
                 for v in models[role].trainable_variables}
    assert set(ids) == trainable and all(groups.values())
    batch = next(iter(task.make_train_dataset(config, "train", tf.distribute.InputContext())))
    rng = tf.random.Generator.from_seed(0)
    losses = task.compute_losses(config, models, {"train": batch}, training=False,
                                 global_batch_sizes={"train": 2}, rng=rng)
    image = tf.cast(batch[common.IMAGE], tf.float32)
    ours = models[common.MODEL_DEPTH](image, training=False)[common.OUT_ENCODER_FEATURES].numpy()
    reference = models[sde_task.MODEL_IMAGENET_ENCODER](image, training=False)["P5"].numpy()
    norms = np.sqrt(((ours - reference) ** 2).sum(axis=(1, 2, 3)))
    # The reference's batch norm ||F - G|| equals sqrt(B) x mean per-example norm for equal
    # norms; ours is that expression for any norms.
    np.testing.assert_allclose(float(losses[sde_task.LOSS_FEATURE_DISTANCE]),
                               0.01 * np.sqrt(2) * norms.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(losses[common.LOSS_TOTAL]), sum(
        float(losses[k]) for k in (common.LOSS_PHOTOMETRIC, common.LOSS_SMOOTHNESS,
                                   sde_task.LOSS_FEATURE_DISTANCE)), rtol=1e-5)


def test_export_serves_disparity_and_relative_depth(tiny_records, tmp_path):
    config = tiny_config(tiny_records)
    task = make_task(config)
    model = task.serving_model(config, task.build(config))
    result = exporter.export_model(model, str(tmp_path / "export"), image_size=(HEIGHT, WIDTH),
                                   tflite_export=False, config=config)
    metadata = result.metadata
    assert metadata["outputs"] == ["depth", "disparity"]
    assert metadata["metric_depth"] is False and "unknown scale" in metadata["depth_units"]
    assert metadata["depth_range"] == [0.1, 100.0]
    _, serve = saved_model.load_serving_function(result.export_dir)
    images = exporter.verification_images((48, 80))  # another size: resized inside
    served = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
    assert served["disparity"].shape == served["depth"].shape == (2, 48, 80, 1)
    assert 0.0 <= served["disparity"].min() and served["disparity"].max() <= 1.0
    # Depth at the caller's size is the inverted resized disparity (Monodepth2's convention).
    expected = 1.0 / (0.01 + (10.0 - 0.01) * served["disparity"].astype(np.float64))
    np.testing.assert_allclose(served["depth"], expected, rtol=1e-5)


@pytest.mark.slow
def test_tools_train_trains_and_resumes_the_synthetic_sde_config(tiny_records, tmp_path):
    args = ["--config=hoyer/synthetic_kitti_sde", "--smoke", f"--workdir={tmp_path / 'run'}",
            f"--set=data.train_pattern={tiny_records['train']}",
            f"--set=data.eval_pattern={tiny_records['val']}",
            f"--set=data.image_size=[{HEIGHT},{WIDTH}]", "--set=train.checkpoint_every=1",
            "--set=train.eval_every=2", "--set=train.log_every=1"]
    first = check(run_tool("tools.train", args + ["--set=train.steps=2"], tmp_path))
    assert "starting from scratch" in first
    second = check(run_tool("tools.train", args + ["--set=train.steps=3"], tmp_path))
    assert "resuming from step 2" in second
    result = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert (result["start_step"], result["final_step"]) == (2, 3)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2, 3]
    assert all(np.isfinite(row["photometric"]) for row in history["train"])
    evaluated = history["eval"][0]
    assert evaluated["step"] == 2 and 0.0 < evaluated["abs_rel"] < 5.0


def saturated_fraction(disparity: np.ndarray) -> float:
    """Fraction of pixels whose sigmoid disparity is pinned at 0 or 1 (float32: exactly, no
    gradient left)."""
    return float(np.mean((disparity >= 1.0 - 1e-6) | (disparity <= 1e-6)))


@pytest.mark.slow
def test_disparity_stays_alive_at_the_synthetic_configs_learning_rate(
        tiny_records, tmp_path, learning_seed, record_measure):
    """At Adam 1e-3 (this config's rate before docs/sde.md's finding) the disparity sigmoid
    of every pixel reached exactly 1.0 (depth 0.1 m) within ~10 steps and never came back
    (zero gradient), while the pose net's translation ran away to metres; at Monodepth2's 1e-4,
    which the synthetic configs now use, the disparity keeps its spread. 15 steps of the
    synthetic config's optimiser on the tiny drives, batch 2: at batch 4 (before) and 1e-3,
    seed 0 with oneDNN on no longer saturated (spread 0.020), so the test passed at the rate
    it guards against; at batch 2 it saturates (1.0 of the pixels) with oneDNN on and off.

    Measured at 1e-4 (seeds 0-4 x oneDNN on/off): nothing saturated, spread 0.0175-0.0512,
    so the spread bound is 5e-4 (log margin 3.3; docs/testing.md): "not collapsed to a
    constant". At 1e-3 8 of those 10 runs fail (all pixels saturated, or spread 0.0003); two
    keep a spread of 0.020 within 15 steps."""
    synthetic = cfg.load_config("hoyer/synthetic_kitti_sde")
    config = cfg.apply_overrides(
        tiny_config(tiny_records, steps=15),
        [f"optim.learning_rate={synthetic.optim.learning_rate}", f"train.seed={learning_seed}"])
    trainer = loop.Trainer(config, make_task(config), str(tmp_path))
    trainer.train()
    batch = next(iter(make_task(config).make_train_dataset(config, "train", None)))
    disparity = trainer.models[common.MODEL_DEPTH](
        tf.cast(batch[common.IMAGE], tf.float32), training=False)[common.disparity_key(0)]
    disparity = disparity.numpy()
    record_measure("saturated fraction", saturated_fraction(disparity), below=0.05)
    record_measure("disparity spread (p95 - p5)",
                   float(np.percentile(disparity, 95) - np.percentile(disparity, 5)), above=5e-4)
    assert saturated_fraction(disparity) < 0.05
    assert np.percentile(disparity, 95) - np.percentile(disparity, 5) > 5e-4
