r"""Exports a training run's served network as a SavedModel (+ TFLite) with metadata.json.

Restores the network the run's task serves (`Task.serving_model`: SUW's depth network, a
segmentation network, ...) from `--workdir` (the newest checkpoint, or `--checkpoint=best` for
the keep-best one, or a checkpoint prefix) with the run's config.json, and writes
`--output_dir` atomically (a temporary folder renamed when complete):

  <output_dir>/saved_model.pb   SavedModel (weights frozen in), signature "serving_default":
      inputs:  images                  uint8   [batch, height, width, 3]  RGB, any batch/size
      outputs, whatever the network predicts, at the input size:
               depth                   float32 [batch, height, width, 1]  metres
               uncertainty             float32 [batch, height, width, 1]  std of the depth-bin
                                                                          distribution, log10 m
               disparity               float32 [batch, height, width, 1]  sigmoid disparity of
                                                                          SDE networks (their
                                                                          depth: relative scale)
               semantic_class_ids      int32   [batch, height, width]     argmax class id
               semantic_probabilities  float32 [batch, height, width, C]  softmax of the logits
      Inside the signature: uint8 / 255 -> RGB in [0, 1]; images of another size than
      data.image_size are resized to it (bilinear, as in training) and the outputs resized
      back (segmentation: the logits; --dynamic_size: the network runs at the input size).
  <output_dir>/model.tflite   the same signature at a fixed [1, h, w, 3] = data.image_size,
      float32 or quantised (--tflite_quantize=dynamic|float16|int8), TFLite builtin ops only;
      int8 = full-integer quantisation calibrated on --tflite_representative_examples images
      of the run's training records (data.train_pattern; --set data.train_pattern=... for
      others): uint8 image input as always, float32 outputs (dequantised inside the model),
      the soft-classification head kept in float
  <output_dir>/metadata.json  outputs, config, input size, depth range, class names and
      palette (segmentation, when the dataset is known: --dataset or the run's config), source
      checkpoint and step, file sizes, and the differences of both exports to the Keras model
      (--verify)

Check it with:  saved_model_cli show --dir <output_dir> --all

Example:
  python -m tools.export --workdir=workdir/suw_synthetic --output_dir=workdir/export \
      --checkpoint=best --tflite_quantize=float16
  bazel run //tools:export -- --workdir=workdir/suw_synthetic --output_dir=workdir/export
"""

import os

from absl import flags

from tf_depthseg import cli

cli.define_common_flags()
flags.DEFINE_string("checkpoint", "latest", "Which weights: 'latest' (newest of "
                    "<workdir>/checkpoints), 'best' (<workdir>/best), or a checkpoint prefix.")
flags.DEFINE_string("output_dir", None, "Export folder to create (a SavedModel folder).")
flags.DEFINE_bool("tflite", None, "Also write model.tflite (default: config export.tflite).")
flags.DEFINE_enum("tflite_quantize", None, ["none", "dynamic", "float16", "int8"],
                  "TFLite quantisation (default: config export.tflite_quantize); int8 "
                  "calibrates on the run's training records (data.train_pattern).")
flags.DEFINE_integer("tflite_representative_examples", None, "int8: training images to "
                     "calibrate on (default: config export.tflite_representative_examples).",
                     lower_bound=1)
flags.DEFINE_bool("dynamic_size", False, "SavedModel runs the network at the caller's image "
                  "size instead of resizing to data.image_size.")
flags.DEFINE_bool("verify", True, "Load the export back and record its difference to the "
                  "Keras model in metadata.json.")
flags.DEFINE_string("dataset", "", "Segmentation networks: the dataset whose class names and "
                    "palette go into metadata.json (cityscapes, camvid; default: the run's "
                    "own, if its config names one).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir (only once the new "
                  "export is complete).")
flags.mark_flags_as_required(["workdir", "output_dir"])
FLAGS = flags.FLAGS


def check_replaceable(output_dir: str, metadata_filename: str) -> None:
    """--overwrite replaces an earlier export or an empty folder, never anything else (a run's
    workdir, a data folder, a file): raises UserError naming the path."""
    if not os.path.lexists(output_dir):
        return
    if os.path.islink(output_dir) or not os.path.isdir(output_dir):
        raise cli.UserError(f"{output_dir}: not a folder; --overwrite only replaces an earlier "
                            "export. Choose another --output_dir.")
    names = os.listdir(output_dir)
    if names and not {metadata_filename, "saved_model.pb"} <= set(names):
        raise cli.UserError(f"{output_dir}: not an export of tools/export.py (no "
                            f"{metadata_filename} and saved_model.pb), so --overwrite will not "
                            "replace it. Choose another --output_dir, or empty it yourself.")


def main(argv):
    del argv
    from tf_depthseg import config as config_lib
    from tf_depthseg.export import exporter, restore, saved_model

    workdir = cli.resolve_path(FLAGS.workdir)
    output_dir = cli.resolve_path(FLAGS.output_dir)
    checkpoint = FLAGS.checkpoint
    if checkpoint not in restore.CHECKPOINT_CHOICES:
        checkpoint = cli.resolve_path(checkpoint)
    if os.path.lexists(output_dir) and not FLAGS.overwrite:  # fail before the slow part
        raise cli.UserError(f"{output_dir} already exists; pass --overwrite to replace it (the "
                            "old export stays until the new one is complete).")
    check_replaceable(output_dir, exporter.METADATA_FILENAME)
    if FLAGS.dataset:
        restore.dataset_classes(FLAGS.dataset)  # an unknown name fails before the slow part
    from tf_depthseg.data import records
    records.make_output_dir(os.path.dirname(output_dir), "--output_dir")
    config = None  # default: the config.json of the run that wrote the checkpoint
    if FLAGS.config:
        config = config_lib.load_config(cli.resolve_path(FLAGS.config)
                                        if FLAGS.config.endswith((".py", ".json"))
                                        else FLAGS.config, smoke=FLAGS.smoke)
    # Selects (and verifies, one sha256 pass) the checkpoint, then restores it.
    restored = restore.restore_serving_model(workdir, checkpoint, config=config,
                                             overrides=FLAGS.set)
    config = restored.config
    class_names, palette = restore.segmentation_classes(restored.model, config, FLAGS.dataset)
    export = config.export
    image_size = config.data.image_size
    tflite_export = export.tflite if FLAGS.tflite is None else FLAGS.tflite
    quantize = FLAGS.tflite_quantize or export.tflite_quantize
    print(f"restored {restored.model.name} from {restored.checkpoint} (step {restored.step})")
    representative = None
    if tflite_export and quantize == "int8" and image_size is not None:
        count = (FLAGS.tflite_representative_examples
                 or export.tflite_representative_examples)
        representative = exporter.representative_images(
            config.data.train_pattern, image_size, count,
            allow_incomplete=config.data.allow_incomplete)
        print(f"int8 calibration: {len(representative)} images of {config.data.train_pattern}")
    try:
        result = exporter.export_model(
            restored.model, output_dir, image_size=image_size,
            dynamic_size=FLAGS.dynamic_size, tflite_export=tflite_export,
            tflite_quantize=quantize, config=config,
            source={"workdir": workdir, "checkpoint": restored.checkpoint,
                    "step": restored.step},
            verify=FLAGS.verify, overwrite=FLAGS.overwrite,
            class_names=class_names, palette=palette,
            representative_images=representative,
            representative_source=config.data.train_pattern if representative is not None
            else None)
    except (FileExistsError, ValueError) as error:
        raise cli.UserError(str(error)) from error
    metadata = result.metadata
    print(f"SavedModel: {result.export_dir} ({metadata['saved_model_bytes'] / 1e6:.2f} MB), "
          f"signature 'serving_default': images uint8 [batch, h, w, 3] -> "
          f"{', '.join(metadata['signature']['outputs'])}")
    if result.tflite_path:
        print(f"TFLite:     {result.tflite_path} ({metadata['tflite']['bytes'] / 1e6:.2f} MB, "
              f"quantize={quantize}, input [1, {image_size[0]}, {image_size[1]}, 3])")
        if metadata["tflite"].get("float_ops"):
            print(f"int8:       ops left in float32: {', '.join(metadata['tflite']['float_ops'])}")
    classes = metadata.get("segmentation")
    if classes:
        print(f"classes:    {classes['num_classes']}" + (
            f" ({FLAGS.dataset or restore.config_dataset(config)}: "
            f"{', '.join(classes['class_names'])})" if classes["class_names"] else
            " (numbered; pass --dataset for names and palette)"))
    for kind, diffs in metadata.get("verification", {}).items():
        if isinstance(diffs, dict):
            print(f"{kind} vs keras: " + ", ".join(
                f"{k} {100 * v:.3g} % of pixels differ" if k == saved_model.OUTPUT_CLASS_IDS
                else f"{k} max abs diff {v:.3g}" for k, v in diffs.items()))
    print(f"metadata:   {result.export_dir}/{exporter.METADATA_FILENAME}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
