"""TFDS metadata for a folder of our converted TFRecords, so TFDS tooling reads it as it is.

    from tf_depthseg.tfds import records_metadata
    records_metadata.write_metadata("data/camvid", class_names=datasets.CAMVID_CLASS_NAMES)
    builder = tfds.builder_from_directory("data/camvid")   # splits, sizes, features
    ds = builder.as_dataset(split="train[:10]")

Nothing is copied or rewritten: `dataset_info.json` and `features.json` are written next to
the shards and `manifest.json`. TFDS names a feature of a nested `FeaturesDict` by joining
the keys with "/", so nested dicts describe our `schema` keys exactly ("image/encoded",
"camera/intrinsics", ...); the shard names are given as TFDS's file template
`{SPLIT}-{SHARD_X_OF_Y}.tfrecord`. An example then reads as nested dicts:
`ex["image"]["encoded"]` is the decoded uint8 image, `ex["depth"]["encoded"]` the uint16
depth (metres * 256), `ex["camera"]["intrinsics"]` K `[3, 3]`, ...

The features are those of each split's first record (the converters give every record of a
split the same features, except optional depth / ordinal pairs of Mannequin and MegaDepth
records): a record without one of them fails to parse when read. Incomplete splits are left
out.
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg.data import records

F = tfds.features
TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"  # = records.shard_name


def _nested(flat: Dict[str, object]) -> dict:
    """{"a/b": x} -> {"a": {"b": x}}."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def record_features(serialized: bytes, class_names: Optional[Sequence[str]] = None) -> dict:
    """Nested TFDS features describing the `schema` features present in one record.

    Args:
      serialized: a record written by `schema.encode_example`.
      class_names: names of the segmentation ids (a `LabeledImage`), or None (plain image).
    """
    feature = tf.train.Example.FromString(serialized).features.feature
    count = {key: len(value.bytes_list.value) + len(value.float_list.value)
             + len(value.int64_list.value) for key, value in feature.items()}
    num_context = count.get(common.KEY_CONTEXT_ENCODED, 0)
    rgb = F.Image(shape=(None, None, 3), dtype=np.uint8)
    png16 = F.Image(shape=(None, None, 1), dtype=np.uint16)
    known = {
        common.KEY_IMAGE_ENCODED: rgb,
        common.KEY_IMAGE_FORMAT: F.Text(),
        common.KEY_IMAGE_HEIGHT: F.Scalar(np.int64),
        common.KEY_IMAGE_WIDTH: F.Scalar(np.int64),
        common.KEY_SOURCE_ID: F.Text(),
        common.KEY_CONTEXT_ENCODED: F.Sequence(rgb, length=num_context),
        common.KEY_INTRINSICS: F.Tensor(shape=(3, 3), dtype=np.float32),
        common.KEY_POSES: F.Tensor(shape=(num_context + 1, 4, 4), dtype=np.float32),
        common.KEY_DEPTH_ENCODED: F.Image(shape=(None, None, 1), dtype=np.uint16,
                                          doc=f"metres * {common.DEPTH_PNG_SCALE:g}, 0 = "
                                              "invalid"),
        common.KEY_SEG_CLASS_ENCODED: (
            F.LabeledImage(labels=list(class_names), shape=(None, None, 1))
            if class_names else F.Image(shape=(None, None, 1), dtype=np.uint8)),
        common.KEY_SEG_INSTANCE_ENCODED: F.Sequence(png16, length=num_context + 1),
        common.KEY_DEPTH_PSEUDO_ENCODED: F.Image(
            shape=(None, None, 1), dtype=np.uint16,
            doc=f"normalised disparity * {common.PSEUDO_DISPARITY_PNG_SCALE:g}"),
        common.KEY_WEAK_PAIRS: F.Tensor(shape=(None, common.WEAK_PAIR_FIELDS),
                                        dtype=np.float32),
    }
    unknown = sorted(set(count) - set(known))
    if unknown:
        raise errors.BadInputError(f"record {_source_id(feature)}: features {unknown} are not "
                                   "in tf_depthseg's schema; no TFDS metadata for them.")
    return _nested({key: known[key] for key in sorted(count)})


def _source_id(feature) -> str:
    ids = feature[common.KEY_SOURCE_ID].bytes_list.value if common.KEY_SOURCE_ID in feature \
        else []
    return ids[0].decode() if ids else "<no source id>"


def write_metadata(records_dir: str, class_names: Optional[Sequence[str]] = None,
                   description: str = "", citation: str = "") -> Dict[str, int]:
    """Writes TFDS metadata (dataset_info.json, features.json) for the converted folder
    `records_dir` (see module doc).

    Returns:
      {split: number of examples} of the splits described.
    Raises:
      errors.BadInputError: no manifest, no complete split, or splits whose first records
        carry different features.
    """
    manifest = records.read_manifest(records_dir)
    if not manifest.get("splits"):
        raise errors.BadInputError(f"{records_dir}: no {records.MANIFEST_NAME} with splits; "
                                   "point at a folder written by a converter.")
    name = os.path.basename(os.path.normpath(records_dir))
    template = tfds.core.ShardedFileTemplate(data_dir=records_dir, template=TEMPLATE,
                                             dataset_name=name, filetype_suffix="tfrecord")
    features, first_split, split_infos = None, None, []
    for split, entry in sorted(manifest["splits"].items()):
        if not entry.get("complete") or not entry.get("num_examples"):
            continue
        shards = [entry["shards"][str(i)] for i in range(entry["num_shards"])]
        path = next(os.path.join(records_dir, s["file"]) for s in shards if s["num_examples"])
        split_features = record_features(next(records.iterate_records(path)), class_names)
        if features is None:
            features, first_split = split_features, split
        elif repr(F.FeaturesDict(split_features)) != repr(F.FeaturesDict(features)):
            raise errors.BadInputError(
                f"{records_dir}: split '{split}' has other features than split "
                f"'{first_split}'; TFDS describes one feature set per folder: write the "
                "splits to separate folders.")
        split_infos.append(tfds.core.SplitInfo(
            name=split, shard_lengths=[s["num_examples"] for s in shards],
            num_bytes=sum(s["size"] for s in shards), filename_template=template))
    if not split_infos:
        raise errors.BadInputError(f"{records_dir}: no complete split with examples in "
                                   f"{records.MANIFEST_NAME}; finish the conversion first.")
    tfds.folder_dataset.write_metadata(
        data_dir=records_dir, features=F.FeaturesDict(features), split_infos=split_infos,
        filename_template=template, description=description or
        f"tf_depthseg records ({manifest.get('schema_version')}) converted into {name}",
        citation=citation, check_data=False)
    return {info.name: info.num_examples for info in split_infos}
