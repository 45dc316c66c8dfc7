"""Two logical CPU devices under MirroredStrategy match one device on the same global batch.

Logical devices must be configured before TensorFlow initialises, so the comparison runs in
a subprocess (this file run as a script) that trains the toy task of test_training_toy.py
under both strategies and prints the largest weight differences. SGD is used because Adam is
nearly invariant to the gradient's scale and would hide a replica-sum bug; a second pair of
runs uses Adam with global-norm clipping tight enough to clip, to check that the clipping norm
is the norm of the summed gradient. A third pair adds the engine's facilities for other
tasks: a second input stream with its own batch size (each replica gets half of each), an
EMA teacher updated by `after_apply` (a cross-replica assignment of mirrored variables that
are not trained) and parameter groups with a learning-rate multiplier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
for _path in (REPO, TESTS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from tf_depthseg.training import distribute  # noqa: E402


def test_two_replicas_match_one_device(learning_seed, record_measure):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0",
               PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, os.path.abspath(__file__), str(learning_seed)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    indivisible_error = report.pop("indivisible_stream_error")
    for name, result in report.items():
        record_measure(f"{name}: max weight diff", result["max_weight_diff"], below=1e-5)
        record_measure(f"{name}: max grad-norm rel diff", result["max_grad_norm_rel_diff"],
                       below=1e-5)
        record_measure(f"{name}: weights moved", result["weights_moved"], above=1e-3)
    mirrored_mae, default_mae = report["sgd"]["eval_mae"]
    record_measure("sgd: eval mae rel diff", abs(mirrored_mae - default_mae) / default_mae,
                   below=1e-5)
    facilities = report["streams_ema_groups"]
    record_measure("streams_ema_groups: max |teacher - numpy EMA| on 2 replicas",
                   facilities["max_ema_diff"], below=1e-6)
    record_measure("adam_clipped: max grad norm (clip 0.002)",
                   report["adam_clipped"]["max_grad_norm"], above=0.002)
    for name, result in report.items():
        assert result["replicas"] == [2, 1], (name, result)
        # Same global batch, same updates: only the summation order differs.
        assert result["max_weight_diff"] < 1e-5, (name, result)
        assert result["max_grad_norm_rel_diff"] < 1e-5, (name, result)
        # Training did something (0 without updates; 0.08-0.3 measured, docs/testing.md).
        assert result["weights_moved"] > 1e-3, (name, result)
    mirrored_mae, default_mae = report["sgd"]["eval_mae"]
    assert mirrored_mae == pytest.approx(default_mae, rel=1e-5)
    # The clip was active (pre-clip norms 0.6-3.8 measured over seeds, docs/testing.md).
    assert report["adam_clipped"]["max_grad_norm"] > 0.002
    # Streams: every replica saw half of each stream's global batch, traced once per replica.
    assert facilities["traced_shapes"] == [
        [{"train": [2, 8, 8, 3], "extra": [1, 8, 8, 3]}] * 2,
        [{"train": [4, 8, 8, 3], "extra": [2, 8, 8, 3]}]]
    # The teacher (compared above with the net's weights) follows the EMA of the student on
    # two replicas, and both replicas hold the same teacher.
    assert facilities["max_ema_diff"] < 1e-6, facilities
    assert facilities["teacher_replicas_equal"] is True
    assert facilities["applies"] == [10, 10]
    # A stream whose batch does not divide by the replicas is a config error naming it.
    assert indivisible_error.startswith("ConfigError: "), indivisible_error
    assert "stream 'extra' is 3" in indivisible_error and "2 replicas" in indivisible_error


def test_tf_config_errors_are_clear(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(distribute.DistributionError, match="TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    with pytest.raises(distribute.DistributionError, match="not valid JSON"):
        distribute.parse_tf_config("{cluster")
    with pytest.raises(distribute.DistributionError, match="'cluster'"):
        distribute.parse_tf_config('{"task": {"type": "worker", "index": 0}}')
    with pytest.raises(distribute.DistributionError, match="host:port"):
        distribute.parse_tf_config('{"cluster": {"worker": ["nohost"]}, '
                                   '"task": {"type": "worker", "index": 0}}')
    with pytest.raises(distribute.DistributionError, match="out of range"):
        distribute.parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, '
                                   '"task": {"type": "worker", "index": 2}}')
    with pytest.raises(distribute.DistributionError, match="not a job"):
        distribute.parse_tf_config('{"cluster": {"worker": ["a:1"]}, '
                                   '"task": {"type": "ps", "index": 0}}')
    good = distribute.parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, '
                                      '"task": {"type": "worker", "index": 1}}')
    assert good["task"]["index"] == 1
    with pytest.raises(distribute.DistributionError, match="unknown"):
        distribute.get_strategy("tpu")


def test_default_strategy_is_single_chief_worker():
    strategy = distribute.get_strategy("auto")  # no GPUs here
    assert strategy.num_replicas_in_sync == 1
    assert distribute.worker_info(strategy) == (0, 1, True)
    assert distribute.local_replica_count(strategy) == 1


def test_logical_cpus_after_start_up_give_a_clear_error():
    import tensorflow as tf
    tf.constant(1.0) + 1.0  # make sure the runtime is initialised
    current = len(tf.config.list_logical_devices("CPU"))
    distribute.configure_logical_cpus(current)  # already so: nothing to do
    with pytest.raises(distribute.DistributionError, match="before any TensorFlow op"):
        distribute.configure_logical_cpus(current + 2)


def _compare_main(seed: int):
    """Prints the comparison as JSON; `seed` offsets the init and data seeds."""
    distribute.configure_logical_cpus(2)
    import tempfile

    import numpy as np

    import test_training_toy as toy
    from tf_depthseg import config as config_lib
    from tf_depthseg import errors
    from tf_depthseg.training import loop

    # The SGD pair also evaluates and writes pictures under both strategies.
    sgd = ["optim.optimizer=sgd", "optim.learning_rate=0.05", "optim.momentum=0.5",
           "optim.weight_decay=1e-3"]
    runs = {"sgd": (sgd + ["train.eval_every=10", "train.image_summaries_every=10"], {}),
            "adam_clipped": (["optim.clip_norm=0.002"], {}),
            "streams_ema_groups": (sgd + ["optim.lr_multipliers=[['head', 0.1]]"],
                                   dict(extra_batch=2, ema_decay=0.9, groups=True))}
    ema_decay = runs["streams_ema_groups"][1]["ema_decay"]
    report = {}
    with tempfile.TemporaryDirectory() as root:
        for name, (overrides, task_options) in runs.items():
            weights, norms, replicas, maes, traced, applies = [], [], [], [], [], []
            for distribution in ("mirrored", "default"):
                config = config_lib.apply_overrides(
                    toy.toy_config(steps=10, eval_every=0, best_metric="", log_every=1,
                                   image_summaries_every=0, distribution=distribution,
                                   seed=seed),
                    overrides)
                task = toy.ToyTask(use_rng=False, seed=7 + seed, **task_options)
                students = []
                trainer = loop.Trainer(
                    config, task, os.path.join(root, name, distribution),
                    callbacks=[lambda t, step, values: students.append(toy.model_weights(t))])
                initial = toy.model_weights(trainer)
                teacher = toy.model_weights(trainer, "teacher") if "teacher" in trainer.models \
                    else None
                maes.append(trainer.train().eval_metrics.get("mae"))
                weights.append(toy.all_weights(trainer))
                norms.append(np.array([row["grad_norm"] for row in trainer.history["train"]]))
                replicas.append(trainer.num_replicas)
                traced.append(task.traced_shapes)
                applies.append(int(task.applies.numpy()))
                if teacher is not None and distribution == "mirrored":
                    for student in students:  # the EMA in numpy, float32 like the step
                        teacher = [np.float32(ema_decay) * t + np.float32(1 - ema_decay) * s
                                   for t, s in zip(teacher, student)]
                    final = trainer.models["teacher"].weights
                    ema_diff = max(float(np.abs(v.numpy() - t).max())
                                   for v, t in zip(final, teacher))
                    copies = [[c.numpy() for c in trainer.strategy.experimental_local_results(
                        v.value)] for v in final]
                    replicas_equal = all(len(c) == 2 and np.array_equal(c[0], c[1])
                                         for c in copies)
            if task_options:
                report[name] = {"traced_shapes": traced, "max_ema_diff": ema_diff,
                                "teacher_replicas_equal": replicas_equal, "applies": applies}
            else:
                report[name] = {}
            report[name].update({
                "replicas": replicas,
                "max_weight_diff": max(float(np.abs(a - b).max())
                                       for a, b in zip(*weights)),
                "max_grad_norm_rel_diff": float(np.max(np.abs(norms[0] - norms[1]) / norms[1])),
                "max_grad_norm": float(norms[1].max()),
                "eval_mae": maes,
                "weights_moved": max(float(np.abs(a - b).max())
                                     for a, b in zip(weights[1], initial)),
            })
        config = toy.toy_config(distribution="mirrored")
        try:
            loop.Trainer(config, toy.ToyTask(extra_batch=3), os.path.join(root, "bad"))
            report["indivisible_stream_error"] = "none"
        except errors.ConfigError as error:
            report["indivisible_stream_error"] = f"{type(error).__name__}: {error}"
    print(json.dumps(report))


if __name__ == "__main__":
    _compare_main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
