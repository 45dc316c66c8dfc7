"""A prepared TensorFlow Datasets split as an input source of `data/pipeline.py`.

Wherever the pipelines take a TFRecord glob (`data.train_pattern`, `data.eval_pattern`, a
task's own patterns), a pattern `tfds:<name>[/<config>]:<split>` reads a TFDS split instead,
e.g. `tfds:camvid_depthseg/native:train[:50]` or `tfds:kitti_depthseg:train[:10%]+val`
(TFDS's split slicing). The TFDS data_dir is `data.tfds_data_dir`, else TFDS's default
(`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`).

The split must be prepared (`tf_depthseg.tfds.builders`, or any TFDS dataset whose features
are named and encoded like ours: see `builders.sample_features`); reading needs no builder
code, TFDS restores the features from the prepared folder. Examples come out as the batch
dicts of `schema.parse_example`: images are decoded from their stored PNG/JPEG bytes with the
same ops, after the shuffle buffer (which, as for records, holds encoded examples), so a TFDS
split and the converted records of the same samples give equal batches.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Optional, Sequence, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg import errors

PREFIX = config_lib.TFDS_PREFIX
EXAMPLE = "tfds:camvid_depthseg/native:train[:50]"


def is_tfds_pattern(pattern) -> bool:
    """Whether a pipeline pattern names a TFDS split (a string starting with `PREFIX`)."""
    return isinstance(pattern, str) and pattern.startswith(PREFIX)


def parse_pattern(pattern: str) -> Tuple[str, str]:
    """`"tfds:<name>[/<config>]:<split>"` -> (name with config, split)."""
    name, sep, split = pattern[len(PREFIX):].partition(":")
    if not sep or not name.strip() or not split.strip():
        raise errors.BadInputError(
            f"{pattern}: a TFDS source is 'tfds:<name>[/<config>]:<split>', e.g. "
            f"'{EXAMPLE}'.")
    return name.strip(), split.strip()


def _prepare_hint(name: str, data_dir: Optional[str]) -> str:
    where = f", data_dir={data_dir!r}" if data_dir else ""
    return (f"prepare it once: python -c \"import tensorflow_datasets as tfds; from "
            f"tf_depthseg.tfds import builders; tfds.builder('{name}'{where})."
            "download_and_prepare(download_config=tfds.download.DownloadConfig("
            "manual_dir='<dataset root>'))\", or set data.tfds_data_dir to where it is")


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS 4.9.10 logs deprecation warnings about its own internals (FeatureConnector.dtype,
    map_fn's dtype) while building a reader; they say nothing to our users."""
    loggers = [logging.getLogger("absl"), logging.getLogger("tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def load_builder(pattern: str, data_dir: Optional[str] = None):
    """The prepared builder and the split of `pattern`.

    Raises:
      errors.BadInputError: malformed pattern, unknown dataset or config, dataset not
        prepared in `data_dir`, unknown or malformed split (each naming the pattern and the fix).
    """
    name, split = parse_pattern(pattern)
    data_dir = data_dir or None
    with _quiet_tfds():
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            raise errors.BadInputError(
                f"{pattern}: no TFDS dataset {name.split('/')[0]!r} is prepared in "
                f"{data_dir or 'the default TFDS data_dir'}; {_prepare_hint(name, data_dir)}."
            ) from None
        except ValueError as error:  # e.g. unknown config
            raise errors.BadInputError(
                f"{pattern}: {str(error).splitlines()[0]}") from None
        if not builder.is_prepared():
            raise errors.BadInputError(
                f"{pattern}: {name} is not prepared in {builder.data_dir}; "
                f"{_prepare_hint(name, data_dir)}.")
    try:
        builder.info.splits[split]
    except (KeyError, ValueError) as error:
        raise errors.BadInputError(
            f"{pattern}: {str(error).splitlines()[0]} (splits of {name}: "
            f"{sorted(builder.info.splits.keys())}; slicing as in TFDS, e.g. train[:50], "
            "train[:10%]+val).") from None
    return builder, split


def num_examples(pattern: str, data_dir: Optional[str] = None) -> int:
    """Examples in the (sliced) split of `pattern` (from the dataset's metadata)."""
    builder, split = load_builder(pattern, data_dir)
    count = builder.info.splits[split].num_examples
    if count == 0:
        raise errors.BadInputError(f"{pattern}: the split holds 0 examples.")
    return count


def check_keys(builder, pattern: str, keys: Sequence[str], num_context: int) -> None:
    """BadInputError when the dataset lacks a feature the pipeline asks for, or stores
    another number of neighbour frames than `num_context` (the message of the records'
    `schema.missing_feature`, naming the dataset)."""
    features = builder.info.features
    lengths = {common.CONTEXT: num_context, common.POSES: num_context + 1,
               common.INSTANCES: num_context + 1}
    for key in keys:
        if key in (common.IMAGE, common.SOURCE_ID) or (key == common.CONTEXT and
                                                       not num_context):
            continue
        if key not in features:
            raise errors.BadInputError(
                f"{pattern}: the dataset has no {key} feature (it has "
                f"{sorted(features.keys())}) but the pipeline asks for {key}; prepare a config "
                "that stores it, or turn off what asks for it (a loss, the evaluation, or "
                "data.keys).")
        if key in lengths and features[key].shape[0] != lengths[key]:
            raise errors.BadInputError(
                f"{pattern}: {key} holds {features[key].shape[0]} frames per example but "
                f"data.num_context={num_context} needs {lengths[key]}; set data.num_context "
                "to the dataset's number of neighbour frames.")


def _rgb(data: tf.Tensor) -> tf.Tensor:
    # What schema.parse_example does with the records' image bytes.
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.image.convert_image_dtype(image, tf.float32)


def _png(data: tf.Tensor, dtype) -> tf.Tensor:
    return tf.io.decode_png(data, channels=1, dtype=dtype)


def to_batch(example: dict, keys: Sequence[str]) -> dict:
    """A TFDS example read with `tfds.decode.SkipDecoding` (image features as encoded bytes)
    -> the dict of `schema.parse_example` for `keys` (IMAGE and SOURCE_ID always)."""
    out = {common.IMAGE: _rgb(example[common.IMAGE]),
           common.SOURCE_ID: example[common.SOURCE_ID]}
    for key in keys:
        if key in out:
            continue
        value = example[key]
        if key == common.CONTEXT:
            out[key] = tf.map_fn(_rgb, value, fn_output_signature=tf.TensorSpec(
                [None, None, 3], tf.float32))
        elif key == common.INTRINSICS:
            out[key] = tf.reshape(tf.cast(value, tf.float32), [3, 3])
        elif key == common.POSES:
            out[key] = tf.reshape(tf.cast(value, tf.float32), [-1, 4, 4])
        elif key == common.WEAK_PAIRS:
            out[key] = tf.reshape(tf.cast(value, tf.float32), [-1, common.WEAK_PAIR_FIELDS])
        elif key == common.DEPTH:
            out[key] = tf.cast(_png(value, tf.uint16), tf.float32) / common.DEPTH_PNG_SCALE
        elif key == common.SEMANTIC:
            out[key] = tf.cast(_png(value, tf.uint8), tf.int32)
        elif key == common.INSTANCES:
            out[key] = tf.map_fn(lambda b: tf.cast(_png(b, tf.uint16)[..., 0], tf.int32), value,
                                 fn_output_signature=tf.TensorSpec([None, None], tf.int32))
        else:
            raise ValueError(f"no TFDS feature for batch key {key!r}")
    return out


def make_examples(pattern: str, data_dir: Optional[str], keys: Sequence[str],
                  num_context: int, training: bool, seed: int,
                  ordered: bool) -> tf.data.Dataset:
    """The split's examples, still encoded (decode each with `to_batch`), read the way the
    TFRecord source reads its files: shuffled files (training, `seed`), interleaved one
    example at a time from up to 8 files, in a fixed order when `ordered`. Several input
    pipelines shard the result by example (`data/pipeline.py`).

    Raises:
      errors.BadInputError: see `load_builder` and `check_keys`.
    """
    builder, split = load_builder(pattern, data_dir)
    check_keys(builder, pattern, keys, num_context)
    num_files = len(builder.info.splits[split].file_instructions)
    options = tf.data.Options()
    options.deterministic = ordered
    # Our builders write in the converters' order (disable_shuffling); TFDS then refuses file
    # shuffling and interleaving unless its ordering guard is off. Mixing files is what the
    # records source does too (the shuffle buffer does the rest).
    read_config = tfds.ReadConfig(
        shuffle_seed=seed, interleave_cycle_length=max(1, min(num_files, 8)),
        interleave_block_length=1, try_autocache=False, options=options,
        enable_ordering_guard=False)
    with _quiet_tfds():
        return builder.as_dataset(
            split=split, shuffle_files=training, read_config=read_config,
            decoders={key: tfds.decode.SkipDecoding() for key in builder.info.features})
