"""Benchmark the Trainer's compiled train step per SUW variant and execution mode.

For each SUW variant (S; U with ego-motion, ego + object motion, known poses; W; SUW) one
child process writes tiny synthetic records at --size, builds one Trainer per mode (--modes)
on them and times the step (forward, backward, Adam update; batch --batch_size):

* first call: tracing + graph optimisation (+ XLA compilation) + the first execution,
* step: p50 / p90 of --repeats further steps, the modes INTERLEAVED step by step (the machine
  is shared: load hits all modes alike, so the ratios hold even when the times move),
* with --profile, a TensorFlow profiler trace of 3 steps of the first mode, printed as
  self time per step by op type (Conv2DBackpropFilter, DepthwiseConv2dNative, ...),
* GFLOP/s of the graph-mode step (convolutions and matmuls of the traced step, forward and
  backward, counted as in bench/bench_networks.py) and its fraction of this machine's 3x3
  convolution peak (`bench_networks.conv_peak_gflops`, measured first).

Modes (--modes, comma-separated): graph (train.jit_compile=false: the plain tf.function
step), xla (train.jit_compile=true), bf16 / xla_bf16 (train.mixed_precision=mixed_bfloat16,
without / with XLA), keras_bn / keras_bn_bf16 (graph mode with Keras' own unfused
BatchNormalization in the networks, as before issue 18, instead of
`models.batch_norm.FusedBatchNormalization`), autograph (graph mode traced with AutoGraph,
which the Trainer skips: same graph, slower tracing; tf_depthseg/training/loop.py cites it).
GFLOP/s and the fraction of the peak are printed for every mode (the FLOP count of the
graph-mode step). The load average is printed with every variant.

Example:
    python bench/bench_train_step.py                                  # all variants, 128x416
    python bench/bench_train_step.py --variants=S,SUW --size=64x208 --repeats=6
    python bench/bench_train_step.py --variants=S --modes=graph,bf16,xla_bf16
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "bench"))

# variant -> (config, overrides): the encoder-decoder with each S/U/W term of SUW-Learn.
VARIANTS = {
    "S": ("suw/synthetic_s", []),
    "U_ego": ("suw/synthetic_u", []),
    "U_ego_object": ("suw/synthetic_u", ["suw.unsupervised=ego_object", "suw.pose_net=true"]),
    "U_known_pose": ("suw/synthetic_u", ["suw.unsupervised=known_pose",
                                         "suw.pose_net=false"]),
    "W": ("suw/synthetic_w", []),
    "SUW": ("suw/synthetic_suw", []),
}
MODES = {
    "graph": ["train.jit_compile=false"],
    "xla": ["train.jit_compile=true"],
    "bf16": ["train.jit_compile=false", "train.mixed_precision=mixed_bfloat16"],
    "xla_bf16": ["train.jit_compile=true", "train.mixed_precision=mixed_bfloat16"],
    "autograph": ["train.jit_compile=false"],
    "keras_bn": ["train.jit_compile=false"],
    "keras_bn_bf16": ["train.jit_compile=false", "train.mixed_precision=mixed_bfloat16"],
}


def load_text() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def child(args) -> dict:
    """Runs in a fresh process: one variant, every mode, interleaved."""
    import contextlib
    from unittest import mock

    import keras
    import tensorflow as tf

    from bench_networks import count_flops
    from test_tasks_suw import write_tiny_records
    from tf_depthseg.models import batch_norm
    from tf_depthseg.training import loop, tasks
    from tools.train import load_experiment

    height, width = (int(v) for v in args.size.split("x"))
    config_name, variant_overrides = VARIANTS[args.child]
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        patterns = write_tiny_records(os.path.join(tmp, "rec"), height=height, width=width)
        base = [f"data.train_pattern={patterns['train']}",
                f"data.eval_pattern={patterns['val']}", f"data.image_size=[{height},{width}]",
                f"data.batch_size={args.batch_size}"] + variant_overrides + args.set
        steps, batches, first, result = {}, {}, {}, {"variant": args.child, "modes": {}}
        for mode in modes:
            workdir = os.path.join(tmp, mode)
            config = load_experiment(config_name, workdir, base + MODES[mode], smoke=True)
            with contextlib.ExitStack() as stack:
                if mode.startswith("keras_bn"):  # the networks are built in the Trainer
                    stack.enter_context(mock.patch.object(
                        batch_norm, "FusedBatchNormalization", keras.layers.BatchNormalization))
                trainer = loop.Trainer(config, tasks.make_task(config), workdir)
            step_fn = (tf.function(trainer._distributed_train_step, autograph=True)
                       if mode == "autograph" else trainer._train_step)
            batches[mode] = lambda t=trainer: t._distribute(t._next_batches())
            batch = batches[mode]()
            start = time.perf_counter()
            step_fn(batch)["grad_norm"].numpy()
            first[mode] = time.perf_counter() - start
            steps[mode] = step_fn
            if mode == modes[0] and not mode.startswith("xla"):
                graph = step_fn.get_concrete_function(batch).graph
                result["gflop_per_step"] = count_flops(graph) / 1e9
            # Keras keeps the global dtype policy the Trainer set; the next mode sets its own.
        times = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                batch = batches[mode]()
                start = time.perf_counter()
                steps[mode](batch)["grad_norm"].numpy()
                times[mode].append(time.perf_counter() - start)
        for mode in modes:
            result["modes"][mode] = {
                "first_call_s": first[mode],
                "step_p50_s": float(np.percentile(times[mode], 50)),
                "step_p90_s": float(np.percentile(times[mode], 90))}
        if args.profile:
            result["profile"] = profile_op_types(steps[modes[0]], batches[modes[0]],
                                                 os.path.join(tmp, "profile"))
    result["load"] = os.getloadavg()
    return result


def profile_op_types(step_fn, next_batch, logdir: str, steps: int = 3) -> list:
    """TensorFlow profiler trace of `steps` steps -> [(op type, self seconds per step,
    occurrences per step)], most expensive first (the profiler's framework op stats)."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    batches = [next_batch() for _ in range(steps)]
    tf.profiler.experimental.start(logdir)
    for batch in batches:
        step_fn(batch)["grad_norm"].numpy()
    tf.profiler.experimental.stop()
    paths = [os.path.join(folder, name) for folder, _, names in os.walk(logdir)
             for name in names if name.endswith(".xplane.pb")]
    data, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats")
    if not ok:
        raise RuntimeError(f"profiler conversion failed: {data[:200]!r}")
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [column["id"] for column in table["cols"]]
    totals = {}
    for row in table["rows"]:
        values = dict(zip(columns, (cell["v"] if cell else None for cell in row["c"])))
        if values.get("host_or_device") not in ("Host", None):
            continue
        kind = values["type"]
        seconds, count = totals.get(kind, (0.0, 0))
        totals[kind] = (seconds + values["total_self_time"] * 1e-6,
                        count + int(values["occurrences"]))
    return sorted(((kind, seconds / steps, count / steps)
                   for kind, (seconds, count) in totals.items()), key=lambda r: -r[1])


def run_child(args, variant: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", variant,
               f"--size={args.size}", f"--batch_size={args.batch_size}",
               f"--repeats={args.repeats}", f"--modes={args.modes}"]
    command += ["--profile"] if args.profile else []
    command += [f"--set={override}" for override in args.set]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:  # e.g. an op XLA cannot compile: reported, the other variants run
        lines = [line for line in done.stderr.splitlines() if "Error" in line or
                 "unsupported" in line]
        return {"variant": variant, "error": (lines or ["exit code %d" % done.returncode])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--modes", default="graph,xla", help=f"of {sorted(MODES)}")
    parser.add_argument("--size", default="128x416", help="HxW the model trains at")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="config overrides")
    parser.add_argument("--child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--no_peak", action="store_true", help="skip the conv peak")
    parser.add_argument("--profile", action="store_true",
                        help="profile 3 steps of the first mode: op self-time by op type")
    parser.add_argument("--profile_rows", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                      "bench_train_step.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    variants = [v for v in args.variants.split(",") if v]
    modes = args.modes.split(",")
    unknown = sorted(set(variants) - set(VARIANTS)) + sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown variants/modes {unknown}; variants {list(VARIANTS)}, modes "
                     f"{list(MODES)}")
    peak = None
    if not args.no_peak:
        from bench_networks import conv_peak_gflops
        peak = conv_peak_gflops(5)
    print(f"train step, batch {args.batch_size}, {args.size}, p50 of {args.repeats} steps "
          f"per mode, modes interleaved; 3x3 conv peak "
          f"{'n/a' if peak is None else f'{peak:.0f} GFLOP/s'}; load {load_text()}", flush=True)
    width = max(len(m) for m in modes) + 8  # every column fits its mode's name
    header = f"{'variant':<14}{'GFLOP':>7}"
    for mode in modes:
        header += f"{mode + ' 1st s':>{width}}{mode + ' ms':>{width}}"
    header += "".join(f"{m + '/' + modes[0]:>{width + len(modes[0])}}" for m in modes[1:])
    header += "".join(f"{m + ' GF/s':>{width}}{'of peak':>8}" for m in modes) + "  load"
    print(header, flush=True)
    results = []
    for variant in variants:
        row = run_child(args, variant)
        results.append(row)
        if "error" in row:
            print(f"{variant:<14}failed: {row['error'][:300]}", flush=True)
            continue
        line = f"{variant:<14}{row.get('gflop_per_step', float('nan')):>7.1f}"
        for mode in modes:
            m = row["modes"][mode]
            line += f"{m['first_call_s']:>{width}.1f}{1e3 * m['step_p50_s']:>{width}.0f}"
        base = row["modes"][modes[0]]["step_p50_s"]
        line += "".join(f"{row['modes'][m]['step_p50_s'] / base:>{width + len(modes[0])}.2f}"
                        for m in modes[1:])
        for mode in modes:  # the same FLOPs per step in every mode
            rate = row.get("gflop_per_step", float("nan")) / row["modes"][mode]["step_p50_s"]
            row["modes"][mode]["gflops_per_s"] = rate
            line += f"{rate:>{width}.0f}" + (f"{rate / peak:>8.2f}" if peak else f"{'':>8}")
        print(line + "  " + " ".join(f"{v:.2f}" for v in row["load"]), flush=True)
        if "profile" in row:
            total = sum(seconds for _, seconds, _ in row["profile"])
            print(f"  profile of {variant} ({modes[0]}): self time per step by op type "
                  f"(total {1e3 * total:.0f} ms)")
            for kind, seconds, count in row["profile"][:args.profile_rows]:
                print(f"    {kind:<34}{1e3 * seconds:>9.1f} ms{100 * seconds / total:>7.1f} %"
                      f"{count:>8.0f} ops")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"size": args.size, "batch_size": args.batch_size, "repeats": args.repeats,
                   "modes": modes, "set": args.set, "conv_peak_gflops_per_s": peak,
                   "results": results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
