r"""Aligns instance masks across t-1, t, t+1 and writes them for object-motion training.

For every record, reads one instance map per frame in the Cityscapes instanceIds convention
(label_id * 1000 + k): the record's `segmentation/instance/encoded` (target then context frames),
or PNGs from --instances_dir named `<source_id>_frame<k>.png` with k in record order (0 = target
t, then the context frames, e.g. 1 = t-1, 2 = t+1). Keeps person, car and bicycle (--classes);
an object is aligned when the same class appears in every frame with IoU(neighbour, t) >
--iou_threshold (0.3, strictly greater) for every neighbour. With --match=paper that is the
whole rule; the default --match=compensated also aligns the objects that move too far between
frames for plain IoU (close or sidewalk pedestrians), comparing their masks after motion
compensation and checking constant image velocity (see tf_depthseg/labels/object_alignment.py
for why and the measured precision / recall). Aligned objects keep their
target-frame id in all frames, everything else becomes 0; the result is written as
`segmentation/instance/encoded` into a rewrite of the shards in --output_dir (the input is never
modified). Offline, so object-motion training pays nothing for it. --preview_dir writes pictures
of the first --num_previews records (t-1, t, t+1; one colour per aligned object, grey for the
unaligned ones) to check a segmenter's masks and the alignment by eye.

Example:
  python -m tools.align_object_masks --input='data/kitti/train-*-of-*.tfrecord' \
      --output_dir=data/kitti_aligned --instances_dir=data/maskrcnn_instances
"""

from absl import flags

from tf_depthseg import cli
from tf_depthseg import errors
from tf_depthseg.data import records
from tf_depthseg.labels import object_alignment as oa
from tf_depthseg.labels import object_alignment_records

flags.DEFINE_string("input", None, "Glob of input TFRecord shards (with context frames).")
flags.DEFINE_string("output_dir", None, "Folder for the rewritten shards (not the input "
                    "folder).")
flags.DEFINE_string("instances_dir", None, "Folder of instance PNGs named "
                    "<source_id>_frame<k>.png (k = 0 target, then context frames in record "
                    "order); default: the records' segmentation/instance/encoded.")
flags.DEFINE_list("classes", ["person", "car", "bicycle"], "Cityscapes class names to keep.")
flags.DEFINE_float("iou_threshold", oa.IOU_THRESHOLD, "An object is aligned only when its "
                   "IoU with the target object is greater than this in every neighbour.")
flags.DEFINE_enum("match", "compensated", list(oa.MATCH_MODES), "'paper': the paper's IoU "
                  "rule alone; 'compensated': also align fast-moving objects by IoU after "
                  "motion compensation with a constant-velocity check.")
flags.DEFINE_integer("min_area", 1, "Objects smaller than this many pixels are dropped.")
cli.define_relabel_flags("t-1, t, t+1 with every aligned object in one colour in all "
                         "frames, unaligned ones grey.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.input or not FLAGS.output_dir:
        raise cli.UserError("--input (a glob of TFRecord shards) and --output_dir are required.")
    try:
        counts, stats = object_alignment_records.align(
            cli.resolve_path(FLAGS.input), cli.resolve_path(FLAGS.output_dir),
            cli.resolve_path(FLAGS.instances_dir), FLAGS.classes, FLAGS.iou_threshold,
            FLAGS.min_area, FLAGS.skip_bad, FLAGS.split, FLAGS.match,
            cli.resolve_path(FLAGS.preview_dir), FLAGS.num_previews, FLAGS.allow_incomplete)
    except ValueError as error:  # e.g. an unknown --classes name
        if isinstance(error, errors.BadInputError):
            raise
        raise cli.UserError(str(error)) from error
    num_skipped = records.log_skipped(stats)
    print(f"{counts['records']} records, {counts['aligned_objects']} of "
          f"{counts['target_objects']} target-frame objects aligned "
          f"({counts['compensated_objects']} by motion compensation), {num_skipped} skipped")
    if FLAGS.preview_dir:
        print(f"previews: {cli.resolve_path(FLAGS.preview_dir)}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
