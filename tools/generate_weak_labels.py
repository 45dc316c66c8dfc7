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

from absl import flags

from tf_depthseg import cli
from tf_depthseg import errors
from tf_depthseg.data import records
from tf_depthseg.labels import weak_label_records
from tf_depthseg.labels import weak_labels

flags.DEFINE_string("input", None, "Glob of input TFRecord shards, e.g. "
                    "'data/kitti/train-*-of-*.tfrecord'.")
flags.DEFINE_string("output_dir", None, "Folder for the rewritten shards with weak/pairs "
                    "(not the input folder). Optional when --side_file is given.")
flags.DEFINE_string("side_file", None, "Optional .npz side file of the pairs keyed by "
                    "image/source_id (arrays source_ids, row_splits, pairs, config).")
flags.DEFINE_string("masks_dir", None, "Folder of semantic mask PNGs named "
                    "<source_id><mask_suffix>; default: the records' "
                    "segmentation/class/encoded.")
flags.DEFINE_string("mask_suffix", ".png", "File name suffix of the masks in --masks_dir.")
flags.DEFINE_enum("mask_ids", "train", ["train", "label"], "What the --masks_dir PNGs hold: "
                  "Cityscapes train ids (0..18, 255) or label ids (0..33).")
flags.DEFINE_enum("strategy", "same+diff", sorted(weak_labels.STRATEGIES),
                  "Which rules generate pairs (Table 3 of the SUW supplement).")
flags.DEFINE_integer("pairs_per_rule", 64, "Pairs drawn per rule and image.")
flags.DEFINE_list("half_sizes", ["1", "2", "3", "4"], "Patch half sizes (0 = pixel pairs; "
                  "1..4 = 3x3..9x9 patches).")
flags.DEFINE_integer("seed", 0, "Random seed; pairs of an image depend only on it and the "
                     "image's source id.")
cli.define_relabel_flags("their pairs (blue = farther end, red = closer, yellow = equal) "
                         "next to their masks.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.input:
        raise cli.UserError("--input is required (a glob of TFRecord shards).")
    if not FLAGS.output_dir and not FLAGS.side_file:
        raise cli.UserError("give --output_dir (rewritten shards) and/or --side_file.")
    try:
        config = weak_labels.WeakLabelConfig(
            strategy=FLAGS.strategy, pairs_per_rule=FLAGS.pairs_per_rule,
            half_sizes=tuple(int(h) for h in FLAGS.half_sizes))
        collected, stats = weak_label_records.generate(
            cli.resolve_path(FLAGS.input), cli.resolve_path(FLAGS.output_dir),
            cli.resolve_path(FLAGS.side_file), config, seed=FLAGS.seed,
            masks_dir=cli.resolve_path(FLAGS.masks_dir), mask_suffix=FLAGS.mask_suffix,
            mask_ids=FLAGS.mask_ids, skip_bad=FLAGS.skip_bad, default_split=FLAGS.split,
            preview_dir=cli.resolve_path(FLAGS.preview_dir),
            num_previews=FLAGS.num_previews, allow_incomplete=FLAGS.allow_incomplete)
    except ValueError as error:  # e.g. --half_sizes outside 0..16
        if isinstance(error, errors.BadInputError):
            raise
        raise cli.UserError(str(error)) from error
    num_pairs = sum(p.shape[0] for p in collected.values())
    num_skipped = records.log_skipped(stats)
    written = ", ".join(f"{split} {entry['num_examples']}" for split, entry in stats.items())
    print(f"{len(collected)} images, {num_pairs} pairs "
          f"({num_pairs / max(len(collected), 1):.1f} per image), {num_skipped} skipped; "
          f"records written: {written if FLAGS.output_dir else 'none (side file only)'}")
    if FLAGS.preview_dir:
        print(f"previews: {cli.resolve_path(FLAGS.preview_dir)}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
