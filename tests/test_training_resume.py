"""Kill -9 during training, restart, and end bitwise equal to a run never interrupted.

Both runs use the toy task of test_training_toy.py in deterministic mode (op determinism,
seeded stateless augmentation keyed by stream position, a checkpointed RNG adding input noise
in the loss, two shuffled, checkpointed tf.data iterators: the "train" stream of batch 4 and
an "extra" stream of batch 2, an EMA teacher updated inside the train step, and dropout), as
subprocesses. The final weights of the net and of the teacher must be bitwise equal.

Bitwise equality holds on one machine: both runs execute the same kernels. Another CPU (or
TF_ENABLE_ONEDNN_OPTS=0) picks other kernels and ends with other weights, but again equal
between its own interrupted and uninterrupted runs; checkpoints are never compared across
machines here (docs/testing.md).

Dropout: Keras 3 keeps a dropout layer's random state in a `keras.random.SeedGenerator`
whose variable is not among the model's weights; the Trainer checkpoints it separately
(`seed_generators/<role>/<i>`). The in-process tests below check that a run with dropout
resumes bitwise, and that a checkpoint written before that (without the key) still resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from test_training_toy import ToyTask, all_weights, toy_config  # noqa: E402
from tf_depthseg.training import checkpoints, loop  # noqa: E402
SCRIPT = os.path.join(TESTS, "test_training_toy.py")
STEPS = 40


def _launch(workdir, seed, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0",
               PYTHONPATH=REPO)
    return subprocess.Popen(
        [sys.executable, SCRIPT, "--workdir", str(workdir), "--steps", str(STEPS),
         "--checkpoint_every", "10", "--deterministic", "--seed", str(seed),
         "--extra_batch", "2", "--ema_decay", "0.9", "--dropout", "0.25", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _weights(workdir):
    with np.load(os.path.join(workdir, "final_weights.npz")) as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


def test_kill_9_and_resume_matches_uninterrupted_run(tmp_path, learning_seed, record_measure):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    # Slow steps so that the kill lands mid-run, after the first checkpoint.
    victim = _launch(killed_dir, learning_seed, "--step_sleep", "0.1")
    state_file = killed_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + 180
    while not state_file.exists():
        assert victim.poll() is None, victim.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / "final_weights.npz").exists()

    # The restarted process resumes the killed run, then (to save a TensorFlow start-up)
    # trains the never-interrupted reference run from scratch in a second workdir.
    report = _finish(_launch(killed_dir, learning_seed, "--reference_workdir",
                             str(reference_dir)))
    resumed, reference = report[str(killed_dir)], report[str(reference_dir)]
    assert 0 < resumed["start_step"] < STEPS, resumed
    assert resumed["final_step"] == STEPS
    assert reference == {"start_step": 0, "final_step": STEPS, "replicas": 1}

    pairs = list(zip(_weights(killed_dir), _weights(reference_dir), strict=True))
    assert len(pairs) == 8  # kernel and bias of two layers, of the net and of the teacher
    record_measure("max |resumed - reference| weight (bitwise: 0)",
                   max(float(np.abs(a - b).max()) for a, b in pairs))
    for resumed_weight, reference_weight in pairs:
        assert np.array_equal(resumed_weight, reference_weight)
    # The history of the resumed run has no duplicate or missing logging steps.
    history = json.loads((killed_dir / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == list(range(5, STEPS + 1, 5))


# --------------------------------------------------------------------------------------------
# Dropout: the SeedGenerator states are part of the resumable state (in-process).
# --------------------------------------------------------------------------------------------

DROPOUT_STEPS = 6


class _Killed(Exception):
    """Raised by a callback to stop a run right after a checkpoint, like a kill would."""


def _dropout_config():
    return toy_config(steps=DROPOUT_STEPS, checkpoint_every=DROPOUT_STEPS // 2, eval_every=0,
                      best_metric="", image_summaries_every=0, log_every=1, deterministic=True)


def _dropout_task():
    """The toy with dropout 0.5 in the net and in a frozen prior that runs in training mode
    (its masks enter the loss as well), without the Trainer's RNG: only dropout draws."""
    return ToyTask(dropout=0.5, prior=True, use_rng=False)


def _losses(trainer):
    """The logged losses per step (timings left out: they differ between runs)."""
    return [{k: v for k, v in row.items() if k not in ("step_time_s", "examples_per_s")}
            for row in trainer.history["train"]]


def _kill_at(step):
    def callback(trainer, at, values):
        if at == step:
            raise _Killed()
    return callback


@pytest.fixture(scope="module")
def dropout_reference(tmp_path_factory):
    """(final weights of every model, logged losses) of an uninterrupted run with dropout."""
    trainer = loop.Trainer(_dropout_config(), _dropout_task(),
                           str(tmp_path_factory.mktemp("dropout_reference")))
    trainer.train()
    return all_weights(trainer), _losses(trainer), trainer


def test_resume_with_dropout_is_bitwise(dropout_reference, tmp_path):
    weights, losses, reference = dropout_reference
    half = DROPOUT_STEPS // 2
    first = loop.Trainer(_dropout_config(), _dropout_task(), str(tmp_path),
                         callbacks=[_kill_at(half)])
    with pytest.raises(_Killed):
        first.train()
    # Both models' dropout states are in the checkpoint, each once.
    keys = [name for name, _ in tf.train.list_variables(first.manager.latest_checkpoint)]
    assert sorted(k.split("/.ATTRIBUTES")[0] for k in keys if k.startswith("seed_generators/")
                  ) == ["seed_generators/net/0", "seed_generators/prior/0"]
    resumed = loop.Trainer(_dropout_config(), _dropout_task(), str(tmp_path))
    assert resumed.start_step == half
    resumed.train()
    assert _losses(resumed) == losses
    for got, expected in zip(all_weights(resumed), weights, strict=True):
        np.testing.assert_array_equal(got, expected)
    # Dropout did draw: the masks are not the same every step (the prior's output, which is
    # not trained, differs between two training-mode calls on the same image).
    prior = reference.models["prior"]
    image = tf.ones([1, 8, 8, 3])
    assert not np.array_equal(prior(image, training=True)["depth"].numpy(),
                              prior(image, training=True)["depth"].numpy())


def test_checkpoint_without_dropout_state_resumes_with_a_warning(dropout_reference, tmp_path,
                                                                  caplog):
    """A checkpoint of a run with dropout written before the seed states were saved (no
    `seed_generators` key) still resumes: the state starts over, and a log line says so."""
    reference = dropout_reference[2]
    folder = tmp_path / checkpoints.CHECKPOINT_SUBDIR
    old = tf.train.Checkpoint(models=reference.models, optimizer=reference.optimizer,
                              step=reference.step, rng=reference.rng,
                              iterator=reference._iterators["train"])
    manager = tf.train.CheckpointManager(old, str(folder), max_to_keep=1,
                                         checkpoint_name=checkpoints.CHECKPOINT_NAME)
    prefix = manager.save(checkpoint_number=int(reference.step.numpy()))
    assert not any(name.startswith("seed_generators/")
                   for name, _ in tf.train.list_variables(prefix))
    config = dataclasses.replace(_dropout_config(), train=dataclasses.replace(
        _dropout_config().train, steps=DROPOUT_STEPS + 2))
    with caplog.at_level("WARNING"):
        resumed = loop.Trainer(config, _dropout_task(), str(tmp_path))
    assert resumed.start_step == DROPOUT_STEPS
    assert any(prefix in record.getMessage() and "dropout" in record.getMessage()
               for record in caplog.records), [r.getMessage() for r in caplog.records]
    for got, expected in zip(all_weights(resumed), dropout_reference[0], strict=True):
        np.testing.assert_array_equal(got, expected)
    assert resumed.train().final_step == DROPOUT_STEPS + 2
