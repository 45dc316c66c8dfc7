"""Export of the SUW encoder-decoder from a training run's checkpoint, end to end.

A run's workdir is made the way the engine makes it (the SUW task's models, a
`tf.train.Checkpoint(models=..., step=...)` saved by a CheckpointManager into checkpoints/ and
best/, config.json), `tools/export.py` runs on it in a subprocess, and the SavedModel (plain
`tf.saved_model.load` and `saved_model_cli`) and the TFLite file (`tf.lite.Interpreter`) are
compared with the Keras model.

Weights and images are drawn with seeds offset by `learning_seed`; the tolerances are checked
against the differences measured over seeds and oneDNN settings (docs/testing.md).
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg.export import exporter, restore
from tf_depthseg.training import checkpoints
from tf_depthseg.training.tasks.suw_config import SUWConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (32, 48)
LATEST_STEP, BEST_STEP = 7, 5


def small_suw_config():
    """The SUW encoder-decoder (Table 1 layout) with few bins and a short SAM, S loss only."""
    return config_lib.ExperimentConfig(
        name="export_test",
        data=config_lib.DataConfig(image_size=SIZE),
        export=config_lib.ExportConfig(tflite=True, tflite_quantize="none"),
        task_sections={"suw": SUWConfig(network="suw_encoder_decoder", num_bins=16,
                                        sam_dilations=(1, 2), supervised="soft_classification",
                                        unsupervised="none", weak="none")})


def randomize(model, seed):
    """New random values for every variable, batch-norm statistics included (so inference
    mode differs from training mode and a wrong restore cannot go unnoticed)."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        shape = tuple(variable.shape)
        if "moving_variance" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif "moving_mean" in variable.path:
            value = rng.normal(0.0, 0.1, shape)
        elif "gamma" in variable.path:
            value = rng.uniform(0.8, 1.2, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        variable.assign(value.astype(np.float32))


def save_like_engine(models, directory, step):
    """Saves as the Trainer does (`models` dict and `step` in the checkpoint, ckpt-N)."""
    step_variable = tf.Variable(step, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(models=models, step=step_variable)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2,
                                         step_counter=step_variable,
                                         checkpoint_name=checkpoints.CHECKPOINT_NAME)
    return manager.save(checkpoint_number=step)


def run_tool(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "tools.export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def start_saved_model_cli(export_dir):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = ([cli] if os.path.exists(cli) else
               [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"])
    return subprocess.Popen(command + ["show", "--dir", export_dir, "--all"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, learning_seed):
    root = tmp_path_factory.mktemp("export_run")
    workdir = str(root / "workdir")
    config = small_suw_config()
    models = restore.build_task_models(config)
    depth = models[common.MODEL_DEPTH]
    randomize(depth, seed=1 + learning_seed)
    best_weights = [v.numpy() for v in depth.variables]
    save_like_engine(models, os.path.join(workdir, checkpoints.BEST_SUBDIR), BEST_STEP)
    randomize(depth, seed=2 + learning_seed)
    save_like_engine(models, os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR), LATEST_STEP)
    config_lib.save_json(config, workdir)
    export_dir = str(root / "export")
    result = run_tool([f"--workdir={workdir}", f"--output_dir={export_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    # saved_model_cli runs in the background while the in-process tests use the other core.
    cli_process = start_saved_model_cli(export_dir)
    yield {"workdir": workdir, "export_dir": export_dir, "model": depth, "config": config,
           "seed": learning_seed,
           "best_weights": best_weights, "stdout": result.stdout, "cli_process": cli_process}
    if cli_process.poll() is None:
        cli_process.kill()
        cli_process.wait()


def images_uint8(count, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def tolerance_used(actual, desired, rtol, atol=0.0):
    """Largest |actual - desired| / (atol + rtol |desired|): assert_allclose passes iff <= 1."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    return float(np.max(np.abs(actual - desired) / (atol + rtol * np.abs(desired))))


def test_restore_latest_and_best(run):
    latest = restore.restore_serving_model(run["workdir"])
    assert latest.step == LATEST_STEP and latest.checkpoint.endswith(f"ckpt-{LATEST_STEP}")
    assert latest.config == run["config"]
    for restored, original in zip(latest.model.variables, run["model"].variables, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())
    # Restores into the same architecture (reusing the object spares a second build).
    best = restore.restore_serving_model(run["workdir"], checkpoint="best",
                                         build_models=lambda config: {"depth": latest.model})
    assert best.step == BEST_STEP
    for restored, expected in zip(best.model.variables, run["best_weights"], strict=True):
        np.testing.assert_array_equal(restored.numpy(), expected)


def test_restore_errors_say_what_to_do(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint found"):
        restore.select_checkpoint(str(tmp_path), "latest")
    with pytest.raises(checkpoints.CheckpointError, match="--checkpoint=latest"):
        restore.select_checkpoint(str(tmp_path), "best")
    with pytest.raises(checkpoints.CheckpointError, match="not a checkpoint"):
        restore.select_checkpoint(str(tmp_path), str(tmp_path / "ckpt-3"))


def test_saved_model_signature_matches_keras(run, record_measure):
    model = run["model"]
    loaded = tf.saved_model.load(run["export_dir"])
    serve = loaded.signatures["serving_default"]
    (), inputs = serve.structured_input_signature
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape.as_list() == [
        None, None, None, 3]
    assert sorted(serve.structured_outputs) == ["depth", "uncertainty"]

    # At the export size: the Keras model on images / 255, inference mode.
    images = images_uint8(3, SIZE, seed=3 + run["seed"])
    served = serve(images=tf.constant(images))
    expected = model(images.astype(np.float32) / 255.0, training=False)
    record_measure("depth: fraction of rtol 1e-5 used",
                   tolerance_used(served["depth"], expected["depth"], 1e-5), below=1)
    record_measure("uncertainty: fraction of atol 1e-6 used",
                   tolerance_used(served["uncertainty"], expected["uncertainty"], 0, 1e-6),
                   below=1)
    record_measure("depth range (ptp, m)", np.ptp(expected["depth"].numpy()), above=0.1)
    np.testing.assert_allclose(served["depth"].numpy(), expected["depth"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(served["uncertainty"].numpy(),
                               expected["uncertainty"].numpy(), atol=1e-6)
    assert float(np.ptp(expected["depth"].numpy())) > 0.1  # not a constant prediction

    # Another size: resized to the export size inside, outputs back to the caller's size.
    other = images_uint8(1, (40, 60), seed=4 + run["seed"])
    served = serve(images=tf.constant(other))
    resized = tf.image.resize(other.astype(np.float32) / 255.0, SIZE, method="bilinear")
    expected = model(resized, training=False)
    for key in ("depth", "uncertainty"):
        back = tf.image.resize(expected[key], (40, 60), method="bilinear").numpy()
        assert served[key].shape == (1, 40, 60, 1)
        record_measure(f"{key} at 40x60: fraction of rtol 1e-5 + atol 1e-6 used",
                       tolerance_used(served[key], back, 1e-5, 1e-6), below=1)
        np.testing.assert_allclose(served[key].numpy(), back, rtol=1e-5, atol=1e-6)


def test_tflite_matches_keras(run, record_measure):
    model = run["model"]
    path = os.path.join(run["export_dir"], exporter.TFLITE_FILENAME)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    assert list(runner.get_input_details()["images"]["shape"]) == [1, *SIZE, 3]
    images = images_uint8(2, SIZE, seed=5 + run["seed"])
    expected = model(images.astype(np.float32) / 255.0, training=False)
    diffs = {}
    for index in range(len(images)):
        outputs = runner(images=images[index:index + 1])
        for key in ("depth", "uncertainty"):
            diff = np.max(np.abs(outputs[key] - expected[key].numpy()[index:index + 1]))
            diffs[key] = max(diffs.get(key, 0.0), float(diff))
    size = os.path.getsize(path)
    print(f"SUW TFLite float32: {size} bytes, max abs diff {diffs}")
    record_measure("depth max abs diff / max depth",
                   diffs["depth"] / float(np.max(expected["depth"])), below=1e-4)
    record_measure("uncertainty max abs diff", diffs["uncertainty"], below=1e-5)
    assert diffs["depth"] < 1e-4 * float(np.max(expected["depth"]))
    assert diffs["uncertainty"] < 1e-5


def test_metadata_and_tool_output(run, record_measure):
    with open(os.path.join(run["export_dir"], exporter.METADATA_FILENAME)) as f:
        metadata = json.load(f)
    assert metadata["input_size"] == list(SIZE)
    assert metadata["depth_range"] == [1.0, 80.0]
    assert metadata["source"]["step"] == LATEST_STEP
    assert metadata["source"]["checkpoint"].endswith(f"checkpoints/ckpt-{LATEST_STEP}")
    assert config_lib.from_dict(config_lib.ExperimentConfig, metadata["config"]) == run[
        "config"]
    assert metadata["signature"]["key"] == "serving_default"
    assert metadata["tflite"]["bytes"] == os.path.getsize(
        os.path.join(run["export_dir"], exporter.TFLITE_FILENAME))
    assert metadata["num_params"] == run["model"].count_params()
    # The tool loaded both files back and compared them with the Keras model.
    verification = metadata["verification"]
    record_measure("verification: SavedModel depth", verification["saved_model"]["depth"],
                   below=1e-3)
    record_measure("verification: TFLite depth", verification["tflite"]["depth"], below=1e-2)
    record_measure("verification: TFLite uncertainty", verification["tflite"]["uncertainty"],
                   below=1e-4)
    assert verification["image_size"] == list(SIZE)
    assert verification["saved_model"]["depth"] < 1e-3
    assert verification["tflite"]["depth"] < 1e-2
    assert verification["tflite"]["uncertainty"] < 1e-4
    assert "serving_default" in run["stdout"] and "model.tflite" in run["stdout"]


def test_saved_model_cli_shows_signature(run):
    process = run["cli_process"]
    text, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors[-2000:]
    block = text[text.index("signature_def['serving_default']"):]
    assert "inputs['images'] tensor_info" in block
    assert "dtype: DT_UINT8" in block and "shape: (-1, -1, -1, 3)" in block
    assert "outputs['depth'] tensor_info" in block
    assert "outputs['uncertainty'] tensor_info" in block
    assert "dtype: DT_FLOAT" in block
