"""Damaged checkpoints and leftovers of a killed save: never a silent restart, never a traceback.

Unit tests on a one-variable checkpoint (which file is named, with and without the sha256
sidecar), then the Trainer on the toy task of test_training_toy.py: it resumes from the
newest intact checkpoint and, in deterministic mode, still ends bitwise equal to a run that
was never damaged; readers (evaluation, export) fall back the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_training_toy import ToyTask, model_weights, toy_config
from tf_depthseg.export import restore
from tf_depthseg.training import checkpoints, loop

DATA = ".data-00000-of-00001"


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def save_numbered(folder, numbers=(1, 2, 3), sidecar=True):
    """Checkpoints ckpt-N of one 4000-float variable holding N everywhere; their prefixes."""
    value = tf.Variable(tf.zeros([4000]))
    checkpoint = tf.train.Checkpoint(value=value)
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=10,
                                         checkpoint_name=checkpoints.CHECKPOINT_NAME)
    prefixes = []
    for number in numbers:
        value.assign(tf.fill([4000], float(number)))
        prefixes.append(manager.save(checkpoint_number=number))
        if sidecar:
            checkpoints.write_sidecar(prefixes[-1])
    return prefixes


def restored_value(prefix):
    value = tf.Variable(tf.zeros([4000]))
    tf.train.Checkpoint(value=value).restore(prefix).assert_existing_objects_matched()
    return float(value.numpy()[0])


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def flip_byte(path, where=0.5):
    data = bytearray(open(path, "rb").read())
    data[int(len(data) * where)] ^= 0xFF
    open(path, "wb").write(bytes(data))


# (damage applied to the newest checkpoint's prefix, the file that must be named,
#  the reason with a sidecar, the reason without one)
DAMAGES = {
    "truncated_data": (lambda p: truncate(p + DATA), DATA, "truncated", "unreadable"),
    "flipped_data_byte": (lambda p: flip_byte(p + DATA), DATA, "sha256", "unreadable"),
    "empty_index": (lambda p: open(p + ".index", "wb").close(), ".index", "empty (0 bytes)",
                    "empty (0 bytes)"),
    "garbled_index": (lambda p: flip_byte(p + ".index", 0.3), ".index", "sha256", "unreadable"),
    "missing_data": (lambda p: os.remove(p + DATA), DATA, "missing", "missing"),
    "deleted": (lambda p: [os.remove(p + s) for s in (".index", DATA)], ".index",
                "missing", "missing"),
}


@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no_sidecar"])
@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damage_is_found_and_named(tmp_path, kind, sidecar):
    prefixes = save_numbered(tmp_path, sidecar=sidecar)
    assert [checkpoints.find_damage(p) for p in prefixes] == [None] * 3
    damage_fn, suffix, with_sidecar, without = DAMAGES[kind]
    damage_fn(prefixes[-1])
    damage = checkpoints.find_damage(prefixes[-1])
    assert damage is not None and damage.path == prefixes[-1] + suffix
    assert (with_sidecar if sidecar else without) in damage.reason, damage
    newest, damages = checkpoints.newest_intact_checkpoint(str(tmp_path))
    assert newest == prefixes[1] and damages == [damage]
    assert restored_value(newest) == 2.0
    # Readers: a folder gives the older checkpoint; the damaged prefix itself is refused with
    # its file named and the intact alternative.
    assert checkpoints.resolve_checkpoint(str(tmp_path)) == prefixes[1]
    if kind != "deleted":
        with pytest.raises(checkpoints.DamagedCheckpointError) as caught:
            checkpoints.resolve_checkpoint(prefixes[-1])
        assert str(damage) in str(caught.value) and prefixes[1] in str(caught.value)


def test_sidecar_catches_index_damage_the_crc_misses(tmp_path, record_measure):
    """TensorFlow's own checks miss a flipped byte near the end of an .index (47 of 257
    positions here, counted below: docs/kill9_drill.md quotes it); the sha256 sidecar does
    not miss any."""
    with_sidecar, = save_numbered(tmp_path / "a", numbers=(1,))
    without, = save_numbered(tmp_path / "b", numbers=(1,), sidecar=False)
    originals = {p: open(p + ".index", "rb").read() for p in (with_sidecar, without)}
    size = len(originals[without])
    missed, sidecar_missed = [], []
    for position in range(size):  # every single-byte flip of the index, one at a time
        for prefix, found in ((without, missed), (with_sidecar, sidecar_missed)):
            data = bytearray(originals[prefix])
            data[position] ^= 0xFF
            open(prefix + ".index", "wb").write(bytes(data))
            if checkpoints.find_damage(prefix) is None:
                found.append(position)
    record_measure(f"index byte flips missed without the sidecar (of {size})", len(missed),
                   above=0)
    assert missed and not sidecar_missed, (missed, sidecar_missed)
    for prefix in (with_sidecar, without):
        open(prefix + ".index", "wb").write(originals[prefix])
        flip_byte(prefix + ".index", 0.9)
    assert checkpoints.find_damage(without) is None
    damage = checkpoints.find_damage(with_sidecar)
    assert damage.path == with_sidecar + ".index" and "sha256" in damage.reason


def test_every_checkpoint_damaged_is_an_error_naming_the_files(tmp_path):
    prefixes = save_numbered(tmp_path, numbers=(1, 2))
    truncate(prefixes[1] + DATA)
    open(prefixes[0] + ".index", "wb").close()
    with pytest.raises(checkpoints.DamagedCheckpointError) as caught:
        checkpoints.resolve_checkpoint(str(tmp_path))
    message = str(caught.value)
    assert prefixes[1] + DATA in message and prefixes[0] + ".index" in message
    assert "No intact checkpoint" in message and "backup" in message


def test_sidecar_records_sizes_and_follows_the_manager(tmp_path):
    value = tf.Variable(tf.zeros([10]))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), str(tmp_path),
                                         max_to_keep=2, checkpoint_name="ckpt")
    for number in range(1, 5):
        checkpoints.write_sidecar(manager.save(checkpoint_number=number))
        checkpoints.remove_stale_sidecars(str(tmp_path))
    sidecars = sorted(p for p in os.listdir(tmp_path) if p.endswith(checkpoints.SIDECAR_SUFFIX))
    assert sidecars == ["ckpt-3.sha256.json", "ckpt-4.sha256.json"]
    files = json.loads((tmp_path / "ckpt-4.sha256.json").read_text())["files"]
    assert {name: entry["bytes"] for name, entry in files.items()} == {
        name: os.path.getsize(tmp_path / name) for name in ("ckpt-4.index", "ckpt-4" + DATA)}


def test_leftovers_of_a_killed_save_are_removed_and_nothing_else(tmp_path):
    prefixes = save_numbered(tmp_path)
    # What a kill during the save of ckpt-4 leaves: the shard folder, the renamed data and a
    # half-written index not yet in the state file, temporary state and sidecar files.
    (tmp_path / "ckpt-4_temp").mkdir()
    (tmp_path / "ckpt-4_temp" / ("part-00000-of-00001" + DATA)).write_bytes(b"x" * 100)
    shutil.copy(prefixes[-1] + DATA, tmp_path / ("ckpt-4" + DATA))
    (tmp_path / "ckpt-4.index").write_bytes(b"partial")
    (tmp_path / "checkpoint.tmp0123456789abcdef").write_text("model_checkpoint_path")
    (tmp_path / ".tmp-abc123ckpt-3.sha256.json").write_text("{")
    (tmp_path / "notes.txt").write_text("mine")
    before = sorted(os.listdir(tmp_path))
    removed = checkpoints.clean_partial_writes(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted([
        "ckpt-4_temp", "ckpt-4" + DATA, "ckpt-4.index", "checkpoint.tmp0123456789abcdef",
        ".tmp-abc123ckpt-3.sha256.json"])
    assert sorted(os.listdir(tmp_path)) == sorted(set(before) - {
        os.path.basename(p) for p in removed})
    assert checkpoints.newest_intact_checkpoint(str(tmp_path)) == (prefixes[-1], [])


def test_lost_state_file_hides_no_checkpoint(tmp_path):
    prefixes = save_numbered(tmp_path, sidecar=False)
    for content in (None, "", "garbage {"):
        if content is None:
            os.remove(tmp_path / "checkpoint")
        else:
            (tmp_path / "checkpoint").write_text(content)
        assert checkpoints.newest_intact_checkpoint(str(tmp_path)) == (prefixes[-1], [])
        assert checkpoints.prepare_for_writing(str(tmp_path), "fix") == (prefixes[-1], [])
        assert tf.train.latest_checkpoint(str(tmp_path)) == prefixes[-1]


# --------------------------------------------------------------------------------------------
# The Trainer and the readers of a run.
# --------------------------------------------------------------------------------------------


def trained_run(workdir, steps=30):
    """A deterministic toy run checkpointed at 10, 20, ..., `steps`; its final weights."""
    config = toy_config(steps=steps, eval_every=0, best_metric="", deterministic=True)
    trainer = loop.Trainer(config, ToyTask(), str(workdir))
    trainer.train()
    return config, model_weights(trainer)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference") / "run"
    config, weights = trained_run(workdir)
    keras.mixed_precision.set_global_policy("float32")
    return workdir, config, weights


@pytest.mark.parametrize("kind", ["deleted", "truncated_data"])
def test_trainer_resumes_from_newest_intact_checkpoint(reference_run, tmp_path, caplog, kind):
    source, config, final_weights = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    folder = workdir / "checkpoints"
    newest = str(folder / "ckpt-30")
    DAMAGES[kind][0](newest)
    (folder / "ckpt-40_temp").mkdir()  # a save killed earlier
    with caplog.at_level(logging.WARNING):
        trainer = loop.Trainer(config, ToyTask(), str(workdir))
    assert trainer.start_step == 20
    # One line names the damaged file and the checkpoint used instead.
    lines = [r.getMessage() for r in caplog.records if "Damaged checkpoint" in r.getMessage()]
    assert len(lines) == 1
    assert newest + DAMAGES[kind][1] in lines[0] and str(folder / "ckpt-20") in lines[0]
    assert not (folder / "ckpt-40_temp").exists()
    assert tf.train.latest_checkpoint(str(folder)) == str(folder / "ckpt-20")
    left = sorted(os.listdir(folder))
    assert not any(name.startswith("ckpt-30.") and not name.endswith(".damaged")
                   for name in left), left
    if kind == "truncated_data":  # the damaged files are kept for inspection
        assert "ckpt-30" + DATA + ".damaged" in left
    # Training on from step 20 ends exactly where the undamaged run ended.
    trainer.train()
    for resumed, reference in zip(model_weights(trainer), final_weights, strict=True):
        np.testing.assert_array_equal(resumed, reference)
    assert checkpoints.find_damage(newest) is None
    assert os.path.exists(newest + checkpoints.SIDECAR_SUFFIX)


def test_trainer_with_no_intact_checkpoint_stops_and_changes_nothing(reference_run, tmp_path):
    source, config, _ = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    folder = workdir / "checkpoints"
    for number in (10, 20, 30):
        truncate(str(folder / f"ckpt-{number}{DATA}"))
    before = sorted(os.listdir(folder))
    with pytest.raises(checkpoints.DamagedCheckpointError) as caught:
        loop.Trainer(config, ToyTask(), str(workdir))
    message = str(caught.value)
    assert str(folder / f"ckpt-30{DATA}") in message and "truncated" in message
    assert f"delete {folder}" in message and "backup" in message
    assert sorted(os.listdir(folder)) == before


def test_readers_fall_back_to_newest_intact_checkpoint(reference_run, tmp_path, caplog):
    source, config, _ = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    folder = workdir / "checkpoints"
    open(folder / "ckpt-30.index", "wb").close()
    before = sorted(os.listdir(folder))
    with caplog.at_level(logging.WARNING):
        prefix = restore.select_checkpoint(str(workdir), "latest")
    assert prefix == str(folder / "ckpt-20")
    assert any(str(folder / "ckpt-30.index") in r.getMessage() and prefix in r.getMessage()
               for r in caplog.records)
    # The weights are those of step 20 (compared with a restore of the full training state).
    models = ToyTask().build(config)
    assert checkpoints.restore_models(models, str(workdir)) == prefix
    reference = loop.Trainer(config, ToyTask(), str(tmp_path / "copy"))
    reference.checkpoint.restore(prefix).assert_existing_objects_matched()
    for restored, expected in zip(models["net"].weights, model_weights(reference), strict=True):
        np.testing.assert_array_equal(restored.numpy(), expected)
    assert sorted(os.listdir(folder)) == before  # readers never move or delete anything
    with pytest.raises(checkpoints.DamagedCheckpointError, match="ckpt-30.index: empty"):
        restore.select_checkpoint(str(workdir), str(folder / "ckpt-30"))
