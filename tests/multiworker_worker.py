r"""One process of tests/test_training_multiworker.py: trains the toy task of test_training_toy.py.

Run with TF_CONFIG and --distribution=multi_worker it is one worker of a cluster; with
--distribution=mirrored --logical_cpus=2 it is the single-process reference with two replicas.
Both see the same data in the same order (`SameOrderToyTask`). Errors end like a tool's: one
`error: ...` line and exit code 2 (`cli.run`).

It writes what the test compares to --out (outside the workdir: a non-chief worker must leave
nothing there): result.json (start/final step, worker index, chief or not, replicas, the
per-step total losses this process saw), weights.npz and initial_weights.npz (the weights of
every model, roles in sorted order, after and before training).

  TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
              "task": {"type": "worker", "index": 0}}' \
  python tests/multiworker_worker.py --distribution=multi_worker --workdir=/tmp/w --out=/tmp/o0
"""

from __future__ import annotations

import json
import os
import sys
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
for _path in (REPO, TESTS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from absl import flags  # noqa: E402

from tf_depthseg import cli  # noqa: E402  (before TensorFlow: quiet start-up)

flags.DEFINE_string("workdir", None, "The run's folder (shared by all workers).")
flags.DEFINE_string("out", None, "Where this process writes result.json and weights.npz.")
flags.DEFINE_string("distribution", "multi_worker", "train.distribution.")
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many devices first.")
flags.DEFINE_integer("steps", 12, "train.steps.")
flags.DEFINE_integer("checkpoint_every", 4, "train.checkpoint_every.")
flags.DEFINE_float("step_sleep", 0.0, "Seconds to sleep after each step (time for a kill).")
flags.DEFINE_integer("seed", 0, "Offset of the init and data seeds (tests' learning_seed).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from tf_depthseg.training import distribute
    if FLAGS.logical_cpus:  # before any TensorFlow op
        distribute.configure_logical_cpus(FLAGS.logical_cpus)
    import numpy as np
    import tensorflow as tf

    import test_training_toy as toy
    from tf_depthseg.training import loop

    class SameOrderToyTask(toy.ToyTask):
        """The toy with one data order for any number of workers: every worker builds the
        per-replica batches of the whole stream and keeps every num_workers-th one, so worker
        i gets what replica i of one two-replica process gets. (The toy itself shards examples
        per worker, which changes which examples meet in a global batch.)"""

        def make_train_dataset(self, config, stream, input_context):
            whole = super().make_train_dataset(config, stream, tf.distribute.InputContext(
                num_replicas_in_sync=input_context.num_replicas_in_sync))
            return whole.shard(input_context.num_input_pipelines,
                               input_context.input_pipeline_id)

    config = toy.toy_config(steps=FLAGS.steps, checkpoint_every=FLAGS.checkpoint_every,
                            distribution=FLAGS.distribution, eval_every=0, best_metric="",
                            log_every=1, image_summaries_every=0, seed=FLAGS.seed)
    losses = []

    def record(trainer, step, values):
        losses.append([step, values["total"]])
        if FLAGS.step_sleep:
            time.sleep(FLAGS.step_sleep)

    # The "extra" stream and the EMA teacher put a second iterator and an in-step update
    # under the strategy too; no RNG noise (replicas draw from different RNG streams).
    task = SameOrderToyTask(use_rng=False, seed=7 + FLAGS.seed, extra_batch=2, ema_decay=0.5)
    trainer = loop.Trainer(config, task, FLAGS.workdir, callbacks=[record])

    def save_weights(name):
        np.savez(os.path.join(FLAGS.out, name), *[
            w for role in sorted(trainer.models) for w in toy.model_weights(trainer, role)])

    os.makedirs(FLAGS.out, exist_ok=True)
    save_weights("initial_weights.npz")
    result = trainer.train()
    save_weights("weights.npz")
    with open(os.path.join(FLAGS.out, "result.json"), "w") as f:
        json.dump({"start_step": result.start_step, "final_step": result.final_step,
                   "worker_index": trainer.worker_index, "is_chief": trainer.is_chief,
                   "replicas": trainer.num_replicas, "losses": losses}, f)


if __name__ == "__main__":
    cli.run(main, usage=__doc__)
