"""tf.data input pipelines: files -> records -> parse -> joint augmentation -> batch -> prefetch.

`make_dataset` is the one entry point the training engine calls (plain arguments, no config
object). Training pipelines shuffle, repeat and augment; evaluation pipelines only resize to
the model size (or not at all) and keep every example.

Reproducibility: every random choice is stateless. Each element of the (shuffled, repeated)
record stream is numbered by `tf.data.Dataset.counter()` and its augmentation seed is
`fold_in([seed, input_pipeline_id], number)`, so the same `seed` gives the same batches, two
workers never draw the same augmentations, and a tf.data iterator saved in a
`tf.train.Checkpoint` resumes with exactly the batches an uninterrupted run would have seen.
`deterministic=True` additionally keeps the parallel stages in order (slower, bit-exact).

Distribution: pass the `tf.distribute.InputContext` from
`strategy.distribute_datasets_from_function`; `batch_size` is the global batch and each input
pipeline batches `input_context.get_per_replica_batch_size(batch_size)`. Pipelines shard by
file when there are at least as many files as pipelines (each worker reads only its files),
otherwise by record (every worker reads all files and keeps every n-th record).
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg.data import augment, records, schema
from tf_depthseg import errors

# Monodepth2's colour augmentation (torchvision ColorJitter(0.2, 0.2, 0.2, 0.1), p = 0.5).
DEFAULT_COLOR_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1,
                        "prob": 0.5}
DEFAULT_MAX_WEAK_PAIRS = 64

FilePattern = Union[str, Sequence[str]]
# How users of the config-driven readers (train, evaluate) lift the incomplete-split check.
ALLOW_INCOMPLETE_OVERRIDE = "--set data.allow_incomplete=true"


def _static_shapes(example: dict, size: Optional[Tuple[int, int]], num_context: int) -> dict:
    """Sets the static (unbatched) shape of every key so batches have static shapes."""
    height, width = size if size is not None else (None, None)
    shapes = {
        common.IMAGE: [height, width, 3],
        common.CONTEXT: [num_context, height, width, 3],
        common.DEPTH: [height, width, 1],
        common.SEMANTIC: [height, width, 1],
        common.PSEUDO_DISPARITY: [height, width, 1],
        common.INSTANCES: [num_context + 1, height, width],
        common.INTRINSICS: [3, 3],
        common.POSES: [num_context + 1, 4, 4],
        common.SOURCE_ID: [],
        common.NUM_WEAK_PAIRS: [],
    }
    out = {}
    for key, value in example.items():
        if key in shapes:
            value = tf.ensure_shape(value, shapes[key])
        out[key] = value
    return out


def make_dataset(file_pattern: FilePattern,
                 keys: Sequence[str],
                 batch_size: int,
                 training: bool,
                 image_size: Optional[Tuple[int, int]] = None,
                 crop_size: Optional[Tuple[int, int]] = None,
                 scale_range: Tuple[float, float] = (1.0, 1.0),
                 flip_prob: float = 0.5,
                 color_jitter: Optional[Mapping[str, float]] = DEFAULT_COLOR_JITTER,
                 num_context: int = 2,
                 shuffle_buffer: int = 1024,
                 deterministic: bool = False,
                 seed: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 repeat: Optional[bool] = None,
                 max_weak_pairs: int = DEFAULT_MAX_WEAK_PAIRS,
                 drop_remainder: Optional[bool] = None,
                 tfds_data_dir: Optional[str] = None,
                 num_parallel_calls: int = tf.data.AUTOTUNE,
                 allow_incomplete: bool = False,
                 source_ids: Optional[Sequence[str]] = None) -> tf.data.Dataset:
    """Builds a batched input pipeline over sharded TFRecords of the `schema` format.

    Args:
      file_pattern: glob or list of globs of TFRecord files, e.g.
        `records.split_pattern(out_dir, "train")`, or a TensorFlow Datasets split
        `tfds:<name>[/<config>]:<split>` (`tf_depthseg/tfds/source.py`), e.g.
        `tfds:camvid_depthseg/native:train[:50]`: the same batches as from the converted
        records of the same samples.
      keys: batch keys from `common` to produce (IMAGE and SOURCE_ID always come).
      batch_size: global batch size; per-replica with `input_context` (see module doc).
      training: shuffle, repeat (if `repeat`) and augment; otherwise only resize.
      image_size: (height, width) the model takes; records are resized to it (training: it
        is what `scale_range` is relative to). None keeps the stored size, which then must
        be the same for all records of a batch and the spatial dims are not static.
      crop_size: training crop (height, width); None = `image_size`.
      scale_range: (min, max) random scale relative to `image_size` before cropping.
      flip_prob: probability of a horizontal flip (training).
      color_jitter: kwargs of `augment.color_jitter` (training), or None for no jitter.
      num_context: neighbour frames each record carries (needed for CONTEXT, POSES,
        INSTANCES).
      shuffle_buffer: records in the shuffle buffer (training).
      deterministic: keep parallel stages in order (exactly reproducible batch order).
      seed: seed of file order, shuffle and augmentation.
      input_context: `tf.distribute.InputContext` for sharding and per-replica batching.
      repeat: repeat forever; None = `training` (evaluation reads every example once).
      max_weak_pairs: rows of the padded WEAK_PAIRS tensor (when WEAK_PAIRS is requested);
        the batch then also has `common.NUM_WEAK_PAIRS` (int32 `[batch]`).
      drop_remainder: drop a last partial batch; None = `training` (static batch size for
        training, every example for evaluation).
      tfds_data_dir: TFDS data_dir of a `tfds:` pattern (None: TFDS's default,
        `$TFDS_DATA_DIR` else `~/tensorflow_datasets`).
      num_parallel_calls: parallelism of the parse/augment map.
      allow_incomplete: read splits whose conversion has not finished (their finished
        shards); otherwise the files are checked against their manifest
        (`records.check_shards`: complete, not empty, recorded sizes).
      source_ids: read only the records with these source ids (a labelled subset,
        `data/subsets.py`); None = all. With several input pipelines they then shard by
        record, so every worker reads part of the subset.
    Returns:
      A `tf.data.Dataset` of dicts: IMAGE float32 `[B, h, w, 3]` in [0, 1], CONTEXT
      `[B, N, h, w, 3]`, DEPTH `[B, h, w, 1]` metres (0 invalid), SEMANTIC int32
      `[B, h, w, 1]`, INSTANCES int32 `[B, N+1, h, w]`, PSEUDO_DISPARITY `[B, h, w, 1]`,
      INTRINSICS `[B, 3, 3]` for the output size, POSES `[B, N+1, 4, 4]`, WEAK_PAIRS
      `[B, max_weak_pairs, 6]`, NUM_WEAK_PAIRS `[B]`, SOURCE_ID `[B]`, where (h, w) is
      `crop_size` (training) or `image_size`.
    Raises:
      errors.BadInputError: no file matches `file_pattern`, or the manifest check fails.
      ValueError: bad arguments.

    Errors while reading (a corrupt file, a record without a requested feature) surface as
    TensorFlow errors from the iterator; `reading_errors` turns them into BadInputErrors.
    """
    keys = list(dict.fromkeys(keys))
    unknown = set(keys) - set(schema.PARSEABLE_KEYS)
    if unknown:
        raise ValueError(f"make_dataset: unknown keys {sorted(unknown)}; known: "
                         f"{schema.PARSEABLE_KEYS}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if image_size is not None:
        image_size = augment.check_size(image_size, "image_size")
    if crop_size is not None:
        crop_size = augment.check_size(crop_size, "crop_size")
    if num_context < 0:
        raise ValueError(f"num_context must be >= 0, got {num_context}")
    if not file_pattern:
        raise ValueError(f"file_pattern must be a glob or a list of globs, got {file_pattern!r}")
    tfds_source = None
    if isinstance(file_pattern, str) and file_pattern.startswith(config_lib.TFDS_PREFIX):
        # Imported only for TFDS sources (TensorFlow Datasets costs seconds of start-up).
        # Without files, several input pipelines shard the TFDS split by example.
        from tf_depthseg.tfds import source as tfds_source
        files = []
    else:
        files = records.list_checked_shards(file_pattern, allow_incomplete,
                                            ALLOW_INCOMPLETE_OVERRIDE)
        _check_first_record(files, keys, num_context)

    num_pipelines, pipeline_id = 1, 0
    if input_context is not None:
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    shard_by_record = num_pipelines > 1 and (len(files) < num_pipelines
                                             or source_ids is not None)
    if num_pipelines > 1 and not shard_by_record:
        files = files[pipeline_id::num_pipelines]

    out_size = (crop_size or image_size) if training else image_size
    jitter_args = dict(color_jitter) if (training and color_jitter) else None
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    def parse_and_augment(serialized, index):
        example = (tfds_source.to_batch(serialized, keys) if tfds_source is not None else
                   schema.parse_example(serialized, keys, num_context=num_context))
        element_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        geometry_seed, jitter_seed, pairs_seed = tf.unstack(
            tf.random.experimental.stateless_split(element_seed, 3))
        if training:
            if out_size is not None:
                example = augment.random_resize_crop_flip(
                    example, geometry_seed, out_size, scale_range, flip_prob,
                    base_size=image_size)
            else:
                example = augment.random_flip(example, geometry_seed, flip_prob)
            if jitter_args is not None:
                example = augment.color_jitter(example, jitter_seed, **jitter_args)
        elif image_size is not None:
            example = augment.resize_example(example, image_size)
        if common.WEAK_PAIRS in example:
            example = augment.pad_weak_pairs(example, max_weak_pairs,
                                             seed=pairs_seed if training else None)
        return _static_shapes(example, out_size, num_context)

    # Record sharding needs every worker to see the same record order.
    ordered = deterministic or shard_by_record
    if tfds_source is not None:
        dataset = tfds_source.make_examples(file_pattern, tfds_data_dir, keys, num_context,
                                            training, seed, ordered)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(files)
        if training:
            dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(files), 8), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
    if source_ids is not None:  # records or TFDS examples (`_source_id_filter`)
        dataset = dataset.filter(_source_id_filter(source_ids))
    if shard_by_record:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if training if repeat is None else repeat:
        dataset = dataset.repeat()
    # Number the stream *after* shuffle and repeat: element i of the stream gets seed i,
    # so every epoch draws new augmentations and a restored iterator continues the sequence.
    dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.counter()))
    # map() traces parse_and_augment now, so bad augmentation arguments raise ValueError here.
    # The parse and augment code uses explicit tf.cond and no tensor-dependent Python control
    # flow, so AutoGraph has nothing to convert; skipping it cuts the first build from ~19 s
    # to ~2 s on our 2-core machines.
    dataset = dataset.map(tf.autograph.experimental.do_not_convert(parse_and_augment),
                          num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    dataset = dataset.batch(batch_size,
                            drop_remainder=training if drop_remainder is None else drop_remainder)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:
        # We sharded ourselves (above); tf.distribute must not shard a second time. Without an
        # input context, `experimental_distribute_dataset` keeps its own auto-sharding.
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
    return dataset.with_options(options)


def color_jitter_args(strength: float) -> Optional[dict]:
    """`augment.color_jitter` kwargs for `data.color_jitter` (0 = off): Monodepth2's
    brightness/contrast/saturation strength, hue at half of it (its 0.2 / 0.1), p = 0.5."""
    if strength <= 0:
        return None
    return {"brightness": strength, "contrast": strength, "saturation": strength,
            "hue": min(strength / 2.0, 0.5), "prob": 0.5}


def make_training_dataset(config, pattern: FilePattern, keys: Sequence[str], batch_size: int,
                          input_context: Optional[tf.distribute.InputContext],
                          seed_offset: int = 0,
                          source_ids: Optional[Sequence[str]] = None) -> tf.data.Dataset:
    """`make_dataset` for training with the experiment's `data` and `train` settings (size,
    crop, scale, flip, colour jitter, context, shuffling, determinism, seed + `seed_offset`
    for a second stream), `batch_size` global (per replica via `input_context`), only the
    records of `source_ids` when given (a labelled subset)."""
    data = config.data
    return make_dataset(
        pattern, keys, batch_size, training=True, image_size=data.image_size,
        crop_size=data.crop_size, scale_range=data.scale_range, flip_prob=data.flip_prob,
        color_jitter=color_jitter_args(data.color_jitter), num_context=data.num_context,
        shuffle_buffer=data.shuffle_buffer, deterministic=config.train.deterministic,
        tfds_data_dir=data.tfds_data_dir or None,
        seed=config.train.seed + seed_offset, input_context=input_context,
        allow_incomplete=data.allow_incomplete, source_ids=source_ids)


def _source_id_filter(source_ids: Sequence[str]):
    """Predicate on serialized records (or TFDS examples): is the source id one of
    `source_ids`?"""
    if not source_ids:
        raise ValueError("source_ids is empty: no record would be read")
    wanted = tf.constant(sorted(set(source_ids)), tf.string)
    spec = {common.KEY_SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value="")}

    def keep(serialized):
        if isinstance(serialized, dict):  # a TFDS example (tf_depthseg/tfds/source.py)
            return tf.reduce_any(tf.equal(wanted, serialized[common.SOURCE_ID]))
        source_id = tf.io.parse_single_example(serialized, spec)[common.KEY_SOURCE_ID]
        return tf.reduce_any(tf.equal(wanted, source_id))

    return tf.autograph.experimental.do_not_convert(keep)


def count_examples(pattern: str, allow_incomplete: bool = False,
                   tfds_data_dir: Optional[str] = None) -> int:
    """Examples in the shards matching `pattern`, from their folders' manifest.json (checked
    by `records.check_shards`: complete, not empty, sizes as recorded), else by reading the
    records; for a `tfds:` pattern, from the TFDS dataset's metadata.

    Raises:
      errors.BadInputError: the manifest check fails, or the shards hold no example.
    """
    if pattern.startswith(config_lib.TFDS_PREFIX):
        from tf_depthseg.tfds import source as tfds_source
        return tfds_source.num_examples(pattern, tfds_data_dir)
    files = records.list_shards(pattern)
    total = records.check_shards(files, allow_incomplete, ALLOW_INCOMPLETE_OVERRIDE)
    if total is None:  # some folder has no manifest: count by reading
        total = sum(records.count_records(path) for path in files)
        if total == 0:
            raise errors.BadInputError(f"{pattern}: the matching TFRecord files hold 0 "
                                       "examples; point data.train_pattern at converted "
                                       "records.")
    return total


def count_train_examples(config) -> Optional[int]:
    """`count_examples` of `data.train_pattern` (None when it is empty)."""
    if not config.data.train_pattern:
        return None
    return count_examples(config.data.train_pattern, config.data.allow_incomplete,
                          config.data.tfds_data_dir or None)


def make_depth_eval_dataset(config, pattern: Optional[FilePattern] = None
                            ) -> Optional[tf.data.Dataset]:
    """Finite IMAGE + DEPTH batches of `pattern` (default `data.eval_pattern`; None when both
    are empty): at the stored size with `eval.native_resolution` (the Eigen protocol), else
    resized to `data.image_size`; deterministic order."""
    pattern = pattern or config.data.eval_pattern
    if not pattern:
        return None
    size = None if config.eval.native_resolution else config.data.image_size
    return make_dataset(pattern, [common.IMAGE, common.DEPTH], config.data.eval_batch_size,
                        training=False, image_size=size, num_context=0, deterministic=True,
                        allow_incomplete=config.data.allow_incomplete,
                        tfds_data_dir=config.data.tfds_data_dir or None)


def _check_first_record(files: Sequence[str], keys: Sequence[str], num_context: int) -> None:
    """Reads the first record of the first non-empty file: the wrong kind of records (e.g.
    without depth for a depth loss) or a corrupt start is an error now, naming the record or
    file, instead of after the model is built. Later records are checked while reading
    (`schema.parse_example`, `reading_errors`)."""
    for path in files:
        try:
            first = next(iter(tf.data.TFRecordDataset(path).take(1).as_numpy_iterator()), None)
        except tf.errors.DataLossError as error:
            raise errors.BadInputError(
                f"{path}: corrupt TFRecord file ({records.data_loss_detail(error)}); check it "
                "with tools/verify_records.py and rerun the converter.") from None
        if first is not None:
            problem = schema.missing_feature(first, keys, num_context)
            if problem is not None:
                raise errors.BadInputError(f"{path}: {problem}.")
            return


def _find_corrupt_file(patterns: Sequence[FilePattern]) -> Optional[errors.BadInputError]:
    """The error of the first file of `patterns` that does not read to the end (None if all
    do). Only run after a DataLossError, whose message names no file."""
    for pattern in patterns:
        try:
            files = records.list_shards(pattern)
        except errors.BadInputError:
            continue
        for path in files:
            try:
                records.count_records(path)
            except errors.BadInputError as error:
                return error
    return None


# The message of `schema.parse_example`'s missing-feature assertion (inside TF's text).
_MISSING_FEATURE = re.compile(r"record .*? has no .*?data\.keys\)")


@contextlib.contextmanager
def reading_errors(patterns: Sequence[FilePattern]) -> Iterator[None]:
    """Turns TensorFlow errors raised while iterating datasets of `patterns` into one-line
    `errors.BadInputError`s that name the file or record and the fix.

    * DataLossError (a corrupt TFRecord; TensorFlow's message names no file): the files are
      read again to find the corrupt one, which the message names.
    * InvalidArgumentError from a record that lacks a feature the pipeline needs (see
      `schema.parse_example`): the record's source id and the missing feature.
    """
    patterns = [p for p in patterns if p]
    try:
        yield
    except tf.errors.DataLossError as error:
        found = _find_corrupt_file(patterns)
        if found is None:
            found = errors.BadInputError(
                f"{', '.join(map(str, patterns))}: corrupt TFRecord data "
                f"({records.data_loss_detail(error)}); check the files with "
                "tools/verify_records.py and rerun the converter.")
        raise found from None
    except tf.errors.InvalidArgumentError as error:
        match = _MISSING_FEATURE.search(error.message)
        if match is None:
            raise
        raise errors.BadInputError(match.group(0) + ".") from None
