r"""Trains an experiment config into a workdir; rerunning the same command resumes it.

Writes the resolved config (`<workdir>/config.json`), checkpoints (`checkpoints/`, resumed
automatically), the best model by the validation metric (`best/`), learning curves
(`history.json`) and TensorBoard logs (`logs/`). Relative data paths in the config and in
--set (e.g. `workdir/data/kitti_records/train-*.tfrecord`) are taken from the directory the
command is run from. Without --config, a workdir's own config.json is used (continue a run).

Examples:
  bazel run //tools:train -- --config=suw/synthetic_suw --workdir=workdir/suw_synthetic
  python -m tools.train --config=suw/synthetic_s --workdir=/tmp/s --smoke \
      --set train.steps=50 --set data.batch_size=2
"""

import json
import os

from absl import flags

from tf_depthseg import cli
from tf_depthseg import config as config_lib

cli.define_common_flags()
FLAGS = flags.FLAGS


def resolve_config_spec(spec: str) -> str:
    """A config name ("suw/synthetic_s") stays as it is; a file path is made absolute."""
    if spec.endswith((".py", ".json")):
        return cli.resolve_path(spec)
    return spec


def resolve_data_paths(config: config_lib.ExperimentConfig) -> config_lib.ExperimentConfig:
    """Config paths (`config.path_keys`: data, init checkpoint, a task's own patterns) made
    absolute against the user's directory (works under `bazel run`)."""
    return config_lib.resolve_paths(config, cli.resolve_path)


def load_experiment(config_spec, workdir: str, overrides, smoke: bool):
    """The config to train: --config (+ --smoke) or the workdir's config.json, + --set."""
    if config_spec:
        config = config_lib.load_config(resolve_config_spec(config_spec), smoke=smoke)
    else:
        saved = os.path.join(workdir, config_lib.CONFIG_FILENAME)
        if not os.path.isfile(saved):
            raise cli.UserError(f"--config is required: {workdir} has no "
                                f"{config_lib.CONFIG_FILENAME} to continue from.")
        config = config_lib.load_config(saved)
    config = config_lib.apply_overrides(config, overrides)
    return resolve_data_paths(config)


def main(argv):
    del argv
    if not FLAGS.workdir:
        raise cli.UserError("--workdir is required (where checkpoints and logs go).")
    workdir = cli.resolve_path(FLAGS.workdir)
    config = load_experiment(FLAGS.config, workdir, FLAGS.set, FLAGS.smoke)

    # Imported after flag parsing: TensorFlow start-up is slow and --help should not wait.
    from tf_depthseg.data import pipeline
    from tf_depthseg.training import checkpoints, loop, tasks

    # A corrupt shard or a record without a needed feature: one line naming it.
    patterns = [config_lib.get_key(config, key) for key in config_lib.path_keys(config)
                if key.endswith("_pattern")]
    with pipeline.reading_errors(patterns):
        with cli.removed_on_failure(workdir):  # a failed start leaves no workdir behind
            task = tasks.make_task(config)
            trainer = loop.Trainer(config, task, workdir)
        if trainer.is_chief:
            start = ("resuming from step %d" % trainer.start_step if trainer.start_step
                     else "starting from scratch")
            print(f"train: {config.name} (task {config.task}), {start}, "
                  f"{config.train.steps} steps.\n"
                  f"  config       {os.path.join(workdir, config_lib.CONFIG_FILENAME)}\n"
                  f"  checkpoints  {os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR)}\n"
                  f"  TensorBoard  tensorboard "
                  f"--logdir={os.path.join(workdir, loop.LOGS_SUBDIR)}", flush=True)
        result = trainer.train()
    if not trainer.is_chief:
        return
    losses = ", ".join(f"{k}={v:.4g}" for k, v in result.losses.items())
    print(f"train: finished at step {result.final_step} (started at {result.start_step}).")
    if losses:
        print(f"  last losses  {losses}")
    if result.eval_metrics:
        print("  eval         " + ", ".join(f"{k}={v:.4g}" for k, v in
                                          result.eval_metrics.items()))
    print(f"  checkpoint   {result.checkpoint}")
    if result.best:
        print(f"  best         {result.best['metric']}={result.best['value']:.4g} at step "
              f"{result.best['step']} in {os.path.join(workdir, checkpoints.BEST_SUBDIR)}")
    print(f"  history      {os.path.join(workdir, loop.HISTORY_FILENAME)}")
    # --baselines is the constant-depth baseline: only for networks that predict depth.
    from tf_depthseg import common
    depth = common.OUT_DEPTH in trainer.task.serving_model(config, trainer.models).output
    print(f"  evaluate     {cli.tool_command('evaluate')} --workdir={workdir}"
          f"{' --baselines' if depth else ''}")
    summary = {"final_step": result.final_step, "start_step": result.start_step,
               "losses": result.losses, "eval": result.eval_metrics, "best": result.best,
               "checkpoint": result.checkpoint}
    from tf_depthseg.utils import atomic_write_bytes
    atomic_write_bytes(os.path.join(workdir, loop.RESULT_FILENAME),
                       (json.dumps(summary, indent=2) + "\n").encode())


def run():
    """Console-script entry point."""
    cli.run(main, usage=__doc__)


if __name__ == "__main__":
    run()
