"""The TFRecord schema: exact round trips, tf.data parsing, and clear errors for bad records."""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.data import image_io, schema
from tf_depthseg import errors


def _sample(rng, height=6, width=10, source_id="drive_0001/0000000005"):
    frames = 3
    return schema.Sample(
        image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        source_id=source_id,
        context=[rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)],
        intrinsics=np.array([[50.0, 0, 4.5], [0, 50.0, 2.5], [0, 0, 1]]),
        poses=np.stack([np.eye(4)] * frames) + rng.normal(0, 0.1, (frames, 4, 4)),
        depth=np.where(rng.random((height, width)) < 0.3, 0.0,
                       rng.uniform(0.5, 120.0, (height, width))),
        semantic=rng.integers(0, 19, (height, width), dtype=np.uint8),
        instances=[rng.integers(0, 65536, (height, width)).astype(np.uint16)
                   for _ in range(frames)],
        pseudo_disparity=rng.random((height, width)),
        weak_pairs=rng.uniform(0, 5, (7, common.WEAK_PAIR_FIELDS)))


def test_numpy_round_trip_is_exact_up_to_the_documented_quantisation():
    original = _sample(np.random.default_rng(0))
    decoded = schema.decode_example(schema.encode_example(original))
    np.testing.assert_array_equal(decoded.image, original.image)
    for a, b in zip(decoded.context, original.context):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(decoded.instances, original.instances):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(decoded.semantic, original.semantic)
    # Depth is stored as uint16 metres*256: exact on the 1/256 m grid.
    np.testing.assert_array_equal(decoded.depth, np.round(original.depth * 256) / 256)
    np.testing.assert_allclose(decoded.pseudo_disparity, original.pseudo_disparity,
                               atol=0.5 / 65535 + 1e-7)
    np.testing.assert_allclose(decoded.poses, original.poses, rtol=1e-6)
    np.testing.assert_allclose(decoded.weak_pairs, original.weak_pairs, rtol=1e-6)
    assert decoded.source_id == original.source_id


def test_parse_example_in_tf_data_matches_numpy_decode():
    original = _sample(np.random.default_rng(1))
    record = schema.encode_example(original)
    decoded = schema.decode_example(record)
    dataset = tf.data.Dataset.from_tensors(record).map(
        lambda s: schema.parse_example(s, schema.PARSEABLE_KEYS))
    out = next(iter(dataset))
    np.testing.assert_array_equal(
        np.round(out[common.IMAGE].numpy() * 255).astype(np.uint8), original.image)
    np.testing.assert_array_equal(out[common.DEPTH].numpy()[..., 0], decoded.depth)
    np.testing.assert_array_equal(out[common.SEMANTIC].numpy()[..., 0], original.semantic)
    np.testing.assert_array_equal(out[common.INSTANCES].numpy(),
                                  np.stack(original.instances).astype(np.int32))
    assert out[common.CONTEXT].shape == (2, 6, 10, 3)
    assert out[common.POSES].shape == (3, 4, 4)
    assert out[common.WEAK_PAIRS].shape == (7, 6)
    assert out[common.SOURCE_ID].numpy().decode() == original.source_id


def test_missing_feature_error_names_the_record_and_the_key():
    bare = schema.Sample(image=np.zeros((4, 4, 3), np.uint8), source_id="frame_without_depth")
    dataset = tf.data.Dataset.from_tensors(schema.encode_example(bare)).map(
        lambda s: schema.parse_example(s, [common.DEPTH]))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="frame_without_depth has no depth/encoded"):
        next(iter(dataset))


@pytest.mark.parametrize("field, value, message", [
    ("depth", np.full((6, 10), np.nan), "NaN"),
    ("depth", np.full((6, 10), -1.0), "negative"),
    ("semantic", np.zeros((5, 10), np.uint8), "semantic is"),
    ("intrinsics", np.zeros((3, 3)), "fx, fy > 0"),
    ("poses", np.zeros((2, 4, 4)), "poses shape"),
    ("pseudo_disparity", np.full((6, 10), 2.0), "in \\[0, 1\\]"),
])
def test_bad_samples_are_rejected_with_the_source_id(field, value, message):
    sample = _sample(np.random.default_rng(2), source_id="bad_sample_17")
    setattr(sample, field, value)
    with pytest.raises(errors.BadInputError, match=f"bad_sample_17.*{message}"):
        schema.encode_example(sample)


def test_truncated_png_error_names_the_file(tmp_path):
    path = tmp_path / "frame.png"
    data = image_io.encode_png(np.zeros((8, 8, 3), np.uint8))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.BadInputError, match="frame.png.*corrupt or truncated"):
        image_io.read_image(str(path))


def test_unknown_batch_key_is_rejected():
    with pytest.raises(ValueError, match="unknown batch keys"):
        schema.parse_example(tf.constant(b""), ["depthh"])
