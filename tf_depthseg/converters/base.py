"""What every dataset converter shares: sharding, worker processes, resume, quarantine, resizing.

A converter is a module with three functions:

* `list_samples(input_dir, split, options) -> list of specs`: cheap, reads only index files and
  folder listings. A spec is any picklable object with a `source_id` attribute (the converters
  use small frozen dataclasses of paths).
* `load_sample(spec, options) -> schema.Sample`: reads, checks and resizes one sample; raises
  `errors.BadInputError` naming the file for corrupt or inconsistent input.
* `input_files(spec, options) -> list of paths`: every file `load_sample` may read for the
  spec, optional ones included (whether they exist or not).

These are the one reader of each layout: the TensorFlow Datasets builders (`tf_depthseg.tfds`)
call the same `list_samples` and `load_sample`, so a TFDS dataset and the converted records
hold the same samples, checked the same way.

`convert_split` runs `load_sample` + `schema.encode_example` in worker processes and writes the
records with `records.ShardedWriter`. Sample `i` of the split goes to shard `i % num_shards`
(neighbouring frames of a drive land in different shards, so interleaved reading mixes drives).
Each shard is finished (renamed, checksummed, recorded in `manifest.json`) as soon as its last
sample arrives. A restart keeps a finished shard only when its file still matches the manifest
(size and sha256) and its input fingerprint is unchanged: the source description (dataset
root, options), its samples and, for each of their `input_files`, the size and modification
time (or absence). Size + mtime rather than a content hash because it costs one `stat` per
file, while hashing would read the whole dataset on every restart; re-extracting, copying over
or editing a file changes the mtime. A quarantined sample whose file is later fixed (or added)
therefore changes its shard's fingerprint, and the rerun picks the fix up. With `skip_bad`, a
sample whose loading raises BadInputError is left out and listed in the manifest under the
split's "skipped" entries with the error message; a split whose every sample is bad is an
error, never a "complete" split with 0 examples.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tf_depthseg.data import image_io, records, schema
from tf_depthseg.geometry import intrinsics as intrinsics_lib
from tf_depthseg import errors
from tf_depthseg import utils

BadInputError = errors.BadInputError


@dataclasses.dataclass(frozen=True)
class ConvertResult:
    """Summary of one converted split.

    Attributes:
      split: split name.
      num_examples: records in the split (including shards finished by an earlier run).
      num_written: records written by this run.
      skipped: (source_id, error message) of quarantined samples of this run.
      num_shards_reused: finished shards of an earlier run that were kept.
      redone: (shard, why) of an earlier run's shards whose file no longer matched the manifest.
    """
    split: str
    num_examples: int
    num_written: int
    skipped: Tuple[Tuple[str, str], ...]
    num_shards_reused: int
    redone: Tuple[Tuple[int, str], ...] = ()


def file_state(path: str) -> str:
    """"<size>:<mtime_ns>" of a file, or "absent": what the resume fingerprint compares."""
    try:
        stat = os.stat(path)
    except OSError:
        return "absent"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def shard_fingerprints(shard_specs: Sequence[Sequence[Any]], options: Any, source: str,
                       files_fn: Optional[Callable[[Any, Any], Sequence[str]]]) -> List[str]:
    """One fingerprint per shard: source text, sample ids and the state of their input files
    (see module doc)."""
    fingerprints = []
    for specs in shard_specs:
        items = [source]
        for spec in specs:
            files = files_fn(spec, options) if files_fn is not None else ()
            items.append(spec.source_id + "".join(f"\t{path}={file_state(path)}"
                                                  for path in files))
        fingerprints.append(records.inputs_fingerprint(items))
    return fingerprints


def _load_and_encode(job):
    """Worker body: (load_fn, spec, options) -> (source_id, serialized or None, error or None)."""
    load_fn, spec, options = job
    try:
        sample = load_fn(spec, options)
        return spec.source_id, schema.encode_example(sample), None
    except BadInputError as error:
        return spec.source_id, None, str(error)


def check_specs(specs: Sequence[Any], split: str, source: str) -> None:
    """BadInputError when a split lists no samples or a sample twice (the converters and the
    TFDS builders, `tf_depthseg.tfds`, check their `list_samples` output with it)."""
    if not specs:
        raise BadInputError(f"split '{split}' has no samples ({source}); check the split name, "
                            "the split file and the dataset root.")
    ids = [spec.source_id for spec in specs]
    if len(set(ids)) != len(ids):
        counts: Dict[str, int] = {}
        for source_id in ids:
            counts[source_id] = counts.get(source_id, 0) + 1
        duplicates = sorted(i for i, n in counts.items() if n > 1)[:5]
        raise BadInputError(f"split '{split}' lists samples more than once: {duplicates}; "
                            "fix the split file.")


def convert_split(load_fn: Callable[[Any, Any], schema.Sample], specs: Sequence[Any],
                  options: Any, output_dir: str, split: str, num_shards: int = 1,
                  num_workers: int = 1, skip_bad: bool = False, source: str = "",
                  resume: bool = True,
                  files_fn: Optional[Callable[[Any, Any], Sequence[str]]] = None
                  ) -> ConvertResult:
    """Converts `specs` of one split into sharded TFRecords under `output_dir`.

    Args:
      load_fn: module-level function `(spec, options) -> schema.Sample` (picklable).
      specs: the split's samples, in a deterministic order.
      options: picklable options passed to `load_fn` (sizes, flags).
      output_dir: output folder (shards + manifest.json).
      split: split name used in file names.
      num_shards: number of shards; more shards than samples is allowed (empty shards).
      num_workers: worker processes; <= 1 converts in this process.
      skip_bad: quarantine samples raising BadInputError instead of stopping.
      source: description stored in the manifest (part of the resume fingerprint).
      resume: keep finished shards of an earlier run whose files match the manifest and whose
        input fingerprint (see module doc) is unchanged.
      files_fn: the converter's `input_files(spec, options)`; None = samples are compared by
        id only.
    Returns:
      a ConvertResult.
    Raises:
      BadInputError: no samples, (without skip_bad) the first bad sample's error, or every
        sample bad (with skip_bad).
    """
    check_specs(specs, split, source)
    shard_specs = [list(specs[shard::num_shards]) for shard in range(num_shards)]
    fingerprints = shard_fingerprints(shard_specs, options, source, files_fn)
    skipped: List[Tuple[str, str]] = []
    written = 0
    with records.ShardedWriter(output_dir, split, num_shards, source=source,
                               resume=resume) as writer:
        todo = [shard for shard in range(num_shards)
                if not writer.is_finished(shard, fingerprints[shard])]
        reused = num_shards - len(todo)
        jobs = [(load_fn, spec, options) for shard in todo for spec in shard_specs[shard]]
        shard_of_job = [shard for shard in todo for _ in shard_specs[shard]]
        remaining: Dict[int, int] = {shard: len(shard_specs[shard]) for shard in todo}
        for shard in todo:  # shards without samples (more shards than samples)
            if remaining[shard] == 0:
                writer.finish_shard(shard, fingerprints[shard])
        pool = _make_pool(num_workers) if jobs else None
        try:
            results = (pool.imap(_load_and_encode, jobs, chunksize=1) if pool
                       else map(_load_and_encode, jobs))
            for shard, (source_id, serialized, error) in zip(
                    shard_of_job, utils.progress(results, total=len(jobs), desc=split,
                                                 unit="ex")):
                if error is not None:
                    if not skip_bad:
                        raise BadInputError(error)
                    writer.record_skipped(source_id, error, shard)
                    skipped.append((source_id, error))
                else:
                    writer.write(serialized, shard=shard)
                    written += 1
                remaining[shard] -= 1
                if remaining[shard] == 0:
                    writer.finish_shard(shard, fingerprints[shard])
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        entry = writer.entry
        if entry["num_examples"] == 0:
            # Leaving the block with the error keeps the split marked incomplete.
            first = entry["skipped"][0] if entry["skipped"] else None
            raise BadInputError(
                f"split '{split}': all {len(specs)} samples are bad, so {output_dir} would get "
                "a split with 0 examples; fix the input files and rerun. First: "
                f"{first['source_id']}: {first['error']}" if first else
                f"split '{split}': no examples were written to {output_dir}.")
    return ConvertResult(split=split, num_examples=writer.entry["num_examples"],
                         num_written=written, skipped=tuple(skipped),
                         num_shards_reused=reused, redone=tuple(writer.redone))


def _make_pool(num_workers: int):
    if num_workers <= 1:
        return None
    # Fork: workers inherit the imported modules (no second TensorFlow import per worker). The
    # parent has run no TensorFlow ops at this point, so no runtime threads are duplicated.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(num_workers)


# ---------------------------------------------------------------------------------------------
# Resizing (numpy / Pillow, so it runs in forked workers without TensorFlow ops).
# ---------------------------------------------------------------------------------------------
def target_size(native_hw: Tuple[int, int], height: int, width: int) -> Tuple[int, int]:
    """(height, width) to store: the requested size, or the native size where a value is 0."""
    return (height or native_hw[0], width or native_hw[1])


def resize_image(image: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of uint8 `[H, W, 3]` to `size_hw`.

    Pillow samples at pixel centres, the half-pixel convention of `geometry.intrinsics`.
    """
    if image.shape[:2] == tuple(size_hw):
        return image
    from PIL import Image
    resized = Image.fromarray(image).resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    return np.asarray(resized)


def _nearest_indices(old: int, new: int) -> np.ndarray:
    # Source pixel whose centre is nearest to each target centre (half-pixel convention).
    return np.minimum(((np.arange(new) + 0.5) * old / new).astype(np.int64), old - 1)


def resize_nearest(array: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of `[H, W, ...]` (labels, instance ids, dense depth); any
    dtype, values are copied, never blended."""
    if array.shape[:2] == tuple(size_hw):
        return array
    rows = _nearest_indices(array.shape[0], size_hw[0])
    cols = _nearest_indices(array.shape[1], size_hw[1])
    return array[rows[:, None], cols[None, :]]


def resize_sparse_depth(depth: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Moves each valid (> 0) depth pixel to the target pixel containing its centre.

    For sparse ground truth (projected LiDAR), nearest-neighbour resampling would drop most
    points when shrinking; scattering keeps every point, and where several land on one pixel the
    closest wins (the rule of the KITTI projection code for duplicate points).

    Args:
      depth: float `[H, W]`, 0 = invalid.
      size_hw: target (height, width).
    Returns:
      float32 `[height, width]`.
    """
    if depth.shape == tuple(size_hw):
        return depth.astype(np.float32)
    rows, cols = np.nonzero(depth > 0)
    values = depth[rows, cols]
    new_rows = np.minimum(((rows + 0.5) * size_hw[0] / depth.shape[0]).astype(np.int64),
                          size_hw[0] - 1)
    new_cols = np.minimum(((cols + 0.5) * size_hw[1] / depth.shape[1]).astype(np.int64),
                          size_hw[1] - 1)
    return scatter_min_depth(new_rows, new_cols, values, size_hw)


def scatter_min_depth(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                      size_hw: Tuple[int, int]) -> np.ndarray:
    """Depth image `[H, W]` (float32, 0 = empty) holding the smallest value per pixel."""
    out = np.full(size_hw, np.inf, np.float64)
    np.minimum.at(out, (rows, cols), values)
    out[np.isinf(out)] = 0.0
    return out.astype(np.float32)


def scaled_intrinsics(intrinsics: np.ndarray, native_hw: Tuple[int, int],
                      size_hw: Tuple[int, int]) -> np.ndarray:
    """K for the stored size from K of the native size (half-pixel convention)."""
    return intrinsics_lib.scale_intrinsics(
        np.asarray(intrinsics, np.float64), size_hw[1] / native_hw[1],
        size_hw[0] / native_hw[0])


def check_depth(depth: np.ndarray, name: str) -> np.ndarray:
    """Rejects NaN / negative depth with a BadInputError naming `name`; returns float32."""
    depth = np.asarray(depth, np.float32)
    if depth.ndim != 2:
        raise BadInputError(f"{name}: depth must be a single-channel [H, W] map, got "
                            f"{depth.shape}.")
    if np.isnan(depth).any():
        raise BadInputError(f"{name}: depth contains NaN; invalid pixels must be 0.")
    if (depth < 0).any():
        raise BadInputError(f"{name}: depth contains negative values (min "
                            f"{float(depth.min()):.3g}); depth must be >= 0, 0 = invalid.")
    return depth


def read_png16_depth(path: str, scale: float) -> np.ndarray:
    """Reads a uint16 depth PNG (value / scale metres, 0 = invalid) as float32 `[H, W]`."""
    raw = image_io.read_image(path)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise BadInputError(f"{path}: expected a 16-bit single-channel depth PNG, got "
                            f"{raw.dtype} {raw.shape}; is this an RGB image?")
    return raw.astype(np.float32) / scale


def same_size_or_error(reference: np.ndarray, other: np.ndarray, name: str, what: str) -> None:
    """BadInputError when `other` does not have the reference frame's height and width."""
    if other.shape[:2] != reference.shape[:2]:
        raise BadInputError(f"{name}: {what} is {other.shape[:2]} but the image is "
                            f"{reference.shape[:2]}; the files do not belong together.")


def require_file(path: str, what: str) -> str:
    """Returns `path`, or raises BadInputError naming it and `what` it should be."""
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: {what} not found. Check the dataset root and layout, or "
                            "pass --skip_bad to quarantine this sample.")
    return path


# ---------------------------------------------------------------------------------------------
# The converters' main loop (tools/convert_*.py; the flags live in tf_depthseg/cli.py).
# ---------------------------------------------------------------------------------------------
def run_converter(module, options, source_name: str, input_dir: str, output_dir: str,
                  splits: Sequence[str], num_shards: int = 4, num_workers: int = 1,
                  skip_bad: bool = False, resume: bool = True) -> List[ConvertResult]:
    """Converts every split of `splits` with `module.list_samples` / `module.load_sample`,
    printing one summary line per split (the body of tools/convert_*.py; `cli.run_converter`
    passes the flag values, the other arguments are those of `convert_split`)."""
    if not os.path.isdir(input_dir):
        raise BadInputError(f"{input_dir}: --input_dir is not a folder.")
    results = []
    for split in splits:
        specs = module.list_samples(input_dir, split, options)
        result = convert_split(
            module.load_sample, specs, options, output_dir, split,
            num_shards=num_shards, num_workers=num_workers, skip_bad=skip_bad,
            source=f"{source_name} {input_dir} split={split} options={options}",
            resume=resume, files_fn=module.input_files)
        for shard, why in result.redone:
            print(f"{split}: shard {shard} of an earlier run redone: {why}")
        print(f"{split}: {result.num_examples} examples in {num_shards} shards "
              f"({result.num_written} written now, {result.num_shards_reused} shards kept from "
              f"an earlier run, {len(result.skipped)} quarantined) -> {output_dir}")
        for source_id, error in result.skipped:
            print(f"  quarantined {source_id}: {error}")
        results.append(result)
    return results
