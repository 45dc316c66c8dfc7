"""Tests for tf_depthseg.data.records: sharded writing, manifest, resume, reading."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.data import records, schema
from tf_depthseg import errors


def _example(i: int) -> bytes:
    image = np.full((4, 6, 3), i, np.uint8)
    return schema.encode_example(schema.Sample(image=image, source_id=f"sample{i}"))


def _ids(pattern):
    return [schema.decode_example(r).source_id for r in records.iterate_records(pattern)]


def test_shard_name_format():
    assert records.shard_name("train", 3, 12) == "train-00003-of-00012.tfrecord"
    with pytest.raises(ValueError):
        records.shard_name("train", 12, 12)


def test_round_robin_write_read_and_manifest(tmp_path):
    out = str(tmp_path)
    entry = records.write_split(out, "train", (_example(i) for i in range(7)), num_shards=3,
                                source="unit test")
    files = sorted(f for f in os.listdir(out) if f.endswith(".tfrecord"))
    assert files == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert entry["num_examples"] == 7 and entry["complete"]
    assert [entry["shards"][str(i)]["num_examples"] for i in range(3)] == [3, 2, 2]
    manifest = json.load(open(os.path.join(out, records.MANIFEST_NAME)))
    assert manifest["schema_version"] == common.SCHEMA_VERSION
    assert manifest["splits"]["train"]["source"] == "unit test"
    assert records.verify_split(out, "train") == 7
    got = _ids(records.split_pattern(out, "train"))
    assert sorted(got) == sorted(f"sample{i}" for i in range(7))
    # Decoding is exact.
    first = schema.decode_example(next(records.iterate_records(
        os.path.join(out, files[0]))))
    np.testing.assert_array_equal(first.image, np.zeros((4, 6, 3), np.uint8))


def test_checksum_detects_modification(tmp_path):
    out = str(tmp_path)
    records.write_split(out, "val", [_example(0)], num_shards=1)
    path = os.path.join(out, records.shard_name("val", 0, 1))
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"x")
    # (Not match="checksum": the tmp folder is named after this test, so that always matched.)
    with pytest.raises(errors.BadInputError,
                       match=f"{size + 1} bytes, manifest.json says {size}; rerun"):
        records.verify_split(out, "val")
    # Same size, one bit flipped: only the sha256 sees it.
    with open(path, "r+b") as f:
        f.truncate(size)
    _flip_byte(path, size // 2)
    with pytest.raises(errors.BadInputError, match="sha256 differs from manifest.json"):
        records.verify_split(out, "val")


def test_kill_leaves_no_partial_shard_and_resume_skips_finished(tmp_path):
    out = str(tmp_path)
    with pytest.raises(RuntimeError):
        with records.ShardedWriter(out, "train", 2) as writer:
            writer.write(_example(0), shard=0)
            writer.finish_shard(0, inputs="a")
            writer.write(_example(1), shard=1)
            raise RuntimeError("killed")
    names = os.listdir(out)
    assert records.shard_name("train", 0, 2) in names
    assert records.shard_name("train", 1, 2) not in names  # never under its final name
    assert not [n for n in names if n.startswith(".tmp-")]
    with records.ShardedWriter(out, "train", 2) as writer:
        assert writer.is_finished(0, inputs="a")
        assert not writer.is_finished(0, inputs="other inputs")
        assert not writer.is_finished(1)
        writer.write(_example(1), shard=1)
        writer.finish_shard(1)
    assert sorted(_ids(records.split_pattern(out, "train"))) == ["sample0", "sample1"]
    assert records.read_manifest(out)["splits"]["train"]["complete"]
    with pytest.raises(errors.BadInputError,
                       match=r"started with --num_shards=2, now 3; rerun with --num_shards=2 "
                             r"to resume it, or add --noresume"):
        records.ShardedWriter(out, "train", 3)
    # --noresume: the split is rewritten with the new count, the old shards are gone.
    with records.ShardedWriter(out, "train", 3, resume=False) as writer:
        writer.write(_example(5))
    assert sorted(n for n in os.listdir(out) if n.endswith(".tfrecord")) == [
        records.shard_name("train", i, 3) for i in range(3)]


def _flip_byte(path, offset):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(data))


def test_resume_redoes_shards_that_no_longer_match_the_manifest(tmp_path):
    """A same-size byte flip is caught by the sha256, a truncation by the size: the shard is
    deleted and redone; untouched shards are kept."""
    out = str(tmp_path)
    records.write_split(out, "train", [_example(i) for i in range(6)], num_shards=3)
    paths = [os.path.join(out, records.shard_name("train", i, 3)) for i in range(3)]
    sizes = [os.path.getsize(p) for p in paths]
    _flip_byte(paths[0], sizes[0] // 2)
    with open(paths[2], "r+b") as f:
        f.truncate(sizes[2] - 5)
    writer = records.ShardedWriter(out, "train", 3)
    assert [index for index, _ in writer.redone] == [0, 2]
    assert "sha256 differs" in writer.redone[0][1]
    assert f"{sizes[2] - 5} bytes, manifest.json says {sizes[2]}" in writer.redone[1][1]
    assert writer.is_finished(1) and not writer.is_finished(0) and not writer.is_finished(2)
    assert not os.path.exists(paths[0]) and not os.path.exists(paths[2])
    assert writer.entry["num_examples"] == 2
    writer.abort()


def test_check_shards_and_verify_files(tmp_path):
    out = str(tmp_path / "out")
    records.write_split(out, "train", [_example(i) for i in range(5)], num_shards=2)
    files = records.list_shards(records.split_pattern(out, "train"))
    assert records.check_shards(files) == 5
    summary, = records.verify_files(files)
    assert (summary["split"], summary["files"], summary["examples"], summary["manifest"],
            summary["complete"], summary["problems"]) == ("train", 2, 5, 5, True, [])
    # A folder without a manifest is not checked (count unknown), but its records are read.
    plain = str(tmp_path / "plain")
    records.write_split(plain, "x", [_example(0)])
    os.remove(os.path.join(plain, records.MANIFEST_NAME))
    assert records.check_shards(records.list_shards(os.path.join(plain, "*.tfrecord"))) is None
    summary, = records.verify_files(os.path.join(plain, "*.tfrecord"))
    assert summary["split"] == "<no manifest>" and summary["examples"] == 1
    # A same-size byte flip: cheap reader check passes, verify finds it.
    _flip_byte(files[1], os.path.getsize(files[1]) - 3)
    assert records.check_shards(files) == 5
    problems = records.verify_files(files)[0]["problems"]
    assert len(problems) == 1 and problems[0].startswith(files[1] + ": corrupt TFRecord")
    # A listed shard deleted: found when the whole folder is verified.
    os.remove(files[1])
    problems = records.verify_files(files[0], whole_folders=True)[0]["problems"]
    assert problems == [f"{files[1]}: missing, though manifest.json lists it; rerun the "
                        "converter."]
    # A file that is not a listed shard (left over from another conversion).
    stray = os.path.join(out, records.shard_name("train", 0, 7))
    with open(files[0], "rb") as src, open(stray, "wb") as dst:
        dst.write(src.read())
    with pytest.raises(errors.BadInputError, match="train-00000-of-00007.tfrecord: not a shard "
                                                   "listed in"):
        records.check_shards([stray])
    # A record that is not a tf.train.Example.
    junk = str(tmp_path / "junk.tfrecord")
    with tf.io.TFRecordWriter(junk) as writer:
        writer.write(b"\xff\xff not a proto")
    with pytest.raises(errors.BadInputError, match="record 0 is not a tf.train.Example"):
        records.count_records(junk, parse=True)


def test_output_dir_errors_name_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        with pytest.raises(errors.UserError, match=f"{blocker} is a file, not a folder"):
            records.ShardedWriter(str(target), "train", 1)
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the "
                    "under-a-file case above covers the error path")
def test_read_only_output_dir(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(errors.UserError, match=f"{folder} is not writable"):
            records.ShardedWriter(str(folder / "out"), "train", 1)
    finally:
        folder.chmod(0o700)


def test_rewrite_quarantines_the_rest_of_a_corrupt_file(tmp_path):
    source = str(tmp_path / "in")
    records.write_split(source, "train", [_example(i) for i in range(6)], num_shards=2)
    first = os.path.join(source, records.shard_name("train", 0, 2))
    # Round robin: shard 0 holds samples 0, 2, 4; damage the last one.
    _flip_byte(first, os.path.getsize(first) - 3)
    records.check_shards(records.list_shards(os.path.join(source, "*.tfrecord")))
    with pytest.raises(errors.BadInputError, match=f"{first}: corrupt TFRecord file after 2 "
                                                   "good records.*--skip_bad"):
        records.rewrite_records(os.path.join(source, "*.tfrecord"), str(tmp_path / "a"),
                                lambda r: r)
    stats = records.rewrite_records(os.path.join(source, "*.tfrecord"), str(tmp_path / "b"),
                                    lambda r: r, skip_bad=True)
    assert stats["train"]["num_examples"] == 5
    assert [s[0] for s in stats["train"]["skipped"]] == [f"{first}#2-"]
    assert sorted(_ids(os.path.join(tmp_path / "b", "*.tfrecord"))) == [
        f"sample{i}" for i in (0, 1, 2, 3, 5)]
    assert records.verify_split(str(tmp_path / "b"), "train") == 5
    # Every record bad: an error, not a complete split with 0 examples.
    def reject(serialized):
        raise errors.BadInputError(f"record {records.source_id_of(serialized)}: unusable")
    with pytest.raises(errors.BadInputError, match="every record of split 'train' was "
                                                   "quarantined"):
        records.rewrite_records(os.path.join(tmp_path / "b", "*.tfrecord"),
                                str(tmp_path / "c"), reject, skip_bad=True)
    assert not records.read_manifest(str(tmp_path / "c"))["splits"]["train"]["complete"]
    # The input split must be complete (or allowed to be incomplete).
    manifest = records.read_manifest(str(tmp_path / "b"))
    manifest["splits"]["train"]["complete"] = False
    records._write_manifest(str(tmp_path / "b"), manifest)
    with pytest.raises(errors.BadInputError, match="incomplete.*--allow_incomplete"):
        records.rewrite_records(os.path.join(tmp_path / "b", "*.tfrecord"),
                                str(tmp_path / "d"), lambda r: r)
    stats = records.rewrite_records(os.path.join(tmp_path / "b", "*.tfrecord"),
                                    str(tmp_path / "d"), lambda r: r, allow_incomplete=True)
    assert stats["train"]["num_examples"] == 5


def test_missing_files_and_corrupt_records_are_clear_errors(tmp_path):
    with pytest.raises(errors.BadInputError, match="no TFRecord files"):
        list(records.iterate_records(str(tmp_path / "train-*.tfrecord")))
    path = tmp_path / "bad-00000-of-00001.tfrecord"
    records.write_split(str(tmp_path), "bad", [_example(0), _example(1)])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 7])
    with pytest.raises(errors.BadInputError, match="corrupt TFRecord"):
        list(records.iterate_records(str(path)))


def test_verify_records_tool_reports_every_split(tmp_path):
    """tools/verify_records on a good folder: one line per split and exit 0 (the bad cases are
    in test_bad_input_battery.py)."""
    out = str(tmp_path / "out")
    records.write_split(out, "train", [_example(i) for i in range(3)], num_shards=2)
    records.write_split(out, "val", [_example(9)], num_shards=1)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "tools.verify_records", f"--input={out}"], capture_output=True,
        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        f"{out}/train: 2 files, 3 examples read (manifest 3 examples, complete) OK",
        f"{out}/val: 1 files, 1 examples read (manifest 1 examples, complete) OK",
        "verify_records: 3 files, 4 examples, all match."]
