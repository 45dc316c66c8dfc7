"""Kill -9 during training, restart, and end bitwise equal to a run never interrupted.

Both runs use the toy task of test_training_toy.py in deterministic mode (op determinism,
seeded stateless augmentation keyed by stream position, a checkpointed RNG adding input noise
in the loss, two shuffled, checkpointed tf.data iterators: the "train" stream of batch 4 and
an "extra" stream of batch 2, and an EMA teacher updated inside the train step), as
subprocesses. The final weights of the net and of the teacher must be bitwise equal.

Bitwise equality holds on one machine: both runs execute the same kernels. Another CPU (or
TF_ENABLE_ONEDNN_OPTS=0) picks other kernels and ends with other weights, but again equal
between its own interrupted and uninterrupted runs; checkpoints are never compared across
machines here (docs/testing.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
SCRIPT = os.path.join(TESTS, "test_training_toy.py")
STEPS = 40


def _launch(workdir, seed, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0",
               PYTHONPATH=REPO)
    return subprocess.Popen(
        [sys.executable, SCRIPT, "--workdir", str(workdir), "--steps", str(STEPS),
         "--checkpoint_every", "10", "--deterministic", "--seed", str(seed),
         "--extra_batch", "2", "--ema_decay", "0.9", *extra],
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
