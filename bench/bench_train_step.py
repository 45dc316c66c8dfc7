"""Benchmark the Trainer's compiled step: trace time, first call, steady-state step time.

The first step of a run pays for tracing the whole step (task losses, gradients, optimizer
update) into a graph and for Grappler optimising it; this benchmark separates the two and
compares tracing with and without AutoGraph (the Trainer traces without it, see
`tf_depthseg/training/loop.py`) on the same tiny synthetic records, each in a fresh process:

* trace: `get_concrete_function` of the step (Python builds the graph),
* first call: graph optimisation + the first execution,
* step: median of --repeats further steps (batch --batch_size),
* ops: operations in the traced graph (equal with and without AutoGraph = same graph).

Example:
    python bench/bench_train_step.py --config=suw/synthetic_su --size=32x96
    python bench/bench_train_step.py --config=suw/synthetic_suw --size=64x208 \
        --set=suw.unsupervised=ego_object
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

from test_tasks_suw import write_tiny_records  # noqa: E402
from tf_depthseg.training import loop, tasks  # noqa: E402
from tools.train import load_experiment  # noqa: E402


def measure(config, workdir, autograph: bool, repeats: int) -> dict:
    trainer = loop.Trainer(config, tasks.make_task(config), workdir)
    step_fn = tf.function(trainer._distributed_train_step, autograph=autograph)
    batch = trainer._distribute(trainer._next_batches())
    start = time.perf_counter()
    concrete = step_fn.get_concrete_function(batch)
    trace = time.perf_counter() - start
    start = time.perf_counter()
    step_fn(batch)["grad_norm"].numpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        batch = trainer._distribute(trainer._next_batches())
        start = time.perf_counter()
        step_fn(batch)["grad_norm"].numpy()
        times.append(time.perf_counter() - start)
    return {"trace_s": trace, "first_call_s": first, "step_s": float(np.median(times)),
            "ops": len(concrete.graph.get_operations())}


def run_child(args, autograph: bool) -> dict:
    """One mode in a fresh process: TensorFlow's and Keras' one-time costs (and AutoGraph's
    conversion cache) would otherwise favour whichever mode runs second."""
    command = [sys.executable, os.path.abspath(__file__), "--child", "on" if autograph else "off",
               f"--config={args.config}", f"--size={args.size}",
               f"--batch_size={args.batch_size}", f"--repeats={args.repeats}"]
    command += [f"--set={override}" for override in args.set]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="suw/synthetic_su")
    parser.add_argument("--size", default="32x96", help="HxW the model trains at")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "bench_train_step.json"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            patterns = write_tiny_records(os.path.join(tmp, "rec"), height=height, width=width)
            overrides = [f"data.train_pattern={patterns['train']}",
                         f"data.eval_pattern={patterns['val']}",
                         f"data.image_size=[{height},{width}]",
                         f"data.batch_size={args.batch_size}"] + args.set
            workdir = os.path.join(tmp, "work")
            config = load_experiment(args.config, workdir, overrides, smoke=True)
            print(json.dumps(measure(config, workdir, args.child == "on", args.repeats)))
        return
    results = {}
    for key, autograph in (("no_autograph (Trainer)", False), ("autograph", True)):
        results[key] = row = run_child(args, autograph)
        print(f"{key:24s} trace {row['trace_s']:6.1f} s  first call "
              f"{row['first_call_s']:5.1f} s  step {1000 * row['step_s']:7.1f} ms  "
              f"ops {row['ops']}", flush=True)
    plain, auto = results["no_autograph (Trainer)"], results["autograph"]
    print(f"trace time ratio autograph / no autograph: {auto['trace_s'] / plain['trace_s']:.2f}"
          f"; same graph: {auto['ops'] == plain['ops']}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"config": args.config, "size": [height, width], "set": args.set,
                   "batch_size": args.batch_size, "results": results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
