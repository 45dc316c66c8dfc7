r"""Aligns instance masks across t-1, t, t+1 and writes them for object-motion training.

For every record, reads one instance map per frame in the Cityscapes instanceIds convention
(label_id * 1000 + k): the record's `segmentation/instance/encoded` (target then context frames),
or PNGs from --instances_dir named `<source_id>_frame<k>.png` with k in record order (0 = target
t, then the context frames, e.g. 1 = t-1, 2 = t+1). Keeps person, car and bicycle (--classes);
an object is aligned when the same class appears in every frame with IoU(neighbour, t) >
--iou_threshold (0.3, strictly greater) for every neighbour. With --match=paper that is the
whole rule; the default --match=compensated also aligns the objects that move too far between
frames for plain IoU (close or sidewalk pedestrians), comparing their masks after motion
compensation and checking constant image velocity (see tf_depthseg/data/object_alignment.py
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

import json
import os

from absl import flags

from tf_depthseg import cli, visualize
from tf_depthseg.data import datasets
from tf_depthseg.data import image_io
from tf_depthseg.data import object_alignment as oa
from tf_depthseg.data import records
from tf_depthseg.data import schema
from tf_depthseg import errors

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS):
    """Defines the tool's flags in `flag_values` (only when run as a program, so tests can
    import the module next to other tools without flag-name clashes)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("input", None, "Glob of input TFRecord shards (with context frames).",
                        **fv)
    flags.DEFINE_string("output_dir", None, "Folder for the rewritten shards (not the input "
                        "folder).", **fv)
    flags.DEFINE_string("instances_dir", None, "Folder of instance PNGs named "
                        "<source_id>_frame<k>.png (k = 0 target, then context frames in record "
                        "order); default: the records' segmentation/instance/encoded.", **fv)
    flags.DEFINE_list("classes", ["person", "car", "bicycle"], "Cityscapes class names to keep.",
                      **fv)
    flags.DEFINE_float("iou_threshold", oa.IOU_THRESHOLD, "An object is aligned only when its "
                       "IoU with the target object is greater than this in every neighbour.",
                       **fv)
    flags.DEFINE_enum("match", "compensated", list(oa.MATCH_MODES), "'paper': the paper's IoU "
                      "rule alone; 'compensated': also align fast-moving objects by IoU after "
                      "motion compensation with a constant-velocity check.", **fv)
    flags.DEFINE_integer("min_area", 1, "Objects smaller than this many pixels are dropped.",
                         **fv)
    flags.DEFINE_string("split", "train", "Split name for input files whose names are not "
                        "{split}-{i}-of-{n}.tfrecord.", **fv)
    flags.DEFINE_string("preview_dir", None, "Folder for pictures of the first --num_previews "
                        "records: t-1, t, t+1 with every aligned object in one colour in all "
                        "frames, unaligned ones grey.", **fv)
    flags.DEFINE_integer("num_previews", 8, "How many records --preview_dir shows.", **fv)
    flags.DEFINE_bool("skip_bad", False, "Quarantine records with unusable masks, and the rest "
                      "of a corrupt input file (listed in the output manifest), instead of "
                      "stopping.", **fv)
    flags.DEFINE_bool("allow_incomplete", False, "Read input splits whose conversion has not "
                      "finished (their finished shards only).", **fv)


def load_instances(sample: schema.Sample, instances_dir):
    """Per-frame instance maps of `sample` (target then context), from a folder or the record."""
    num_frames = 1 + len(sample.context)
    if instances_dir is None:
        if sample.instances is None:
            raise errors.BadInputError(
                f"record {sample.source_id}: no segmentation/instance/encoded; pass "
                "--instances_dir with the instance masks of its frames.")
        return list(sample.instances)
    frames = []
    for k in range(num_frames):
        path = os.path.join(instances_dir, f"{sample.source_id}_frame{k}.png")
        frame = image_io.read_image(path)
        if frame.ndim != 2:
            raise errors.BadInputError(f"{path}: instance masks must be single-channel "
                                       f"(uint16) PNGs, got shape {frame.shape}.")
        if frame.shape != sample.image.shape[:2]:
            raise errors.BadInputError(f"{path}: mask is {frame.shape}, the record's image "
                                       f"is {sample.image.shape[:2]}.")
        frames.append(frame)
    return frames


def make_transform(instances_dir, keep_label_ids, iou_threshold, min_area, match,
                   counts: dict, previews: visualize.PreviewWriter = None):
    """The per-record function: decode, align, count, re-encode."""

    def transform(serialized: bytes) -> bytes:
        sample = schema.decode_example(serialized)
        if not sample.context:
            raise errors.BadInputError(f"record {sample.source_id}: no context frames; "
                                       "alignment needs t-1 and t+1.")
        frames = load_instances(sample, instances_dir)
        if match == "compensated" and len(frames) > 2 and len(frames) % 2 == 0:
            raise errors.BadInputError(
                f"record {sample.source_id}: {len(frames) - 1} context frames; the compensated "
                "mode's velocity check needs as many frames before t as after (e.g. t-1, t+1). "
                "Use --match=paper for these records.")
        maps, aligned = oa.align_objects(
            frames, target_index=0, keep_label_ids=keep_label_ids,
            iou_threshold=iou_threshold, min_area=min_area, match=match,
            name=f"record {sample.source_id}")
        target_objects = oa.object_ids(oa.kept_objects(frames[0], keep_label_ids, min_area))
        counts["records"] += 1
        counts["target_objects"] += int(target_objects.size)
        counts["aligned_objects"] += len(aligned)
        counts["compensated_objects"] += sum(obj.compensated for obj in aligned)
        if previews is not None and previews.wants_more():
            previews.write(sample.source_id, preview(sample, frames, maps, keep_label_ids,
                                                     min_area))
        sample.instances = maps
        return schema.encode_example(sample)

    return transform


def preview(sample: schema.Sample, frames, maps, keep_label_ids, min_area):
    """The record's frames in time order (t-1, t, t+1 for record order t, t-1, t+1) with the
    aligned objects coloured by aligned id and the kept but unaligned objects grey."""
    images = [sample.image] + list(sample.context)
    offsets = (oa.neighbour_time_offsets(len(frames), 0) if len(frames) % 2
               else list(range(len(frames))))
    pictures = [visualize.overlay_instances(images[i], maps[i],
                                            oa.kept_objects(frames[i], keep_label_ids, min_area))
                for i in sorted(range(len(frames)), key=lambda i: offsets[i])]
    return visualize.side_by_side(pictures)


def align(input_pattern: str, output_dir: str, instances_dir=None,
          classes=("person", "car", "bicycle"), iou_threshold: float = oa.IOU_THRESHOLD,
          min_area: int = 1, skip_bad: bool = False, default_split: str = "train",
          match: str = "compensated", preview_dir=None, num_previews: int = 8,
          allow_incomplete: bool = False):
    """Aligns the instance maps of every record and writes the rewritten shards.

    Output paths are checked before any work (`records.check_output_dir`); the input shards
    are checked against their manifest (see `records.rewrite_records`).

    Returns:
      (counts dict: records, target_objects, aligned_objects, compensated_objects (aligned
      objects that needed a motion-compensated match in some frame); rewrite stats per split).
    """
    keep = tuple(datasets.cityscapes_label_id(name.strip()) for name in classes)
    if match not in oa.MATCH_MODES:
        raise ValueError(f"match must be one of {oa.MATCH_MODES}, got {match!r}.")
    records.check_output_dir(output_dir)
    if preview_dir:
        records.check_output_dir(preview_dir, "--preview_dir")
    counts = {"records": 0, "target_objects": 0, "aligned_objects": 0, "compensated_objects": 0}
    source = json.dumps({"tool": "align_object_masks", "input": input_pattern,
                         "instances_dir": instances_dir, "classes": list(classes),
                         "iou_threshold": iou_threshold, "min_area": min_area, "match": match})
    stats = records.rewrite_records(
        input_pattern, output_dir,
        make_transform(instances_dir, keep, iou_threshold, min_area, match, counts,
                       visualize.PreviewWriter(preview_dir, num_previews)),
        skip_bad=skip_bad, source=source, default_split=default_split, desc="align",
        allow_incomplete=allow_incomplete)
    return counts, stats


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    options = flag_values
    if not options.input or not options.output_dir:
        raise cli.UserError("--input (a glob of TFRecord shards) and --output_dir are required.")
    try:
        counts, stats = align(
            cli.resolve_path(options.input), cli.resolve_path(options.output_dir),
            cli.resolve_path(options.instances_dir), options.classes, options.iou_threshold,
            options.min_area, options.skip_bad, options.split, options.match,
            cli.resolve_path(options.preview_dir), options.num_previews,
            options.allow_incomplete)
    except ValueError as error:
        if isinstance(error, errors.BadInputError):
            raise
        raise cli.UserError(str(error)) from error
    num_skipped = records.log_skipped(stats)
    print(f"{counts['records']} records, {counts['aligned_objects']} of "
          f"{counts['target_objects']} target-frame objects aligned "
          f"({counts['compensated_objects']} by motion compensation), {num_skipped} skipped")
    if options.preview_dir:
        print(f"previews: {cli.resolve_path(options.preview_dir)}")


def run():
    """Console-script entry point."""
    define_flags()
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
