"""The Trainer's facilities for tasks beyond SUW (issue 13), on the toy task, in-process:

* an EMA teacher updated by `Task.after_apply` inside the compiled train step (it follows an
  independent numpy EMA, is checkpointed and restored, and skips steps whose update was not
  applied),
* named input streams with their own batch sizes (shapes, losses, one checkpointed iterator
  per stream restored where the run stopped),
* parameter groups with learning-rate multipliers and global-norm clipping over all groups
  (against gradients taken independently of the Trainer),
* frozen models (saved, restored, never updated, no gradient asked for),
* the protocol's checks.

Bitwise resume after kill -9 with two streams and a teacher: test_training_resume.py; the same
facilities on two replicas: test_training_distribute.py.
"""

from __future__ import annotations

import math
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from test_training_toy import ToyTask, model_weights, toy_config  # noqa: E402
from tf_depthseg import config as config_lib  # noqa: E402
from tf_depthseg import errors  # noqa: E402
from tf_depthseg.training import checkpoints, loop, optimizers  # noqa: E402

F32_EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _quiet_config(steps: int, **train_overrides) -> config_lib.ExperimentConfig:
    """The toy config without evaluation, keep-best or pictures."""
    settings = dict(steps=steps, checkpoint_every=steps, eval_every=0, best_metric="",
                    image_summaries_every=0, log_every=1)
    settings.update(train_overrides)
    return toy_config(**settings)


def _checkpoint_keys(prefix: str) -> list:
    return [name for name, _ in tf.train.list_variables(prefix)]


def _record_students(record: list):
    """A Trainer callback appending the student's weights after every step."""
    return lambda trainer, step, values: record.append(model_weights(trainer))


# --------------------------------------------------------------------------------------------
# (a) after_apply: an EMA teacher.
# --------------------------------------------------------------------------------------------


def test_ema_teacher_follows_numpy_ema_and_is_checkpointed(tmp_path, learning_seed,
                                                           record_measure):
    decay, steps = 0.8, 12
    config = _quiet_config(steps, seed=learning_seed)
    task = ToyTask(ema_decay=decay, seed=7 + learning_seed)
    students = []
    trainer = loop.Trainer(config, task, str(tmp_path), callbacks=[_record_students(students)])
    teacher = model_weights(trainer, "teacher")
    for copy, student in zip(teacher, model_weights(trainer), strict=True):
        np.testing.assert_array_equal(copy, student)  # the toy starts it as a copy
    trainer.train()
    # The independent EMA, in float32 like the step: t = d * t + (1 - d) * s after each update.
    for student in students:
        teacher = [np.float32(decay) * t + np.float32(1.0 - decay) * s
                   for t, s in zip(teacher, student)]
    final = model_weights(trainer, "teacher")
    ema_diff = max(float(np.abs(a - b).max()) for a, b in zip(final, teacher, strict=True))
    lag = max(float(np.abs(a - b).max()) for a, b in zip(final, students[-1]))
    record_measure("max |teacher - numpy EMA|", ema_diff, below=1e-6)
    record_measure("max |teacher - student| (EMA lag)", lag, above=1e-3)
    assert len(students) == steps
    assert ema_diff < 1e-6, ema_diff
    assert lag > 1e-3, lag  # the teacher is not a copy of the student
    # after_apply ran once per update, inside the step, with the step number.
    assert int(task.applies.numpy()) == steps and int(task.last_step.numpy()) == steps
    # A frozen model: in no parameter group, so the optimizer has no slots for it.
    teacher_ids = {id(v) for v in trainer.models["teacher"].weights}
    assert trainer.frozen == ["teacher"] and list(trainer.param_groups) == ["all"]
    assert not teacher_ids & {id(v) for v in trainer.param_groups["all"]}
    assert len(trainer.param_groups["all"]) == len(trainer.models["net"].trainable_weights)
    # Saved with the run, and restored bit for bit (a fresh build starts at another value).
    keys = _checkpoint_keys(trainer.manager.latest_checkpoint)
    assert sum(key.startswith("models/teacher/") for key in keys) == len(final)
    resumed = loop.Trainer(config, ToyTask(ema_decay=decay, seed=7 + learning_seed),
                           str(tmp_path))
    assert resumed.start_step == steps
    for restored, saved in zip(model_weights(resumed, "teacher"), final, strict=True):
        np.testing.assert_array_equal(restored, saved)


class _OverflowAtCall(ToyTask):
    """The toy whose loss is multiplied by 1e30 at the `call`-th step: the float16 gradients
    overflow and the loss-scale optimizer skips that update (the loss itself stays finite)."""

    def __init__(self, call: int, **kwargs):
        super().__init__(**kwargs)
        self.call = call

    def compute_losses(self, config, models, batches, **kwargs):
        losses = super().compute_losses(config, models, batches, **kwargs)
        calls = self.calls.assign_add(1)
        factor = tf.where(calls == self.call, tf.constant(1e30), tf.constant(1.0))
        return dict(losses, total=losses["total"] * factor)


def test_after_apply_skips_updates_the_loss_scaler_skipped(tmp_path):
    config = _quiet_config(4, mixed_precision="mixed_float16")
    task = _OverflowAtCall(2, ema_decay=0.5)
    teachers, students = [], []

    def record(trainer, step, values):
        teachers.append(model_weights(trainer, "teacher"))
        students.append(model_weights(trainer))

    trainer = loop.Trainer(config, task, str(tmp_path), callbacks=[record])
    trainer.train()
    scales = [row["loss_scale"] for row in trainer.history["train"]]
    assert scales[1] == scales[0] / 2  # step 2 overflowed: the scaler halved its scale ...
    for before, after in zip(students[0] + teachers[0], students[1] + teachers[1]):
        np.testing.assert_array_equal(before, after)  # ... skipped the update, and the teacher
    assert int(task.applies.numpy()) == 3 and int(task.last_step.numpy()) == 4
    assert not np.array_equal(teachers[2][0], teachers[1][0])  # steps 3, 4 applied again


# --------------------------------------------------------------------------------------------
# (b) Named input streams with their own batch sizes.
# --------------------------------------------------------------------------------------------


def test_two_streams_have_own_batch_sizes_and_iterators(tmp_path):
    config = _quiet_config(6, image_summaries_every=3)
    task = ToyTask(extra_batch=2)
    trainer = loop.Trainer(config, task, str(tmp_path))
    assert trainer.global_batch_sizes == {"train": 4, "extra": 2}
    trainer.train()
    # One trace, which saw a batch of each stream at its own size.
    assert trainer.train_step_traces == 1
    assert task.traced_shapes == [{"train": (4, 8, 8, 3), "extra": (2, 8, 8, 3)}]
    assert task.traced_global_batch_sizes == [{"train": 4, "extra": 2}]
    row = trainer.history["train"][-1]
    assert row["total"] == pytest.approx(row["mse"] + row["mse_extra"], rel=1e-6)
    assert row["mse_extra"] > 0
    assert row["examples_per_s"] == pytest.approx(6 / row["step_time_s"])  # both streams
    # One iterator per stream in the checkpoint: the first keeps the single-stream key.
    keys = _checkpoint_keys(trainer.manager.latest_checkpoint)
    assert {key.split("/")[0] for key in keys if key.startswith("iterator")} == {
        "iterator", "iterator_extra"}
    # A resumed run continues each stream where this one stopped (not at its start).
    upcoming = {stream: next(iterator) for stream, iterator in trainer._iterators.items()}
    resumed = loop.Trainer(config, ToyTask(extra_batch=2), str(tmp_path))
    assert resumed.start_step == 6
    for stream, iterator in resumed._iterators.items():
        batch = next(iterator)
        np.testing.assert_array_equal(batch["image"].numpy(), upcoming[stream]["image"].numpy())
        start = next(iter(task.make_train_dataset(config, stream, tf.distribute.InputContext())))
        assert not np.array_equal(start["image"].numpy(), batch["image"].numpy()), stream


# --------------------------------------------------------------------------------------------
# (c) Parameter groups: learning-rate multipliers, clipping over all groups.
# --------------------------------------------------------------------------------------------


def _one_step(workdir, overrides, seed=0):
    """Trains the grouped toy ("encoder", "head") one step; returns (weights before, weight
    change, the logged pre-clip gradient norm), weights as {group: [arrays]}."""
    config = config_lib.apply_overrides(_quiet_config(1, seed=seed), [
        "optim.optimizer=sgd", "optim.momentum=0", "optim.learning_rate=0.1", *overrides])
    trainer = loop.Trainer(config, ToyTask(use_rng=False, groups=True, seed=7 + seed),
                           str(workdir))
    before = {group: [v.numpy() for v in variables]
              for group, variables in trainer.param_groups.items()}
    trainer.train()
    change = {group: [v.numpy() - b for v, b in zip(variables, before[group])]
              for group, variables in trainer.param_groups.items()}
    return before, change, trainer.history["train"][0]["grad_norm"]


def _independent_gradients(before, seed=0):
    """The first step's gradients {group: [arrays]}, taken with a GradientTape outside the
    Trainer (same initial weights, the train stream's first batch, the toy's loss)."""
    config = _quiet_config(1)
    task = ToyTask(use_rng=False, groups=True, seed=7 + seed)
    models = task.build(config)
    groups = task.param_groups(config, models)
    for group, variables in groups.items():
        for variable, value in zip(variables, before[group]):
            variable.assign(value)
    batch = next(iter(task.make_train_dataset(config, "train", tf.distribute.InputContext())))
    variables = [v for group in groups.values() for v in group]
    with tf.GradientTape() as tape:
        total = task.compute_losses(config, models, {"train": batch}, training=True,
                                    global_batch_sizes={"train": 4}, rng=None)["total"]
    grads = iter(tape.gradient(total, variables))
    return {group: [next(grads).numpy().astype(np.float64) for _ in variables]
            for group, variables in groups.items()}


def _assert_change(change, expected, before):
    """Weight changes equal `expected` up to the rounding of the updated weights."""
    for group in expected:
        for got, want, weight in zip(change[group], expected[group], before[group]):
            np.testing.assert_allclose(got, want, rtol=1e-5,
                                       atol=4 * F32_EPS * float(np.abs(weight).max()),
                                       err_msg=group)


def test_lr_multipliers_scale_the_group_learning_rate(tmp_path, learning_seed,
                                                      record_measure):
    seed = learning_seed
    before, base, _ = _one_step(tmp_path / "base", [], seed)
    _, tenth, _ = _one_step(tmp_path / "tenth", ["optim.lr_multipliers=[['head', 0.1]]"], seed)
    _, adam, _ = _one_step(tmp_path / "adam", ["optim.optimizer=adam",
                                               "optim.learning_rate=0.01",
                                               "optim.lr_multipliers=[['head', 0.1]]"], seed)
    grads = _independent_gradients(before, seed)
    # SGD: w -= lr * multiplier * g; the 1x group is untouched by the other's multiplier.
    _assert_change(base, {g: [-0.1 * x for x in grads[g]] for g in grads}, before)
    for unchanged, reference in zip(tenth["encoder"], base["encoder"]):
        np.testing.assert_array_equal(unchanged, reference)
    _assert_change(tenth, {"head": [0.1 * x for x in base["head"]]}, before)
    # Adam is invariant to the gradient's scale: its first step is ~lr * multiplier * sign(g),
    # exactly lr * m * sqrt(1 - b2) g / (sqrt(1 - b2) |g| + eps).
    b2, eps = 0.999, 1e-7

    def adam_change(lr, g):
        return -lr * math.sqrt(1 - b2) * g / (math.sqrt(1 - b2) * np.abs(g) + eps)

    expected = {"encoder": [adam_change(0.01, g) for g in grads["encoder"]],
                "head": [adam_change(0.001, g) for g in grads["head"]]}
    head = np.concatenate([c.ravel() for c in adam["head"]])
    record_measure("adam: median |head change| / (lr * 0.1)",
                   np.median(np.abs(head)) / 0.001, above=0.99)
    _assert_change(adam, expected, before)
    assert np.median(np.abs(head)) / 0.001 > 0.99


def test_clipping_is_global_over_all_groups(tmp_path):
    before, _, _ = _one_step(tmp_path / "probe", [])
    grads = _independent_gradients(before)
    norm = math.sqrt(sum(float(np.sum(g * g)) for group in grads.values() for g in group))
    clip = 0.5 * norm
    _, change, logged_norm = _one_step(tmp_path / "clipped", [
        "optim.lr_multipliers=[['head', 0.1]]", f"optim.clip_norm={clip!r}"])
    assert logged_norm == pytest.approx(norm, rel=1e-5)  # the pre-clip norm of all groups
    # One factor, clip / norm, for every group (a per-group clip would give each its own).
    factor = clip / norm
    expected = {"encoder": [-0.1 * factor * g for g in grads["encoder"]],
                "head": [-0.01 * factor * g for g in grads["head"]]}
    _assert_change(change, expected, before)


def test_adamw_decays_each_group_at_its_own_rate():
    lr, wd, multiplier, b2, eps = 0.1, 0.5, 0.1, 0.999, 1e-7
    w0 = np.array([2.0, -1.0], np.float32)
    g = np.array([0.3, -0.7], np.float32)
    optim = config_lib.OptimConfig(optimizer="adamw", learning_rate=lr, weight_decay=wd,
                                   lr_multipliers=(("slow", multiplier),))
    variables = {"fast": keras.Variable(w0), "slow": keras.Variable(w0)}
    optimizer = optimizers.build_optimizer(
        optim, lr, param_groups={name: [v] for name, v in variables.items()})
    optimizer.apply([tf.constant(g), tf.constant(g)])
    for name, rate in (("fast", lr), ("slow", lr * multiplier)):
        # Decoupled decay at the group's rate, then the first Adam step at that rate.
        decayed = w0.astype(np.float64) * (1 - rate * wd)
        step = rate * math.sqrt(1 - b2) * g / (math.sqrt(1 - b2) * np.abs(g) + eps)
        np.testing.assert_allclose(variables[name].numpy(), decayed - step, rtol=1e-6,
                                   err_msg=name)


# --------------------------------------------------------------------------------------------
# (d) Frozen models.
# --------------------------------------------------------------------------------------------


def test_frozen_model_is_saved_restored_and_never_updated(tmp_path):
    config = _quiet_config(5)
    trainer = loop.Trainer(config, ToyTask(prior=True), str(tmp_path))
    prior, net = model_weights(trainer, "prior"), model_weights(trainer)
    prior_ids = {id(v) for v in trainer.models["prior"].weights}
    assert trainer.frozen == ["prior"]
    assert not prior_ids & {id(v) for v in trainer.param_groups["all"]}
    # The loss depends on the prior (its output adds to the prediction), yet no "loss does
    # not depend on" error and no update.
    trainer.train()
    for after, initial in zip(model_weights(trainer, "prior"), prior, strict=True):
        np.testing.assert_array_equal(after, initial)
    assert any(not np.array_equal(a, b) for a, b in zip(model_weights(trainer), net))
    # Saved with the run, restored over a build with other initial weights.
    fresh = ToyTask(prior=True).build(config)
    assert not np.array_equal(fresh["prior"].weights[0].numpy(), prior[0])
    checkpoints.restore_models(fresh, str(tmp_path))
    for restored, saved in zip(fresh["prior"].weights, prior, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved)


# --------------------------------------------------------------------------------------------
# The protocol's checks.
# --------------------------------------------------------------------------------------------


class _FrozenGhost(ToyTask):
    def frozen_models(self, config):
        return ["ghost"]


class _TeacherInGroup(ToyTask):
    def param_groups(self, config, models):
        return {"all": models["net"].trainable_weights + models["teacher"].trainable_weights}


class _TwoGroupsShareAVariable(ToyTask):
    def param_groups(self, config, models):
        weights = models["net"].trainable_weights
        return {"a": weights, "b": weights[:1]}


class _OldProtocol(ToyTask):
    def trainable_variables(self, models):
        return []


@pytest.mark.parametrize("task, overrides, error, match", [
    (ToyTask(groups=True), ["optim.lr_multipliers=[['backbone', 0.1]]"], errors.ConfigError,
     r"'backbone'.*its groups are \['encoder', 'head'\]"),
    (ToyTask(extra_batch=-2), [], errors.ConfigError,
     "training stream 'extra'.*batch size of -2"),
    (_FrozenGhost(), [], ValueError, r"frozen_models names \['ghost'\].*\['net'\]"),
    (_TeacherInGroup(ema_decay=0.5), [], ValueError, "belongs to the frozen model 'teacher'"),
    (_TwoGroupsShareAVariable(), [], ValueError, "is in group 'a' too"),
    (_OldProtocol(), [], TypeError, "declare param_groups"),
])
def test_protocol_errors_name_the_problem(tmp_path, task, overrides, error, match):
    config = config_lib.apply_overrides(_quiet_config(1), overrides)
    with pytest.raises(error, match=match):
        loop.Trainer(config, task, str(tmp_path))


def test_serving_model_default_is_the_only_model():
    task = ToyTask()
    models = task.build(_quiet_config(1))
    assert loop.Task.serving_model(task, None, models) is models["net"]
    with pytest.raises(ValueError, match=r"\['a', 'b'\].*serving_model"):
        loop.Task.serving_model(task, None, {"a": models["net"], "b": models["net"]})


@pytest.mark.parametrize("gpus, flags, expected", [
    ([], frozenset({"avx2", "avx512f"}), "float32"),  # bf16 would be emulated: slower
    ([], frozenset({"avx512f", "avx512_bf16"}), "mixed_bfloat16"),
    ([], frozenset({"amx_tile", "amx_bf16"}), "mixed_bfloat16"),
    ([(8, 6)], frozenset(), "mixed_bfloat16"),
    ([(7, 5)], frozenset({"amx_bf16"}), "mixed_float16"),  # a GPU decides over the CPU
    ([(8, 0), (7, 0)], frozenset(), "mixed_float16"),  # the oldest GPU decides
    ([(6, 1)], frozenset(), "float32"),
])
def test_auto_mixed_precision_follows_the_devices(tmp_path, monkeypatch, gpus, flags, expected):
    """train.mixed_precision=auto: the policy the models are built with and the loss scaling
    follow the devices (GPU capability, CPU bf16 flags); explicit policies pass through."""
    from tf_depthseg.training import distribute
    assert distribute.resolve_mixed_precision("auto", gpus, flags) == expected
    for explicit in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert distribute.resolve_mixed_precision(explicit, gpus, flags) == explicit
    monkeypatch.setattr(distribute, "_gpu_capabilities", lambda: list(gpus))
    monkeypatch.setattr(distribute, "_cpu_flags", lambda: flags)
    trainer = loop.Trainer(_quiet_config(1, mixed_precision="auto"), ToyTask(), str(tmp_path))
    assert trainer.mixed_precision == expected
    assert keras.mixed_precision.global_policy().name == expected
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer) == (
        expected == "mixed_float16")


def test_auto_mixed_precision_reads_this_machine():
    """No injected devices: /proc/cpuinfo's flags decide on a CPU-only machine."""
    from tf_depthseg.training import distribute
    flags = distribute._cpu_flags()  # pylint: disable=protected-access
    if os.path.exists("/proc/cpuinfo"):
        assert "sse2" in flags or "fp" in flags or "fpu" in flags, sorted(flags)[:20]
    expected = ("mixed_bfloat16" if {"amx_bf16", "avx512_bf16"} & flags else "float32")
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU decides; covered by the injected cases")
    assert distribute.resolve_mixed_precision("auto") == expected
