r"""Chooses which unlabelled images to annotate (Hoyer et al. 2021 data selection).

Grows a labelled set in steps (--steps, e.g. 25,50,100) out of the records of --input with the
SDE teacher (--sde): the first step by iterative farthest point on the teacher's pooled
features from a seeded first image (--seed); every later step after training a depth student
from scratch on the images chosen so far, biasing the farthest-point choice towards images
where the student disagrees with the teacher. The config (--config, --set) holds the rest:
the student's network and schedule, the difficulty, the feature pooling, the bias weight.

Writes into --output_dir, each file as soon as its step is done: selected_<n>.txt (the source
ids, what --set seg.labeled_ids_file reads; train with --set seg.labeled_count=0),
contact_<n>.png (the chosen images with rank, score and difficulty), selection.json (ids,
scores, order, config), the students' checkpoints (students/). Rerunning the same command
after a kill continues where it stopped; more steps continue a finished schedule.

Examples:
  bazel run //tools:select_annotations -- --config=hoyer/synthetic_camvid_selection \
      --output_dir=workdir/selection_camvid
  python -m tools.select_annotations --config=hoyer/camvid_selection \
      --input='data/camvid_pseudo/train-*.tfrecord' --sde=runs/cityscapes_sde \
      --steps=25,50,100 --seed=42 --output_dir=runs/camvid_selection
"""

import os

from absl import flags

from tf_depthseg import cli
from tf_depthseg import config as config_lib
from tf_depthseg import errors

flags.DEFINE_string("config", None, "Selection config: a name like "
                    "'hoyer/synthetic_camvid_selection' (configs/hoyer/*_selection.py) or a "
                    "path to one.")
flags.DEFINE_multi_string("set", [], "Override a config value, e.g. --set "
                          "selection.bias_weight=5 --set selection.student_steps=200. "
                          "Repeatable.")
flags.DEFINE_bool("smoke", False, "Use the config's tiny smoke variant (seconds, CPU).")
flags.DEFINE_string("output_dir", None, "Folder for the selection (created; rerun with the "
                    "same folder to continue).")
flags.DEFINE_string("input", None, "Glob of the unlabelled records to choose from (sets "
                    "data.train_pattern), e.g. 'workdir/data/camvid_records/train-*.tfrecord'.")
flags.DEFINE_string("sde", None, "The SDE teacher (sets selection.sde_from): a tools/train "
                    "task=sde workdir, a checkpoint prefix, or its tools/export folder.")
flags.DEFINE_list("steps", [], "Labelled-set sizes after each step, increasing (sets "
                  "selection.steps), e.g. 25,50,100.")
flags.DEFINE_integer("seed", None, "Seed of the first image (sets selection.seed).")
FLAGS = flags.FLAGS


def parse_steps(values) -> list:
    """--steps as increasing positive ints (UserError naming the flag otherwise)."""
    try:
        steps = [int(value) for value in values]
    except ValueError:
        raise cli.UserError(f"--steps={','.join(values)}: give whole numbers, e.g. "
                            "--steps=25,50,100.") from None
    if any(step < 1 for step in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
        raise cli.UserError(f"--steps={','.join(values)}: the labelled-set sizes must be "
                            "positive and increasing, e.g. --steps=25,50,100.")
    return steps


def load_selection_config():
    """--config (+ --smoke) with --set, then the flags' values, paths made absolute."""
    spec = FLAGS.config
    if spec.endswith(".py"):
        spec = cli.resolve_path(spec)
    config = config_lib.load_config(spec, smoke=FLAGS.smoke)
    if config.task != "selection":
        raise cli.UserError(f"--config={FLAGS.config} is a task={config.task!r} config; pass a "
                            "data-selection config, e.g. hoyer/synthetic_camvid_selection.")
    overrides = list(FLAGS.set)
    if FLAGS.input:
        overrides.append(f"data.train_pattern={FLAGS.input}")
    if FLAGS.sde:
        overrides.append(f"selection.sde_from={FLAGS.sde}")
    if FLAGS.steps:
        overrides.append(f"selection.steps={parse_steps(FLAGS.steps)}")
    if FLAGS.seed is not None:
        overrides.append(f"selection.seed={FLAGS.seed}")
    config = config_lib.apply_overrides(config, overrides)
    return config_lib.resolve_paths(config, cli.resolve_path)


def main(argv):
    del argv
    missing = [f"--{name} is required" for name in ("config", "output_dir")
               if not getattr(FLAGS, name)]
    if missing:
        raise cli.UserError("; ".join(missing) + " (see --help).")
    if FLAGS.seed is not None and FLAGS.seed < 0:
        raise cli.UserError(f"--seed={FLAGS.seed}: give a seed >= 0.")
    output_dir = cli.resolve_path(FLAGS.output_dir)
    config = load_selection_config()
    # Imported after the flags are fine: TensorFlow start-up is slow.
    from tf_depthseg.selection import run as selection
    sde_key = "--sde" if FLAGS.sde else "selection.sde_from"
    steps = list(config.selection.steps)
    print(f"select_annotations: {config.name}, steps {steps} of {config.data.train_pattern}, "
          f"teacher {config.selection.sde_from}, into {output_dir}", flush=True)

    def report(index, entry):
        size = entry["size"]
        print(f"  step {index + 1}/{len(steps)}: {size} images "
              f"({entry['new']} new): {os.path.join(output_dir, selection.ids_filename(size))}, "
              f"{selection.sheet_filename(size)}", flush=True)

    try:
        result = selection.run_selection(config, output_dir, sde_key=sde_key, on_step=report)
    except ValueError as error:  # a library ValueError from bad input is a UserError already
        if isinstance(error, errors.UserError):
            raise
        raise cli.UserError(str(error)) from error
    if result.resumed_after:
        print(f"  continued after step {result.resumed_after} (found done in "
              f"{os.path.join(output_dir, selection.SELECTION_FILENAME)})")
    for size, seconds in result.seconds.items():
        print(f"  step to {size} images: {seconds:.1f} s")
    last = os.path.join(output_dir, selection.ids_filename(steps[-1]))
    print(f"selection: {os.path.join(output_dir, selection.SELECTION_FILENAME)}\n"
          f"train on the chosen images: --set seg.labeled_count=0 "
          f"--set seg.labeled_ids_file={last}")


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
