"""Annotation data selection (tf_depthseg/selection, tools/select_annotations).

Pure parts against hand examples and independent numpy computations (farthest point, bias,
seeds, pooling, berHu, difficulty); then one tiny selection end to end: the tool in a
subprocess (the uninterrupted run), the library in-process killed after step 1 and resumed,
whose files must equal the tool's; the ids file feeds `seg.labeled_ids_file`.

Records are tiny images (32x48) of noise around a per-image colour; the SDE teacher is an
undilated ResNet-18 SDE run with random weights (config.json + checkpoint, as tools/train
writes them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from test_export_saved_model import save_like_engine
from tf_depthseg import common, errors
from tf_depthseg import config as cfg
from tf_depthseg.data import records, schema
from tf_depthseg.selection import farthest, run, scores
from tf_depthseg.selection import student as student_lib
from tf_depthseg.training.tasks import make_task
from tf_depthseg.training.tasks import seg as seg_task
from tf_depthseg.training.tasks.sde_config import SDEConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 32, 48
NUM_RECORDS = 8
STEPS = (2, 4)


# ---------------------------------------------------------------------------------------------
# Iterative farthest point, bias, seeds (numpy).
# ---------------------------------------------------------------------------------------------
def reference_ifp(features, count, chosen, bias):
    """The reference's algorithm on the full matrix (label_selection.py): D = cdist + bias
    (per column), zero diagonal; repeatedly argmax over columns of the min over chosen rows."""
    distances = farthest.pairwise_distances(features, bias)
    chosen, picks = list(chosen), []
    for _ in range(count):
        best = int(np.argmax(distances[chosen].min(axis=0)))
        if best in chosen:
            break
        chosen.append(best)
        picks.append(best)
    return picks


def test_farthest_point_hand_example():
    # Points on a line: from {0}, 10.5 is farthest (10.5); then 6 (4.5 from 10.5); then 2
    # (2 from 0; 1 is 1 from 0 and 10 is 0.5 from 10.5).
    x = np.array([0.0, 1.0, 2.0, 6.0, 10.0, 10.5])[:, None]
    picks = farthest.iterative_farthest_point(x, 3, chosen=[0])
    assert picks.indices == [5, 3, 2]
    np.testing.assert_allclose(picks.scores, [10.5, 4.5, 2.0])
    assert picks.indices == reference_ifp(x, 3, [0], None)
    # Everything left duplicates a chosen point (all scores 0, the argmax lands on a chosen
    # image): the reference stops there, with fewer picks than asked.
    duplicates = np.array([[0.0], [0.0], [5.0]])
    assert farthest.iterative_farthest_point(duplicates, 2, chosen=[0]).indices == [2]
    assert reference_ifp(duplicates, 2, [0], None) == [2]
    with pytest.raises(ValueError, match="cannot add 3 images"):
        farthest.iterative_farthest_point(x, 3, chosen=[0, 1, 2, 3])


def test_bias_large_picks_the_most_difficult_zero_is_pure_farthest_point():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 5))
    difficulty = rng.uniform(0.01, 0.1, size=30)
    chosen = [3, 17]
    plain = farthest.iterative_farthest_point(features, 6, chosen)
    assert plain.indices == reference_ifp(features, 6, chosen, None)
    zero = farthest.iterative_farthest_point(features, 6, chosen, bias=0.0 * difficulty)
    assert zero.indices == plain.indices and zero.scores == plain.scores
    # A bias far above every distance: the picks go by difficulty, highest first.
    strong = farthest.iterative_farthest_point(features, 6, chosen, bias=1e6 * difficulty)
    by_difficulty = [i for i in np.argsort(-difficulty) if i not in chosen][:6]
    assert strong.indices == by_difficulty
    # A moderate bias changes the choice, and the matrix-based reference agrees.
    moderate = 20.0 * difficulty
    mixed = farthest.iterative_farthest_point(features, 6, chosen, bias=moderate)
    assert mixed.indices == reference_ifp(features, 6, chosen, moderate)
    assert mixed.indices != plain.indices


def test_choice_is_deterministic_per_seed():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 8))
    runs = {seed: farthest.iterative_farthest_point(features, 10, seed=seed).indices
            for seed in range(6)}
    assert runs[0] == farthest.iterative_farthest_point(features.copy(), 10, seed=0).indices
    for seed, picks in runs.items():
        assert picks[0] == np.random.RandomState(seed).permutation(40)[0]
        assert picks[1:] == reference_ifp(features, 9, picks[:1], None)
    assert len({tuple(p) for p in runs.values()}) > 1


def test_adaptive_pool_and_standardize():
    values = np.arange(3 * 5, dtype=np.float64).reshape(3, 5, 1)
    # PyTorch's bins for 3 -> 2 rows: [0, 2), [1, 3); 5 -> 2 columns: [0, 3), [2, 5).
    expected = np.array([[values[0:2, 0:3].mean(), values[0:2, 2:5].mean()],
                         [values[1:3, 0:3].mean(), values[1:3, 2:5].mean()]])
    np.testing.assert_allclose(farthest.adaptive_pool(values, (2, 2))[..., 0], expected)
    assert farthest.adaptive_pool(values, (2, 2), "max")[1, 1, 0] == values[1:3, 2:5].max()
    # Larger than the input: every output cell covers at least one input cell.
    up = farthest.adaptive_pool(values, (4, 8))
    assert up.shape == (4, 8, 1) and up[0, 0, 0] == 0 and up[-1, -1, 0] == 14
    features = np.random.default_rng(2).normal(3.0, 2.0, size=(6, 2, 3, 4))
    standard = farthest.standardize(features)
    np.testing.assert_allclose(standard.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(standard.std(axis=(0, 1, 2), ddof=1), 1)


# ---------------------------------------------------------------------------------------------
# berHu and difficulty (TensorFlow) against numpy.
# ---------------------------------------------------------------------------------------------
def test_berhu_matches_numpy():
    rng = np.random.default_rng(3)
    prediction = rng.uniform(0, 1, (2, 10, 6, 1)).astype(np.float32)
    target = rng.uniform(0, 1, (2, 10, 6, 1)).astype(np.float32)
    mask = np.ones((1, 10, 1, 1), np.float32)
    mask[:, 9:] = 0  # int(0.9 * 10): the bottom row is out
    np.testing.assert_array_equal(scores.bottom_mask((2, 10, 6, 1), 0.1).numpy(), mask)
    error = np.abs(target - prediction) * mask
    c = 0.2 * error.max()
    expected = np.where(error <= c, error, (error ** 2 + c ** 2) / (2 * c)).mean()
    got = scores.berhu(tf.constant(prediction), tf.constant(target), tf.constant(mask))
    assert got.shape == (2,)
    np.testing.assert_allclose(float(tf.reduce_mean(got)), expected, rtol=1e-5)
    # c is a constant: d/dp of the quadratic branch is -e / c * sign(t - p).
    variable = tf.Variable(prediction)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(scores.berhu(variable, tf.constant(target), tf.constant(mask)))
    grad = tape.gradient(loss, variable).numpy()
    slope = np.where(error <= c, 1.0, error / c) * -np.sign(target - prediction) * mask
    np.testing.assert_allclose(grad, slope / error.size, rtol=1e-4, atol=1e-9)
    # All errors zero (c = 0): loss 0 and a finite gradient.
    with tf.GradientTape() as tape:
        same = tf.Variable(target)
        zero = tf.reduce_mean(scores.berhu(same, tf.constant(target)))
    assert float(zero) == 0 and np.all(np.isfinite(tape.gradient(zero, same).numpy()))


def test_difficulty_matches_numpy():
    rng = np.random.default_rng(4)
    height, width = 20, 16
    teacher = rng.uniform(0.1, 1, (2, height, width, 1)).astype(np.float32)
    teacher[0, 5, 7] = 0.01  # a far pixel: its 7x7 neighbourhood is left out
    teacher[1, 0, 0] = 0.05  # at the corner: the window is cut by the border
    student = rng.uniform(0, 1, (2, height, width, 1)).astype(np.float32)
    far = teacher[..., 0] < 0.07
    dilated = np.zeros_like(far)
    for b, y, x in zip(*np.nonzero(far)):
        dilated[b, max(0, y - 3):y + 4, max(0, x - 3):x + 4] = True
    keep = ~dilated
    keep[:, int(0.87 * height):] = False
    error = np.abs(np.log1p(student) - np.log1p(teacher))[..., 0] * keep
    expected = error.mean(axis=(1, 2))
    got = scores.difficulty(tf.constant(student), tf.constant(teacher), 0.07, 7, 0.13)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert keep[0, 2:9, 4:11].sum() == 0 and keep[0, 9, 11]


# ---------------------------------------------------------------------------------------------
# End to end on tiny records with a random SDE.
# ---------------------------------------------------------------------------------------------
def write_pool(root: str, pseudo: bool = False) -> str:
    """NUM_RECORDS records in 2 shards, each noise around its own colour (optionally with a
    pseudo disparity); returns their glob."""
    rng = np.random.default_rng(5)
    samples = []
    for index in range(NUM_RECORDS):
        colour = rng.integers(0, 256, 3)
        image = np.clip(colour + rng.normal(0, 10 + 10 * (index % 4), (HEIGHT, WIDTH, 3)), 0,
                        255).astype(np.uint8)
        disparity = rng.uniform(0, 1, (HEIGHT, WIDTH)) if pseudo else None
        samples.append(schema.Sample(image=image, source_id=f"drive/{index:03d}",
                                     pseudo_disparity=disparity))
    records.write_split(root, "train", (schema.encode_example(s) for s in samples),
                        num_shards=2)
    return records.split_pattern(root, "train")


def write_sde_run(workdir: str) -> None:
    """A task=sde run folder (config.json + checkpoints/ckpt-3) with random weights."""
    config = cfg.ExperimentConfig(name="tiny_sde", task="sde", data=cfg.DataConfig(
        image_size=(HEIGHT, WIDTH)), task_sections={"sde": SDEConfig(
            backbone="resnet18", dilate_last_stage=False)})
    models = make_task(config).build(config)
    os.makedirs(workdir, exist_ok=True)
    cfg.save_json(config, workdir)
    save_like_engine(models, os.path.join(workdir, "checkpoints"), step=3)


def overrides(pattern: str, sde: str):
    return [f"data.train_pattern={pattern}", f"selection.sde_from={sde}",
            f"data.image_size=[{HEIGHT},{WIDTH}]", f"selection.steps={list(STEPS)}"]


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory):
    """tools/select_annotations run once, uninterrupted: (root, pattern, sde, output dir,
    its stdout)."""
    root = str(tmp_path_factory.mktemp("selection"))
    pattern = write_pool(os.path.join(root, "records"))
    sde = os.path.join(root, "sde")
    write_sde_run(sde)
    output = os.path.join(root, "tool")
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    args = ["--config=hoyer/synthetic_camvid_selection", "--smoke", f"--output_dir={output}",
            f"--input={pattern}", f"--sde={sde}", f"--steps={','.join(map(str, STEPS))}",
            f"--set=data.image_size=[{HEIGHT},{WIDTH}]"]
    result = subprocess.run([sys.executable, "-m", "tools.select_annotations", *args],
                            cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, pattern, sde, output, result.stdout


def result_files(folder: str) -> dict:
    """The selection's result files (not the students' logs nor timings) by name."""
    names = [run.SELECTION_FILENAME] + [f(size) for size in STEPS
                                        for f in (run.ids_filename, run.sheet_filename)]
    return {name: open(os.path.join(folder, name), "rb").read() for name in names}


def test_tool_writes_each_step_and_a_resumed_run_writes_the_same(tool_run):
    root, pattern, sde, output, stdout = tool_run
    assert "step 2/2: 4 images (2 new)" in stdout and "seg.labeled_ids_file=" in stdout
    state = json.load(open(os.path.join(output, run.SELECTION_FILENAME)))
    first, second = state["steps"]
    assert [first["size"], second["size"]] == list(STEPS)
    assert second["ids"][:2] == first["ids"] and len(set(second["ids"])) == 4
    assert first["student"] is None and second["student"]["trained_on"] == 2
    # The stored step's student keeps its record, not its checkpoints (selection.keep_students).
    student_dir = os.path.join(output, second["student"]["workdir"])
    assert os.path.isfile(os.path.join(student_dir, "history.json"))
    assert not os.path.exists(os.path.join(student_dir, "checkpoints"))
    assert state["teacher"]["disparity"] == "network"  # the records have no pseudo depth
    # Step 2's picks follow from the stored features and difficulties (bias 10 x difficulty,
    # 0 for the labelled images) by the reference's matrix algorithm.
    with np.load(os.path.join(output, run.FEATURES_FILENAME)) as cached:
        ids = list(cached["ids"])
        features = farthest.standardize(cached["features"].astype(np.float64))
    assert len(ids) == NUM_RECORDS
    bias = np.array([10.0 * second["difficulty"][i] for i in ids])
    chosen = [ids.index(i) for i in first["ids"]]
    bias[chosen] = 0
    expected = reference_ifp(features.reshape(len(ids), -1), 2, chosen, bias)
    assert [p["source_id"] for p in second["picks"]] == [ids[i] for i in expected]
    for pick in second["picks"]:
        assert pick["bias"] == pytest.approx(10 * pick["difficulty"])
        assert pick["score"] == pytest.approx(pick["distance"] + pick["bias"])
    assert first["ids"][0] == ids[np.random.RandomState(0).permutation(len(ids))[0]]
    # The ids file is what seg.labeled_ids_file reads.
    ids_file = os.path.join(output, run.ids_filename(4))
    seg = cfg.apply_overrides(cfg.load_config("hoyer/synthetic_camvid_seg", smoke=True), [
        f"data.train_pattern={pattern}", "seg.labeled_count=0",
        f"seg.labeled_ids_file={ids_file}"])
    assert list(seg_task.labelled_source_ids(seg)) == sorted(second["ids"])

    # The same selection in-process, killed right after step 1 was stored, then rerun.
    config = cfg.apply_overrides(
        cfg.load_config("hoyer/synthetic_camvid_selection", smoke=True), overrides(pattern, sde))
    resumed = os.path.join(root, "resumed")

    class Killed(Exception):
        pass

    def kill(index, entry):
        raise Killed()

    with pytest.raises(Killed):
        run.run_selection(config, resumed, sde_key="--sde", on_step=kill)
    assert os.path.isfile(os.path.join(resumed, run.ids_filename(STEPS[0])))
    assert not os.path.exists(os.path.join(resumed, run.ids_filename(STEPS[1])))
    result = run.run_selection(config, resumed, sde_key="--sde")
    assert result.resumed_after == 1 and list(result.seconds) == [STEPS[1]]
    assert result_files(resumed) == result_files(output)
    # Other settings than the stored ones: refused, naming the key.
    changed = cfg.apply_overrides(config, ["selection.bias_weight=3"])
    with pytest.raises(errors.ConfigError, match="selection.bias_weight=10.0"):
        run.run_selection(changed, resumed)


def test_teacher_disparity_source_and_the_student_stream(tmp_path):
    plain = write_pool(str(tmp_path / "plain"))
    pseudo = write_pool(str(tmp_path / "pseudo"), pseudo=True)
    base = cfg.load_config("hoyer/synthetic_camvid_selection", smoke=True)
    for pattern, mode, expected in [(plain, "auto", "network"), (pseudo, "auto", "records"),
                                    (pseudo, "network", "network")]:
        config = cfg.apply_overrides(base, [f"data.train_pattern={pattern}",
                                            f"selection.teacher_disparity={mode}"])
        assert run.resolve_teacher_disparity(config) == expected
    config = cfg.apply_overrides(base, [f"data.train_pattern={plain}",
                                        "selection.teacher_disparity=records"])
    with pytest.raises(errors.BadInputError, match="predict_pseudo_depth"):
        run.resolve_teacher_disparity(config)
    # Records mode: the student reads the stored disparity of the labelled records only.
    config = cfg.apply_overrides(base, [f"data.train_pattern={pseudo}",
                                        "selection.teacher_disparity=records",
                                        f"data.image_size=[{HEIGHT},{WIDTH}]"])
    task = student_lib.StudentTask(["drive/001", "drive/006"])
    dataset = task.make_train_dataset(config, "train", tf.distribute.InputContext())
    batches = list(dataset.take(3))
    seen = {s.decode() for b in batches for s in b[common.SOURCE_ID].numpy()}
    assert seen == {"drive/001", "drive/006"}
    assert batches[0][common.PSEUDO_DISPARITY].shape == (2, HEIGHT, WIDTH, 1)
    assert task.frozen_models(config) == []
