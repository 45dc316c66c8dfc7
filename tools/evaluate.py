r"""Evaluates a trained run on its evaluation split: tables on screen + JSON.

Restores the network the run's task serves (best checkpoint if the run kept one, else the
latest; or --checkpoint), predicts every image of the evaluation split (the run's
data.eval_pattern, or --split) at the run's data.image_size, and evaluates what the network
predicts (its outputs decide, not the task):

* depth (output `depth`): the KITTI Eigen protocol, AbsRel, SqRel, RMSE, RMSElog and
  delta < 1.25, 1.25^2, 1.25^3, each the mean over images (protocol from the run's `eval`
  config: Garg crop, 1e-3..80 m, median scaling for scale-ambiguous runs; change it with
  --set eval.median_scaling=true etc.);
* segmentation (output `semantic_logits`): the dataset confusion matrix over labelled pixels
  (ignore id 255), mIoU, pixel accuracy and the IoU of every class, named from the dataset's
  class table when the dataset is known (--dataset, or the run's config);
* both, when the network predicts both (and the split has depth and semantic labels).

--baselines adds the constant-median-depth baseline: the median ground-truth depth of the
run's training records, predicted everywhere (median-scaled protocols: any constant gives the
same numbers, so no training depth is read; an SDE's video records have none). --compare=workdirA,workdirB evaluates other runs
on the same images with the same protocol, side by side. Under the depth table a reading
generated from the numbers: the best model per metric, each model against the baseline, this
run against each --compare run. Results (and the reading) go to --out (default
<workdir>/eval_results.json).

Examples:
  bazel run //tools:evaluate -- --workdir=workdir/suw_synthetic --baselines
  python -m tools.evaluate --workdir=/tmp/suw --split='data/kitti/test-*.tfrecord' \
      --compare=/tmp/s_only --set eval.median_scaling=true
"""

import dataclasses
import json
import math
import os
import textwrap

from absl import flags, logging

from tf_depthseg import common
from tf_depthseg import cli
from tf_depthseg import config as config_lib

flags.DEFINE_string("workdir", None, "The run to evaluate (a tools/train.py workdir).")
flags.DEFINE_string("split", None, "Glob of the TFRecords to evaluate on, or a TFDS split "
                    "tfds:<name>[/<config>]:<split> (default: the run's data.eval_pattern).")
flags.DEFINE_string("checkpoint", "auto", "auto (best if kept, else latest), best, latest, or "
                    "a checkpoint prefix/folder.")
flags.DEFINE_bool("baselines", False, "Also evaluate the constant median-depth baseline.")
flags.DEFINE_list("compare", [], "Other workdirs to evaluate side by side.")
flags.DEFINE_multi_string("set", [], "Override the run's config, e.g. --set "
                          "eval.median_scaling=true --set data.eval_batch_size=1.")
flags.DEFINE_integer("max_examples", None, "Evaluate at most this many images (0 = all; "
                     "default: the run's eval.max_examples).")
flags.DEFINE_integer("baseline_max_examples", 1000, "Training records read for the median "
                     "depth of the constant baseline.")
flags.DEFINE_string("out", None, "JSON output (default <workdir>/eval_results.json).")
flags.DEFINE_string("dataset", "", "Segmentation: the dataset whose class names label the "
                    "per-class IoU (cityscapes, camvid; default: the run's own, if its config "
                    "names one; else classes are numbered).")
flags.DEFINE_float("tie", 0.02, "The reading calls two models tied on a metric when they differ "
                   "by less than this: relative for errors (0.02 = 2 %), absolute for d1-d3. Set "
                   "it to the run-to-run spread of your runs (short runs vary more).")
FLAGS = flags.FLAGS

COLUMNS = (("abs_rel", "AbsRel"), ("sq_rel", "SqRel"), ("rmse", "RMSE"),
           ("rmse_log", "RMSElog"), ("a1", "d1"), ("a2", "d2"), ("a3", "d3"))
RESULTS_FILENAME = "eval_results.json"


def format_table(rows) -> str:
    """The Eigen table: one line per (name, metrics) row."""
    width = max([len("model")] + [len(name) for name, _ in rows]) + 2
    header = "model".ljust(width) + "".join(f"{title:>9}" for _, title in COLUMNS) + "  images"
    lines = [header, "-" * len(header)]
    for name, metrics in rows:
        cells = "".join(f"{metrics[key]:9.4f}" for key, _ in COLUMNS)
        lines.append(name.ljust(width) + cells + f"  {metrics['num_images']:6d}")
    return "\n".join(lines)


BASELINE_ROW = "constant_median"


def read_results(rows, main_name: str, with_baseline: bool, tie: float) -> list:
    """The reading printed under the table (`metrics.depth.read_depth_results`): best model
    per metric, every model against the constant baseline, the evaluated run against each
    --compare run; differences below `tie` are ties."""
    from tf_depthseg.metrics import depth as depth_metrics
    others = [name for name, _ in rows if name not in (main_name, BASELINE_ROW)]
    return depth_metrics.read_depth_results(
        dict(rows), baseline=BASELINE_ROW if with_baseline else None,
        pairs=[(main_name, other) for other in others], tie=tie)


def restore(workdir: str, checkpoint: str):
    """RestoredModel of a run (`checkpoint` "auto" = best if kept, else latest)."""
    from tf_depthseg.export import restore as restore_lib
    from tf_depthseg.training import checkpoints
    if checkpoint == "auto":
        try:
            return restore_lib.restore_serving_model(workdir, "best")
        except checkpoints.DamagedCheckpointError as error:
            logging.warning("%s Evaluating the latest checkpoint instead.", error)
            return restore_lib.restore_serving_model(workdir, "latest")
        except checkpoints.CheckpointError:
            return restore_lib.restore_serving_model(workdir, "latest")
    return restore_lib.restore_serving_model(workdir, cli.resolve_path(checkpoint)
                                           if checkpoint not in ("best", "latest")
                                           else checkpoint)


DEPTH, SEGMENTATION = "depth", "segmentation"


def evaluated_kinds(model) -> list:
    """What a served network predicts, in evaluation order: "depth", "segmentation"."""
    return ([DEPTH] if common.OUT_DEPTH in model.output else []) + (
        [SEGMENTATION] if common.OUT_SEMANTIC_LOGITS in model.output else [])


def depth_predictor(model, image_size):
    """images `[B, h, w, 3]` -> depth `[B, h, w, 1]`, the network run at `image_size`."""
    import tensorflow as tf
    from tf_depthseg.export import saved_model
    return lambda images: saved_model.network_outputs(
        model, tf.cast(images, tf.float32), image_size, [common.OUT_DEPTH])[common.OUT_DEPTH]


def segmentation_predictor(model, image_size):
    """images `[B, h, w, 3]` -> class ids `[B, h, w]`: the network at `image_size`, its logits
    resized back to (h, w), then argmax (as the exported signature does)."""
    import tensorflow as tf
    from tf_depthseg.export import saved_model
    return lambda images: tf.argmax(saved_model.network_outputs(
        model, tf.cast(images, tf.float32), image_size,
        [common.OUT_SEMANTIC_LOGITS])[common.OUT_SEMANTIC_LOGITS], axis=-1,
        output_type=tf.int32)


def format_segmentation_tables(rows, class_names) -> str:
    """mIoU / pixel accuracy per model, then the IoU of every class (rows) per model."""
    width = max([len("model")] + [len(name) for name, _ in rows]) + 2
    header = "model".ljust(width) + f"{'mIoU':>9}{'pix.acc':>9}  images"
    lines = [header, "-" * len(header)]
    for name, metrics in rows:
        lines.append(name.ljust(width) + f"{metrics['miou']:9.4f}"
                     f"{metrics['pixel_accuracy']:9.4f}  {metrics['num_images']:6d}")
    name_width = max([len("class IoU")] + [len(name) for name in class_names]) + 2
    column = max([9] + [len(name) + 2 for name, _ in rows])
    header = "class IoU".ljust(name_width) + "".join(f"{name:>{column}}" for name, _ in rows)
    lines += ["", header, "-" * len(header)]
    for class_name in class_names:
        cells = ""
        for _, metrics in rows:
            value = metrics[f"iou/{class_name}"]
            cells += (f"{value:{column}.4f}" if math.isfinite(value)
                      else f"{'n/a':>{column}}")
        lines.append(class_name.ljust(name_width) + cells)
    return "\n".join(lines)


def _json_safe(metrics: dict) -> dict:
    """Non-finite floats (NaN IoU of an absent class, undefined depth metrics) -> null."""
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
            for k, v in metrics.items()}


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise cli.UserError("--workdir is required (the run to evaluate).")
    workdir = cli.resolve_path(FLAGS.workdir)
    if not os.path.isdir(workdir):
        raise cli.UserError(f"--workdir={workdir}: no such folder.")
    if FLAGS.max_examples is not None and FLAGS.max_examples < 0:
        raise cli.UserError(f"--max_examples={FLAGS.max_examples}: must be >= 0 (0 = all).")
    if FLAGS.tie < 0:
        raise cli.UserError(f"--tie={FLAGS.tie}: must be >= 0 (0 = no ties).")
    out = cli.resolve_path(FLAGS.out) if FLAGS.out else os.path.join(workdir, RESULTS_FILENAME)
    from tf_depthseg.data import records
    records.make_output_dir(os.path.dirname(out), "--out")  # before the slow part
    if os.path.isdir(out):
        raise cli.UserError(f"--out={out} is a folder; pass the JSON file to write.")
    from tf_depthseg.data import pipeline
    from tf_depthseg.evaluation import depth as depth_eval
    from tf_depthseg.evaluation import segmentation as seg_eval
    from tf_depthseg.export import restore as restore_lib
    from tf_depthseg.export import saved_model
    from tf_depthseg.training.tasks import make_task
    if FLAGS.dataset:
        restore_lib.dataset_classes(FLAGS.dataset)  # an unknown name fails before the slow part

    restored = restore(workdir, FLAGS.checkpoint)
    config = config_lib.apply_overrides(restored.config, FLAGS.set)
    pattern = FLAGS.split or config.data.eval_pattern
    if FLAGS.split and not FLAGS.split.startswith(config_lib.TFDS_PREFIX):  # TFDS: not a path
        pattern = cli.resolve_path(FLAGS.split)
    if not pattern:
        raise cli.UserError("the run has no data.eval_pattern; pass --split='<glob of records>'.")
    # The task reads its evaluation records from data.eval_pattern.
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  eval_pattern=pattern))
    dataset = make_task(config).make_eval_dataset(config)
    if dataset is None:
        raise cli.UserError(f"task {config.task!r} has no evaluation dataset for {pattern}.")
    labels = {DEPTH: common.DEPTH, SEGMENTATION: common.SEMANTIC}
    kinds = [kind for kind in evaluated_kinds(restored.model)
             if labels[kind] in dataset.element_spec]
    if not kinds:
        raise cli.UserError(
            f"{pattern}: the evaluation batches of task {config.task!r} have no labels for "
            f"what {restored.model.name!r} predicts ({', '.join(evaluated_kinds(restored.model))}"
            f"; batch keys {sorted(dataset.element_spec)}).")
    for kind in evaluated_kinds(restored.model):
        if kind not in kinds:
            print(f"evaluate: no {labels[kind]} labels in the evaluation batches: {kind} is not "
                  "evaluated.")
    if FLAGS.baselines and DEPTH not in kinds:
        raise cli.UserError("--baselines is the constant-median-depth baseline, but no depth "
                            "is evaluated here; drop --baselines.")
    protocol = config_lib.to_dict(config.eval)
    # An explicit --max_examples=0 means all images, whatever the run's config says.
    max_examples = (config.eval.max_examples if FLAGS.max_examples is None
                    else FLAGS.max_examples)
    num_classes = saved_model.num_classes_of(restored.model)
    class_names, _ = restore_lib.segmentation_classes(restored.model, config, FLAGS.dataset)
    class_names = list(class_names or [str(index) for index in range(num_classes or 0)])

    def evaluate(name, kind, predict_fn):
        with pipeline.reading_errors([pattern]):  # a corrupt shard or a record without labels
            if kind == DEPTH:
                metrics = depth_eval.evaluate_predictor(predict_fn, dataset, config.eval,
                                                        max_examples)
            else:
                metrics = seg_eval.evaluate_predictor(predict_fn, dataset, num_classes,
                                                      class_names, max_examples)
        label = "" if kinds == [DEPTH] else f" {kind}"
        print(f"evaluate: {name}{label} done ({metrics['num_images']} images).", flush=True)
        return metrics

    predictors = {DEPTH: depth_predictor, SEGMENTATION: segmentation_predictor}
    rows = {kind: [] for kind in kinds}
    entries = {config.name: {"workdir": workdir, "checkpoint": restored.checkpoint,
                             "step": restored.step}}
    for kind in kinds:
        rows[kind].append((config.name, evaluate(
            config.name, kind, predictors[kind](restored.model, config.data.image_size))))

    if FLAGS.baselines:
        import tensorflow as tf
        with pipeline.reading_errors([config.data.train_pattern]):
            median = depth_eval.constant_baseline_depth(
                config.data.train_pattern, config.eval, FLAGS.baseline_max_examples,
                allow_incomplete=config.data.allow_incomplete,
                tfds_data_dir=config.data.tfds_data_dir or None)
        name = BASELINE_ROW
        constant = 1.0 if median is None else median  # median-scaled: any constant
        rows[DEPTH].append((name, evaluate(name, DEPTH, lambda images: tf.fill(
            tf.concat([tf.shape(images)[:3], [1]], axis=0), tf.constant(constant, tf.float32)))))
        entries[name] = {"median_depth_m": median, "train_pattern": config.data.train_pattern}
        if median is None:
            entries[name]["note"] = ("median-scaled: every constant gives these numbers (each "
                                     "image's ground-truth median); no training depth read")

    for other in FLAGS.compare:
        other_dir = cli.resolve_path(other)
        other_restored = restore(other_dir, FLAGS.checkpoint)
        # The other run's own network input size, this run's protocol and images.
        other_config = other_restored.config
        name = other_config.name
        if name in entries:
            name = f"{name} ({os.path.basename(os.path.normpath(other_dir))})"
        other_kinds = [kind for kind in kinds if kind in evaluated_kinds(other_restored.model)]
        if not other_kinds:
            raise cli.UserError(f"--compare={other}: its network predicts "
                                f"{evaluated_kinds(other_restored.model)}, none of what is "
                                f"evaluated here ({kinds}).")
        if SEGMENTATION in other_kinds and saved_model.num_classes_of(
                other_restored.model) != num_classes:
            raise cli.UserError(f"--compare={other}: its network predicts "
                                f"{saved_model.num_classes_of(other_restored.model)} classes, "
                                f"this run's {num_classes}; compare runs of one dataset.")
        for kind in other_kinds:
            rows[kind].append((name, evaluate(name, kind, predictors[kind](
                other_restored.model, other_config.data.image_size))))
        entries[name] = {"workdir": other_dir, "checkpoint": other_restored.checkpoint,
                         "step": other_restored.step}

    report = {"split": pattern}
    if DEPTH in kinds:
        depth_rows = rows[DEPTH]
        print()
        print(f"Eigen protocol on {pattern}: crop={config.eval.crop}, depth "
              f"({config.eval.min_depth:g}, {config.eval.max_depth:g}) m, median scaling "
              f"{'on' if config.eval.median_scaling else 'off'}, ground truth at "
              f"{'the stored size' if config.eval.native_resolution else 'data.image_size'}")
        print(format_table(depth_rows))
        reading = read_results(depth_rows, config.name, FLAGS.baselines, FLAGS.tie)
        print(f"\nReading ({depth_rows[0][1]['num_images']} images; values within "
              f"{100 * FLAGS.tie:g} % (errors) or {FLAGS.tie:g} (d1-d3) count as tied, --tie):")
        for line in reading:
            print(textwrap.fill(line, width=100, initial_indent="  ", subsequent_indent="    "))
        report.update({"protocol": protocol,
                       "results": {name: {**_json_safe(metrics), **entries[name]}
                                   for name, metrics in depth_rows},
                       "reading": reading})
    if SEGMENTATION in kinds:
        seg_rows = rows[SEGMENTATION]
        dataset_name = FLAGS.dataset or restore_lib.config_dataset(config)
        print()
        print(f"Segmentation on {pattern}: {num_classes} classes"
              f"{f' ({dataset_name})' if dataset_name else ''}, labels "
              f"{common.IGNORE_LABEL} ignored, IoU from the confusion matrix of all images")
        print(format_segmentation_tables(seg_rows, class_names))
        report["segmentation"] = {
            "num_classes": num_classes, "class_names": class_names,
            "ignore_label": common.IGNORE_LABEL,
            "results": {name: {**_json_safe(metrics), **entries[name]}
                        for name, metrics in seg_rows}}
    from tf_depthseg.utils import atomic_write_bytes
    atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"\nwrote {out}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
