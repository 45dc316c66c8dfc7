"""The TFRecord schema, defined once: `Sample` <-> serialized `tf.train.Example` <-> tensors.

Writers (converters, tools) build a `Sample` of numpy arrays and call `encode_example`.
Readers call `parse_example(serialized, keys)` inside tf.data and get a dict of decoded tensors
under the batch keys of `tf_depthseg.common`. `decode_example` gives the numpy `Sample` back
(tools, tests). Feature keys and encodings are listed in `common.py` and `DESIGN.md`.

Only the batch keys a pipeline asks for are parsed, so every dataset keeps static shapes and a
record missing a requested feature fails with an error naming the record's source id.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.data import image_io
from tf_depthseg import errors


@dataclasses.dataclass
class Sample:
    """One target frame with everything a record may carry (numpy, stored sizes).

    Attributes:
      image: uint8 `[H, W, 3]`.
      source_id: stable id, e.g. "2011_09_26_drive_0001_sync/image_02/0000000005".
      context: uint8 `[H, W, 3]` neighbour frames in order (t-1, t+1), all the target's size.
      intrinsics: `[3, 3]` K for the stored size.
      poses: `[1 + len(context), 4, 4]` world_from_camera of target then each context frame.
      depth: float `[H, W]` metres, 0 = invalid.
      semantic: uint8 `[H, W]` train ids, 255 = ignore.
      instances: uint16 `[H, W]` per frame (target then context), 0 = no instance.
      pseudo_disparity: float `[H, W]` normalised disparity in [0, 1].
      weak_pairs: float `[P, 6]` rows (y_a, x_a, y_b, x_b, half_size, relation).
      image_format: "png" or "jpeg"; JPEG bytes are passed through via `encoded_image`.
      encoded_image: optional stored bytes of `image`, written as they are (keeps JPEG sources
        bit-exact and skips re-encoding). `decode_example` fills it, so a decode -> change
        labels -> encode rewrite keeps the image untouched; set it to None after changing
        `image` itself.
    """

    image: np.ndarray
    source_id: str
    context: Sequence[np.ndarray] = ()
    intrinsics: Optional[np.ndarray] = None
    poses: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    semantic: Optional[np.ndarray] = None
    instances: Optional[Sequence[np.ndarray]] = None
    pseudo_disparity: Optional[np.ndarray] = None
    weak_pairs: Optional[np.ndarray] = None
    image_format: str = "png"
    encoded_image: Optional[bytes] = None


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values).ravel()))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def validate_sample(sample: Sample) -> None:
    """Raises errors.BadInputError naming the sample when sizes or values are inconsistent."""
    name = sample.source_id
    bad = errors.BadInputError
    if sample.image.dtype != np.uint8 or sample.image.ndim != 3 or sample.image.shape[-1] != 3:
        raise bad(f"{name}: image must be uint8 [H, W, 3], got {sample.image.dtype} "
                  f"{sample.image.shape}.")
    size = sample.image.shape[:2]
    for i, frame in enumerate(sample.context):
        if frame.shape[:2] != size:
            raise bad(f"{name}: context frame {i} is {frame.shape[:2]}, target is {size}; "
                      "neighbour frames must have the target's size.")
    for label, array in (("depth", sample.depth), ("semantic", sample.semantic),
                         ("pseudo_disparity", sample.pseudo_disparity)):
        if array is not None and array.shape[:2] != size:
            raise bad(f"{name}: {label} is {array.shape[:2]}, image is {size}.")
    if sample.instances is not None:
        if len(sample.instances) != 1 + len(sample.context):
            raise bad(f"{name}: {len(sample.instances)} instance maps for "
                      f"{1 + len(sample.context)} frames.")
        for i, inst in enumerate(sample.instances):
            if inst.shape[:2] != size:
                raise bad(f"{name}: instance map {i} is {inst.shape[:2]}, image is {size}.")
    if sample.poses is not None and sample.poses.shape != (1 + len(sample.context), 4, 4):
        raise bad(f"{name}: poses shape {sample.poses.shape}, expected "
                  f"({1 + len(sample.context)}, 4, 4).")
    if sample.intrinsics is not None:
        k = np.asarray(sample.intrinsics)
        if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise bad(f"{name}: intrinsics must be a finite [3, 3] K with fx, fy > 0, got {k}.")
    if sample.pseudo_disparity is not None:
        d = sample.pseudo_disparity
        if not np.all(np.isfinite(d)) or d.min() < 0 or d.max() > 1:
            raise bad(f"{name}: pseudo disparity must be finite and in [0, 1].")
    if sample.weak_pairs is not None:
        pairs = np.asarray(sample.weak_pairs)
        if pairs.ndim != 2 or pairs.shape[1] != common.WEAK_PAIR_FIELDS:
            raise bad(f"{name}: weak pairs must be [P, 6], got {pairs.shape}.")


def encode_example(sample: Sample) -> bytes:
    """Validates and serializes `sample` into a `tf.train.Example` (see module doc); equal
    samples give equal bytes in every process."""
    validate_sample(sample)
    height, width = sample.image.shape[:2]
    image_bytes = sample.encoded_image or image_io.encode_png(sample.image)
    feature = {
        common.KEY_IMAGE_ENCODED: _bytes([image_bytes]),
        common.KEY_IMAGE_FORMAT: _bytes([sample.image_format.encode()]),
        common.KEY_IMAGE_HEIGHT: _ints([height]),
        common.KEY_IMAGE_WIDTH: _ints([width]),
        common.KEY_SOURCE_ID: _bytes([sample.source_id.encode()]),
    }
    if len(sample.context):
        feature[common.KEY_CONTEXT_ENCODED] = _bytes(
            image_io.encode_png(frame) for frame in sample.context)
    if sample.intrinsics is not None:
        feature[common.KEY_INTRINSICS] = _floats(sample.intrinsics)
    if sample.poses is not None:
        feature[common.KEY_POSES] = _floats(sample.poses)
    if sample.depth is not None:
        feature[common.KEY_DEPTH_ENCODED] = _bytes([image_io.encode_png(image_io.depth_to_png16(
            sample.depth, common.DEPTH_PNG_SCALE, name=f"{sample.source_id} depth"))])
    if sample.semantic is not None:
        feature[common.KEY_SEG_CLASS_ENCODED] = _bytes(
            [image_io.encode_png(np.asarray(sample.semantic, np.uint8))])
    if sample.instances is not None:
        feature[common.KEY_SEG_INSTANCE_ENCODED] = _bytes(
            image_io.encode_png(np.asarray(inst, np.uint16)) for inst in sample.instances)
    if sample.pseudo_disparity is not None:
        feature[common.KEY_DEPTH_PSEUDO_ENCODED] = _bytes(
            [encode_pseudo_disparity(sample.pseudo_disparity)])
    if sample.weak_pairs is not None:
        feature[common.KEY_WEAK_PAIRS] = _floats(sample.weak_pairs)
    # deterministic=True writes the feature map sorted by key; without it protobuf's map order
    # differs per process, so equal inputs gave shards with different sha256.
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


def encode_pseudo_disparity(disparity: np.ndarray) -> bytes:
    """Normalised disparity `[H, W]` in [0, 1] -> the uint16 PNG of KEY_DEPTH_PSEUDO_ENCODED."""
    scaled = np.round(np.clip(disparity, 0.0, 1.0) * common.PSEUDO_DISPARITY_PNG_SCALE)
    return image_io.encode_png(scaled.astype(np.uint16))


def with_pseudo_disparity(serialized: bytes, disparity: np.ndarray) -> bytes:
    """The record with its KEY_DEPTH_PSEUDO_ENCODED set to `disparity` (`[H, W]` normalised,
    the image's size; replaced if present); every other feature keeps its bytes."""
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    feature[common.KEY_DEPTH_PSEUDO_ENCODED].bytes_list.value[:] = [
        encode_pseudo_disparity(disparity)]
    return example.SerializeToString(deterministic=True)


def decode_example(serialized: bytes) -> Sample:
    """Inverse of `encode_example` in numpy (tools and tests; not for input pipelines)."""
    example = tf.train.Example.FromString(serialized)
    f = example.features.feature
    source_id = f[common.KEY_SOURCE_ID].bytes_list.value[0].decode()

    def image(data, what):
        return image_io.decode_image_bytes(data, f"{source_id} {what}")

    num_context = len(f[common.KEY_CONTEXT_ENCODED].bytes_list.value)
    stored_image = f[common.KEY_IMAGE_ENCODED].bytes_list.value[0]
    sample = Sample(
        image=image(stored_image, "image"),
        encoded_image=stored_image,
        source_id=source_id,
        context=[image(b, "context") for b in f[common.KEY_CONTEXT_ENCODED].bytes_list.value],
        image_format=f[common.KEY_IMAGE_FORMAT].bytes_list.value[0].decode())
    if common.KEY_INTRINSICS in f:
        sample.intrinsics = np.array(f[common.KEY_INTRINSICS].float_list.value,
                                     np.float32).reshape(3, 3)
    if common.KEY_POSES in f:
        sample.poses = np.array(f[common.KEY_POSES].float_list.value,
                                np.float32).reshape(1 + num_context, 4, 4)
    if common.KEY_DEPTH_ENCODED in f:
        raw = image(f[common.KEY_DEPTH_ENCODED].bytes_list.value[0], "depth")
        sample.depth = raw.astype(np.float32) / common.DEPTH_PNG_SCALE
    if common.KEY_SEG_CLASS_ENCODED in f:
        sample.semantic = image(f[common.KEY_SEG_CLASS_ENCODED].bytes_list.value[0], "labels")
    if common.KEY_SEG_INSTANCE_ENCODED in f:
        sample.instances = [image(b, "instances")
                            for b in f[common.KEY_SEG_INSTANCE_ENCODED].bytes_list.value]
    if common.KEY_DEPTH_PSEUDO_ENCODED in f:
        raw = image(f[common.KEY_DEPTH_PSEUDO_ENCODED].bytes_list.value[0], "pseudo depth")
        sample.pseudo_disparity = raw.astype(np.float32) / common.PSEUDO_DISPARITY_PNG_SCALE
    if common.KEY_WEAK_PAIRS in f:
        sample.weak_pairs = np.array(f[common.KEY_WEAK_PAIRS].float_list.value,
                                     np.float32).reshape(-1, common.WEAK_PAIR_FIELDS)
    return sample


# Batch key -> the TFRecord feature it needs.
_FEATURE_OF_KEY = {
    common.IMAGE: common.KEY_IMAGE_ENCODED,
    common.CONTEXT: common.KEY_CONTEXT_ENCODED,
    common.INTRINSICS: common.KEY_INTRINSICS,
    common.POSES: common.KEY_POSES,
    common.DEPTH: common.KEY_DEPTH_ENCODED,
    common.SEMANTIC: common.KEY_SEG_CLASS_ENCODED,
    common.INSTANCES: common.KEY_SEG_INSTANCE_ENCODED,
    common.PSEUDO_DISPARITY: common.KEY_DEPTH_PSEUDO_ENCODED,
    common.WEAK_PAIRS: common.KEY_WEAK_PAIRS,
    common.SOURCE_ID: common.KEY_SOURCE_ID,
}
PARSEABLE_KEYS = tuple(_FEATURE_OF_KEY)


def _missing_text(key: str) -> str:
    """What follows "record <source id>" when the record lacks what `key` needs (no quotes:
    TF escapes them in error messages)."""
    return (f" has no {_FEATURE_OF_KEY[key]} feature (or the wrong number of values) but the "
            f"pipeline asks for {key}; convert records that carry it, or turn off what asks "
            "for it (a loss, the evaluation, or data.keys)")


def _expected_values(key: str, num_context: int) -> Optional[int]:
    """Number of values the feature of `key` must have (None: any); `parse_example` checks
    the same counts in graph mode."""
    return {common.IMAGE: 1, common.CONTEXT: num_context, common.INTRINSICS: 9,
            common.POSES: 16 * (num_context + 1), common.DEPTH: 1, common.SEMANTIC: 1,
            common.INSTANCES: num_context + 1, common.PSEUDO_DISPARITY: 1}.get(key)


def missing_feature(serialized: bytes, keys: Sequence[str], num_context: int = 2
                    ) -> Optional[str]:
    """In numpy: the message `parse_example` would fail with for this record (the first key
    whose feature is absent or has the wrong number of values), or None if it has them all.
    Readers check a file's first record with it before building a model."""
    feature = tf.train.Example.FromString(serialized).features.feature
    ids = feature[common.KEY_SOURCE_ID].bytes_list.value if common.KEY_SOURCE_ID in feature \
        else []
    source_id = ids[0].decode() if ids else "<no source id>"
    for key in [common.IMAGE] + [k for k in keys if k != common.SOURCE_ID]:
        name = _FEATURE_OF_KEY[key]
        values = feature[name] if name in feature else None
        count = (0 if values is None else len(values.bytes_list.value)
                 + len(values.float_list.value) + len(values.int64_list.value))
        expected = _expected_values(key, num_context)
        if expected == 0:
            continue
        if values is None or (expected is not None and count != expected):
            return "record " + source_id + _missing_text(key)
    return None


def _require(present, source_id, key):
    """Graph-mode check that a requested feature exists in the record."""
    return tf.debugging.Assert(present, [
        tf.strings.join(["record ", source_id, _missing_text(key)])])


def parse_example(serialized: tf.Tensor, keys: Sequence[str],
                  num_context: int = 2) -> dict:
    """Parses one serialized record into decoded tensors (for `tf.data.Dataset.map`).

    Args:
      serialized: scalar string tensor.
      keys: batch keys from `common` to produce (IMAGE and SOURCE_ID are always produced).
      num_context: number of neighbour frames the records of this dataset carry.
    Returns:
      dict: IMAGE float32 `[H, W, 3]` in [0, 1]; CONTEXT `[N, H, W, 3]`; INTRINSICS `[3, 3]`;
      POSES `[N+1, 4, 4]`; DEPTH float32 `[H, W, 1]` metres; SEMANTIC int32 `[H, W, 1]`;
      INSTANCES int32 `[N+1, H, W]`; PSEUDO_DISPARITY float32 `[H, W, 1]`; WEAK_PAIRS
      float32 `[P, 6]`; SOURCE_ID string `[]`.
    """
    unknown = set(keys) - set(PARSEABLE_KEYS)
    if unknown:
        raise ValueError(f"unknown batch keys {sorted(unknown)}; known: {PARSEABLE_KEYS}")
    spec = {
        common.KEY_IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        common.KEY_SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    for key in keys:
        if key not in (common.IMAGE, common.SOURCE_ID):
            spec[_FEATURE_OF_KEY[key]] = tf.io.VarLenFeature(
                tf.float32 if key in (common.INTRINSICS, common.POSES, common.WEAK_PAIRS)
                else tf.string)
    raw = tf.io.parse_single_example(serialized, spec)
    source_id = raw[common.KEY_SOURCE_ID]
    dense = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v)
             for k, v in raw.items()}

    def checked(key):
        values = dense[_FEATURE_OF_KEY[key]]
        expected_size = _expected_values(key, num_context)
        with tf.control_dependencies([_require(tf.equal(tf.size(values), expected_size),
                                               source_id, key)]):
            return tf.identity(values)

    def rgb(data):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        return tf.image.convert_image_dtype(image, tf.float32)

    out = {common.IMAGE: rgb(dense[common.KEY_IMAGE_ENCODED]), common.SOURCE_ID: source_id}
    for key in keys:
        if key == common.CONTEXT:
            frames = checked(key)
            out[key] = tf.map_fn(rgb, frames, fn_output_signature=tf.TensorSpec(
                [None, None, 3], tf.float32))
        elif key == common.INTRINSICS:
            out[key] = tf.reshape(checked(key), [3, 3])
        elif key == common.POSES:
            out[key] = tf.reshape(checked(key), [num_context + 1, 4, 4])
        elif key == common.DEPTH:
            png = checked(key)[0]
            out[key] = tf.cast(tf.io.decode_png(png, channels=1, dtype=tf.uint16),
                               tf.float32) / common.DEPTH_PNG_SCALE
        elif key == common.SEMANTIC:
            png = checked(key)[0]
            out[key] = tf.cast(tf.io.decode_png(png, channels=1, dtype=tf.uint8), tf.int32)
        elif key == common.INSTANCES:
            frames = checked(key)
            out[key] = tf.map_fn(
                lambda b: tf.cast(tf.io.decode_png(b, channels=1, dtype=tf.uint16)[..., 0],
                                  tf.int32),
                frames, fn_output_signature=tf.TensorSpec([None, None], tf.int32))
        elif key == common.PSEUDO_DISPARITY:
            png = checked(key)[0]
            out[key] = tf.cast(tf.io.decode_png(png, channels=1, dtype=tf.uint16),
                               tf.float32) / common.PSEUDO_DISPARITY_PNG_SCALE
        elif key == common.WEAK_PAIRS:
            out[key] = tf.reshape(dense[_FEATURE_OF_KEY[key]], [-1, common.WEAK_PAIR_FIELDS])
    return out
