"""Per-term gradient norms of the SUW losses on the shared depth network (not a test).

Answers "which term drives the depth net?" for one SUW config: for a few training batches it
computes, separately, the gradient of the weighted S, U (photometric and smoothness) and W terms
with respect to the depth network's variables (the encoder is shared with the pose net) and
reports their global norms, the norm of the total's gradient (what the training log calls
`grad_norm`, over every trainable variable, pose net included) and the cosine between the S and
the U / W directions. It does this at initialisation and again after `--steps` training steps
of the same config (the real Trainer), so the numbers describe the start and the middle of a
demo-length run.

Example (the `make demo` data and sizes; about 3 minutes on 2 cores). The table in
docs/suw_study.md ("Per-term gradient norms") has every term at weight 1; the configs now weigh
W by 0.1, so that table needs `--set suw.weak_weight=1`:
  .venv/bin/python bench/bench_suw_gradients.py --config=suw/synthetic_suw \
      --data=workdir/data/kitti_records --steps=100 --set data.image_size=[64,208] \
      --set suw.weak_weight=1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_depthseg import common  # noqa: E402
from tf_depthseg import config as config_lib  # noqa: E402
from tf_depthseg.training import loop  # noqa: E402
from tf_depthseg.training.tasks import make_task  # noqa: E402

TERMS = (common.LOSS_SUPERVISED, common.LOSS_PHOTOMETRIC, common.LOSS_SMOOTHNESS,
         common.LOSS_WEAK)


def _norm(grads):
    grads = [g for g in grads if g is not None]
    return float(tf.linalg.global_norm(grads)) if grads else 0.0


def _flat(grads, variables):
    return tf.concat([tf.reshape(g if g is not None else tf.zeros_like(v), [-1])
                      for g, v in zip(grads, variables)], 0)


def measure(trainer, num_batches: int) -> dict:
    """Mean over `num_batches` training batches of the per-term gradient norms."""
    task, models = trainer.task, trainer.models
    depth_vars = models[common.MODEL_DEPTH].trainable_variables
    all_vars = trainer._variables
    rows = []
    for _ in range(num_batches):
        batches = trainer._next_batches()[0]  # {stream: batch} of the first local replica
        with tf.GradientTape(persistent=True) as tape:
            losses = task.compute_losses(trainer.config, models, batches, training=True,
                                         global_batch_sizes=trainer.global_batch_sizes,
                                         rng=trainer.rng)
        row = {"loss/" + k: float(v) for k, v in losses.items()}
        total_grads = tape.gradient(losses[common.LOSS_TOTAL], all_vars)
        row["grad_norm_total_all_variables"] = _norm(total_grads)
        flats = {}
        for term in TERMS + (common.LOSS_TOTAL,):
            if term not in losses:
                continue
            grads = tape.gradient(losses[term], depth_vars)
            row[f"depth_net_grad/{term}"] = _norm(grads)
            flats[term] = _flat(grads, depth_vars)
        for term in (common.LOSS_PHOTOMETRIC, common.LOSS_WEAK):
            if term in flats and common.LOSS_SUPERVISED in flats:
                a, b = flats[common.LOSS_SUPERVISED], flats[term]
                row[f"cosine/{common.LOSS_SUPERVISED}_vs_{term}"] = float(
                    tf.reduce_sum(a * b) / (tf.norm(a) * tf.norm(b) + 1e-30))
        # Where the total's gradient lives: the largest single variables.
        sizes = sorted(((float(tf.norm(g)), v.path) for g, v in zip(total_grads, all_vars)
                        if g is not None), reverse=True)[:5]
        row["largest_variables"] = [[p, round(n, 4)] for n, p in sizes]
        del tape
        rows.append(row)
    keys = [k for k in rows[0] if k != "largest_variables"]
    result = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    result["largest_variables_first_batch"] = rows[0]["largest_variables"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="suw/synthetic_suw")
    parser.add_argument("--data", default="workdir/data/kitti_records",
                        help="folder with train-*.tfrecord and val-*.tfrecord")
    parser.add_argument("--steps", type=int, default=100, help="training steps between the "
                        "two measurements")
    parser.add_argument("--batches", type=int, default=4, help="batches averaged per point")
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--out", default="", help="write the JSON here")
    args = parser.parse_args(argv)
    overrides = [f"data.train_pattern={args.data}/train-*.tfrecord",
                 f"data.eval_pattern={args.data}/val-*.tfrecord", "train.eval_every=0",
                 "train.best_metric=", "train.image_summaries_every=0",
                 f"train.steps={args.steps}", "train.checkpoint_every=0"] + args.set
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = loop.Trainer(config, make_task(config), workdir)
        points = {"step_0": measure(trainer, args.batches)}
        if args.steps:
            trainer.train()
            points[f"step_{args.steps}"] = measure(trainer, args.batches)
    report = {"config": args.config, "overrides": args.set, "points": points,
              "loss_weights": {"supervised": config.suw.supervised_weight,
                               "unsupervised": config.suw.unsupervised_weight,
                               "weak": config.suw.weak_weight}}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
