"""Semi-supervised segmentation task (task=semisup): config checks, the unlabelled stream, the
loss of each mix mode against an independent computation, the EMA teacher inside the step and
its bit-exact resume, tools/predict_pseudo_depth, and tools/train -> evaluate -> export on the
synthetic DepthMix config.

Records are the segmentation tests' stripe images (64x72, `test_tasks_seg.stripe_sample`) with
a pseudo disparity (a vertical ramp of random slope); networks are the real ones on an
undilated ResNet-18.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_export_saved_model import save_like_engine
from test_tasks_seg import HEIGHT, NUM_CLASSES, WIDTH, stripe_sample
from test_tools_train_evaluate import check, run_tool
from tf_depthseg import common, errors
from tf_depthseg import config as cfg
from tf_depthseg.data import records, schema
from tf_depthseg.semisup import depthmix
from tf_depthseg.training import loop, summaries
from tf_depthseg.training.tasks import TASKS, make_task
from tf_depthseg.training.tasks import semisup as semisup_task
from tf_depthseg.training.tasks import semisup_depth
from tf_depthseg.training.tasks.sde_config import SDEConfig
from tf_depthseg.training.tasks.seg_config import SegConfig
from tf_depthseg.training.tasks.semisup_config import SemisupConfig

NUM_TRAIN = 8


def ramp_sample(source_id, rng, with_depth=True):
    sample = stripe_sample(source_id, rng)
    if with_depth:
        ramp = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None] * rng.uniform(0.2, 1.0)
        sample.pseudo_disparity = np.repeat(ramp, WIDTH, axis=1)
    return sample


def write_split_records(root, with_depth=True, seed=0):
    rng = np.random.default_rng(seed)
    patterns = {}
    for split, count in (("train", NUM_TRAIN), ("val", 2)):
        samples = [ramp_sample(f"{split}/{i:03d}", rng, with_depth) for i in range(count)]
        records.write_split(root, split, (schema.encode_example(s) for s in samples),
                            num_shards=2)
        patterns[split] = records.split_pattern(root, split)
    return patterns


@pytest.fixture(scope="module")
def depth_records(tmp_path_factory):
    return write_split_records(str(tmp_path_factory.mktemp("semisup_records")))


@pytest.fixture(scope="module")
def plain_records(tmp_path_factory):
    return write_split_records(str(tmp_path_factory.mktemp("plain_records")), with_depth=False)


@pytest.fixture(scope="module")
def sde_run(tmp_path_factory):
    """An SDE run folder (config.json + checkpoints/) with Keras' initial weights, whose
    disparity varies over the image (perturbed weights saturate the sigmoid)."""
    workdir = str(tmp_path_factory.mktemp("sde_run"))
    config = cfg.ExperimentConfig(name="tiny_sde", task="sde", data=cfg.DataConfig(
        image_size=(HEIGHT, WIDTH)), task_sections={"sde": SDEConfig(
            backbone="resnet18", dilate_last_stage=False)})
    models = make_task(config).build(config)
    cfg.save_json(config, workdir)
    save_like_engine(models, os.path.join(workdir, "checkpoints"), step=3)
    return workdir


def semisup_config(patterns, steps=2, labeled_count=4, **semisup):
    return cfg.ExperimentConfig(
        name="tiny_semisup", task="semisup",
        data=cfg.DataConfig(train_pattern=patterns["train"], eval_pattern=patterns["val"],
                            keys=("image", "semantic"), num_context=0,
                            image_size=(HEIGHT, WIDTH), crop_size=(64, 64), batch_size=2,
                            eval_batch_size=2, shuffle_buffer=16, color_jitter=0.0),
        optim=cfg.OptimConfig(optimizer="sgd", learning_rate=1e-2, momentum=0.9,
                              weight_decay=5e-4, lr_multipliers=(("encoder", 0.1),),
                              clip_norm=10.0),
        model=cfg.ModelConfig(bn_momentum=0.9),
        train=cfg.TrainConfig(steps=steps, log_every=1, checkpoint_every=0, eval_every=0,
                              image_summaries_every=0, best_metric=""),
        task_sections={"seg": SegConfig(dataset="camvid", backbone="resnet18",
                                        dilate_last_stage=False, labeled_count=labeled_count),
                       "semisup": SemisupConfig(**{"depth_source": "records", **semisup})})


# ---------------------------------------------------------------------------------------------
# Config and streams.
# ---------------------------------------------------------------------------------------------
def test_is_registered_and_rejects_bad_configs(depth_records):
    assert TASKS["semisup"] is semisup_task.SemisupTask
    check_config = semisup_task.check_config
    check_config(semisup_config(depth_records))
    with pytest.raises(errors.ConfigError, match=r"semisup.sde_from=.*predict_pseudo_depth"):
        check_config(semisup_config(depth_records, depth_source="network"))
    with pytest.raises(errors.ConfigError, match=r"every record .* is labelled.*seg.labeled_count"):
        check_config(semisup_config(depth_records, labeled_count=0, mix_use_gt=False))
    with pytest.raises(errors.ConfigError, match=r"unlabeled_batch_size=1.*at least 2"):
        check_config(semisup_config(depth_records, unlabeled_batch_size=1))
    # Two replicas of a global batch of 2: one image each, nothing to mix with.
    with pytest.raises(errors.ConfigError, match=r"leaves 1 unlabelled image per replica"):
        make_task(semisup_config(depth_records)).compute_losses(
            semisup_config(depth_records), {}, {"unlabeled": {common.IMAGE: tf.zeros(
                [1, 64, 64, 3])}}, training=True, global_batch_sizes={}, rng=None)
    with pytest.raises(errors.ConfigError, match=r"semisup.mix='cutmix' is not one of"):
        cfg.apply_overrides(semisup_config(depth_records), ["semisup.mix=cutmix"])
    with pytest.raises(errors.ConfigError, match=r"semisup.margin"):
        cfg.apply_overrides(semisup_config(depth_records), ["semisup.margin=0.1"])


def test_a_moved_sde_run_stops_training_but_not_evaluation(depth_records, tmp_path):
    config = semisup_config(depth_records, depth_source="network",
                            sde_from=str(tmp_path / "moved"))
    with pytest.raises(errors.ConfigError, match=r"semisup.sde_from=.*moved: no such folder"):
        semisup_task.check_config(config)
    # What export and evaluation build (they restore the student only).
    assert sorted(make_task(config).build(config)) == ["segmentation", "teacher"]


def test_records_without_pseudo_depth_name_the_tool(plain_records):
    config = semisup_config(plain_records)
    with pytest.raises(errors.BadInputError, match=r"train-0000.-of-00002.tfrecord: record "
                       r"train/... has no depth/pseudo/encoded.*predict_pseudo_depth"):
        make_task(config).make_train_dataset(config, semisup_task.UNLABELED_STREAM, None)


def test_unlabelled_stream_marks_or_leaves_out_the_labelled_records(depth_records):
    config = semisup_config(depth_records, labeled_count=3)
    task = make_task(config)
    labelled = set(semisup_task.seg_task.labelled_source_ids(config))
    assert list(task.train_streams(config)) == ["unlabeled", "train"]
    seen = {}
    for batch in task.make_train_dataset(config, "unlabeled", None).take(12):
        assert batch[common.PSEUDO_DISPARITY].shape == (2, 64, 64, 1)
        for source_id, flag in zip(batch[common.SOURCE_ID].numpy(),
                                   batch[semisup_task.IS_LABELED].numpy()):
            seen[source_id.decode()] = bool(flag)
    assert len(seen) == NUM_TRAIN  # every record, the labelled ones marked
    assert {i for i, flag in seen.items() if flag} == labelled
    config = semisup_config(depth_records, labeled_count=3, mix_use_gt=False, mix="classmix")
    ids = {i.decode() for batch in task.make_train_dataset(config, "unlabeled", None).take(12)
           for i in batch[common.SOURCE_ID].numpy()}
    assert ids == {f"train/{i:03d}" for i in range(NUM_TRAIN)} - labelled
    assert task.num_train_examples(config) == NUM_TRAIN - 3


# ---------------------------------------------------------------------------------------------
# The loss of each mix mode.
# ---------------------------------------------------------------------------------------------
def _expected_unlabelled_loss(config, models, batch, mixed, images):
    """The pseudo-label loss recomputed in numpy from the networks' outputs."""
    probs = tf.nn.softmax(models["teacher"](batch[common.IMAGE], training=True)[
        common.OUT_SEMANTIC_LOGITS]).numpy()
    if config.semisup.mix_use_gt:
        is_labelled = batch[semisup_task.IS_LABELED].numpy()
        one_hot = np.eye(NUM_CLASSES + 1, dtype=np.float32)[
            np.minimum(batch[common.SEMANTIC].numpy()[..., 0], NUM_CLASSES)][..., :NUM_CLASSES]
        probs = np.where(is_labelled[:, None, None, None], one_hot, probs)
    mask = mixed["mask"].numpy()
    partner = (np.arange(len(probs)) + 1) % len(probs)
    targets = np.where(mask, probs, probs[partner])
    np.testing.assert_allclose(mixed["target"].numpy(), targets, atol=1e-6)
    max_prob = targets.max(-1)
    labels = np.where(max_prob > 0, targets.argmax(-1), -1)
    weight = np.mean(max_prob >= config.semisup.confidence_threshold)
    logits = models["segmentation"](images, training=True)[common.OUT_SEMANTIC_LOGITS]
    log_p = tf.nn.log_softmax(logits).numpy().astype(np.float64)
    picked = np.take_along_axis(log_p, np.maximum(labels, 0)[..., None], -1)[..., 0]
    per_pixel = np.where(labels >= 0, -picked, 0.0)
    return weight * per_pixel.mean(axis=(1, 2)).sum() / 2, weight


@pytest.mark.slow
def test_step_runs_with_each_mix_mode_and_both_depth_sources(depth_records, sde_run):
    """Eager compute_losses of the four variants on one unlabelled batch: the pseudo-label
    term equals a numpy recomputation (strong augmentation off, so the student's input is the
    mixed image); the DepthMix mask is the one of the records' or the SDE's disparity."""
    base = semisup_config(depth_records, labeled_count=4, color_jitter=False, blur=False,
                          sde_from=sde_run)
    network = cfg.apply_overrides(base, ["semisup.depth_source=network"])
    task = make_task(network)
    models = task.build(network)
    task.initialize_models(network, models)
    # The ASPP's dropout draws new masks at every call in training mode (the teacher's too,
    # as the reference's ema_model.train()); off here so that the calls can be repeated.
    for role in ("segmentation", "teacher"):
        for layer in models[role].layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    for teacher, student in zip(models["teacher"].weights, models["segmentation"].weights):
        np.testing.assert_array_equal(teacher.numpy(), student.numpy())
    unlabelled = next(iter(task.make_train_dataset(base, "unlabeled", None)))
    labelled = next(iter(task.make_train_dataset(base, "train", None)))
    rng = tf.random.Generator.from_seed(1)
    sde_disparity = depthmix.normalize_disparity(models["sde_depth"](
        unlabelled[common.IMAGE])[common.disparity_key(0)]).numpy()
    assert sde_disparity.std() > 0
    variants = {"none": base, "classmix": cfg.apply_overrides(base, ["semisup.mix=classmix"]),
                "depthmix records": base, "depthmix network": network}
    variants["none"] = cfg.apply_overrides(base, ["semisup.mix=none"])
    for name, config in variants.items():
        seed_state = rng.state.numpy()
        losses = task.compute_losses(config, models, {"unlabeled": unlabelled,
                                                      "train": labelled}, training=True,
                                     global_batch_sizes={"unlabeled": 2, "train": 2}, rng=rng)
        # The same draws again, to see the mix the step made.
        rng.state.assign(seed_state)
        mix_seed, _ = tf.unstack(semisup_task.rng_lib.split_seed(
            tf.cast(rng.make_seeds(1)[:, 0], tf.int32), 2))
        targets = task.targets(config, models, unlabelled)
        mixed = task.mix(config, models, unlabelled, targets, mix_seed)
        images = mixed["image"].numpy()
        partner = [1, 0]
        np.testing.assert_array_equal(
            images, np.where(mixed["mask"].numpy(), unlabelled[common.IMAGE].numpy(),
                             unlabelled[common.IMAGE].numpy()[partner]))
        if name.startswith("depthmix"):
            disparity = (unlabelled[common.PSEUDO_DISPARITY].numpy() if "records" in name
                         else sde_disparity)
            np.testing.assert_array_equal(mixed["mask"].numpy(),
                                          disparity >= disparity[partner] - 0.03)
        elif name == "none":
            assert mixed["mask"].numpy().all()
        else:
            assert 0 < mixed["mask"].numpy().mean() < 1
        expected, weight = _expected_unlabelled_loss(config, models, unlabelled, mixed, images)
        assert np.isclose(float(losses[semisup_task.LOSS_UNLABELED]), expected, rtol=1e-4,
                          atol=1e-6), name
        assert np.isclose(float(losses[semisup_task.CONFIDENT_FRACTION]), weight), name
        assert np.isclose(float(losses["total"]), float(losses["cross_entropy"])
                          + float(losses[semisup_task.LOSS_UNLABELED]), rtol=1e-6), name
    pictures = task.image_summaries(network, models, unlabelled)
    assert pictures["depthmix"].dtype == tf.uint8 and pictures["depthmix"].shape[0] == 1
    assert pictures["teacher_prediction"].shape == (2, 64, 64, 3)

    # after_apply at step 2 (alpha 2/3): the trainable weights always; the batch-norm moving
    # statistics only for a teacher run in inference mode (semisup.teacher_batch_stats=false).
    trainable = {id(v) for v in models["teacher"].trainable_variables}
    for batch_stats in (True, False):
        config = cfg.apply_overrides(base, [f"semisup.teacher_batch_stats={batch_stats}"])
        teacher = [v.numpy() for v in models["teacher"].weights]
        student = [v.numpy() for v in models["segmentation"].weights]
        task.after_apply(config, models, tf.constant(2, tf.int64))
        for t, s, variable in zip(teacher, student, models["teacher"].weights, strict=True):
            if batch_stats and id(variable) not in trainable:
                np.testing.assert_array_equal(variable.numpy(), t)
            else:
                np.testing.assert_allclose(variable.numpy(), t * 2 / 3 + s / 3, rtol=1e-5,
                                           atol=1e-6, err_msg=variable.path)


# ---------------------------------------------------------------------------------------------
# The EMA teacher in the engine, and resume.
# ---------------------------------------------------------------------------------------------
def _trainable(model):
    return [v.numpy().copy() for v in model.trainable_variables]


@pytest.mark.slow
def test_teacher_update_in_the_step_matches_numpy_and_resumes_bitwise(depth_records, tmp_path):
    """Two ClassMix steps (in-step randomness from the checkpointed generator): after step t
    the teacher is alpha_t * teacher + (1 - alpha_t) * student with alpha 1/2, then 2/3; a run
    resumed from the step-1 checkpoint ends with the same teacher and student bit for bit,
    the ASPP's dropout included (the Trainer checkpoints its SeedGenerator states)."""
    config = cfg.apply_overrides(
        semisup_config(depth_records, steps=2, mix="classmix", mix_use_gt=False),
        ["train.checkpoint_every=1", "train.deterministic=true", "optim.learning_rate=0.05"])
    captured = []

    def capture(trainer, step, values):
        captured.append((_trainable(trainer.models["segmentation"]),
                         _trainable(trainer.models["teacher"])))

    trainer = loop.Trainer(config, make_task(config), str(tmp_path / "a"),
                           callbacks=[capture])
    start = _trainable(trainer.models["segmentation"])
    for student, teacher in zip(start, _trainable(trainer.models["teacher"]), strict=True):
        np.testing.assert_array_equal(teacher, student)  # the teacher starts as a copy
    trainer.train()
    assert len(captured) == 2
    teacher = start
    for (student, actual), alpha in zip(captured, (0.5, 2.0 / 3.0)):
        a = np.float32(alpha)
        teacher = [a * t + (np.float32(1) - a) * s for t, s in zip(teacher, student)]
        for expected, got in zip(teacher, actual):
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(captured[1][0][0], captured[1][1][0])  # they differ

    # Resume: a copy of the run without its step-2 checkpoint continues from step 1.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for path in glob.glob(str(tmp_path / "b" / "checkpoints" / "ckpt-2*")):
        os.remove(path)
    resumed = loop.Trainer(config, make_task(config), str(tmp_path / "b"))
    assert resumed.start_step == 1
    resumed.train()
    for role in ("segmentation", "teacher"):
        for got, expected in zip(resumed.models[role].weights,
                                 trainer.models[role].weights):
            np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg=role)


# ---------------------------------------------------------------------------------------------
# tools/predict_pseudo_depth, then tools/train on its records.
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tool_writes_records_the_depthmix_config_trains_evaluates_and_exports_on(
        plain_records, sde_run, tmp_path):
    out = tmp_path / "pseudo"
    figure = tmp_path / "mix.png"
    result = run_tool("tools.predict_pseudo_depth", [
        f"--input={plain_records['train']}", f"--sde={sde_run}", f"--output_dir={out}",
        f"--figure={figure}", "--figure_ids=train/003,train/000"], tmp_path)
    assert f"train {NUM_TRAIN} (0 skipped)" in check(result)
    # Every record keeps its features and gains the SDE's normalised disparity.
    model, _ = semisup_depth.load_sde(sde_run)
    predict = semisup_depth.disparity_predictor(model)
    originals = {records.source_id_of(r): r for r in records.iterate_records(
        plain_records["train"])}
    written = list(records.iterate_records(str(out / "train-*.tfrecord")))
    assert len(written) == NUM_TRAIN
    for serialized in written[:2]:
        sample = schema.decode_example(serialized)
        before = schema.decode_example(originals[sample.source_id])
        np.testing.assert_array_equal(sample.image, before.image)
        np.testing.assert_array_equal(sample.semantic, before.semantic)
        expected = predict(sample.image)
        assert expected.min() == 0.0 and expected.max() == 1.0
        np.testing.assert_allclose(sample.pseudo_disparity, expected, atol=0.5 / 65535 + 1e-6)
    picture = tf.io.decode_png(figure.read_bytes()).numpy()
    assert picture.shape[1] > 8 * WIDTH and picture.shape[2] == 3

    run = tmp_path / "run"
    args = ["--config=hoyer/synthetic_camvid_depthmix", "--smoke", f"--workdir={run}",
            f"--set=data.train_pattern={out / 'train-*.tfrecord'}",
            f"--set=data.eval_pattern={plain_records['val']}",
            f"--set=data.image_size=[{HEIGHT},{WIDTH}]", "--set=train.steps=2",
            "--set=train.eval_every=2", "--set=train.log_every=1",
            "--set=train.image_summaries_every=2"]
    check(run_tool("tools.train", args, tmp_path))
    history = json.loads((run / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2]
    assert all(np.isfinite(row[semisup_task.LOSS_UNLABELED]) for row in history["train"])
    assert 0.0 <= history["eval"][0]["miou"] <= 1.0
    # The DepthMix figure of the unlabelled pair is in TensorBoard with the predictions.
    tags = summaries.read_image_tags(str(run / "logs" / "train"))
    assert {"depthmix", "teacher_prediction", "prediction"} <= set(tags), tags
    export = tmp_path / "export"
    check(run_tool("tools.export", [f"--workdir={run}", f"--output_dir={export}",
                                    "--checkpoint=latest", "--notflite"], tmp_path))
    served = tf.saved_model.load(str(export)).signatures["serving_default"](
        images=tf.zeros([1, HEIGHT, WIDTH, 3], tf.uint8))
    assert served["semantic_probabilities"].shape[-1] == NUM_CLASSES
