r"""Predicts depth and/or semantic classes for a folder of images or a video with an exported
model, drawing whatever the model predicts.

For every frame <name> writes into --output_dir, at the input's size:
  <name>_depth.png    (depth models) uint16 PNG, round(depth in metres * 256), 0 = invalid
                      (KITTI convention)
  <name>_classes.png  (segmentation models) uint8 PNG of the predicted class ids
  <name>_viz.png      input | colourised depth (near = bright) | colourised uncertainty |
                      class map in the dataset's palette, with a legend | classes over the input
                      (class names and palette from the export's metadata.json, when known)

--input: a folder of .png/.jpg/.jpeg images (sorted; <name> = file stem) or a video
(.mp4/.avi/.mov/.mkv; <name> = <video stem>_<frame:06d>).
--model: an export folder of tools/export.py (SavedModel, any image size) or its
model.tflite (fixed size; images are resized to it and the outputs back).
Unreadable images stop the run with the file's name, or are skipped with --skip_bad.

Example:
  python -m tools.predict --model=workdir/export --input=frames/ --output_dir=workdir/pred
  bazel run //tools:predict -- --model=workdir/export/model.tflite --input=drive.mp4 \
      --output_dir=workdir/pred_video
"""

import os

from absl import flags

from tf_depthseg import cli

flags.DEFINE_string("input", None, "Folder of images or a video file.")
flags.DEFINE_string("model", None, "Export folder (SavedModel) or a .tflite file.")
flags.DEFINE_string("output_dir", None, "Where to write the PNGs (created).")
flags.DEFINE_integer("batch_size", 4, "Frames per model call.")
flags.DEFINE_bool("skip_bad", False, "Skip unreadable images (listed at the end) instead of "
                  "stopping.")
flags.mark_flags_as_required(["input", "model", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tf_depthseg.export import predict

    if FLAGS.batch_size < 1:
        raise cli.UserError(f"--batch_size must be >= 1, got {FLAGS.batch_size}")
    input_path = cli.resolve_path(FLAGS.input)
    output_dir = cli.resolve_path(FLAGS.output_dir)
    predict.check_input(input_path)  # before the slow model loading
    predictor = predict.load_predictor(cli.resolve_path(FLAGS.model))
    from tf_depthseg.data import records
    records.make_output_dir(output_dir, "--output_dir")  # one line, not an OSError traceback
    summary = predict.predict_path(predictor, input_path, output_dir,
                                   batch_size=FLAGS.batch_size, skip_bad=FLAGS.skip_bad)
    for path, reason in summary.skipped:
        print(f"skipped {path}: {reason}")
    described = {"depth": f"depth PNGs (*{predict.DEPTH_SUFFIX}, metres*256)",
                 "classes": f"class-id PNGs (*{predict.CLASSES_SUFFIX})",
                 "viz": f"pictures (*{predict.VIZ_SUFFIX})"}
    parts = [described[kind] for kind in summary.kinds] or ["no outputs"]
    print(f"wrote {len(summary.written)} " + (", ".join(parts[:-1]) + " and " + parts[-1]
                                              if len(parts) > 1 else parts[0])
          + f" to {os.path.abspath(output_dir)}"
          + (f"; skipped {len(summary.skipped)} unreadable inputs" if summary.skipped else ""))


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
