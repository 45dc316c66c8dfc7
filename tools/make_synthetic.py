r"""Generates synthetic street drives and writes them in a real dataset's file layout.

Layouts (see tf_depthseg/synthetic/layouts.py for every file and its source): kitti (raw drives,
calibration, velodyne .bin, depth-benchmark PNGs, Eigen-format split files), cityscapes
(leftImg8bit[_sequence], gtFine labelIds/instanceIds, camera json), camvid (SegNet layout),
mannequin (camera txt files + frames + depth; objects frozen), megadepth (images, depth .npy,
ordinal fg/bg masks, scene lists). Drives are split train / val / test (last drive test, the
one before val). The result is what tools/convert_<layout>.py reads.

Example:
  python -m tools.make_synthetic --layout=kitti --output_dir=/tmp/synth_kitti \
      --num_drives=4 --frames_per_drive=24 --height=128 --width=416 --num_workers=2
"""

import dataclasses
import functools
import multiprocessing
import os

from absl import flags

from tf_depthseg import cli, utils
from tf_depthseg.synthetic import layouts

flags.DEFINE_enum("layout", None, list(layouts.LAYOUTS), "Dataset layout to write.")
flags.DEFINE_string("output_dir", None, "Dataset root to write (created).")
flags.DEFINE_integer("num_drives", 4, "Number of drives (sequences).")
flags.DEFINE_integer("frames_per_drive", 24, "Frames per drive (>= 3).")
flags.DEFINE_integer("height", 128, "Image height.")
flags.DEFINE_integer("width", 416, "Image width.")
flags.DEFINE_integer("seed", 0, "Dataset seed; drive i uses a seed derived from it and i.")
flags.DEFINE_integer("num_parked_cars", None, "Parked cars per drive (default: SceneConfig).")
flags.DEFINE_integer("num_moving_cars", None, "Moving cars per drive (default: SceneConfig).")
flags.DEFINE_integer("num_pedestrians", None, "Pedestrians per drive (default: SceneConfig).")
flags.DEFINE_integer("num_cyclists", None, "Cyclists per drive (default: SceneConfig).")
flags.DEFINE_integer("label_stride", 1, "Annotate / list every n-th frame as a sample.")
flags.DEFINE_bool("dense_depth", False, "KITTI: dense instead of LiDAR-row depth PNGs.")
flags.DEFINE_integer("lidar_rows", 64, "KITTI: scan rows of the simulated LiDAR.")
flags.DEFINE_integer("num_workers", max(1, (os.cpu_count() or 2) - 1),
                     "Worker processes (one drive each).")
flags.mark_flags_as_required(["layout", "output_dir"])
FLAGS = flags.FLAGS


def scene_config_from_flags():
    from tf_depthseg import synthetic
    changes = {"height": FLAGS.height, "width": FLAGS.width,
               "frames_per_drive": FLAGS.frames_per_drive}
    for name in ("num_parked_cars", "num_moving_cars", "num_pedestrians", "num_cyclists"):
        if getattr(FLAGS, name) is not None:
            changes[name] = getattr(FLAGS, name)
    return dataclasses.replace(synthetic.SceneConfig(), **changes)


def main(argv):
    del argv
    if FLAGS.num_drives < 1 or FLAGS.frames_per_drive < 3:
        raise cli.UserError("--num_drives must be >= 1 and --frames_per_drive >= 3.")
    root = cli.resolve_path(FLAGS.output_dir)
    options = layouts.LayoutOptions(label_stride=FLAGS.label_stride,
                                    dense_depth=FLAGS.dense_depth, lidar_rows=FLAGS.lidar_rows)
    job = functools.partial(layouts.generate_and_write, FLAGS.layout, root,
                            scene_config_from_flags(), FLAGS.seed,
                            num_drives=FLAGS.num_drives, options=options)
    indices = range(FLAGS.num_drives)
    if FLAGS.num_workers > 1:
        with multiprocessing.get_context("fork").Pool(FLAGS.num_workers) as pool:
            results = list(utils.progress(pool.imap(job, indices), total=len(indices),
                                        desc="drives", unit="drive"))
    else:
        results = [job(i) for i in utils.progress(indices, desc="drives", unit="drive")]
    entries = {}
    for split, drive_entries in results:
        entries.setdefault(split, []).extend(drive_entries)
    layouts.finish_layout(FLAGS.layout, root, entries, options)
    counts = ", ".join(f"{split}: {sum(1 for s, _ in results if s == split)} drives"
                       for split in sorted({s for s, _ in results}))
    print(f"wrote {FLAGS.num_drives} {FLAGS.layout} drives x {FLAGS.frames_per_drive} frames "
          f"({counts}) to {root}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
