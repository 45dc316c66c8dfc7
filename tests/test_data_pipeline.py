"""tf.data pipelines over small TFRecords written in tmp_path with the real schema."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.data import pipeline, records, schema
from tf_depthseg import errors

HEIGHT, WIDTH = 24, 80
ALL_KEYS = [common.CONTEXT, common.INTRINSICS, common.POSES, common.DEPTH, common.SEMANTIC,
            common.INSTANCES, common.WEAK_PAIRS]


def make_sample(index, rng):
    """One record with every feature; neighbours are copies of the target (see tests)."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.stack([(xs * 3 + index * 17) % 256, (ys * 10) % 256,
                      rng.integers(0, 256, (HEIGHT, WIDTH))], -1).astype(np.uint8)
    ids = (ys * WIDTH + xs + 1).astype(np.uint16)
    return schema.Sample(
        image=image, source_id=f"drive/{index:04d}", context=[image, image],
        intrinsics=np.array([[60.0, 0, 39.5], [0, 60.0, 11.5], [0, 0, 1]], np.float32),
        poses=np.stack([np.eye(4)] * 3).astype(np.float32),
        depth=(5.0 + index + 0.25 * xs).astype(np.float32),
        semantic=((ys // 6) * 4 + xs // 20).astype(np.uint8),
        instances=[ids, ids, ids],
        weak_pairs=np.array([[2, 3, 20, 70, 1, 1], [12, 40, 13, 41, 0, -1]], np.float32))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """10 records in 4 shards ('train') and in 1 shard ('one')."""
    out = str(tmp_path_factory.mktemp("records"))
    rng = np.random.default_rng(0)
    serialized = [schema.encode_example(make_sample(i, rng)) for i in range(10)]
    records.write_split(out, "train", serialized, num_shards=4)
    records.write_split(out, "one", serialized, num_shards=1)
    return out


def _batches(dataset, count):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(count)]


def test_training_batches_are_static_and_jointly_augmented(data_dir):
    dataset = pipeline.make_dataset(
        records.split_pattern(data_dir, "train"), ALL_KEYS, batch_size=4, training=True,
        image_size=(24, 80), crop_size=(16, 48), scale_range=(0.9, 1.5), flip_prob=0.5,
        color_jitter={"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05,
                      "prob": 1.0}, max_weak_pairs=5, seed=1)
    spec = dataset.element_spec
    assert spec[common.IMAGE].shape == (4, 16, 48, 3)
    assert spec[common.CONTEXT].shape == (4, 2, 16, 48, 3)
    assert spec[common.DEPTH].shape == (4, 16, 48, 1)
    assert spec[common.SEMANTIC].shape == (4, 16, 48, 1)
    assert spec[common.INSTANCES].shape == (4, 3, 16, 48)
    assert spec[common.INTRINSICS].shape == (4, 3, 3)
    assert spec[common.POSES].shape == (4, 3, 4, 4)
    assert spec[common.WEAK_PAIRS].shape == (4, 5, 6)
    assert spec[common.NUM_WEAK_PAIRS].shape == (4,)
    flips = 0
    for batch in _batches(dataset, 6):  # 24 examples: more than one epoch (repeat)
        # Neighbours were copies of the target: identical geometry and colour change.
        np.testing.assert_allclose(batch[common.CONTEXT][:, 0], batch[common.IMAGE], atol=1e-6)
        np.testing.assert_array_equal(batch[common.INSTANCES][:, 2], batch[common.INSTANCES][:, 0])
        assert batch[common.IMAGE].min() >= 0 and batch[common.IMAGE].max() <= 1
        for i in range(4):
            k = batch[common.INTRINSICS][i]
            ids = batch[common.INSTANCES][i, 0] - 1
            src_x = ids % WIDTH
            # Depth travelled with its pixel (depth = 5 + index + 0.25 x).
            source_index = int(batch[common.SOURCE_ID][i].decode().split("/")[1])
            np.testing.assert_allclose(batch[common.DEPTH][i, ..., 0],
                                       5.0 + source_index + 0.25 * src_x)
            flipped = src_x[0, 0] > src_x[0, -1]
            flips += flipped
            # The source column of output column x is where K' and K agree (fx*X/Z terms):
            # x = (x_src - cx) * fx'/fx * (-1 if flipped) + cx' within half an output pixel.
            sign = -1.0 if flipped else 1.0
            predicted = sign * (src_x - 39.5) * k[0, 0] / 60.0 + k[0, 2]
            cols = np.arange(48)[None, :].repeat(16, 0)
            assert np.abs(predicted - cols).max() <= 0.5 * k[0, 0] / 60.0 + 1e-3
            count = batch[common.NUM_WEAK_PAIRS][i]
            pairs = batch[common.WEAK_PAIRS][i]
            assert np.all(pairs[count:] == 0)
            assert np.all((pairs[:count, [0, 2]] >= -0.5) & (pairs[:count, [0, 2]] < 15.5))
            assert np.all((pairs[:count, [1, 3]] >= -0.5) & (pairs[:count, [1, 3]] < 47.5))
    assert 0 < flips < 24


def test_training_without_randomness_equals_evaluation(data_dir):
    pattern = records.split_pattern(data_dir, "train")
    keys = [common.DEPTH, common.INTRINSICS, common.WEAK_PAIRS]
    train = pipeline.make_dataset(pattern, keys, 10, True, image_size=(12, 40), flip_prob=0.0,
                                  color_jitter=None, repeat=False)
    evaluation = pipeline.make_dataset(pattern, keys, 4, False, image_size=(12, 40))
    train_batch = _batches(train, 1)[0]
    eval_batches = _batches(evaluation, 10)
    assert [len(b[common.SOURCE_ID]) for b in eval_batches] == [4, 4, 2]  # every example
    by_id = {sid: (b, i) for b in eval_batches for i, sid in enumerate(b[common.SOURCE_ID])}
    assert sorted(by_id) == sorted(train_batch[common.SOURCE_ID])
    for i, sid in enumerate(train_batch[common.SOURCE_ID]):
        b, j = by_id[sid]
        for key in (common.IMAGE, common.DEPTH, common.INTRINSICS):
            np.testing.assert_array_equal(train_batch[key][i], b[key][j])
        # Training draws pairs in a random order; the set of pairs is the same.
        np.testing.assert_array_equal(np.sort(train_batch[common.WEAK_PAIRS][i], axis=0),
                                      np.sort(b[common.WEAK_PAIRS][j], axis=0))
    # The evaluation image is the plain half-pixel resize of the stored image.
    sample = make_sample(int(eval_batches[0][common.SOURCE_ID][0].decode()[-4:]),
                         np.random.default_rng(0))
    np.testing.assert_allclose(eval_batches[0][common.INTRINSICS][0],
                               [[30, 0, 19.5], [0, 30, 5.5], [0, 0, 1]])
    assert eval_batches[0][common.IMAGE].shape == (4, 12, 40, 3)
    # Depth: nearest from x = 2 x' + 1 (scale 1/2, half-pixel): 5 + i + 0.25 (2 x' + 1).
    index = int(eval_batches[0][common.SOURCE_ID][0].decode()[-4:])
    np.testing.assert_allclose(eval_batches[0][common.DEPTH][0, 0, :, 0],
                               5 + index + 0.25 * (2 * np.arange(40) + 1))
    np.testing.assert_allclose(eval_batches[0][common.IMAGE][0, 0, :, 1],
                               sample.image[0:2, :, 1].astype(np.float32).reshape(2, 40, 2)
                               .mean(axis=(0, 2)) / 255.0, atol=1e-6)


def test_deterministic_and_resumable(data_dir, tmp_path):
    def make(seed):
        return pipeline.make_dataset(
            records.split_pattern(data_dir, "train"), [common.DEPTH], 3, True,
            image_size=(24, 80), crop_size=(16, 40), scale_range=(0.8, 1.3), seed=seed,
            deterministic=True, shuffle_buffer=8)

    seven, seven_again = make(7), make(7)
    first = _batches(seven, 4)
    for a, b in zip(first, _batches(seven_again, 4)):  # a separately built pipeline
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[common.IMAGE], b[common.IMAGE])
               for a, b in zip(first, _batches(make(8), 4)))
    # Save an iterator after 2 batches and restore it into another pipeline's iterator: the
    # next batches are those the uninterrupted run sees.
    iterator = iter(seven)
    next(iterator), next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt"))
    uninterrupted = [{k: v.numpy() for k, v in next(iterator).items()} for _ in range(2)]
    restored = iter(seven_again)
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    for expected in uninterrupted:
        resumed = {k: v.numpy() for k, v in next(restored).items()}
        for key in expected:
            np.testing.assert_array_equal(resumed[key], expected[key])


@pytest.mark.parametrize("split,files_per_pipeline", [("train", 2), ("one", None)])
def test_sharding_for_tf_distribute(data_dir, split, files_per_pipeline):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        dataset = pipeline.make_dataset(records.split_pattern(data_dir, split), [], 4, False,
                                        input_context=context, repeat=False)
        ids = [sid for b in _batches(dataset, 10) for sid in b[common.SOURCE_ID]]
        assert max(len(b[common.SOURCE_ID]) for b in _batches(dataset, 10)) == 2  # per replica
        seen.append(set(ids))
    assert not seen[0] & seen[1]  # disjoint
    assert len(seen[0] | seen[1]) == 10  # and complete
    if files_per_pipeline is None:  # by record: every second record of the single file
        assert sorted(seen[0]) == [f"drive/{i:04d}".encode() for i in range(0, 10, 2)]


def test_errors_name_the_problem(data_dir, tmp_path):
    missing = str(tmp_path / "nowhere" / "train-*.tfrecord")
    with pytest.raises(errors.BadInputError, match="nowhere.*converter"):
        pipeline.make_dataset(missing, [], 2, True, image_size=(8, 8))
    with pytest.raises(ValueError, match="unknown keys"):
        pipeline.make_dataset(records.split_pattern(data_dir, "one"), ["depht"], 2, True)
    with pytest.raises(ValueError, match="scale_range"):
        pipeline.make_dataset(records.split_pattern(data_dir, "one"), [], 2, True,
                              image_size=(8, 8), scale_range=(2.0, 1.0))
    # Records without a requested feature: the first record is checked when the dataset is
    # made (before a model is built), later ones fail at read time naming the record, and
    # `reading_errors` makes that a BadInputError.
    plain = schema.encode_example(schema.Sample(
        image=np.zeros((HEIGHT, WIDTH, 3), np.uint8), source_id="cityscapes/aachen_0001"))
    records.write_split(str(tmp_path), "plain", [plain])
    plain_pattern = records.split_pattern(str(tmp_path), "plain")
    with pytest.raises(errors.BadInputError,
                       match=r"plain-00000-of-00001.tfrecord: record cityscapes/aachen_0001 has "
                             r"no depth/encoded feature.*asks for depth"):
        pipeline.make_dataset(plain_pattern, [common.DEPTH], 1, False)
    good = schema.encode_example(make_sample(0, np.random.default_rng(0)))
    records.write_split(str(tmp_path), "mixed", [good, plain])
    pattern = records.split_pattern(str(tmp_path), "mixed")
    dataset = pipeline.make_dataset(pattern, [common.DEPTH], 1, False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="aachen_0001.*depth/encoded"):
        _batches(dataset, 2)
    with pytest.raises(errors.BadInputError) as caught:
        with pipeline.reading_errors([pattern]):
            _batches(dataset, 2)
    assert str(caught.value).startswith("record cityscapes/aachen_0001 has no "
                                        "depth/encoded feature")
    assert "data.keys" in str(caught.value)


def test_reading_errors_name_the_corrupt_file(tmp_path):
    """A DataLossError names no file: `reading_errors` finds and names it; a corrupt first
    record is found when the dataset is made."""
    rng = np.random.default_rng(0)
    serialized = [schema.encode_example(make_sample(i, rng)) for i in range(3)]
    records.write_split(str(tmp_path), "train", serialized, num_shards=1)
    records.write_split(str(tmp_path), "other", serialized[:1], num_shards=1)
    path = tmp_path / "train-00000-of-00001.tfrecord"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the last record's payload: its CRC fails, the size is unchanged
    path.write_bytes(bytes(data))
    patterns = [records.split_pattern(str(tmp_path), "other"),
                records.split_pattern(str(tmp_path), "train")]
    dataset = pipeline.make_dataset(patterns[1], [common.DEPTH], 1, False)
    with pytest.raises(errors.BadInputError,
                       match=r"train-00000-of-00001.tfrecord: corrupt TFRecord file after 2 "
                             r"good records \(corrupted record at \d+\)"):
        with pipeline.reading_errors(patterns):
            _batches(dataset, 3)
    data[30] ^= 0xFF  # now the first record too
    path.write_bytes(bytes(data))
    with pytest.raises(errors.BadInputError, match="train-00000-of-00001.tfrecord: corrupt"):
        pipeline.make_dataset(patterns[1], [common.DEPTH], 1, False)


def test_manifest_checks_before_reading(tmp_path):
    """Incomplete, empty and size-changed splits are refused naming the split and the fix;
    allow_incomplete reads the finished shards of an incomplete split."""
    rng = np.random.default_rng(0)
    serialized = [schema.encode_example(make_sample(i, rng)) for i in range(3)]
    out = str(tmp_path)
    with pytest.raises(RuntimeError):  # a conversion killed after shard 0 of 2
        with records.ShardedWriter(out, "train", 2) as writer:
            writer.write(serialized[0], shard=0)
            writer.write(serialized[1], shard=0)
            writer.finish_shard(0)
            raise RuntimeError("killed")
    pattern = records.split_pattern(out, "train")
    with pytest.raises(errors.BadInputError,
                       match=r"split 'train' is incomplete \(1 of 2 shards finished.*"
                             r"--set data.allow_incomplete=true"):
        pipeline.make_dataset(pattern, [common.DEPTH], 1, False)
    dataset = pipeline.make_dataset(pattern, [common.DEPTH], 1, False, allow_incomplete=True)
    assert sorted(b[common.SOURCE_ID][0].decode() for b in _batches(dataset, 5)) == [
        "drive/0000", "drive/0001"]
    records.write_split(out, "empty", [], num_shards=2)
    with pytest.raises(errors.BadInputError, match="split 'empty' has 0 examples"):
        pipeline.make_dataset(records.split_pattern(out, "empty"), [], 1, False,
                              allow_incomplete=True)
    records.write_split(out, "val", serialized, num_shards=1)
    with open(tmp_path / "val-00000-of-00001.tfrecord", "ab") as f:
        f.write(b"\0")
    with pytest.raises(errors.BadInputError, match="val-00000-of-00001.tfrecord: .* bytes, "
                                                   "manifest.json says .*verify_records"):
        pipeline.make_dataset(records.split_pattern(out, "val"), [], 1, False)
