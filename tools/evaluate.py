r"""Evaluates a trained depth run with the KITTI Eigen protocol: table on screen + JSON.

Restores the run's depth network (best checkpoint if the run kept one, else the latest; or
--checkpoint), predicts every image of the evaluation split (the run's data.eval_pattern, or
--split) and prints AbsRel, SqRel, RMSE, RMSElog and delta < 1.25, 1.25^2, 1.25^3, each the
mean over images (protocol from the run's `eval` config: Garg crop, 1e-3..80 m, median scaling
for scale-ambiguous runs; change it with --set eval.median_scaling=true etc.).

--baselines adds the constant-median-depth baseline: the median ground-truth depth of the
run's training records, predicted everywhere. --compare=workdirA,workdirB evaluates other runs
on the same images with the same protocol, side by side. Under the table a reading generated
from the numbers: the best model per metric, each model against the baseline, this run against
each --compare run. Results (and the reading) go to --out (default
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
flags.DEFINE_string("split", None, "Glob of the TFRecords to evaluate on (default: the run's "
                    "data.eval_pattern).")
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
    from tf_depthseg.training.tasks import make_task
    from tf_depthseg.evaluation import depth as depth_eval

    restored = restore(workdir, FLAGS.checkpoint)
    config = config_lib.apply_overrides(restored.config, FLAGS.set)
    pattern = cli.resolve_path(FLAGS.split) if FLAGS.split else config.data.eval_pattern
    if not pattern:
        raise cli.UserError("the run has no data.eval_pattern; pass --split='<glob of records>'.")
    task = make_task(config)
    dataset = task.make_eval_dataset(config, pattern)
    protocol = config_lib.to_dict(config.eval)
    # An explicit --max_examples=0 means all images, whatever the run's config says.
    max_examples = (config.eval.max_examples if FLAGS.max_examples is None
                    else FLAGS.max_examples)

    def evaluate(name, predict_fn):
        with pipeline.reading_errors([pattern]):  # a corrupt shard or a record without depth
            metrics = depth_eval.evaluate_predictor(predict_fn, dataset, config.eval,
                                                    max_examples)
        print(f"evaluate: {name} done ({metrics['num_images']} images).", flush=True)
        return metrics

    rows = []
    models = {common.MODEL_DEPTH: restored.model}
    rows.append((config.name, evaluate(config.name, lambda images: task.predict_depth(
        models, images))))
    entries = {config.name: {"workdir": workdir, "checkpoint": restored.checkpoint,
                             "step": restored.step}}

    if FLAGS.baselines:
        import tensorflow as tf
        with pipeline.reading_errors([config.data.train_pattern]):
            median = depth_eval.median_training_depth(
                config.data.train_pattern, config.eval, FLAGS.baseline_max_examples,
                allow_incomplete=config.data.allow_incomplete)
        name = BASELINE_ROW
        rows.append((name, evaluate(name, lambda images: tf.fill(
            tf.concat([tf.shape(images)[:3], [1]], axis=0), tf.constant(median, tf.float32)))))
        entries[name] = {"median_depth_m": median, "train_pattern": config.data.train_pattern}

    for other in FLAGS.compare:
        other_dir = cli.resolve_path(other)
        other_restored = restore(other_dir, FLAGS.checkpoint)
        # The other run's own network input size, this run's protocol and images.
        other_config = dataclasses.replace(other_restored.config, eval=config.eval)
        other_task = make_task(other_config)
        other_models = {common.MODEL_DEPTH: other_restored.model}
        name = other_config.name
        if name in entries:
            name = f"{name} ({os.path.basename(os.path.normpath(other_dir))})"
        rows.append((name, evaluate(name, lambda images, t=other_task, m=other_models:
                                    t.predict_depth(m, images))))
        entries[name] = {"workdir": other_dir, "checkpoint": other_restored.checkpoint,
                         "step": other_restored.step}

    print()
    print(f"Eigen protocol on {pattern}: crop={config.eval.crop}, depth "
          f"({config.eval.min_depth:g}, {config.eval.max_depth:g}) m, median scaling "
          f"{'on' if config.eval.median_scaling else 'off'}, ground truth at "
          f"{'the stored size' if config.eval.native_resolution else 'data.image_size'}")
    print(format_table(rows))
    reading = read_results(rows, config.name, FLAGS.baselines, FLAGS.tie)
    print(f"\nReading ({rows[0][1]['num_images']} images; values within {100 * FLAGS.tie:g} % "
          f"(errors) or {FLAGS.tie:g} (d1-d3) count as tied, --tie):")
    for line in reading:
        print(textwrap.fill(line, width=100, initial_indent="  ", subsequent_indent="    "))
    report = {"split": pattern, "protocol": protocol,
              "results": {name: {**{k: (v if not isinstance(v, float) or math.isfinite(v)
                                        else None) for k, v in metrics.items()},
                                 **entries[name]} for name, metrics in rows},
              "reading": reading}
    from tf_depthseg.utils import atomic_write_bytes
    atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"\nwrote {out}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
