r"""Generates weak ordinal depth pairs from semantic masks (SUW-Learn rules) for TFRecords.

For every record, reads the semantic mask (the record's `segmentation/class/encoded` train ids,
or a PNG from --masks_dir named `<source_id><mask_suffix>` holding Cityscapes train ids or,
with --mask_ids=label, label ids, e.g. a segmenter's predictions), draws --pairs_per_rule pairs
per rule of --strategy and writes them as `weak/pairs` rows (y_a, x_a, y_b, x_b, half_size,
relation) into a rewrite of the shards in --output_dir (the input is never modified), and/or
into a side file (--side_file, .npz keyed by image/source_id). Strategies: diff (the three
rules of the paper), same (same-class ground pairs), same+diff, random_gt (pixel pairs ordered
by ground-truth depth). --half_sizes=0 gives pixel pairs, 1,2,3,4 the 3x3..9x9 patches.
--preview_dir writes pictures of the first --num_previews records' pairs next to their masks.

Example:
  python -m tools.generate_weak_labels --input='data/kitti/train-*-of-*.tfrecord' \
      --output_dir=data/kitti_weak --strategy=same+diff --pairs_per_rule=64 \
      --preview_dir=data/kitti_weak_previews
"""

import dataclasses
import json
import os

from absl import flags

from tf_depthseg import cli, visualize
from tf_depthseg.data import datasets
from tf_depthseg.data import image_io
from tf_depthseg.data import records
from tf_depthseg.data import schema
from tf_depthseg.data import weak_labels
from tf_depthseg import errors

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS):
    """Defines the tool's flags in `flag_values` (only when run as a program, so tests can
    import the module next to other tools without flag-name clashes)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("input", None, "Glob of input TFRecord shards, e.g. "
                        "'data/kitti/train-*-of-*.tfrecord'.", **fv)
    flags.DEFINE_string("output_dir", None, "Folder for the rewritten shards with weak/pairs "
                        "(not the input folder). Optional when --side_file is given.", **fv)
    flags.DEFINE_string("side_file", None, "Optional .npz side file of the pairs keyed by "
                        "image/source_id (arrays source_ids, row_splits, pairs, config).", **fv)
    flags.DEFINE_string("masks_dir", None, "Folder of semantic mask PNGs named "
                        "<source_id><mask_suffix>; default: the records' "
                        "segmentation/class/encoded.", **fv)
    flags.DEFINE_string("mask_suffix", ".png", "File name suffix of the masks in --masks_dir.",
                        **fv)
    flags.DEFINE_enum("mask_ids", "train", ["train", "label"], "What the --masks_dir PNGs hold: "
                      "Cityscapes train ids (0..18, 255) or label ids (0..33).", **fv)
    flags.DEFINE_enum("strategy", "same+diff", sorted(weak_labels.STRATEGIES),
                      "Which rules generate pairs (Table 3 of the SUW supplement).", **fv)
    flags.DEFINE_integer("pairs_per_rule", 64, "Pairs drawn per rule and image.", **fv)
    flags.DEFINE_list("half_sizes", ["1", "2", "3", "4"], "Patch half sizes (0 = pixel pairs; "
                      "1..4 = 3x3..9x9 patches).", **fv)
    flags.DEFINE_integer("seed", 0, "Random seed; pairs of an image depend only on it and the "
                         "image's source id.", **fv)
    flags.DEFINE_string("split", "train", "Split name for input files whose names are not "
                        "{split}-{i}-of-{n}.tfrecord.", **fv)
    flags.DEFINE_string("preview_dir", None, "Folder for pictures of the first --num_previews "
                        "records' pairs (blue = farther end, red = closer, yellow = equal) next "
                        "to their masks.", **fv)
    flags.DEFINE_integer("num_previews", 8, "How many records --preview_dir shows.", **fv)
    flags.DEFINE_bool("skip_bad", False, "Quarantine records with unusable masks, and the rest "
                      "of a corrupt input file (listed in the output manifest), instead of "
                      "stopping.", **fv)
    flags.DEFINE_bool("allow_incomplete", False, "Read input splits whose conversion has not "
                      "finished (their finished shards only).", **fv)


def load_mask(sample: schema.Sample, masks_dir, mask_suffix: str, mask_ids: str):
    """The train-id mask of `sample` from --masks_dir or the record (None if it has none)."""
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
    """The per-record function: decode, draw pairs, remember them, re-encode."""

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
    """Generates the pairs of every record; writes shards and/or the side file (and preview
    pictures of the first `num_previews` records into `preview_dir`).

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


def main(argv, flag_values: flags.FlagValues = FLAGS):
    del argv
    options = flag_values
    if not options.input:
        raise cli.UserError("--input is required (a glob of TFRecord shards).")
    if not options.output_dir and not options.side_file:
        raise cli.UserError("give --output_dir (rewritten shards) and/or --side_file.")
    try:
        config = weak_labels.WeakLabelConfig(
            strategy=options.strategy, pairs_per_rule=options.pairs_per_rule,
            half_sizes=tuple(int(h) for h in options.half_sizes))
        collected, stats = generate(
            cli.resolve_path(options.input), cli.resolve_path(options.output_dir),
            cli.resolve_path(options.side_file), config, seed=options.seed,
            masks_dir=cli.resolve_path(options.masks_dir), mask_suffix=options.mask_suffix,
            mask_ids=options.mask_ids, skip_bad=options.skip_bad, default_split=options.split,
            preview_dir=cli.resolve_path(options.preview_dir),
            num_previews=options.num_previews, allow_incomplete=options.allow_incomplete)
    except ValueError as error:
        if isinstance(error, errors.BadInputError):
            raise
        raise cli.UserError(str(error)) from error
    num_pairs = sum(p.shape[0] for p in collected.values())
    num_skipped = records.log_skipped(stats)
    written = ", ".join(f"{split} {entry['num_examples']}" for split, entry in stats.items())
    print(f"{len(collected)} images, {num_pairs} pairs "
          f"({num_pairs / max(len(collected), 1):.1f} per image), {num_skipped} skipped; "
          f"records written: {written if options.output_dir else 'none (side file only)'}")
    if options.preview_dir:
        print(f"previews: {cli.resolve_path(options.preview_dir)}")


def run():
    """Console-script entry point."""
    define_flags()
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
