"""A toy task that proves the training engine on its own, plus in-process engine tests.

The toy: a two-layer conv net regresses, per pixel, `2 * mean_c(image) - 0.5` from random
8x8 images. The input pipeline shuffles, flips and shifts brightness with stateless random ops
seeded by the element's position in the stream (so a checkpointed iterator replays them), and
the loss optionally adds input noise drawn from the Trainer's checkpointed RNG. Options add
the engine's facilities (`ToyTask`): a second input stream with its own batch size, an EMA
teacher updated in the train step, a frozen prior net, parameter groups, dropout.
The engine tests of those facilities are in test_training_engine.py.

Run as a script (the kill -9 and two-device tests do) it trains into --workdir and writes the
final weights of every model (roles in sorted order) to <workdir>/final_weights.npz.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # when run as a script
    sys.path.insert(0, REPO)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_depthseg import config as config_lib  # noqa: E402
from tf_depthseg import visualize  # noqa: E402
from tf_depthseg.training import checkpoints, loop, summaries  # noqa: E402

SIZE = 8
NUM_TRAIN = 64
NUM_EVAL = 16


def target_of(image):
    """Per-pixel regression target `[..., H, W, 1]` of an image `[..., H, W, 3]`."""
    return 2.0 * tf.reduce_mean(image, axis=-1, keepdims=True) - 0.5


class ToyTask(loop.Task):
    """See the module docstring; the options add one engine facility each.

    Args:
      use_rng: add input noise from the Trainer's RNG in the loss (off for the two-device
        comparison: replicas draw from different streams).
      nan_after: make the loss NaN from this many compute_losses calls on (non-finite test).
      seed: seed of the data (images, shuffle, augmentation).
      extra_batch: global batch size of a second training stream "extra" (0: none): images
        of another seed, whose mse (`mse_extra`, over its own global batch) adds to the total.
      ema_decay: add a frozen "teacher" copy of the net that `after_apply` moves to
        `ema_decay * teacher + (1 - ema_decay) * net` after every applied update (0: none).
      prior: add a frozen "prior" net whose output the net's prediction adds to (a frozen
        model the loss depends on).
      groups: optimise the net as parameter groups "encoder" and "head" (else one group).
      dropout: a Dropout layer of this rate between the two convs of every net (net, teacher,
        prior; 0: none). The prior then runs in training mode in the loss, like a mean
        teacher with live batch statistics, so that its dropout draws too (the toy has no
        batch norm).

    Attributes (after build):
      traced_shapes: per compute_losses trace (one per replica), {stream: image shape};
        traced_global_batch_sizes: the global_batch_sizes of each trace.
      applies: int64 variable, after_apply calls; last_step: the step it was last given.
    """

    EXTRA_OFFSET = 50_000  # the "extra" stream's images and seeds

    def __init__(self, use_rng: bool = True, nan_after: int = 0, seed: int = 7,
                 extra_batch: int = 0, ema_decay: float = 0.0, prior: bool = False,
                 groups: bool = False, dropout: float = 0.0):
        self.use_rng, self.nan_after, self.seed = use_rng, nan_after, seed
        self.extra_batch, self.ema_decay = extra_batch, ema_decay
        self.prior, self.groups, self.dropout = prior, groups, dropout
        self.traced_shapes, self.traced_global_batch_sizes = [], []

    def _net(self, name: str, prefix: str = "") -> keras.Model:
        inputs = keras.Input((SIZE, SIZE, 3), name="image")
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                                name=f"{prefix}encoder_conv")(inputs)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name=f"{prefix}dropout")(x)
        x = keras.layers.Conv2D(1, 1, name=f"{prefix}head_conv")(x)
        return keras.Model(inputs, {"depth": x}, name=name)

    def build(self, config):
        counter = dict(dtype=tf.int64, trainable=False,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.calls = tf.Variable(0, **counter)
        self.applies, self.last_step = tf.Variable(0, **counter), tf.Variable(0, **counter)
        models = {"net": self._net("toy")}
        if self.ema_decay:
            models["teacher"] = self._net("teacher", "teacher_")
            models["teacher"].set_weights(models["net"].get_weights())
        if self.prior:
            models["prior"] = self._net("prior", "prior_")
        return models

    def frozen_models(self, config):
        return [role for role, on in (("teacher", self.ema_decay), ("prior", self.prior)) if on]

    def train_streams(self, config):
        streams = {"train": config.data.batch_size}
        if self.extra_batch:
            streams["extra"] = self.extra_batch
        return streams

    def param_groups(self, config, models):
        if not self.groups:
            return super().param_groups(config, models)
        net = models["net"]
        return {"encoder": net.get_layer("encoder_conv").trainable_variables,
                "head": net.get_layer("head_conv").trainable_variables}

    def _examples(self, count: int, offset: int):
        def make(index):
            image = tf.random.stateless_uniform([SIZE, SIZE, 3], seed=[self.seed, index])
            return image
        return tf.data.Dataset.range(offset, offset + count).map(make)

    def make_train_dataset(self, config, stream, input_context):
        per_replica = input_context.get_per_replica_batch_size(
            self.train_streams(config)[stream])
        offset = 0 if stream == "train" else self.EXTRA_OFFSET
        dataset = self._examples(NUM_TRAIN, offset)
        if input_context.num_input_pipelines > 1:
            dataset = dataset.shard(input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
        dataset = dataset.repeat().shuffle(16, seed=self.seed + offset).enumerate()

        def augment(position, image):
            seed = tf.stack([tf.constant(self.seed + 1 + offset, tf.int64), position])
            flip = tf.random.stateless_uniform([], seed=seed) < 0.5
            image = tf.where(flip, image[:, ::-1], image)
            delta = tf.random.stateless_uniform([], seed=seed + 1, minval=-0.1, maxval=0.1)
            image = image + delta
            return {"image": image, "target": target_of(image)}

        return dataset.map(augment).batch(per_replica, drop_remainder=True).prefetch(2)

    def make_eval_dataset(self, config):
        def to_batch(image):
            return {"image": image, "target": target_of(image)}
        return self._examples(NUM_EVAL, 10_000).map(to_batch).batch(
            config.data.eval_batch_size)

    def predict(self, models, image, training):
        """The net's prediction `[B, H, W, 1]` float32 (plus the frozen prior's)."""
        # Losses in float32 also under a mixed-precision policy (float16 outputs).
        prediction = tf.cast(models["net"](image, training=training)["depth"], tf.float32)
        if self.prior:
            prior_training = training and bool(self.dropout)
            prediction += tf.cast(models["prior"](image, training=prior_training)["depth"],
                                  tf.float32)
        return prediction

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        self.traced_shapes.append({stream: tuple(batch["image"].shape)
                                   for stream, batch in batches.items()})
        self.traced_global_batch_sizes.append(dict(global_batch_sizes))
        losses = {}
        for stream, batch in batches.items():
            image = batch["image"]
            if self.use_rng:
                image = image + 0.01 * rng.normal(tf.shape(image))
            prediction = self.predict(models, image, training)
            per_example = tf.reduce_mean(tf.square(prediction - batch["target"]),
                                         axis=[1, 2, 3])
            name = "mse" if stream == "train" else f"mse_{stream}"
            losses[name] = loop.global_mean(per_example, global_batch_sizes[stream])
        total = tf.add_n(list(losses.values()))
        if self.nan_after:
            calls = self.calls.assign_add(1)
            total = tf.where(calls > self.nan_after, tf.constant(np.nan, tf.float32), total)
        return dict(losses, total=total)

    def after_apply(self, config, models, step):
        self.applies.assign_add(1)
        self.last_step.assign(step)
        if self.ema_decay:
            decay = self.ema_decay
            for teacher, student in zip(models["teacher"].weights, models["net"].weights):
                teacher.assign(decay * teacher + (1.0 - decay) * student)

    def eval_outputs(self, config, models, batch):
        prediction = self.predict(models, batch["image"], training=False)
        return {"mae": tf.reduce_mean(tf.abs(prediction - batch["target"]), axis=[1, 2, 3])}

    def image_summaries(self, config, models, batch):
        prediction = models["net"](batch["image"], training=False)["depth"]
        return {"input": visualize.to_rgb_uint8_tf(batch["image"]),
                "prediction": visualize.colorize_uncertainty_tf(prediction)}

    def serving_model(self, config, models):
        return models["net"]


def toy_config(**train_overrides) -> config_lib.ExperimentConfig:
    """A config for the toy: Adam 1e-2, global batch 4, tiny everything."""
    config = config_lib.ExperimentConfig(name="toy")
    config = config_lib.apply_overrides(config, [
        "data.batch_size=4", "data.eval_batch_size=8", "optim.learning_rate=0.01",
        "train.steps=40", "train.log_every=5", "train.checkpoint_every=10",
        "train.eval_every=20", "train.best_metric=mae", "train.image_summaries_every=20",
        "train.distribution=default"])
    return dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                 **train_overrides))


def model_weights(trainer, role: str = "net") -> list:
    return [np.array(v.numpy()) for v in trainer.models[role].weights]


def all_weights(trainer) -> list:
    """The weights of every model, roles in sorted order."""
    return [w for role in sorted(trainer.models) for w in model_weights(trainer, role)]


# --------------------------------------------------------------------------------------------
# Tests (in-process; each Trainer gets its own workdir).
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_toy_task_learns_and_logs(tmp_path, learning_seed, record_measure):
    # 120 steps at 3e-2: every seed ends at 0.5-2 % of the initial error (60 steps at 1e-2
    # left 7-30 %, too close to any bound; docs/testing.md).
    config = toy_config(steps=120, eval_every=60, log_every=10, checkpoint_every=40,
                        image_summaries_every=40, seed=learning_seed)
    config = config_lib.apply_overrides(config, ["optim.learning_rate=0.03"])
    task = ToyTask(seed=7 + learning_seed)
    trainer = loop.Trainer(config, task, str(tmp_path))
    before = trainer.evaluate(0)["mae"]
    result = trainer.train()
    after = result.eval_metrics["mae"]
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    fresh = task.build(config)
    checkpoints.restore_models(fresh, str(tmp_path / "best"))
    best_errors = np.concatenate([task.eval_outputs(config, fresh, batch)["mae"].numpy()
                                  for batch in task.make_eval_dataset(config)])
    best_rel_diff = abs(best_errors.mean() - best["value"]) / best["value"]
    targets = np.concatenate([batch["target"].numpy().ravel()
                              for batch in task.make_eval_dataset(config)])
    constant_mae = np.abs(targets - np.median(targets)).mean()  # the best constant predictor
    record_measure("mae after/before", after / before, below=0.1)
    record_measure("mae after / best constant", after / constant_mae, below=0.25)
    record_measure("best checkpoint re-evaluated: rel diff", best_rel_diff, below=1e-6)
    assert after < 0.1 * before, (before, after)
    assert after < 0.25 * constant_mae, (constant_mae, after)
    assert trainer.train_step_traces == 1  # no retracing per step
    assert result.final_step == 120 and int(trainer.step.numpy()) == 120
    # Keep-best: the best checkpoint and its record exist and hold the best value seen.
    assert best["metric"] == "mae" and best["value"] <= after + 1e-12
    assert tf.train.latest_checkpoint(str(tmp_path / "best"))
    # History: training rows every log_every steps, evaluations at 0, 60, 120.
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == list(range(10, 121, 10))
    assert [r["step"] for r in history["eval"]] == [0, 60, 120]
    row = history["train"][-1]
    for key in ("total", "mse", "grad_norm", "learning_rate", "step_time_s", "examples_per_s"):
        assert np.isfinite(row[key]), key
    assert row["learning_rate"] == pytest.approx(0.03)
    # TensorBoard: per-term losses, lr, grad norm, speed; eval metrics; pictures.
    scalars = summaries.read_scalars(str(tmp_path / "logs" / "train"))
    for tag in ("loss/total", "loss/mse", "train/learning_rate", "train/grad_norm",
                "train/step_time_s", "train/examples_per_s"):
        assert [step for step, _ in scalars[tag]] == list(range(10, 121, 10)), tag
    assert scalars["loss/total"][-1][1] == pytest.approx(row["total"])
    eval_scalars = summaries.read_scalars(str(tmp_path / "logs" / "eval"))
    assert [step for step, _ in eval_scalars["metrics/mae"]] == [0, 60, 120]
    assert summaries.read_image_tags(str(tmp_path / "logs" / "train")) == {
        "input": 3, "prediction": 3}  # every 40 steps
    assert summaries.read_image_tags(str(tmp_path / "logs" / "eval"))["prediction"] == 3
    assert config_lib.load_config(str(tmp_path / "config.json")) == config
    # restore_models (for evaluation/export): the best model, whose evaluation (above)
    # reproduces the recorded best value, and the latest weights.
    assert best_rel_diff < 1e-6, (best_errors.mean(), best)
    assert checkpoints.restore_models(fresh, str(tmp_path)).endswith("ckpt-120")
    for restored, trained in zip(fresh["net"].weights, model_weights(trainer)):
        np.testing.assert_array_equal(restored.numpy(), trained)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint"):
        checkpoints.restore_models(fresh, str(tmp_path / "logs"))


def test_resume_in_process_continues_from_checkpoint(tmp_path):
    first = loop.Trainer(toy_config(steps=20), ToyTask(), str(tmp_path))
    first.train()
    weights_at_20 = model_weights(first)
    second = loop.Trainer(toy_config(steps=30), ToyTask(), str(tmp_path))
    assert second.start_step == 20
    for restored, saved in zip(model_weights(second), weights_at_20):
        np.testing.assert_array_equal(restored, saved)
    result = second.train()
    assert result.start_step == 20 and result.final_step == 30
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-30")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = toy_config(steps=40, checkpoint_every=10, eval_every=0)
    task = ToyTask(nan_after=23, ema_decay=0.5)
    trainer = loop.Trainer(config, task, str(tmp_path))
    with pytest.raises(loop.NonFiniteLossError) as caught:
        trainer.train()
    error = caught.value
    assert error.step == 24
    assert "step 24" in str(error) and "total=nan" in str(error)
    assert error.checkpoint.endswith("ckpt-20") and "ckpt-20" in str(error)
    # Nothing after the last good checkpoint was saved, and the bad update was not applied.
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == error.checkpoint
    assert int(trainer.step.numpy()) == 23
    assert all(np.isfinite(w).all() for w in all_weights(trainer))
    # after_apply ran after each of the 23 applied updates, not after the failed one.
    assert int(task.applies.numpy()) == 23 and int(task.last_step.numpy()) == 23


def test_init_modules_from_other_run(tmp_path):
    donor_dir, run_dir = tmp_path / "donor", tmp_path / "run"
    donor = loop.Trainer(toy_config(steps=10, eval_every=0), ToyTask(), str(donor_dir))
    donor.train()
    donor_encoder = [w.numpy() for w in donor.models["net"].get_layer("encoder_conv").weights]
    config = config_lib.apply_overrides(
        toy_config(steps=1, eval_every=0, seed=5),
        [f"model.init_checkpoint={donor_dir}", "model.init_modules=['net/encoder']"])
    trainer = loop.Trainer(config, ToyTask(), str(run_dir))
    net = trainer.models["net"]
    for copied, source in zip(net.get_layer("encoder_conv").weights, donor_encoder):
        np.testing.assert_array_equal(copied.numpy(), source)
    # The head was not initialised from the donor (different seed -> different init).
    assert not np.array_equal(net.get_layer("head_conv").weights[0].numpy(),
                              donor.models["net"].get_layer("head_conv").weights[0].numpy())
    bad = config_lib.apply_overrides(config, ["model.init_modules=['decoder']"])
    with pytest.raises(checkpoints.CheckpointError, match="matches no layer"):
        loop.Trainer(bad, ToyTask(), str(tmp_path / "bad"))


def test_mixed_float16_with_clipping_trains(tmp_path, learning_seed, record_measure):
    # 60 steps at 3e-2: 2.5-5 % of the initial error left for every seed (30 at 1e-2 left
    # 20-40 %; docs/testing.md).
    config = toy_config(steps=60, eval_every=60, mixed_precision="mixed_float16",
                        seed=learning_seed, checkpoint_every=60, image_summaries_every=0)
    config = config_lib.apply_overrides(config, ["optim.clip_norm=0.5",
                                                 "optim.learning_rate=0.03"])
    task = ToyTask(seed=7 + learning_seed)
    trainer = loop.Trainer(config, task, str(tmp_path))
    assert trainer.models["net"].get_layer("encoder_conv").compute_dtype == "float16"
    before = trainer.evaluate(0)["mae"]
    result = trainer.train()
    after = result.eval_metrics["mae"]
    targets = np.concatenate([batch["target"].numpy().ravel()
                              for batch in task.make_eval_dataset(config)])
    constant_mae = np.abs(targets - np.median(targets)).mean()  # the best constant predictor
    record_measure("mae after/before", after / before, below=0.2)
    record_measure("mae after / best constant", after / constant_mae, below=0.5)
    assert after < 0.2 * before, (before, after)
    assert after < 0.5 * constant_mae, (constant_mae, after)
    history = json.loads((tmp_path / "history.json").read_text())
    assert all("loss_scale" in row for row in history["train"])


def _main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--checkpoint_every", type=int, default=10)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--distribution", default="default")
    parser.add_argument("--logical_cpus", type=int, default=0)
    parser.add_argument("--no_rng", action="store_true")
    parser.add_argument("--step_sleep", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0,
                        help="offset of the init, RNG and data seeds (tests' learning_seed)")
    parser.add_argument("--reference_workdir", default="",
                        help="afterwards, also train a fresh run here (saves a TF start-up)")
    parser.add_argument("--extra_batch", type=int, default=0, help="see ToyTask")
    parser.add_argument("--ema_decay", type=float, default=0.0, help="see ToyTask")
    parser.add_argument("--dropout", type=float, default=0.0, help="see ToyTask")
    args = parser.parse_args()
    if args.logical_cpus:
        from tf_depthseg.training import distribute
        distribute.configure_logical_cpus(args.logical_cpus)
    config = toy_config(steps=args.steps, checkpoint_every=args.checkpoint_every,
                        deterministic=args.deterministic, distribution=args.distribution,
                        eval_every=0, best_metric="", seed=args.seed)
    callbacks = []
    if args.step_sleep:
        import time
        callbacks.append(lambda trainer, step, values: time.sleep(args.step_sleep))
    report = {}
    for workdir in filter(None, (args.workdir, args.reference_workdir)):
        task = ToyTask(use_rng=not args.no_rng, seed=7 + args.seed,
                       extra_batch=args.extra_batch, ema_decay=args.ema_decay,
                       dropout=args.dropout)
        trainer = loop.Trainer(config, task, workdir, callbacks=callbacks)
        result = trainer.train()
        np.savez(os.path.join(workdir, "final_weights.npz"), *all_weights(trainer))
        report[workdir] = {"start_step": result.start_step, "final_step": result.final_step,
                           "replicas": trainer.num_replicas}
    print(json.dumps(report))


if __name__ == "__main__":
    _main()
