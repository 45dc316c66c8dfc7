r"""Converts KITTI raw drives (+ depth benchmark ground truth or velodyne) to sharded TFRecords.

Reads split files in the Eigen format ("<date>/<drive> <frame> <l|r>"), by default
<input_dir>/splits/eigen_{split}_files.txt. Each line gives one record: the frame, its
neighbours (frame -/+ --frame_gap), K from calib_cam_to_cam.txt (P_rect_02/03) rescaled to the
stored size, and depth from the depth benchmark PNGs (--depth_source=annotated) or from the
velodyne points with the Eigen raw protocol (--depth_source=velodyne). --height/--width 0 keep
the native size. Rerunning after an interruption keeps finished shards.

Example:
  python -m tools.convert_kitti --input_dir=/data/kitti_raw --output_dir=/data/tfr/kitti \
      --splits=test --split_dir=/data/kitti_eigen_split --depth_source=velodyne
"""

from absl import flags

from tf_depthseg import cli
from tf_depthseg.converters import kitti

cli.define_converter_flags(kitti.SPLITS, 0, 0)
flags.DEFINE_enum("depth_source", "annotated", list(kitti.DEPTH_SOURCES),
                  "Depth: depth-benchmark PNGs, velodyne + calibration (Eigen raw), or none.")
flags.DEFINE_integer("frame_gap", 1, "Neighbours are frame -/+ gap (0: no neighbours).")
flags.DEFINE_string("split_dir", None, "Folder of eigen_{split}_files.txt (default "
                    "<input_dir>/splits).")
flags.DEFINE_string("split_file", None, "One explicit split file (use with a single --splits).")
flags.DEFINE_string("semantic_dir", None, "Segmenter outputs (uint8 Cityscapes train ids) in a "
                    "tree mirroring the images, e.g. PSPNet's; stored as the target's labels "
                    "(input of generate_weak_labels).")
flags.DEFINE_string("instance_dir", None, "Instance-segmenter outputs (uint16 instanceIds) in a "
                    "tree mirroring the images, e.g. Mask R-CNN's; stored for the target and its "
                    "neighbours (input of align_object_masks).")


def main(argv):
    del argv
    f = flags.FLAGS
    if f.split_file and len(f.splits) != 1:
        raise cli.UserError("--split_file needs exactly one --splits name.")
    options = kitti.Options(height=f.height, width=f.width, depth_source=f.depth_source,
                            frame_gap=f.frame_gap, split_dir=cli.resolve_path(f.split_dir),
                            split_file=cli.resolve_path(f.split_file),
                            semantic_dir=cli.resolve_path(f.semantic_dir),
                            instance_dir=cli.resolve_path(f.instance_dir))
    cli.run_converter(kitti, options, "KITTI raw")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
