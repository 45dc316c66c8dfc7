"""Weak ordinal pairs for every record of a set of TFRecord shards (what
`tools/generate_weak_labels.py` runs): each record's semantic mask (from the record or a
folder of PNGs) -> `weak_labels.generate_weak_pairs` -> the record rewritten with
`weak/pairs`, and/or a side file of the pairs; preview pictures of the first records.
"""

from __future__ import annotations

import dataclasses
import json
import os

from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import datasets
from tf_depthseg.data import image_io
from tf_depthseg.data import records
from tf_depthseg.data import schema
from tf_depthseg.labels import weak_labels


def load_mask(sample: schema.Sample, masks_dir, mask_suffix: str, mask_ids: str):
    """The train-id mask of `sample` from `masks_dir` or the record (None if it has none).

    `masks_dir` PNGs are named `<source_id><mask_suffix>` and hold Cityscapes train ids
    (`mask_ids="train"`) or label ids (`"label"`) at the stored image size.
    """
    if masks_dir is None:
        return sample.semantic
    path = os.path.join(masks_dir, sample.source_id + mask_suffix)
    mask = image_io.read_label_png(path)
    if mask_ids == "label":
        mask = datasets.label_ids_to_train_ids(mask, path)
    else:
        mask = datasets.check_train_ids(mask, path)
    if mask.shape != sample.image.shape[:2]:
        raise errors.BadInputError(f"{path}: mask is {mask.shape}, the record's image is "
                                   f"{sample.image.shape[:2]}; masks must have the stored "
                                   "image size (resize with nearest neighbour).")
    return mask


def make_transform(config: weak_labels.WeakLabelConfig, seed: int, masks_dir, mask_suffix,
                   mask_ids, collected: dict, previews: visualize.PreviewWriter = None):
    """The per-record function (serialized -> serialized): decode, draw pairs, remember them
    in `collected` (source id -> float32 `[P, 6]`), re-encode."""

    def transform(serialized: bytes) -> bytes:
        sample = schema.decode_example(serialized)
        semantic = None
        if config.strategy != "random_gt" or masks_dir is not None:
            semantic = load_mask(sample, masks_dir, mask_suffix, mask_ids)
        if semantic is None and config.strategy != "random_gt":
            raise errors.BadInputError(
                f"record {sample.source_id}: no segmentation/class/encoded; pass --masks_dir "
                "with the masks of these images, or use --strategy=random_gt.")
        pairs = weak_labels.concat_pairs(weak_labels.generate_weak_pairs(
            semantic, config, weak_labels.image_rng(seed, sample.source_id),
            depth=sample.depth, name=f"record {sample.source_id}"))
        if sample.source_id in collected:  # the side file is keyed by it: pairs would be lost
            raise errors.BadInputError(
                f"record {sample.source_id}: this image/source_id occurs twice in the input; "
                "source ids must be unique (reconvert the split, or drop the duplicate shard).")
        collected[sample.source_id] = pairs
        if previews is not None and previews.wants_more():
            pictures = [visualize.draw_weak_pairs(sample.image, pairs)]
            if semantic is not None:
                pictures.append(datasets.colorize(semantic, datasets.CITYSCAPES_TRAIN_PALETTE))
            previews.write(sample.source_id, visualize.side_by_side(pictures))
        sample.weak_pairs = pairs
        return schema.encode_example(sample)

    return transform


def generate(input_pattern: str, output_dir, side_file, config: weak_labels.WeakLabelConfig,
             seed: int = 0, masks_dir=None, mask_suffix: str = ".png", mask_ids: str = "train",
             skip_bad: bool = False, default_split: str = "train", preview_dir=None,
             num_previews: int = 8, allow_incomplete: bool = False):
    """Generates the pairs of every record; writes shards (unless `output_dir` is None) and/or
    the side file (and preview pictures of the first `num_previews` records into
    `preview_dir`).

    Every output path is checked before any work (`records.check_output_dir`); the input
    shards are checked against their manifest (see `records.rewrite_records`).

    Returns:
      (dict source id -> float32 `[P, 6]` pairs, `records.rewrite_records` stats).
    """
    if output_dir is not None:
        records.check_output_dir(output_dir)
    if side_file:
        if os.path.isdir(side_file):
            raise errors.UserError(f"{side_file}: --side_file is a folder; give a file name "
                                   "such as pairs.npz.")
        records.check_output_dir(os.path.dirname(os.path.abspath(side_file)), "--side_file")
    if preview_dir:
        records.check_output_dir(preview_dir, "--preview_dir")
    collected = {}
    source = json.dumps({"tool": "generate_weak_labels", "input": input_pattern,
                         "masks_dir": masks_dir, "mask_ids": mask_ids, "seed": seed,
                         "config": dataclasses.asdict(config)})
    stats = records.rewrite_records(
        input_pattern, output_dir,
        make_transform(config, seed, masks_dir, mask_suffix, mask_ids, collected,
                       visualize.PreviewWriter(preview_dir, num_previews)),
        skip_bad=skip_bad, source=source, default_split=default_split, desc="weak labels",
        allow_incomplete=allow_incomplete)
    if side_file:
        weak_labels.write_side_file(side_file, collected, config)
    return collected, stats
