"""tools/train.py and tools/evaluate.py end to end, in subprocesses, as a user runs them.

One run: train S + W on tiny synthetic records for 2 steps, rerun the same command with more
steps (it must resume at the saved step), then evaluate with the constant baseline and a
side-by-side comparison, and check the JSON against the records and the Trainer's own
evaluation. (U is left out to keep the two train-step compilations affordable; the compiled U
modes are trained in test_tasks_suw.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_tasks_suw import write_tiny_records
from tf_depthseg.data import records, schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(module, args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", module] + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_train_resume_evaluate(tmp_path, learning_seed, record_measure):
    write_tiny_records(str(tmp_path / "rec"), train_seeds=(1 + learning_seed, 2 + learning_seed),
                       eval_seeds=(3 + learning_seed,))
    # Relative paths: resolved against the directory the tools run from.
    train_args = ["--config=suw/synthetic_sw", "--smoke", "--workdir=run",
                  "--set=data.train_pattern=rec/train-*.tfrecord",
                  "--set=data.eval_pattern=rec/val-*.tfrecord",
                  "--set=data.image_size=[32,96]", "--set=train.checkpoint_every=1",
                  "--set=train.eval_every=2", "--set=train.log_every=1",
                  f"--set=train.seed={learning_seed}"]
    first = check(run_tool("tools.train", train_args + ["--set=train.steps=2"], tmp_path))
    workdir = tmp_path / "run"
    assert "starting from scratch" in first and str(workdir / "checkpoints") in first
    config = json.loads((workdir / "config.json").read_text())
    assert config["data"]["train_pattern"] == str(tmp_path / "rec" / "train-*.tfrecord")
    assert (config["suw"]["supervised"], config["suw"]["unsupervised"],
            config["suw"]["weak"]) == ("soft_classification", "none", "patch")
    assert json.loads((workdir / "train_result.json").read_text())["final_step"] == 2

    second = check(run_tool("tools.train", train_args + ["--set=train.steps=3"], tmp_path))
    assert "resuming from step 2" in second
    result = json.loads((workdir / "train_result.json").read_text())
    assert (result["start_step"], result["final_step"]) == (2, 3)
    history = json.loads((workdir / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == [1, 2, 3]
    for name in ("supervised", "weak", "total"):
        assert all(np.isfinite(row[name]) for row in history["train"]), name
    trainer_eval = {row["step"]: row for row in history["eval"]}[3]

    out = check(run_tool("tools.evaluate", ["--workdir=run", "--checkpoint=latest",
                                            "--baselines", "--compare=run",
                                            "--out=eval.json"], tmp_path))
    assert "AbsRel" in out and "constant_median" in out
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["split"] == str(tmp_path / "rec" / "val-*.tfrecord")
    assert report["protocol"]["crop"] == "garg" and not report["protocol"]["median_scaling"]
    results = report["results"]
    assert list(results) == ["synthetic_sw", "constant_median", "synthetic_sw (run)"]
    names = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
    model = results["synthetic_sw"]
    assert model["checkpoint"].endswith("ckpt-3") and model["step"] == 3
    # The tool and the Trainer evaluate the same weights on the same images identically.
    record_measure("tool vs Trainer metrics: max rel diff",
                   max(abs(model[name] - trainer_eval[name]) / max(abs(trainer_eval[name]), 1e-7)
                       for name in names), below=1e-5)
    for name in names:
        assert model[name] == pytest.approx(trainer_eval[name], rel=1e-5), name
        assert model[name] == results["synthetic_sw (run)"][name]
    assert model["num_images"] == 4  # smoke: eval.max_examples=4
    # The baseline predicts the median of the training ground truth everywhere.
    depths = [schema.decode_example(s).depth
              for s in records.iterate_records(str(tmp_path / "rec" / "train-*.tfrecord"))]
    valid = np.concatenate([d[(d > 1e-3) & (d < 80)] for d in depths])
    baseline = results["constant_median"]
    assert baseline["median_depth_m"] == pytest.approx(float(np.median(valid)), abs=0.011)
    assert all(np.isfinite(baseline[name]) for name in names)
    assert 0 < baseline["abs_rel"] < 2 and 0 <= baseline["a1"] <= 1


def test_bad_input_gives_a_message_not_a_traceback(tmp_path):
    bad_key = run_tool("tools.train", ["--config=suw/synthetic_s", "--workdir=w",
                                       "--set=train.stepz=3"], tmp_path)
    assert bad_key.returncode == 2
    assert "Did you mean train.steps" in bad_key.stderr and "Traceback" not in bad_key.stderr
    no_config = run_tool("tools.train", ["--workdir=w"], tmp_path)
    assert no_config.returncode == 2 and "--config is required" in no_config.stderr
    no_run = run_tool("tools.evaluate", ["--workdir=missing"], tmp_path)
    assert no_run.returncode == 2 and "no such folder" in no_run.stderr
