"""Object alignment for every record of a set of TFRecord shards (what
`tools/align_object_masks.py` runs): each record's per-frame instance maps (from the record or
a folder of PNGs) -> `object_alignment.align_objects` -> the record rewritten with the aligned
maps as `segmentation/instance/encoded`; preview pictures of the first records.
"""

from __future__ import annotations

import json
import os

from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import datasets
from tf_depthseg.data import image_io
from tf_depthseg.data import records
from tf_depthseg.data import schema
from tf_depthseg.labels import object_alignment as oa


def load_instances(sample: schema.Sample, instances_dir):
    """Per-frame instance maps of `sample` (target then context), from the record or from
    `instances_dir` PNGs named `<source_id>_frame<k>.png` (k in record order)."""
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
    """The per-record function (serialized -> serialized): decode, align, add to `counts`,
    re-encode."""

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
