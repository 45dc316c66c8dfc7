"""Multi-task task (Hoyer et al. DM): the loss against an independent computation, the PAD-Net
exchange wired as the reference, transfer of encoder / both decoders / pose from an SDE run,
config errors, and tools/train -> resume -> tools/export on the synthetic CamVid config.

Records: tiny synthetic drives (test_tasks_suw: 64x64 frames with t-1/t+1, K and Cityscapes
train ids) for the one-stream mode and as video, and the stripe images of test_tasks_seg
(CamVid classes, no neighbours) as the labelled stream of the two-stream CamVid config.
Networks are the real ones on an undilated ResNet-18.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from test_export_saved_model import save_like_engine
from test_tasks_seg import write_records as write_stripe_records
from test_tasks_suw import write_tiny_records
from test_tools_train_evaluate import check, run_tool
from tf_depthseg import common, errors
from tf_depthseg import config as cfg
from tf_depthseg.losses import view_synthesis
from tf_depthseg.models import hoyer
from tf_depthseg.training.tasks import TASKS, make_task
from tf_depthseg.training.tasks import multitask as mt_task
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks.multitask_config import MultitaskConfig
from tf_depthseg.training.tasks.sde_config import SDEConfig
from tf_depthseg.training.tasks.seg_config import SegConfig

SIZE = 64
NUM_CLASSES = 19  # the drives' labels are Cityscapes train ids


@pytest.fixture(scope="module")
def drive_records(tmp_path_factory):
    return write_tiny_records(str(tmp_path_factory.mktemp("drives")), train_seeds=(1,),
                              eval_seeds=(3,), frames=5, height=SIZE, width=SIZE)


def tiny_config(patterns, steps=2, multitask=None, **sections):
    """One-stream multi-task config on the drive records (their own neighbours)."""
    arch = {"backbone": "resnet18", "dilate_last_stage": False}
    return cfg.ExperimentConfig(
        name="tiny_multitask", task="multitask",
        data=cfg.DataConfig(train_pattern=patterns["train"], eval_pattern=patterns["val"],
                            keys=("image", "semantic"), num_context=2,
                            image_size=(SIZE, SIZE), batch_size=2, eval_batch_size=2,
                            shuffle_buffer=8, color_jitter=0.0, flip_prob=0.0),
        optim=cfg.OptimConfig(optimizer="sgd", learning_rate=1e-2, momentum=0.9,
                              lr_multipliers=(("encoder", 0.1), ("pose", 1e-4)),
                              clip_norm=10.0),
        model=cfg.ModelConfig(bn_momentum=0.9),
        train=cfg.TrainConfig(steps=steps, log_every=1, checkpoint_every=0, eval_every=0,
                              image_summaries_every=0, best_metric=""),
        task_sections={"seg": SegConfig(dataset="cityscapes", **arch, **sections.get("seg", {})),
                       "sde": SDEConfig(**arch, **sections.get("sde", {})),
                       "multitask": MultitaskConfig(**(multitask or {}))})


def first_batch(task, config, stream):
    dataset = task.make_train_dataset(config, stream, None)
    return {k: v for k, v in next(iter(dataset)).items()}


# ---------------------------------------------------------------------------------------------
# Independent references.
# ---------------------------------------------------------------------------------------------
def upsample_aligned_numpy(x, size):
    """Bilinear resize with aligned corners (PyTorch align_corners=True), `[B, h, w, C]`."""
    _, h, w, _ = x.shape
    out_h, out_w = size

    def grid(n_in, n_out):
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        low = np.minimum(np.floor(pos).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low

    y0, y1, fy = grid(h, out_h)
    x0, x1, fx = grid(w, out_w)
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def cross_entropy_numpy(logits, labels):
    """Mean over images of each image's mean CE over labelled pixels (ignore 255)."""
    logits = logits.astype(np.float64)
    labels = labels.reshape(labels.shape[:3])
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    values = []
    for image in range(labels.shape[0]):
        valid = labels[image] != 255
        picked = np.take_along_axis(log_probs[image], np.where(valid, labels[image], 0)[..., None],
                                    axis=-1)[..., 0]
        values.append(-picked[valid].mean())
    return float(np.mean(values))


def test_loss_is_mean_of_both_cross_entropies_plus_the_sde_terms(drive_records):
    """(CE(final) + CE(side)) / 2 against numpy (the side logits upsampled with aligned corners,
    as the reference's cross_entropy2d), the SDE terms from the library loss with the same
    disparities, poses and noise seed; the weights scale each part. Then the two-stream mode:
    the SDE part comes from the video batch only."""
    config = tiny_config(drive_records, multitask={"seg_weight": 0.7, "sde_weight": 1.3})
    task = make_task(config)
    models = task.build(config)
    batch = first_batch(task, config, mt_task.LABELED_STREAM)
    assert batch[common.CONTEXT].shape[1] == 2 and np.any(batch[common.SEMANTIC] != 255)

    def losses_of(config, batches, sizes, seed=7):
        return task.compute_losses(config, models, batches, training=False,
                                   global_batch_sizes=sizes,
                                   rng=tf.random.Generator.from_seed(seed))

    def sde_reference(batch, seed=7):
        image = tf.cast(batch[common.IMAGE], tf.float32)
        outputs = models[mt_task.MODEL_MULTITASK](image, training=False)
        poses = sde_task.SDETask().target_to_source(config, models, image,
                                                    batch[common.CONTEXT], training=False)
        return view_synthesis.multiscale_view_synthesis_loss(
            image, batch[common.CONTEXT], [outputs[common.disparity_key(s)] for s in range(4)],
            batch[common.INTRINSICS], poses, min_depth=0.1, max_depth=100.0,
            noise_seed=tf.random.Generator.from_seed(seed).make_seeds(1)[:, 0],
            global_batch_size=2)

    losses = losses_of(config, {mt_task.LABELED_STREAM: batch}, {mt_task.LABELED_STREAM: 2})
    outputs = models[mt_task.MODEL_MULTITASK](batch[common.IMAGE], training=False)
    labels = batch[common.SEMANTIC].numpy()
    side = outputs[common.OUT_SEMANTIC_SIDE_LOGITS].numpy()
    assert side.shape[1:3] == (SIZE // 4, SIZE // 4)
    final_ce = cross_entropy_numpy(outputs[common.OUT_SEMANTIC_LOGITS].numpy(), labels)
    side_ce = cross_entropy_numpy(upsample_aligned_numpy(side, (SIZE, SIZE)), labels)
    sde = {k: float(v) for k, v in sde_reference(batch).items() if k != "automask"}
    np.testing.assert_allclose(float(losses["cross_entropy"]), final_ce, rtol=1e-4)
    np.testing.assert_allclose(float(losses["side_cross_entropy"]), side_ce, rtol=1e-4)
    np.testing.assert_allclose(float(losses["segmentation"]), 0.7 * (final_ce + side_ce) / 2,
                               rtol=1e-4)
    np.testing.assert_allclose(float(losses["photometric"]), 1.3 * sde["photometric"], rtol=1e-5)
    np.testing.assert_allclose(float(losses["smoothness"]), 1.3 * sde["smoothness"], rtol=1e-5)
    np.testing.assert_allclose(float(losses["total"]),
                               0.7 * (final_ce + side_ce) / 2 + 1.3 * sde["total"], rtol=1e-4)

    # Two streams: segmentation from "labeled", the SDE terms from "video" only.
    video = dict(batch, **{k: batch[k] * 0.8 for k in (common.IMAGE, common.CONTEXT)})
    two = cfg.apply_overrides(config, [f"multitask.video_pattern={drive_records['train']}"])
    assert task.train_streams(two) == {"labeled": 2, "video": 2}
    losses = losses_of(two, {"labeled": batch, "video": video}, {"labeled": 2, "video": 2})
    video_sde = float(sde_reference(video)["total"])
    assert abs(video_sde - sde["total"]) > 1e-6  # another batch, another value
    np.testing.assert_allclose(float(losses["total"]),
                               0.7 * (final_ce + side_ce) / 2 + 1.3 * video_sde, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# The PAD-Net exchange.
# ---------------------------------------------------------------------------------------------
def producer(tensor) -> str:
    return tensor._keras_history.operation.name  # pylint: disable=protected-access


def test_pad_exchange_is_wired_as_the_reference():
    """Reference PAD.forward: both decoders run blocks 4..2; side head on the segmentation
    features before the exchange; merged_for_seg = seg + conv(depth) * sigmoid(att(depth)) and
    vice versa; blocks 1..0 continue from the merged features; disparity heads 3, 2 read the
    depth features before the exchange, 1, 0 after; the final head reads the last seg block."""
    net = hoyer.build_multitask_net(5, "resnet18", dilate_last=False)
    layer = net.get_layer
    seg_cut, depth_cut = "seg_dec_b2_conv1_elu", "depth_dec_b2_conv1_elu"
    assert [producer(t) for t in layer("pad_merge_seg").input] == [seg_cut,
                                                                  "pad_depth_to_seg_gated"]
    assert [producer(t) for t in layer("pad_merge_depth").input] == [depth_cut,
                                                                    "pad_seg_to_depth_gated"]
    for part in ("conv", "attention"):
        assert producer(layer(f"pad_depth_to_seg_{part}").input) == depth_cut
        assert producer(layer(f"pad_seg_to_depth_{part}").input) == seg_cut
    assert producer(layer("seg_dec_b1_conv0_pad").input) == "pad_merge_seg"
    assert producer(layer("depth_dec_b1_conv0_pad").input) == "pad_merge_depth"
    assert producer(layer("pad_side_logits").input) == seg_cut
    assert producer(layer("seg_head_logits").input) == "seg_dec_b0_conv1_elu"
    for scale in range(4):
        assert producer(layer(f"depth_dec_disp{scale}_pad").input) == (
            f"depth_dec_b{scale}_conv1_elu")
    # Numbers: attention kernels away from their zero init, then recompute the messages.
    rng = np.random.default_rng(0)
    for name in ("pad_depth_to_seg_attention", "pad_seg_to_depth_attention"):
        kernel = layer(name).kernel
        kernel.assign(rng.normal(0, 0.05, kernel.shape).astype(np.float32))
    probe = tf.keras.Model(net.input, [layer(seg_cut).output, layer(depth_cut).output,
                                       layer("pad_merge_seg").output,
                                       layer("pad_merge_depth").output,
                                       net.output[common.OUT_SEMANTIC_SIDE_LOGITS]])
    image = rng.uniform(0, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    seg, depth, merged_seg, merged_depth, side = [t.numpy() for t in probe(image)]

    def message(x, name):
        conv = tf.nn.conv2d(x, layer(f"{name}_conv").kernel, 1, "SAME")
        gate = tf.sigmoid(tf.nn.conv2d(x, layer(f"{name}_attention").kernel, 1, "SAME"))
        return (conv * gate).numpy()

    np.testing.assert_allclose(merged_seg, seg + message(depth, "pad_depth_to_seg"), atol=1e-5)
    np.testing.assert_allclose(merged_depth, depth + message(seg, "pad_seg_to_depth"), atol=1e-5)
    kernel, bias = [w.numpy() for w in layer("pad_side_logits").weights]
    np.testing.assert_allclose(side, np.einsum("bhwc,ck->bhwk", seg, kernel[0, 0]) + bias,
                               atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Transfer from an SDE run.
# ---------------------------------------------------------------------------------------------
def write_sde_run(workdir, size=SIZE):
    """An SDE run folder (config.json + checkpoints/) of an undilated ResNet-18 SDE with every
    depth and pose weight moved away from its initialisation; returns {role: {path: value}}."""
    config = cfg.ExperimentConfig(name="tiny_sde", task="sde", data=cfg.DataConfig(
        image_size=(size, size)), task_sections={"sde": SDEConfig(
            backbone="resnet18", dilate_last_stage=False)})
    models = make_task(config).build(config)
    rng = np.random.default_rng(5)
    values = {}
    for role in (common.MODEL_DEPTH, common.MODEL_POSE):
        for variable in models[role].weights:
            variable.assign(variable.numpy() + rng.normal(0, 0.05, variable.shape).astype(
                variable.dtype))
        values[role] = {v.path: v.numpy() for v in models[role].weights}
    os.makedirs(workdir, exist_ok=True)
    cfg.save_json(config, str(workdir))
    save_like_engine(models, os.path.join(workdir, "checkpoints"), step=5)
    return values


def test_transfer_starts_encoder_both_decoders_and_pose_from_the_sde(drive_records, tmp_path,
                                                                     caplog):
    donor = write_sde_run(tmp_path / "sde")
    config = tiny_config(drive_records, seg={"init_from": str(tmp_path / "sde")})
    task = make_task(config)
    models = task.build(config)
    net, pose_net = models[mt_task.MODEL_MULTITASK], models[common.MODEL_POSE]
    before = {v.path: v.numpy() for v in net.weights}
    with caplog.at_level(logging.INFO, logger="absl"):  # absl verbosity may be WARNING
        task.initialize_models(config, models)
    new = [v for layer in net.layers if layer.name.startswith(mt_task.NEW_PREFIXES)
           for v in layer.weights]
    assert {v.path.split("/")[0] for v in new} == {
        "seg_head_logits", "pad_side_logits", "pad_depth_to_seg_conv",
        "pad_depth_to_seg_attention", "pad_seg_to_depth_conv", "pad_seg_to_depth_attention"}
    new_paths = {v.path for v in new}
    copied = [v for v in net.weights if v.path not in new_paths]
    seg_from_depth = 0
    for variable in copied:
        source = variable.path.replace("seg_dec_", "depth_dec_", 1)
        seg_from_depth += source != variable.path
        np.testing.assert_array_equal(variable.numpy(), donor[common.MODEL_DEPTH][source],
                                      err_msg=variable.path)
    assert seg_from_depth > 20  # the segmentation decoder starts from the SDE's depth decoder
    for variable in new:
        np.testing.assert_array_equal(variable.numpy(), before[variable.path])
    assert len(pose_net.weights) == len(donor[common.MODEL_POSE])
    for variable in pose_net.weights:
        np.testing.assert_array_equal(variable.numpy(), donor[common.MODEL_POSE][variable.path])
    assert f"restored {len(copied)} variables" in caplog.text
    assert f"pose net: restored {len(pose_net.weights)} variables" in caplog.text
    # Another pose input: one error line naming both settings.
    other = tiny_config(drive_records, seg={"init_from": str(tmp_path / "sde")},
                        sde={"pose_input": "all"})
    with pytest.raises(errors.ConfigError, match=r"pose net is resnet18 on 'pairs', this run's "
                       r"resnet18 on 'all'.*sde.pose_input=pairs"):
        mt_task.transfer_from_sde(other, make_task(other).build(other))


# ---------------------------------------------------------------------------------------------
# Registry, groups and config errors.
# ---------------------------------------------------------------------------------------------
def test_is_registered_groups_follow_the_reference_and_bad_configs_name_the_key(drive_records):
    assert TASKS["multitask"] is mt_task.MultitaskTask
    config = tiny_config(drive_records)
    task = make_task(config)
    models = task.build(config)
    groups = task.param_groups(config, models)
    names = {group: {v.path.split("/")[0] for v in variables}
             for group, variables in groups.items()}
    assert "pad_seg_to_depth_conv" in names["depth_decoder"]
    assert "depth_dec_disp0_conv" in names["depth_decoder"]
    assert {"pad_depth_to_seg_conv", "pad_side_logits", "seg_head_logits"} <= names["decoder"]
    assert not any(n.startswith("depth_dec_") for n in names["decoder"])
    assert all(n.startswith("encoder_") for n in names["encoder"])
    every = [v for variables in groups.values() for v in variables]
    assert len(every) == len({id(v) for v in every}) == len(
        models[mt_task.MODEL_MULTITASK].trainable_variables) + len(
            models[common.MODEL_POSE].trainable_variables)
    serving = task.serving_model(config, models)
    assert {"semantic_logits", "disparity_s0", "depth"} <= set(serving.output)
    batch = first_batch(task, config, mt_task.LABELED_STREAM)
    pictures = task.image_summaries(config, models, batch)
    assert set(pictures) == {"input", "prediction", "disparity", "ground_truth"}
    assert all(p.dtype == tf.uint8 and tuple(p.shape) == (2, SIZE, SIZE, 3)
               for p in pictures.values())

    cases = [
        (["data.num_context=0"], r"data.num_context=0; set data.num_context=2"),
        (["sde.backbone=resnet34"], r"seg.backbone='resnet18', but sde.backbone='resnet34'"),
        (["sde.feature_distance_weight=0.01"], r"sde.feature_distance_weight=0.01"),
        (["sde.num_scales=3"], r"sde.num_scales=3"),
        (["seg.head_inter=true"], r"seg.head_inter=true"),
    ]
    for overrides, message in cases:
        with pytest.raises(errors.ConfigError, match=message):
            mt_task.check_config(cfg.apply_overrides(config, overrides))
    with pytest.raises(errors.ConfigError, match=r"multitask.sde_weight"):
        cfg.apply_overrides(config, ["multitask.sde_weight=0"])
    with pytest.raises(errors.ConfigError, match=r"multitask.distillation_block"):
        cfg.apply_overrides(config, ["multitask.distillation_block=0"])
    # With a video stream the labelled records need no neighbours.
    mt_task.check_config(cfg.apply_overrides(config, [
        "data.num_context=0", f"multitask.video_pattern={drive_records['train']}"]))


# ---------------------------------------------------------------------------------------------
# The tools on the synthetic CamVid config.
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tools_train_resume_and_export_the_synthetic_camvid_config(drive_records, tmp_path):
    """Two streams (stripe images with CamVid labels + drive video), started from an SDE run
    (log line on the fresh run only), in-run evaluation, resume, and one SavedModel serving
    class ids, probabilities, disparity and depth.

    The resume restores the finished run in a new process (every model, the optimizer, both
    streams' iterators; no transfer again) without training on: each process traces the
    multi-task step anew (~35 CPU s). A resumed run that trains on is checked by
    test_tasks_sde.py's tool test (tools/train in a new process), bitwise by the semisup and
    toy-task resume tests, with two streams in test_training_engine.py."""
    stripes = write_stripe_records(str(tmp_path / "stripes"))
    write_sde_run(tmp_path / "sde")
    run = tmp_path / "run"
    args = ["--config=hoyer/synthetic_camvid_multitask", "--smoke", f"--workdir={run}",
            f"--set=seg.init_from={tmp_path / 'sde'}",
            f"--set=data.train_pattern={stripes['train']}",
            f"--set=data.eval_pattern={stripes['val']}",
            "--set=data.image_size=[64,72]", "--set=data.crop_size=[64,64]",
            f"--set=multitask.video_pattern={drive_records['train']}",
            f"--set=multitask.video_image_size=[{SIZE},{SIZE}]",
            "--set=train.checkpoint_every=1", "--set=train.eval_every=2",
            "--set=train.log_every=1"]
    first = run_tool("tools.train", args + ["--set=train.steps=2"], tmp_path)
    assert "starting from scratch" in check(first)
    assert "multi-task net: restored" in first.stderr and "pose net: restored" in first.stderr
    history = json.loads((run / "history.json").read_text())
    second = run_tool("tools.train", args + ["--set=train.steps=2"], tmp_path)
    assert "resuming from step 2" in check(second) and "restored" not in second.stderr.replace(
        "restored from", "")
    result = json.loads((run / "train_result.json").read_text())
    assert (result["start_step"], result["final_step"]) == (2, 2)
    assert json.loads((run / "history.json").read_text()) == history  # kept as it was
    assert [row["step"] for row in history["train"]] == [1, 2]
    for row in history["train"]:
        assert all(np.isfinite(row[k]) for k in ("cross_entropy", "side_cross_entropy",
                                                 "photometric", "smoothness", "total"))
    evaluated = history["eval"][0]
    assert evaluated["step"] == 2 and 0.0 <= evaluated["miou"] <= 1.0
    assert "iou/Bicyclist" in evaluated
    export = tmp_path / "export"
    check(run_tool("tools.export", [f"--workdir={run}", f"--output_dir={export}",
                                    "--checkpoint=latest", "--notflite"], tmp_path))
    served = tf.saved_model.load(str(export)).signatures["serving_default"](
        images=tf.zeros([1, 48, 80, 3], tf.uint8))
    assert set(served) == {"semantic_class_ids", "semantic_probabilities", "disparity",
                           "depth"}
    assert tuple(served["semantic_class_ids"].shape) == (1, 48, 80)
    assert served["semantic_probabilities"].shape[-1] == 11
    assert served["disparity"].shape == served["depth"].shape == (1, 48, 80, 1)
