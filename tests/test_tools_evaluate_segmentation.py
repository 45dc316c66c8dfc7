"""tools/evaluate.py (and tools/export.py) on segmentation runs: dispatch on the served
network's outputs.

No segmentation task ships yet, so a tiny one is defined here (`TinySegTask`: one network with
`semantic_logits` -- and `depth` with `tinyseg.with_depth` --, CamVid's 11 classes, evaluation
batches of IMAGE and SEMANTIC (and DEPTH)) and registered in `tasks.TASKS` -- in this process
to write the run, in the tool's process by a one-line launcher. The run's workdir is written
the way the engine writes it (config.json, a `tf.train.Checkpoint(models=..., step=...)` in
checkpoints/), the tool runs on it, and its mIoU, pixel accuracy and per-class IoU are compared
with a numpy confusion matrix of the Keras network's argmax (and, for the network that also
predicts depth, AbsRel and d1 with numpy means over images).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from test_export_saved_model import save_like_engine
from test_export_segmentation import build_small_segmentation_model
from tf_depthseg import common, errors
from tf_depthseg import config as config_lib
from tf_depthseg.export import restore
from tf_depthseg.data import datasets, pipeline, records, schema
from tf_depthseg.training import checkpoints, loop, tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
SIZE = (24, 32)
TASK = "tinyseg"
NUM_CLASSES = datasets.CAMVID_NUM_CLASSES
IGNORE = common.IGNORE_LABEL


@dataclasses.dataclass(frozen=True)
class TinysegConfig(config_lib._Section):  # pylint: disable=protected-access
    """The tiny task's own section: the dataset names the classes (datasets.py)."""

    dataset: str = "camvid"
    seed: int = 0
    with_depth: bool = False  # the network also predicts depth (both are evaluated)


class TinySegTask(loop.Task):
    """One segmentation network; cross-entropy over labelled pixels."""

    config_sections = {TASK: TinysegConfig}

    def build(self, config):
        return {"segmenter": build_small_segmentation_model(
            seed=config.tinyseg.seed, num_classes=NUM_CLASSES,
            with_depth=config.tinyseg.with_depth)}

    def _dataset(self, config, pattern, keys, batch_size, training, input_context=None):
        return pipeline.make_dataset(pattern, keys, batch_size, training=training,
                                     image_size=config.data.image_size, num_context=0,
                                     color_jitter=None, deterministic=True,
                                     input_context=input_context)

    def make_train_dataset(self, config, stream, input_context):
        return self._dataset(config, config.data.train_pattern,
                             [common.IMAGE, common.SEMANTIC], config.data.batch_size, True,
                             input_context)

    def make_eval_dataset(self, config):
        keys = [common.IMAGE, common.SEMANTIC] + (
            [common.DEPTH] if config.tinyseg.with_depth else [])
        return self._dataset(config, config.data.eval_pattern, keys,
                             config.data.eval_batch_size, False)

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        batch = batches["train"]
        logits = models["segmenter"](batch[common.IMAGE], training=training)[
            common.OUT_SEMANTIC_LOGITS]
        labels = tf.cast(batch[common.SEMANTIC][..., 0], tf.int32)
        labelled = tf.not_equal(labels, IGNORE)
        per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
            tf.where(labelled, labels, 0), logits)
        per_pixel = tf.where(labelled, per_pixel, 0.0)
        per_image = tf.reduce_sum(per_pixel, [1, 2]) / tf.maximum(
            tf.reduce_sum(tf.cast(labelled, tf.float32), [1, 2]), 1.0)
        total = loop.global_mean(per_image, global_batch_sizes["train"])
        return {common.LOSS_TOTAL: total}


def register():
    """Makes `config.task = "tinyseg"` buildable in this process."""
    tasks.TASKS[TASK] = TinySegTask
    config_lib.register_task_sections(TASK, TinySegTask.config_sections)


# The tool's process: register the tiny task, then run tools/evaluate.py (or another tool, see
# run_tool) as a user would.
LAUNCHER = ("import sys; sys.path.insert(0, {tests!r}); "
            "import test_tools_evaluate_segmentation as t; t.register(); "
            "import importlib; importlib.import_module('tools.' + {tool!r}).run()")


def numpy_scores(labels, predictions, num_classes):
    """(per-class IoU with NaN for absent classes, mIoU, pixel accuracy) over labelled
    pixels, from a confusion matrix counted with numpy."""
    keep = labels != IGNORE
    confusion = np.bincount(labels[keep].astype(np.int64) * num_classes
                            + predictions[keep].astype(np.int64),
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    hits = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - hits
    iou = np.full(num_classes, np.nan)
    iou[union > 0] = hits[union > 0] / union[union > 0]
    return iou, float(np.nanmean(iou)), float(hits.sum() / confusion.sum())


def write_run(tmp_path, seed, with_depth):
    """A tiny segmentation run's workdir and what numpy needs to check the tool."""
    rng = np.random.default_rng(20 + seed)
    images = rng.integers(0, 256, (5, *SIZE, 3), dtype=np.uint8)
    config = config_lib.ExperimentConfig(
        name="tiny_seg_run", task=TASK,
        data=config_lib.DataConfig(eval_pattern=str(tmp_path / "rec" / "val-*.tfrecord"),
                                   image_size=SIZE, eval_batch_size=2),
        eval=config_lib.EvalConfig(crop="none", median_scaling=False),
        task_sections={TASK: TinysegConfig(seed=seed, with_depth=with_depth)})
    models = TinySegTask().build(config)
    outputs = models["segmenter"](images.astype(np.float32) / 255.0, training=False)
    logits = outputs[common.OUT_SEMANTIC_LOGITS].numpy()
    predictions = np.argmax(logits, axis=-1)
    ordered = np.sort(logits, axis=-1)
    # Labels agree with the network on ~60 % of pixels (so IoUs are neither ~0 nor 1), some
    # are unlabelled, and pixels where the top two logits nearly tie are unlabelled too (their
    # argmax may flip between the tool's graph and this eager run).
    labels = np.where(rng.uniform(size=predictions.shape) < 0.6, predictions,
                      rng.integers(0, NUM_CLASSES, predictions.shape))
    labels[rng.uniform(size=labels.shape) < 0.1] = IGNORE
    labels[ordered[..., -1] - ordered[..., -2] < 1e-3] = IGNORE
    depth = np.round(rng.uniform(2.0, 40.0, labels.shape) * 256) / 256  # PNG-exact metres
    samples = [schema.Sample(image=image, source_id=f"frame_{index}",
                             semantic=label.astype(np.uint8),
                             depth=depth[index] if with_depth else None)
               for index, (image, label) in enumerate(zip(images, labels, strict=True))]
    records.write_split(str(tmp_path / "rec"), "val",
                        [schema.encode_example(s) for s in samples], num_shards=1)
    workdir = tmp_path / "run"
    save_like_engine(models, str(workdir / checkpoints.CHECKPOINT_SUBDIR), 4)
    config_lib.save_json(config, str(workdir))
    return {"workdir": workdir, "labels": labels, "predictions": predictions,
            "depth": depth, "predicted_depth": (outputs[common.OUT_DEPTH].numpy()[..., 0]
                                                if with_depth else None),
            "tmp_path": tmp_path}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, TASK, TinySegTask)
    monkeypatch.setitem(config_lib._TASK_SECTIONS, TASK,  # pylint: disable=protected-access
                        TinySegTask.config_sections)


def run_tool(workdir, *args, tool="evaluate"):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    launcher = LAUNCHER.format(tests=TESTS, tool=tool)
    return subprocess.run([sys.executable, "-c", launcher, f"--workdir={workdir}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("with_depth", [False, True], ids=["segmentation", "depth+segmentation"])
def test_evaluate_segmentation_run(registered, tmp_path, learning_seed, with_depth,
                                   record_measure):
    run = write_run(tmp_path, learning_seed, with_depth)
    out = tmp_path / "eval.json"
    result = run_tool(run["workdir"], f"--compare={run['workdir']}", f"--out={out}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    segmentation = report["segmentation"]
    names = list(datasets.CAMVID_CLASS_NAMES)
    assert segmentation["class_names"] == names and segmentation["num_classes"] == NUM_CLASSES
    assert list(segmentation["results"]) == ["tiny_seg_run", "tiny_seg_run (run)"]
    tool = segmentation["results"]["tiny_seg_run"]
    assert tool["step"] == 4 and tool["num_images"] == 5

    iou, miou, accuracy = numpy_scores(run["labels"], run["predictions"], NUM_CLASSES)
    record_measure("tool vs numpy mIoU: abs diff", abs(tool["miou"] - miou), below=1e-9)
    # A measurement with teeth: several classes neither missed nor perfect.
    assert np.sum((iou > 0) & (iou < 1)) >= 3 and 0.05 < miou < 0.95
    assert tool["miou"] == pytest.approx(miou, abs=1e-9)
    assert tool["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    for name, expected in zip(names, iou, strict=True):
        if np.isnan(expected):  # in neither labels nor predictions: null in the JSON
            assert tool[f"iou/{name}"] is None, name
        else:
            assert tool[f"iou/{name}"] == pytest.approx(expected, abs=1e-9), name
    assert segmentation["results"]["tiny_seg_run (run)"]["miou"] == tool["miou"]
    # The printout: summary table, then one IoU row per class with CamVid's names.
    assert "mIoU" in result.stdout and "(camvid)" in result.stdout
    for name in names:
        row = next(line for line in result.stdout.splitlines() if line.startswith(name + " "))
        value = tool[f"iou/{name}"]
        assert row.split()[1:] == 2 * ["n/a" if value is None else f"{value:.4f}"], row

    if not with_depth:
        assert "results" not in report and "protocol" not in report  # no depth evaluated
        return
    # Both: the Eigen table too, from the same run of the network (crop none, metric depth).
    assert "AbsRel" in result.stdout and report["protocol"]["crop"] == "none"
    depth_tool = report["results"]["tiny_seg_run"]
    gt, pred = run["depth"], np.clip(run["predicted_depth"], 1e-3, 80.0)
    abs_rel = np.mean(np.abs(gt - pred) / gt, axis=(1, 2)).mean()
    a1 = np.mean(np.maximum(gt / pred, pred / gt) < 1.25, axis=(1, 2)).mean()
    record_measure("tool vs numpy AbsRel: rel diff", abs(depth_tool["abs_rel"] / abs_rel - 1),
                   below=1e-5)
    assert depth_tool["abs_rel"] == pytest.approx(abs_rel, rel=1e-5)
    assert depth_tool["a1"] == pytest.approx(a1, abs=1e-3)  # a pixel may sit on 1.25
    assert depth_tool["num_images"] == 5


def test_evaluate_segmentation_errors(registered, tmp_path):
    run = write_run(tmp_path, 0, with_depth=False)
    baselines = run_tool(run["workdir"], "--baselines")
    assert baselines.returncode == 2 and "--baselines" in baselines.stderr
    assert "Traceback" not in baselines.stderr
    wrong = run_tool(run["workdir"], "--dataset=cityscapes")  # 19 classes, the network 11
    assert wrong.returncode == 2 and "11 classes" in wrong.stderr and "19" in wrong.stderr
    with pytest.raises(errors.ConfigError, match="known: cityscapes, camvid"):
        restore.dataset_classes("pascal")


def test_export_tool_on_a_depth_and_segmentation_run(registered, tmp_path, learning_seed,
                                                     record_measure):
    run = write_run(tmp_path, learning_seed, with_depth=True)
    result = run_tool(run["workdir"], f"--output_dir={tmp_path}/export", tool="export")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "classes:    11 (camvid: Sky, Building" in result.stdout
    metadata = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert metadata["outputs"] == ["depth", "uncertainty", "semantic_class_ids",
                                   "semantic_probabilities"]
    assert metadata["segmentation"]["class_names"] == list(datasets.CAMVID_CLASS_NAMES)
    assert metadata["segmentation"]["palette"] == datasets.CAMVID_PALETTE[:NUM_CLASSES].tolist()
    assert metadata["source"]["step"] == 4 and metadata["input_size"] == list(SIZE)
    for kind in ("saved_model", "tflite"):
        differing = metadata["verification"][kind]["semantic_class_ids"]
        record_measure(f"{kind}: class ids differing from Keras", differing, below=0.01)
        assert differing < 0.01
