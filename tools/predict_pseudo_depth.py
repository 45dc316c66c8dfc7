r"""Precomputes DepthMix's SDE disparity into TFRecords (semisup.depth_source=records).

Runs a self-supervised depth network (--sde: an SDE run's workdir, a checkpoint prefix, or its
tools/export folder) on the image of every record of --input at its stored size, normalises
the disparity per image to [0, 1] and writes the records with it (feature
depth/pseudo/encoded, uint16 PNG) into --output_dir, shard by shard (same shard names and
order; atomic shards and manifest.json as the converters write; the input is never modified).
Then train with --set semisup.depth_source=records --set data.train_pattern='<output>/train-*'.

--figure=PATH draws the paper's Fig. S2 for two records (--figure_ids, default the first two):
the source images with their SDE, the mixed image with the DepthMix mask border (orange =
image i's side, blue = j's), the mixed image, the mixed SDE and, when the records have labels,
the mixed segmentation (--palette). Without --output_dir only the figure is drawn (from the
input's pseudo disparity, or from --sde).

Examples:
  python -m tools.predict_pseudo_depth --input='workdir/data/camvid_records/train-*.tfrecord' \
      --sde=workdir/sde_cs --output_dir=workdir/data/camvid_pseudo_depth \
      --figure=workdir/depthmix.png
  python -m tools.predict_pseudo_depth \
      --input='workdir/data/camvid_pseudo_depth/train-*.tfrecord' --figure=depthmix.png \
      --figure_ids=train/0001,train/0040
"""

import os

from absl import flags

from tf_depthseg import cli
from tf_depthseg import errors
from tf_depthseg.data import datasets, image_io, records

flags.DEFINE_string("input", None, "Glob of input TFRecord shards, e.g. "
                    "'data/camvid/train-*.tfrecord'.")
flags.DEFINE_string("sde", None, "The SDE: a tools/train task=sde workdir, a checkpoint prefix, "
                    "or its tools/export folder (whose metadata names the checkpoint).")
flags.DEFINE_string("output_dir", None, "Folder for the records with the pseudo disparity "
                    "(not the input folder). Optional with --figure.")
flags.DEFINE_string("figure", None, "PNG path of a DepthMix figure (paper Fig. S2) of two "
                    "records.")
flags.DEFINE_list("figure_ids", [], "Source ids of the figure's two records (image i, "
                  "partner j); default the first two.")
flags.DEFINE_enum("palette", "camvid", ["camvid", "cityscapes"], "Class colours of the "
                  "figure's mixed labels.")
flags.DEFINE_float("margin", 0.03, "DepthMix margin of the figure's mask "
                   "(semisup.depthmix_margin).")
flags.DEFINE_string("split", "train", "Split name for input files whose names are not "
                    "{split}-{i}-of-{n}.tfrecord.")
flags.DEFINE_bool("skip_bad", False, "Quarantine records whose image cannot be read (listed "
                  "in the output manifest) instead of stopping.")
flags.DEFINE_bool("allow_incomplete", False, "Read input splits whose conversion has not "
                  "finished (their finished shards only).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.input:
        raise cli.UserError("--input is required (a glob of TFRecord shards).")
    if not FLAGS.output_dir and not FLAGS.figure:
        raise cli.UserError("give --output_dir (records with the pseudo disparity) and/or "
                            "--figure (a DepthMix picture).")
    if FLAGS.output_dir and not FLAGS.sde:
        raise cli.UserError("--output_dir needs --sde (the SDE run or export to predict with).")
    if FLAGS.figure_ids and len(FLAGS.figure_ids) != 2:
        raise cli.UserError(f"--figure_ids takes two source ids, got {FLAGS.figure_ids}.")
    input_pattern = cli.resolve_path(FLAGS.input)
    output_dir = cli.resolve_path(FLAGS.output_dir)
    figure = cli.resolve_path(FLAGS.figure)
    if output_dir:
        records.check_output_dir(output_dir)
    if figure:
        records.check_output_dir(os.path.dirname(os.path.abspath(figure)), "--figure")
    # Imported here: TensorFlow and the networks load only once the flags are fine.
    from tf_depthseg.training.tasks import semisup_depth
    predict = None
    if FLAGS.sde:
        model, prefix = semisup_depth.load_sde(cli.resolve_path(FLAGS.sde))
        predict = semisup_depth.disparity_predictor(model)
    if output_dir:
        try:
            stats = semisup_depth.write_pseudo_depth_records(
                input_pattern, output_dir, predict, skip_bad=FLAGS.skip_bad,
                default_split=FLAGS.split, allow_incomplete=FLAGS.allow_incomplete,
                source=f"tools/predict_pseudo_depth --sde={prefix}")
        except ValueError as error:  # --output_dir is an input folder
            if isinstance(error, errors.BadInputError):
                raise
            raise cli.UserError(str(error)) from error
        num_skipped = records.log_skipped(stats)
        written = ", ".join(f"{split} {entry['num_examples']}" for split, entry in stats.items())
        print(f"records with pseudo disparity: {written} ({num_skipped} skipped) in "
              f"{output_dir}")
    if figure:
        source = (os.path.join(output_dir, "*.tfrecord") if output_dir else input_pattern)
        palette = (datasets.CAMVID_PALETTE[:datasets.CAMVID_NUM_CLASSES]
                   if FLAGS.palette == "camvid" else datasets.CITYSCAPES_TRAIN_PALETTE)
        picture = semisup_depth.depthmix_figure_of_records(
            source, FLAGS.figure_ids, predict=predict, margin=FLAGS.margin, palette=palette)
        image_io.write_png(figure, picture)
        print(f"DepthMix figure: {figure}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
