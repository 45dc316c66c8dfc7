"""Sharded TFRecord files: writing (atomic, resumable, with a manifest) and reading.

On disk, one output folder holds every split of a converted dataset:

    <out_dir>/train-00000-of-00004.tfrecord ... train-00003-of-00004.tfrecord
    <out_dir>/val-00000-of-00001.tfrecord
    <out_dir>/manifest.json

`manifest.json` (see `ShardedWriter`) records per split the shards with their example counts
and sha256 checksums, the samples that were quarantined by `--skip_bad`, the converter's source
description and the schema version (`common.SCHEMA_VERSION`). It doubles as the resume state:
a shard listed there whose file has the recorded size is finished and is skipped on restart,
and a shard being written lives under a temporary name until it is complete, so a kill never
leaves a half-written shard under its final name.

Writing is plain `tf.io.TFRecordWriter` (no graph, no threads), so the converters can fork
worker processes that import this module.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.data import image_io
from tf_depthseg import errors
from tf_depthseg import utils

MANIFEST_NAME = "manifest.json"
_TMP_PREFIX = ".tmp-"


def shard_name(split: str, index: int, num_shards: int) -> str:
    """File name of shard `index` of `num_shards`: `{split}-{i:05d}-of-{n:05d}.tfrecord`."""
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} outside [0, {num_shards}).")
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def split_pattern(out_dir: str, split: str) -> str:
    """Glob pattern matching every shard of `split` in `out_dir`."""
    return os.path.join(out_dir, f"{split}-?????-of-?????.tfrecord")


def list_shards(pattern: Union[str, Sequence[str]]) -> List[str]:
    """Sorted shard files for a glob pattern, a single file, a folder+split pattern or a list.

    Raises:
      errors.BadInputError: when nothing matches (names the pattern).
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    files = []
    for item in patterns:
        matched = sorted(glob.glob(item))
        if not matched:
            raise errors.BadInputError(
                f"{item}: no TFRecord files match. Run the dataset's converter "
                "(tools/convert_*.py) first or fix the path/split name.")
        files.extend(matched)
    return files


def iterate_records(pattern: Union[str, Sequence[str]]) -> Iterator[bytes]:
    """Yields every serialized example of the matching shard files, in file order.

    Args:
      pattern: glob like `out/train-*-of-*.tfrecord` (see `split_pattern`), a file, or a list.
    Yields:
      bytes of one serialized `tf.train.Example` (decode with `schema.decode_example`).
    """
    for path in list_shards(pattern):
        try:
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                yield record
        except tf.errors.DataLossError as error:
            raise errors.BadInputError(
                f"{path}: corrupt TFRecord file ({error.message}); delete it and rerun the "
                "converter (finished shards are kept, the missing one is rewritten).") from error


def read_manifest(out_dir: str) -> dict:
    """The manifest of `out_dir` (an empty one when the folder has none yet)."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        return {"schema_version": common.SCHEMA_VERSION, "splits": {}}
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise errors.BadInputError(f"{path}: unreadable manifest ({error}); delete it and "
                                     "rerun the converter.") from error
    if manifest.get("schema_version") != common.SCHEMA_VERSION:
        raise errors.BadInputError(
            f"{path}: schema version {manifest.get('schema_version')} but this code writes "
            f"version {common.SCHEMA_VERSION}; convert into an empty folder.")
    return manifest


def _write_manifest(out_dir: str, manifest: dict) -> None:
    utils.atomic_write_bytes(os.path.join(out_dir, MANIFEST_NAME),
                                (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_split(out_dir: str, split: str) -> int:
    """Checks every shard of `split` against the manifest's checksums and counts.

    Returns:
      the number of examples of the split.
    Raises:
      errors.BadInputError: naming the first missing, incomplete or modified shard.
    """
    entry = read_manifest(out_dir)["splits"].get(split)
    if entry is None or not entry.get("complete"):
        raise errors.BadInputError(f"{out_dir}: split '{split}' is not (completely) "
                                     "converted; rerun the converter to finish it.")
    total = 0
    for index in range(entry["num_shards"]):
        shard = entry["shards"].get(str(index))
        path = os.path.join(out_dir, shard_name(split, index, entry["num_shards"]))
        if shard is None or not os.path.exists(path) or file_sha256(path) != shard["sha256"]:
            raise errors.BadInputError(f"{path}: missing or checksum mismatch with "
                                         f"{MANIFEST_NAME}; rerun the converter.")
        count = sum(1 for _ in tf.data.TFRecordDataset(path))
        if count != shard["num_examples"]:
            raise errors.BadInputError(f"{path}: {count} examples, manifest says "
                                         f"{shard['num_examples']}.")
        total += count
    return total


class ShardedWriter:
    """Writes one split as `num_shards` TFRecord files plus its entry in `manifest.json`.

    Two ways to use it:

    * `write(serialized)` spreads records round-robin over all shards (all are open at once);
      every shard is finished when the context exits without error.
    * `write(serialized, shard=i)` with shards written one after the other, each closed by
      `finish_shard(i)` (the converters do this: each shard is a unit of resumable work).

    A shard is written to a temporary file and renamed when finished, and then recorded in the
    manifest, so after a kill `is_finished(i)` tells which shards can be skipped. Leaving the
    context with an exception discards unfinished shards and keeps finished ones.

    Manifest entry of a split:
      {"num_shards", "num_examples", "complete", "source", "shards": {"<i>": {"file",
       "num_examples", "sha256", "size", "inputs"}}, "skipped": [{"source_id", "shard", "error"}]}

    Args:
      out_dir: output folder (created).
      split: split name used in file names ("train", "val", ...).
      num_shards: number of shard files (>= 1).
      source: free text describing the input (dataset root, converter, options).
      resume: keep the finished shards already recorded for this split; otherwise they are
        rewritten. Resuming with another `num_shards` than recorded raises ValueError.
    """

    def __init__(self, out_dir: str, split: str, num_shards: int, source: str = "",
                 resume: bool = True):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
        if not split or "/" in split or "-" in split:
            raise ValueError(f"split name {split!r} must be non-empty, without '/' or '-'.")
        self.out_dir = out_dir
        self.split = split
        self.num_shards = num_shards
        os.makedirs(out_dir, exist_ok=True)
        manifest = read_manifest(out_dir)
        previous = manifest["splits"].get(split)
        if previous is not None and previous["num_shards"] != num_shards:
            if resume:
                raise ValueError(
                    f"{out_dir}: split '{split}' was started with {previous['num_shards']} "
                    f"shards, now {num_shards}; use the same --num_shards, or delete "
                    f"{split}-*.tfrecord and its manifest entry to start over.")
            for index in range(previous["num_shards"]):
                stale = os.path.join(out_dir, shard_name(split, index, previous["num_shards"]))
                if os.path.exists(stale):
                    os.remove(stale)
            previous = None
        shards = dict(previous["shards"]) if (previous and resume) else {}
        # A recorded shard only counts when its file is really there with the recorded size.
        for key in list(shards):
            path = os.path.join(out_dir, shards[key]["file"])
            if not os.path.exists(path) or os.path.getsize(path) != shards[key]["size"]:
                del shards[key]
        skipped = [s for s in (previous or {}).get("skipped", []) if str(s["shard"]) in shards]
        self._entry = {"num_shards": num_shards, "source": source, "complete": False,
                       "shards": shards, "skipped": skipped,
                       "num_examples": sum(s["num_examples"] for s in shards.values())}
        # Temporary files of a killed earlier run of this split are garbage by construction.
        for leftover in glob.glob(os.path.join(out_dir, f"{_TMP_PREFIX}*-{split}-*.tfrecord")):
            os.remove(leftover)
        self._open: Dict[int, list] = {}  # shard index -> [tf writer, temp path, count]
        self._round_robin = 0
        self._save()

    # -- state -------------------------------------------------------------------------------
    def is_finished(self, shard: int, inputs: Optional[str] = None) -> bool:
        """Whether shard `shard` is complete (and, if given, was built from the same `inputs`
        fingerprint, see `inputs_fingerprint`)."""
        entry = self._entry["shards"].get(str(shard))
        return entry is not None and (inputs is None or entry.get("inputs") == inputs)

    @property
    def entry(self) -> dict:
        """The split's manifest entry (a copy)."""
        return json.loads(json.dumps(self._entry))

    def _save(self) -> None:
        manifest = read_manifest(self.out_dir)
        manifest["schema_version"] = common.SCHEMA_VERSION
        manifest["splits"][self.split] = self._entry
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        _write_manifest(self.out_dir, manifest)

    # -- writing -----------------------------------------------------------------------------
    def _writer(self, shard: int):
        if shard not in self._open:
            if self.is_finished(shard):
                # Rewriting a finished shard (e.g. its inputs changed): forget the old one.
                del self._entry["shards"][str(shard)]
                self._entry["skipped"] = [s for s in self._entry["skipped"]
                                          if s["shard"] != shard]
            final = shard_name(self.split, shard, self.num_shards)
            tmp = os.path.join(self.out_dir, f"{_TMP_PREFIX}{os.getpid()}-{final}")
            self._open[shard] = [tf.io.TFRecordWriter(tmp), tmp, 0]
        return self._open[shard]

    def write(self, serialized: bytes, shard: Optional[int] = None) -> None:
        """Appends one serialized example to `shard` (default: round-robin over all shards)."""
        if shard is None:
            shard = self._round_robin
            self._round_robin = (self._round_robin + 1) % self.num_shards
        if not 0 <= shard < self.num_shards:
            raise ValueError(f"shard {shard} outside [0, {self.num_shards}).")
        state = self._writer(shard)
        state[0].write(serialized)
        state[2] += 1

    def record_skipped(self, source_id: str, error: str, shard: int) -> None:
        """Lists a quarantined sample (written to the manifest with its shard)."""
        self._entry["skipped"].append({"source_id": source_id, "shard": shard,
                                       "error": str(error)})

    def finish_shard(self, shard: int, inputs: Optional[str] = None) -> dict:
        """Closes, renames and records shard `shard` (an empty shard file if nothing was
        written). Returns its manifest record."""
        writer, tmp, count = self._writer(shard)
        writer.close()
        del self._open[shard]
        final = shard_name(self.split, shard, self.num_shards)
        path = os.path.join(self.out_dir, final)
        os.replace(tmp, path)
        record = {"file": final, "num_examples": count, "sha256": file_sha256(path),
                  "size": os.path.getsize(path), "inputs": inputs}
        self._entry["shards"][str(shard)] = record
        self._entry["num_examples"] = sum(s["num_examples"]
                                          for s in self._entry["shards"].values())
        self._save()
        return record

    def close(self) -> dict:
        """Finishes every open or never-written shard and marks the split complete."""
        for shard in range(self.num_shards):
            if not self.is_finished(shard) or shard in self._open:
                self.finish_shard(shard)
        self._entry["complete"] = True
        self._save()
        return self.entry

    def abort(self) -> None:
        """Discards unfinished shards (their temporary files); finished ones stay recorded."""
        for writer, tmp, _ in self._open.values():
            writer.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        self._open.clear()
        self._save()

    def __enter__(self) -> "ShardedWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def inputs_fingerprint(source_ids: Iterable[str]) -> str:
    """A short hash of the sample ids assigned to a shard: a finished shard is reused on resume
    only if it was built from the same samples."""
    digest = hashlib.sha256()
    for source_id in source_ids:
        digest.update(source_id.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def write_split(out_dir: str, split: str, serialized: Iterable[bytes], num_shards: int = 1,
                source: str = "") -> dict:
    """Writes all `serialized` examples round-robin into `num_shards` shards from scratch.

    Returns:
      the split's manifest entry.
    """
    with ShardedWriter(out_dir, split, num_shards, source=source, resume=False) as writer:
        for record in serialized:
            writer.write(record)
    return writer.entry


_SHARD_NAME = re.compile(r"^(?P<split>[^-/]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")


def group_shards_by_split(files: Sequence[str], default_split: str) -> Dict[str, List[str]]:
    """Input shard files grouped by the split in their `{split}-{i}-of-{n}.tfrecord` names.

    Files with other names go to `default_split`. Order within a split is kept, so output shard
    i holds the records of the i-th input file.
    """
    groups: Dict[str, List[str]] = {}
    for path in files:
        match = _SHARD_NAME.match(os.path.basename(path))
        groups.setdefault(match.group("split") if match else default_split, []).append(path)
    return groups


def source_id_of(serialized: bytes) -> str:
    """The `image/source_id` of a serialized record ("<unknown>" when unreadable)."""
    try:
        feature = tf.train.Example.FromString(serialized).features.feature
        return feature[common.KEY_SOURCE_ID].bytes_list.value[0].decode()
    except Exception:  # pylint: disable=broad-except  # only used to name a bad record
        return "<unknown>"


def rewrite_records(input_pattern: str, output_dir: Optional[str],
                    transform: Callable[[bytes], Optional[bytes]], skip_bad: bool = False,
                    source: str = "", default_split: str = "train",
                    desc: str = "records") -> Dict[str, dict]:
    """Applies `transform` to every record of the input shards and writes new shards.

    Output shard i of a split holds the transformed records of input shard i, in order, so a
    rewrite keeps the sharding. Writing goes through `ShardedWriter` (atomic shards,
    checksums in `manifest.json`). The input is never modified: `output_dir` must differ from
    every input folder.

    Args:
      input_pattern: glob of input shards (see `list_shards`).
      output_dir: output folder, or None to only run `transform` (e.g. for a side file).
      transform: serialized record -> serialized record to write (None: write nothing). It may
        raise `errors.BadInputError` naming the record.
      skip_bad: quarantine records whose transform raised BadInputError (listed in the
        manifest's "skipped") instead of stopping.
      source: description stored in the manifest.
      default_split: split of input files whose names do not follow the shard pattern.
      desc: progress-bar label.
    Returns:
      dict split -> {"num_examples": written, "skipped": [(source_id, error)]}.
    Raises:
      ValueError: `output_dir` is one of the input folders.
      errors.BadInputError: no input matches, or a bad record without `skip_bad`.
    """
    files = list_shards(input_pattern)
    if output_dir is not None:
        out_real = os.path.realpath(output_dir)
        if any(os.path.realpath(os.path.dirname(f)) == out_real for f in files):
            raise ValueError(f"--output_dir {output_dir} holds the input shards; write into a "
                             "new folder (the input is never rewritten in place).")
    stats = {}
    for split, paths in group_shards_by_split(files, default_split).items():
        writer = (ShardedWriter(output_dir, split, len(paths), source=source,
                                        resume=False) if output_dir is not None else None)
        written, skipped = 0, []
        try:
            for shard, path in enumerate(paths):
                for serialized in utils.progress(iterate_records(path),
                                               desc=f"{desc} {os.path.basename(path)}",
                                               unit="rec"):
                    try:
                        result = transform(serialized)
                    except errors.BadInputError as error:
                        if not skip_bad:
                            raise
                        source_id = source_id_of(serialized)
                        skipped.append((source_id, str(error)))
                        if writer is not None:
                            writer.record_skipped(source_id, str(error), shard)
                        continue
                    if result is not None and writer is not None:
                        writer.write(result, shard=shard)
                        written += 1
                if writer is not None:
                    writer.finish_shard(shard)
            if writer is not None:
                writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        stats[split] = {"num_examples": written, "skipped": skipped}
    return stats


def log_skipped(stats: Dict[str, dict]) -> int:
    """Logs a warning per record `rewrite_records` quarantined; returns how many there were."""
    from absl import logging
    num_skipped = 0
    for entry in stats.values():
        for source_id, error in entry["skipped"]:
            logging.warning("skipped %s: %s", source_id, error)
        num_skipped += len(entry["skipped"])
    return num_skipped
