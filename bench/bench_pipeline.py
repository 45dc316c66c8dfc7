"""Training input pipeline throughput (examples/s) per dataset kind, on synthetic records.

Not a test. Renders one synthetic drive (`synthetic.generate_drive`), writes sharded TFRecords
of three kinds with the real schema, and times `pipeline.make_dataset` on each:

* kitti: target + 2 neighbours, sparse LiDAR-like depth, intrinsics, poses (SDE / SUW-U);
  resize to the model size, flip, colour jitter on all three frames.
* labels: image + semantic train ids (Cityscapes / CamVid-like); random scale, crop, flip,
  jitter.
* mm: image + dense depth + weak ordinal pairs (Mannequin Challenge / MegaDepth-like, SUW-S+W);
  random scale, crop, flip, jitter, pairs moved/dropped and padded.

For each kind it reports the training pipeline and, in the same run, the evaluation pipeline
(decode + resize only), so the ratio shows what the augmentation costs. Records are written
at `--height x --width` (larger than the model size, as converted datasets are).

TFDS source vs TFRecord source (`--tfds_records` > 0): one synthetic drive in the KITTI layout
is converted by `convert_kitti`'s converter (`--num_shards`) and prepared as the TFDS dataset
`kitti_depthseg` from the same folder; the same training pipeline (kitti keys and arguments)
(without poses, which KITTI raw lacks) reads `train-*.tfrecord` and
`tfds:kitti_depthseg:train`, and the rates and their ratio are
reported, with the time each preparation took.

Example:
  .venv/bin/python bench/bench_pipeline.py --num_batches=20
  (writes bench/results/bench_pipeline.json)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from tf_depthseg import common  # noqa: E402
from tf_depthseg import synthetic  # noqa: E402
from tf_depthseg.data import pipeline, records, schema  # noqa: E402
from tf_depthseg import utils

LIDAR_DENSITY = 0.06  # fraction of valid depth pixels kept for the KITTI-like records
NUM_WEAK_PAIRS = 200  # pre-generated pairs per M&M-like record


def make_records(out_dir: str, num_records: int, height: int, width: int,
                 num_shards: int) -> None:
    """Writes the splits 'kitti', 'labels' and 'mm' (num_records each) into out_dir."""
    num_frames = 8
    drive = synthetic.generate_drive(synthetic.SceneConfig(
        height=height, width=width, frames_per_drive=num_frames), seed=0)
    rng = np.random.default_rng(0)
    kitti, labels, mm = [], [], []
    for index in range(num_records):
        t = 1 + index % (num_frames - 2)
        frame = drive.frames[t]
        sparse = np.where(rng.uniform(size=frame.depth.shape) < LIDAR_DENSITY, frame.depth, 0.0)
        kitti.append(schema.encode_example(schema.Sample(
            image=frame.rgb, source_id=f"kitti/{index}",
            context=[drive.frames[t - 1].rgb, drive.frames[t + 1].rgb],
            intrinsics=drive.intrinsics, depth=sparse,
            poses=np.stack([drive.frames[i].world_from_camera for i in (t, t - 1, t + 1)]))))
        labels.append(schema.encode_example(schema.Sample(
            image=frame.rgb, source_id=f"labels/{index}", intrinsics=drive.intrinsics,
            semantic=frame.train_ids)))
        ys = rng.integers(0, height, (NUM_WEAK_PAIRS, 2))
        xs = rng.integers(0, width, (NUM_WEAK_PAIRS, 2))
        pairs = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1],
                          rng.integers(0, 5, NUM_WEAK_PAIRS),
                          rng.choice([-1.0, 0.0, 1.0], NUM_WEAK_PAIRS)], -1).astype(np.float32)
        mm.append(schema.encode_example(schema.Sample(
            image=frame.rgb, source_id=f"mm/{index}", intrinsics=drive.intrinsics,
            depth=frame.depth, weak_pairs=pairs)))
    for split, serialized in (("kitti", kitti), ("labels", labels), ("mm", mm)):
        records.write_split(out_dir, split, serialized, num_shards=num_shards,
                            source="bench_pipeline synthetic")


def kinds(model_size):
    """Per kind: (keys, training arguments of make_dataset)."""
    height, width = model_size
    crop = (height, min(width, 2 * height))
    return {
        "kitti": ([common.CONTEXT, common.DEPTH, common.INTRINSICS, common.POSES],
                  {"image_size": model_size}),
        "labels": ([common.SEMANTIC, common.INTRINSICS],
                   {"image_size": model_size, "crop_size": crop, "scale_range": (0.75, 1.5)}),
        "mm": ([common.DEPTH, common.WEAK_PAIRS, common.INTRINSICS],
               {"image_size": model_size, "crop_size": crop, "scale_range": (0.8, 1.25)}),
    }


def time_pipeline(dataset: tf.data.Dataset, batch_size: int, num_batches: int,
                  warmup: int = 3) -> float:
    """Examples per second over `num_batches` batches after `warmup` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    examples = 0
    for _ in range(num_batches):
        batch = next(iterator)
        examples += int(batch[common.IMAGE].shape[0])
    return examples / (time.perf_counter() - start)


def tfds_vs_tfrecord(work_dir: str, args, model_size) -> dict:
    """Training-pipeline rate from a TFDS split vs from the converted records of the same
    synthetic KITTI drive (see module doc)."""
    import tensorflow_datasets as tfds
    from tf_depthseg.converters import base, kitti
    from tf_depthseg.synthetic import layouts
    from tf_depthseg.tfds import builders  # noqa: F401  (registers kitti_depthseg)

    tfds.disable_progress_bar()
    root = os.path.join(work_dir, "kitti_layout")
    scene = synthetic.SceneConfig(height=args.height, width=args.width,
                                  frames_per_drive=args.tfds_records + 2)
    split, entries = layouts.generate_and_write("kitti", root, scene, seed=0, drive_index=0,
                                                num_drives=1)
    layouts.finish_layout("kitti", root, {split: entries})
    options = kitti.Options()
    start = time.perf_counter()
    records_dir = os.path.join(work_dir, "kitti_converted")
    base.convert_split(kitti.load_sample, kitti.list_samples(root, split, options), options,
                       records_dir, split, num_shards=args.num_shards)
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    tfds_dir = os.path.join(work_dir, "tfds")
    builder = tfds.builder("kitti_depthseg", data_dir=tfds_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
    prepare_s = time.perf_counter() - start
    tfds_shards = builder.info.splits[split].num_shards
    keys, train_args = kinds(model_size)["kitti"]
    keys = [key for key in keys if key != common.POSES]  # KITTI raw stores no poses
    rates = {}
    for name, pattern, extra in (
            ("tfrecord", records.split_pattern(records_dir, split), {}),
            ("tfds", f"tfds:kitti_depthseg:{split}", {"tfds_data_dir": tfds_dir})):
        dataset = pipeline.make_dataset(pattern, keys, args.batch_size, training=True,
                                        **train_args, **extra)
        rates[name] = time_pipeline(dataset, args.batch_size, args.num_batches)
    ratio = rates["tfds"] / rates["tfrecord"]
    print(f"kitti   train from TFRecords {rates['tfrecord']:7.1f} ex/s   from TFDS "
          f"{rates['tfds']:7.1f} ex/s   tfds/tfrecord {ratio:.2f}   ({args.tfds_records} "
          f"examples in {args.num_shards} / {tfds_shards} shards; convert {convert_s:.1f} s, "
          f"TFDS prepare {prepare_s:.1f} s)")
    return {"examples": args.tfds_records, "keys": keys, "tfrecord_shards": args.num_shards,
            "tfds_shards": tfds_shards,
            "tfrecord_examples_per_s": round(rates["tfrecord"], 1),
            "tfds_examples_per_s": round(rates["tfds"], 1), "tfds_over_tfrecord": round(ratio, 3),
            "convert_s": round(convert_s, 2), "tfds_prepare_s": round(prepare_s, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "bench_pipeline.json"))
    parser.add_argument("--data_dir", default=None,
                        help="Keep the generated records here (default: a temporary folder).")
    parser.add_argument("--num_records", type=int, default=48)
    parser.add_argument("--num_shards", type=int, default=4)
    parser.add_argument("--height", type=int, default=256, help="Stored image height.")
    parser.add_argument("--width", type=int, default=832, help="Stored image width.")
    parser.add_argument("--model_height", type=int, default=192)
    parser.add_argument("--model_width", type=int, default=640)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_batches", type=int, default=20)
    parser.add_argument("--tfds_records", type=int, default=24,
                        help="Examples of the TFDS-vs-TFRecord comparison (0 = skip it).")
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_pipeline_")
    start = time.perf_counter()
    make_records(data_dir, args.num_records, args.height, args.width, args.num_shards)
    print(f"wrote {3 * args.num_records} records to {data_dir} "
          f"in {time.perf_counter() - start:.1f} s")

    model_size = (args.model_height, args.model_width)
    results = {}
    for kind, (keys, train_args) in kinds(model_size).items():
        pattern = records.split_pattern(data_dir, kind)
        train = pipeline.make_dataset(pattern, keys, args.batch_size, training=True,
                                      **train_args)
        evaluation = pipeline.make_dataset(pattern, keys, args.batch_size, training=False,
                                           image_size=model_size, repeat=True)
        train_rate = time_pipeline(train, args.batch_size, args.num_batches)
        eval_rate = time_pipeline(evaluation, args.batch_size, args.num_batches)
        results[kind] = {
            "keys": keys,
            "train_args": {k: list(v) for k, v in train_args.items()},
            "train_examples_per_s": round(train_rate, 1),
            "eval_examples_per_s": round(eval_rate, 1),
            "train_over_eval": round(train_rate / eval_rate, 3),
        }
        print(f"{kind:7s} train {train_rate:7.1f} ex/s   eval (resize only) {eval_rate:7.1f} "
              f"ex/s   train/eval {train_rate / eval_rate:.2f}")
    report = {
        "stored_size": [args.height, args.width], "model_size": list(model_size),
        "batch_size": args.batch_size, "num_batches": args.num_batches,
        "cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "kinds": results,
    }
    if args.tfds_records > 0:
        report["tfds_vs_tfrecord"] = tfds_vs_tfrecord(data_dir, args, model_size)
    utils.atomic_write_bytes(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(f"wrote {args.out}")
    if args.data_dir is None:
        shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
