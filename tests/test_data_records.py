"""Tests for tf_depthseg.data.records: sharded writing, manifest, resume, reading."""

import json
import os

import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg.data import image_io, records, schema
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
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(errors.BadInputError, match="checksum"):
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
    with pytest.raises(ValueError, match="--num_shards"):
        records.ShardedWriter(out, "train", 3)


def test_missing_files_and_corrupt_records_are_clear_errors(tmp_path):
    with pytest.raises(errors.BadInputError, match="no TFRecord files"):
        list(records.iterate_records(str(tmp_path / "train-*.tfrecord")))
    path = tmp_path / "bad-00000-of-00001.tfrecord"
    records.write_split(str(tmp_path), "bad", [_example(0), _example(1)])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 7])
    with pytest.raises(errors.BadInputError, match="corrupt TFRecord"):
        list(records.iterate_records(str(path)))
