"""Sharded TFRecord files: writing (atomic, resumable, with a manifest) and reading.

On disk, one output folder holds every split of a converted dataset:

    <out_dir>/train-00000-of-00004.tfrecord ... train-00003-of-00004.tfrecord
    <out_dir>/val-00000-of-00001.tfrecord
    <out_dir>/manifest.json

`manifest.json` (see `ShardedWriter`) records per split the shards with their example counts,
sizes, sha256 checksums and input fingerprints, the samples that were quarantined by
`--skip_bad`, the converter's source description and the schema version
(`common.SCHEMA_VERSION`). It doubles as the resume state: a shard listed there whose file still
has the recorded size and sha256 is finished and is kept on restart (anything else is redone),
and a shard being written lives under a temporary name until it is complete, so a kill never
leaves a half-written shard under its final name. Records are serialised deterministically
(`schema.encode_example`), so a resumed conversion gives the same bytes as a clean one.

Readers check the manifest (`check_shards`): a split that is incomplete (`complete: false`,
overridable with allow_incomplete), has no examples, or whose shard has another size than
recorded is an error naming the split and the fix; `verify_files` (tools/verify_records.py)
also compares every sha256 and reads every record.

Writing is plain `tf.io.TFRecordWriter` (no graph, no threads), so the converters can fork
worker processes that import this module.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import signal
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import tensorflow as tf
from google.protobuf import message as protobuf_message

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg import utils

MANIFEST_NAME = "manifest.json"
_TMP_PREFIX = ".tmp-"
# Test hook: a writer process SIGKILLs itself right after recording this many finished shards,
# so tests can kill a conversion at a known point (a real kill -9, no cleanup code runs).
KILL_AFTER_SHARDS_ENV = "TF_DEPTHSEG_KILL_AFTER_SHARDS"
_shards_finished_in_process = 0
# The fix for a damaged shard (a converter's rerun redoes shards that do not match).
_REDO = ("rerun the converter or tool that wrote it (it redoes shards that do not match "
         f"{MANIFEST_NAME}).")
# The fix for a corrupt input file of `rewrite_records` (the labelling tools).
_SKIP_BAD_FIX = ("restore the file (rerun the tool that wrote it), or pass --skip_bad to "
                 "quarantine the rest of the file.")
# How a reader's user lifts the "incomplete split" check (tools flag or config override).
ALLOW_INCOMPLETE_FLAG = "--allow_incomplete"


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


def data_loss_detail(error: Exception) -> str:
    """The useful part of a TensorFlow DataLossError ("corrupted record at 12"), without the
    op and function names it is wrapped in."""
    text = getattr(error, "message", str(error))
    text = re.sub(r"\{\{[^}]*\}\}", "", text)
    text = re.sub(r"\[Op:[^\]]*\].*$", "", text, flags=re.S)
    return " ".join(text.split()) or type(error).__name__


class _CorruptFile(errors.BadInputError):
    """A TFRecord file that does not read to the end: `good` records came before the damage."""

    def __init__(self, path: str, good: int, detail: str, fix: str = _REDO):
        super().__init__(f"{path}: corrupt TFRecord file after {good} good records ({detail}); "
                         f"{fix}")
        self.path, self.good = path, good


def _records_of_file(path: str, fix: str = _REDO) -> Iterator[bytes]:
    """The serialized records of one file (each record's CRC checked); a corrupt one raises
    `_CorruptFile` naming the file, the good records before it and `fix`, instead of a
    DataLossError naming no file."""
    count = 0
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield record
            count += 1
    except tf.errors.DataLossError as error:
        raise _CorruptFile(path, count, data_loss_detail(error), fix) from error


def iterate_records(pattern: Union[str, Sequence[str]]) -> Iterator[bytes]:
    """Yields every serialized example of the matching shard files, in file order.

    Args:
      pattern: glob like `out/train-*-of-*.tfrecord` (see `split_pattern`), a file, or a list.
    Yields:
      bytes of one serialized `tf.train.Example` (decode with `schema.decode_example`).
    """
    for path in list_shards(pattern):
        yield from _records_of_file(path)


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


def count_records(path: str, parse: bool = False) -> int:
    """Reads every record of one TFRecord file (checking each record's CRC) and counts them.

    Args:
      path: a TFRecord file.
      parse: also check that every record parses as a `tf.train.Example`.
    Raises:
      errors.BadInputError: the file is corrupt (names it and the record number).
    """
    count = 0
    for serialized in _records_of_file(path):
        if parse:
            try:
                tf.train.Example.FromString(serialized)
            except protobuf_message.DecodeError as error:
                raise errors.BadInputError(
                    f"{path}: record {count} is not a tf.train.Example ({error}); delete the "
                    "file and rerun the converter.") from error
        count += 1
    return count


def _shard_problem(out_dir: str, split: str, index: int, entry: dict,
                   checksum: bool) -> Optional[str]:
    """Why shard `index` of `split` does not match the manifest (None when it does)."""
    record = entry["shards"].get(str(index))
    path = os.path.join(out_dir, shard_name(split, index, entry["num_shards"]))
    if record is None:
        return f"{path}: not finished (the split is incomplete)"
    if not os.path.exists(path):
        return f"{path}: missing, though {MANIFEST_NAME} lists it"
    size = os.path.getsize(path)
    if size != record["size"]:
        return f"{path}: {size} bytes, {MANIFEST_NAME} says {record['size']}"
    if checksum and file_sha256(path) != record["sha256"]:
        return f"{path}: sha256 differs from {MANIFEST_NAME} (the file was modified)"
    return None


def verify_split(out_dir: str, split: str) -> int:
    """Checks every shard of `split` against the manifest's sizes, checksums and counts.

    Returns:
      the number of examples of the split.
    Raises:
      errors.BadInputError: naming the first missing, incomplete, modified or corrupt shard.
    """
    entry = read_manifest(out_dir)["splits"].get(split)
    if entry is None or not entry.get("complete"):
        raise errors.BadInputError(f"{out_dir}: split '{split}' is not (completely) "
                                   "converted; rerun the converter to finish it.")
    total = 0
    for index in range(entry["num_shards"]):
        problem = _shard_problem(out_dir, split, index, entry, checksum=True)
        if problem is not None:
            raise errors.BadInputError(f"{problem}; rerun the converter (it redoes shards that "
                                       "do not match the manifest).")
        path = os.path.join(out_dir, shard_name(split, index, entry["num_shards"]))
        count = count_records(path)
        expected = entry["shards"][str(index)]["num_examples"]
        if count != expected:
            raise errors.BadInputError(f"{path}: {count} examples, {MANIFEST_NAME} says "
                                       f"{expected}; rerun the converter.")
        total += count
    return total


def _manifest_entry_of(path: str, manifests: Dict[str, dict]):
    """(folder, split, index, split entry or None) of a shard file; split None when the folder
    has no manifest (records written by other means are not checked)."""
    folder, name = os.path.split(os.path.abspath(path))
    if folder not in manifests:
        manifests[folder] = (read_manifest(folder)
                             if os.path.exists(os.path.join(folder, MANIFEST_NAME)) else None)
    manifest = manifests[folder]
    if manifest is None:
        return folder, None, None, None
    match = _SHARD_NAME.match(name)
    if not match:
        return folder, "", None, None
    split = match.group("split")
    entry = manifest["splits"].get(split)
    if entry is None or entry["num_shards"] != int(match.group("count")):
        return folder, split, None, None
    return folder, split, int(match.group("index")), entry


def check_shards(files: Sequence[str], allow_incomplete: bool = False,
                 override: str = ALLOW_INCOMPLETE_FLAG) -> Optional[int]:
    """Checks shard files against their folder's manifest before a reader uses them.

    Cheap (no file is read): a shard must be listed in the manifest with its recorded size, its
    split must be complete (unless `allow_incomplete`: then only the finished shards, the ones
    that exist under their final names, are read) and have examples. Folders without a
    manifest are not checked. `tools/verify_records.py` also compares the sha256.

    Args:
      files: shard paths (see `list_shards`).
      allow_incomplete: accept splits whose conversion has not finished.
      override: how the caller's user sets `allow_incomplete` (named in the message).
    Returns:
      the number of examples of `files` when every folder has a manifest, else None.
    Raises:
      errors.BadInputError: naming the split or file and the fix.
    """
    manifests: Dict[str, dict] = {}
    total: Optional[int] = 0
    for path in files:
        folder, split, index, entry = _manifest_entry_of(path, manifests)
        if split is None:
            total = None
            continue
        manifest_path = os.path.join(folder, MANIFEST_NAME)
        if entry is None or str(index) not in entry["shards"]:
            raise errors.BadInputError(
                f"{path}: not a shard listed in {manifest_path} (left over from another "
                "conversion?); delete it, or rerun the converter into an empty folder.")
        if not entry.get("complete") and not allow_incomplete:
            raise errors.BadInputError(
                f"{folder}: split '{split}' is incomplete ({len(entry['shards'])} of "
                f"{entry['num_shards']} shards finished; {MANIFEST_NAME} says complete: "
                f"false); rerun the converter to finish it, or pass {override} to read the "
                "finished shards only.")
        if entry["num_examples"] == 0:
            raise errors.BadInputError(
                f"{folder}: split '{split}' has 0 examples (quarantined: "
                f"{len(entry.get('skipped', []))}, listed in {MANIFEST_NAME}); fix the input "
                "files and rerun the converter.")
        problem = _shard_problem(folder, split, index, entry, checksum=False)
        if problem is not None:
            raise errors.BadInputError(
                f"{problem}: the shard was changed after conversion; rerun the converter (it "
                "redoes shards that do not match) or check it with tools/verify_records.py.")
        if total is not None:
            total += entry["shards"][str(index)]["num_examples"]
    if total == 0 and files:
        raise errors.BadInputError(f"{files[0]}: the matching shards hold 0 examples; point "
                                   "the pattern at a converted split with examples.")
    return total


def list_checked_shards(pattern: Union[str, Sequence[str]], allow_incomplete: bool = False,
                        override: str = ALLOW_INCOMPLETE_FLAG) -> List[str]:
    """`list_shards` followed by `check_shards`: what every reader of records calls."""
    files = list_shards(pattern)
    check_shards(files, allow_incomplete, override)
    return files


def verify_files(pattern: Union[str, Sequence[str]], allow_incomplete: bool = False,
                 whole_folders: bool = False) -> List[dict]:
    """Full check of shard files (tools/verify_records.py): manifest, size, sha256, every record.

    Each matched file is read completely (each record's CRC, and each record must parse as a
    `tf.train.Example`); files in a folder with a manifest are also checked against it, and so
    is every shard the manifest lists for their splits (a missing one is found too). With
    `whole_folders`, splits of the manifests that no matched file belongs to are checked too
    (all their shards missing).

    Returns:
      one dict per (folder, split): {"folder", "split", "files", "examples", "manifest"
      (examples the manifest lists, None without one), "complete", "problems": [messages]}.
    """
    files = list_shards(pattern)
    manifests: Dict[str, dict] = {}
    groups: Dict[tuple, dict] = {}
    for path in files:
        folder, split, index, entry = _manifest_entry_of(path, manifests)
        if split is None:
            key = (folder, "<no manifest>")
        else:
            key = (folder, split or os.path.basename(path))
        group = groups.setdefault(key, {"folder": folder, "split": key[1], "files": 0,
                                        "examples": 0, "problems": [], "entry": entry,
                                        "listed": set(), "manifest": None, "complete": None})
        group["entry"] = group["entry"] or entry  # a stray file may come before the shards
        group["files"] += 1
        try:
            count = count_records(path, parse=True)
        except errors.BadInputError as error:
            group["problems"].append(str(error))
            continue
        group["examples"] += count
        if split is None:
            continue
        if entry is None or str(index) not in entry["shards"]:
            group["problems"].append(f"{path}: not a shard listed in "
                                     f"{os.path.join(folder, MANIFEST_NAME)}; delete it or "
                                     "rerun the converter into an empty folder.")
            continue
        group["listed"].add(index)
        problem = _shard_problem(folder, split, index, entry, checksum=True)
        if problem is None and count != entry["shards"][str(index)]["num_examples"]:
            problem = (f"{path}: {count} examples, {MANIFEST_NAME} says "
                       f"{entry['shards'][str(index)]['num_examples']}")
        if problem is not None:
            group["problems"].append(f"{problem}; rerun the converter (it redoes shards that "
                                     "do not match the manifest).")
    if whole_folders:
        for folder, manifest in manifests.items():
            for split, entry in (manifest or {"splits": {}})["splits"].items():
                groups.setdefault((folder, split), {
                    "folder": folder, "split": split, "files": 0, "examples": 0,
                    "problems": [], "entry": entry, "listed": set(), "manifest": None,
                    "complete": None})
    summaries = []
    for (folder, split), group in sorted(groups.items()):
        entry = group.pop("entry")
        listed = group.pop("listed")
        if entry is not None:
            group["manifest"] = entry["num_examples"]
            group["complete"] = bool(entry.get("complete"))
            for index in sorted(int(i) for i in entry["shards"]):
                if index not in listed:
                    problem = _shard_problem(folder, split, index, entry, checksum=False)
                    if problem is not None:
                        group["problems"].append(f"{problem}; rerun the converter.")
            if not group["complete"] and not allow_incomplete:
                group["problems"].append(
                    f"{folder}: split '{split}' is incomplete ({len(entry['shards'])} of "
                    f"{entry['num_shards']} shards finished); rerun the converter to finish "
                    f"it, or pass {ALLOW_INCOMPLETE_FLAG} to accept it.")
            if entry["num_examples"] == 0:
                group["problems"].append(f"{folder}: split '{split}' has 0 examples; fix the "
                                         "input files and rerun the converter.")
        summaries.append(group)
    return summaries


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
      resume: keep the finished shards already recorded for this split whose files still
        have the recorded size and sha256 (the others are deleted and listed in `redone`);
        otherwise every shard is rewritten.

    Raises:
      errors.BadInputError: resuming with another `num_shards` than recorded (says the fix).
      errors.UserError: `out_dir` cannot be created or written (names the path).
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
        make_output_dir(out_dir)
        manifest = read_manifest(out_dir)
        previous = manifest["splits"].get(split)
        if previous is not None and previous["num_shards"] != num_shards and resume:
            raise errors.BadInputError(
                f"{out_dir}: split '{split}' was started with --num_shards="
                f"{previous['num_shards']}, now {num_shards}; rerun with --num_shards="
                f"{previous['num_shards']} to resume it, or add --noresume to rewrite the "
                f"split with {num_shards} shards.")
        if previous is not None and not resume:
            # Rewriting from scratch: the old shards go now, so no file under a final name is
            # left that the new manifest entry does not list (readers refuse such files).
            for index in range(previous["num_shards"]):
                stale = os.path.join(out_dir, shard_name(split, index, previous["num_shards"]))
                if os.path.exists(stale):
                    os.remove(stale)
            previous = None
        shards = dict(previous["shards"]) if previous else {}
        # (shard index, why) of recorded shards whose file no longer matches the manifest.
        self.redone: List[tuple] = []
        # A recorded shard only counts when its file is there with the recorded size and
        # sha256: a file changed after it was written (a byte flip keeps the size) is redone.
        for key in sorted(shards, key=int):
            problem = _shard_problem(out_dir, split, int(key),
                                     {"num_shards": num_shards, "shards": shards},
                                     checksum=True)
            if problem is not None:
                self.redone.append((int(key), problem))
                del shards[key]
                stale = os.path.join(out_dir, shard_name(split, int(key), num_shards))
                if os.path.exists(stale):
                    os.remove(stale)  # a file under a final name is always a listed shard
        skipped = [s for s in (previous or {}).get("skipped", []) if str(s["shard"]) in shards]
        self._entry = {"num_shards": num_shards, "source": source, "complete": False,
                       "shards": shards, "skipped": skipped,
                       "num_examples": sum(s["num_examples"] for s in shards.values())}
        # Temporary files of a killed earlier run of this split are garbage by construction.
        for leftover in glob.glob(os.path.join(out_dir, f"{_TMP_PREFIX}*-{split}-*.tfrecord")):
            os.remove(leftover)
        self._open: Dict[int, list] = {}  # shard index -> [tf writer, temp path, count]
        self._round_robin = 0
        try:
            self._save()
        except OSError as error:
            raise errors.UserError(f"{out_dir}: cannot write the output folder "
                                   f"({error.strerror or error}); choose a writable "
                                   "--output_dir.") from error

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
        _count_finished_shard()
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


def _count_finished_shard() -> None:
    """The KILL_AFTER_SHARDS_ENV test hook (see its comment)."""
    global _shards_finished_in_process
    _shards_finished_in_process += 1
    limit = os.environ.get(KILL_AFTER_SHARDS_ENV)
    if limit and _shards_finished_in_process >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def check_output_dir(path: str, flag: str = "--output_dir") -> None:
    """Checks, without creating anything, that folder `path` can be created or written: the
    nearest existing path on the way must be a writable folder.

    Raises:
      errors.UserError: naming `path` and the obstacle (a regular file on the way, no write
        permission), so a tool fails before doing any work instead of with an OSError
        traceback at its first write.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise errors.UserError(f"{path}: {existing} is a file, not a folder, so the output "
                               f"folder cannot be created there; choose another {flag}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise errors.UserError(f"{path}: {existing} is not writable; choose another {flag} or "
                               "fix its permissions.")


def make_output_dir(path: str, flag: str = "--output_dir") -> str:
    """Creates output folder `path` (and parents) after `check_output_dir`; returns it."""
    check_output_dir(path, flag)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise errors.UserError(f"{path}: cannot create the output folder "
                               f"({error.strerror or error}); choose another {flag}.") from error
    return path


def inputs_fingerprint(items: Iterable[str]) -> str:
    """A short hash of what a shard was built from (the converters pass the source text and,
    per sample, its id and input-file states: `converters.base.shard_fingerprints`): a
    finished shard is reused on resume only if it is unchanged."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item.encode())
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
                    desc: str = "records", allow_incomplete: bool = False) -> Dict[str, dict]:
    """Applies `transform` to every record of the input shards and writes new shards.

    Output shard i of a split holds the transformed records of input shard i, in order, so a
    rewrite keeps the sharding. Writing goes through `ShardedWriter` (atomic shards,
    checksums in `manifest.json`). The input is never modified: `output_dir` must differ from
    every input folder.

    Args:
      input_pattern: glob of input shards (see `list_shards`), checked against their manifest
        (`check_shards`).
      output_dir: output folder, or None to only run `transform` (e.g. for a side file).
      transform: serialized record -> serialized record to write (None: write nothing). It may
        raise `errors.BadInputError` naming the record.
      skip_bad: quarantine records whose transform raised BadInputError, and the remaining
        records of a corrupt input file (listed in the manifest's "skipped"), instead of
        stopping.
      source: description stored in the manifest.
      default_split: split of input files whose names do not follow the shard pattern.
      desc: progress-bar label.
      allow_incomplete: read input splits whose conversion did not finish.
    Returns:
      dict split -> {"num_examples": written, "skipped": [(source_id, error)]}.
    Raises:
      ValueError: `output_dir` is one of the input folders.
      errors.BadInputError: no input matches, an input split is incomplete/empty/modified,
        or a bad record or corrupt file without `skip_bad`.
    """
    files = list_checked_shards(input_pattern, allow_incomplete)
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

        def quarantine(source_id, error, shard):
            skipped.append((source_id, str(error)))
            if writer is not None:
                writer.record_skipped(source_id, str(error), shard)

        try:
            for shard, path in enumerate(paths):
                try:
                    for serialized in utils.progress(_records_of_file(path, _SKIP_BAD_FIX),
                                                     desc=f"{desc} {os.path.basename(path)}",
                                                     unit="rec"):
                        try:
                            result = transform(serialized)
                        except errors.BadInputError as error:
                            if not skip_bad:
                                raise
                            quarantine(source_id_of(serialized), error, shard)
                            continue
                        if result is not None and writer is not None:
                            writer.write(result, shard=shard)
                            written += 1
                except _CorruptFile as error:
                    if not skip_bad:
                        raise
                    # Records after the damage cannot be found: the rest of the file goes.
                    quarantine(f"{path}#{error.good}-", error, shard)
                if writer is not None:
                    writer.finish_shard(shard)
            if writer is not None:
                if written == 0 and skipped:
                    raise errors.BadInputError(
                        f"every record of split '{split}' was quarantined ({len(skipped)}), "
                        f"e.g. {skipped[0][0]}: {skipped[0][1]}")
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
