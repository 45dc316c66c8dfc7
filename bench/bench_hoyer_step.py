"""Benchmark the REAL Trainer train step of Hoyer et al.'s networks against the references.

Two workloads (issue 14, item 5), each the Trainer's compiled step (losses, gradients,
clipping, the optimizer update) on tiny synthetic drives written at that size:

* seg: the paper network (`configs/hoyer/cityscapes_seg`: ResNet-101 with a dilated last
  stage, ASPP U-Net decoder, segmentation head, 19 classes; SGD momentum + weight decay, the
  encoder group at 0.1x, clipping) at batch 2, 256x512, no crop. Reference: the PyTorch
  reference code's train step on a 2-core AVX-512 machine of this kind, ~3.0 s/step.
* sde: Monodepth2's size (`configs/hoyer/kitti_sde`: ResNet-18 depth net, here with Hoyer et
  al.'s ASPP U-Net decoder; ResNet-18 pose net on frame pairs; Adam) at batch 4, 192x640.
  Reference: Monodepth2's full step (its lighter decoder), ~2.4 s/step.

Modes: "graph" (the defaults: networks in graph mode, the SDE's view-synthesis loss compiled
with its gradient on a CPU), "plain" (no XLA at all; SDE only) and "xla"
(`train.jit_compile=True`: the whole forward and backward pass), each in float32 and
mixed_bfloat16 (bf16 convolutions on CPUs with AVX512_BF16 / AMX), every variant in a fresh
process, the variants interleaved (`--rounds` > 1 repeats the whole cycle). A variant builds
the Trainer, takes warm-up + repeats batches from its input pipeline first (so the timed steps
do not share the cores with tf.data), traces and runs the step (`first call`: graph
optimisation / XLA compilation + one step), runs `--warmup` more steps, then times
`--repeats` steps (median; `--budget` seconds at most). Printed per variant: step seconds,
ratio to the reference, FLOPs per step (`bench_networks.count_flops` on the traced step:
convolutions and matmuls of the forward and backward pass), achieved GFLOP/s and its fraction
of the 3x3 conv peak of the variant's compute dtype (`bench_networks.conv_peak_gflops`,
measured in the same run, before the variants), and the 1-minute load average before and
after the timed steps. The machine
is shared: compare ratios measured in the same run; "x ref @idle" scales the step time by the
conv peak measured now against the idle-machine peak of the issue (446 GFLOP/s), a rough
correction for the load, not a measurement.

`--profile DIR` adds one profiled step per variant (TensorFlow profiler trace in DIR) and
prints the op table by type: seconds and op count (TF ops, and the XLA instructions of
compiled clusters as "xla <instruction>").

On a CPU the "xla" variants of seg take minutes per step (XLA's own convolutions), so a run of
all 10 variants takes far longer than the ~10 minutes of `--modes graph,plain` (6 variants,
idle machine). docs/hoyer_speed.md has the figures.

Example:
    python bench/bench_hoyer_step.py --modes graph,plain
    python bench/bench_hoyer_step.py                       # + the XLA variants
    python bench/bench_hoyer_step.py --tasks seg --modes graph --policies mixed_bfloat16 \
        --profile /tmp/hoyer_profile
"""

from __future__ import annotations

import argparse
import collections
import glob
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

# task -> (config, batch, height, width, reference step seconds, overrides)
WORKLOADS = {
    # No crop, random init (offline), every record labelled: the step at the reference's size.
    "seg": ("hoyer/cityscapes_seg", 2, 256, 512, 3.0,
            ["seg.labeled_count=0", "seg.encoder_weights=", "data.crop_size=none"]),
    "sde": ("hoyer/kitti_sde", 4, 192, 640, 2.4, ["sde.encoder_weights="]),
}
# mode -> (train.jit_compile, the view-synthesis loss compiled with XLA). "graph": the
# defaults (networks in graph mode; the SDE loss compiled on a CPU,
# `view_synthesis.default_jit_compile`); "plain": no XLA at all (the SDE loss in graph mode
# too; the same as "graph" for seg, which has no such loss); "xla": the whole forward and
# backward pass compiled.
MODES = {"graph": (False, None), "plain": (False, False), "xla": (True, None)}
LOSS_TASKS = ("sde",)  # tasks with the view-synthesis loss ("plain" differs from "graph")
POLICIES = ("float32", "mixed_bfloat16")
IDLE_CONV_PEAK = 446.0  # GFLOP/s, issue 14: TF's fp32 3x3 conv peak on this machine, idle
OUT = os.path.join(REPO, "bench", "results", "bench_hoyer_step.json")


def write_records(task: str, root: str) -> dict:
    """Tiny synthetic drives (the tests' writer) at the workload's size: 2 train drives x 2
    frames, 1 val drive; image, neighbours, K, depth, Cityscapes train ids."""
    from test_tasks_suw import write_tiny_records
    _, _, height, width, _, _ = WORKLOADS[task]
    return write_tiny_records(os.path.join(root, task), height=height, width=width, frames=4)


def load_config(task: str, patterns: dict, mode: str, policy: str, workdir: str):
    from tools.train import load_experiment
    name, batch, height, width, _, extra = WORKLOADS[task]
    overrides = [f"data.train_pattern={patterns['train']}",
                 f"data.eval_pattern={patterns['val']}", f"data.image_size=[{height},{width}]",
                 f"data.batch_size={batch}", "data.shuffle_buffer=4",
                 f"train.jit_compile={MODES[mode][0]}", f"train.mixed_precision={policy}"] + extra
    return load_experiment(name, workdir, overrides, smoke=False)


def op_table(profile_dir: str, top: int = 25) -> list:
    """[(op type, seconds, count)] of the newest TensorFlow profiler trace in `profile_dir`,
    largest first: the durations of the TF ops executed on the host and of the XLA
    instructions of compiled clusters ("xla convolution", "xla fusion", ...; ops may overlap
    on the threads, so the sum can exceed the wall time)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    path = sorted(glob.glob(os.path.join(profile_dir, "**", "*.xplane.pb"), recursive=True),
                  key=os.path.getmtime)[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    seconds, counts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            executor = line.name.startswith("tf_Compute")  # one event per TF op "name:Type"
            if not executor and "Eigen" not in line.name:
                continue
            for event in line.events:
                metadata = plane.event_metadata[event.metadata_id]
                if executor:
                    op_type = metadata.display_name  # "" for executor bookkeeping
                elif "::" in metadata.name:
                    continue  # thread-pool and XLA runtime bookkeeping
                else:  # an XLA instruction ("convolution.16") run by the compiled cluster
                    op_type = "xla " + metadata.name.rsplit(".", 1)[0]
                if not op_type:
                    continue
                seconds[op_type] += event.duration_ps * 1e-12
                counts[op_type] += 1
    return [(op_type, value, counts[op_type]) for op_type, value in seconds.most_common(top)]


def run_variant(task: str, mode: str, policy: str, records: str, warmup: int, repeats: int,
                budget: float, profile_dir: str = "") -> dict:
    """One variant in this process: the measurements of the module docstring."""
    import tensorflow as tf

    from bench_networks import count_flops
    from tf_depthseg.losses import view_synthesis
    from tf_depthseg.training import loop, tasks

    loss_jit = MODES[mode][1]
    if loss_jit is not None:  # this process only
        view_synthesis.default_jit_compile = lambda target_shape: loss_jit

    patterns = json.loads(records)
    with tempfile.TemporaryDirectory() as workdir:
        config = load_config(task, patterns, mode, policy, workdir)
        start = time.perf_counter()
        trainer = loop.Trainer(config, tasks.make_task(config), workdir)
        build = time.perf_counter() - start
        # Every batch up front: the timed steps then have the cores to themselves.
        batches = [trainer._distribute(trainer._next_batches())
                   for _ in range(1 + warmup + repeats + bool(profile_dir))]
        step = trainer._train_step
        start = time.perf_counter()
        concrete = step.get_concrete_function(batches[0])
        trace = time.perf_counter() - start
        flops = count_flops(concrete.graph)
        start = time.perf_counter()
        step(batches[0])["grad_norm"].numpy()
        first = time.perf_counter() - start
        for batch in batches[1:1 + warmup]:
            if first > budget:
                break  # the first call already ran the step once after compiling it
            step(batch)["grad_norm"].numpy()
        load_before = os.getloadavg()[0]
        times = []
        for batch in batches[1 + warmup:1 + warmup + repeats]:
            start = time.perf_counter()
            outputs = step(batch)
            outputs["grad_norm"].numpy()
            times.append(time.perf_counter() - start)
            if sum(times) > budget:  # a pathological variant (XLA's CPU convolutions)
                break
        load_after = os.getloadavg()[0]
        if not bool(outputs["applied"]):
            raise RuntimeError(f"{task}/{mode}/{policy}: the step was not applied (non-finite "
                               f"loss {float(outputs['losses']['total'])})")
        row = {"task": task, "mode": mode, "policy": policy, "build_s": build,
               "trace_s": trace, "first_call_s": first, "step_s": float(np.median(times)),
               "step_times_s": times, "flops": flops, "load_before": load_before,
               "load_after": load_after, "loss": float(outputs["losses"]["total"])}
        if profile_dir:
            folder = os.path.join(profile_dir, f"{task}_{mode}_{policy}")
            tf.profiler.experimental.start(folder)
            step(batches[-1])["grad_norm"].numpy()
            tf.profiler.experimental.stop()
            row["op_table"] = op_table(folder)
    return row


def run_child(args, task: str, mode: str, policy: str, records: dict) -> dict:
    """One variant in a fresh process (TensorFlow's one-time costs, the global dtype policy
    and oneDNN's kernel caches would otherwise favour whichever variant runs later)."""
    command = [sys.executable, os.path.abspath(__file__), "--child",
               json.dumps([task, mode, policy, json.dumps(records)]),
               f"--warmup={args.warmup}", f"--repeats={args.repeats}",
               f"--budget={args.budget}"]
    if args.profile:
        command.append(f"--profile={args.profile}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{task}/{mode}/{policy} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def conv_peaks(repeats: int) -> dict:
    """{"float32": GFLOP/s, "bfloat16": GFLOP/s} of bench_networks' 3x3 conv, now."""
    from bench_networks import conv_peak_gflops
    return {dtype: conv_peak_gflops(repeats, dtype) for dtype in ("float32", "bfloat16")}


def compute_dtype(policy: str) -> str:
    return "bfloat16" if policy == "mixed_bfloat16" else "float32"


def describe(row: dict, peaks: dict) -> dict:
    """Derived figures of one measured variant."""
    _, _, _, _, reference, _ = WORKLOADS[row["task"]]
    gflops = row["flops"] / 1e9 / row["step_s"]
    return dict(row, reference_step_s=reference, over_reference=row["step_s"] / reference,
                gflops_per_s=gflops,
                fraction_of_conv_peak=gflops / peaks[compute_dtype(row["policy"])],
                fraction_of_fp32_conv_peak=gflops / peaks["float32"],
                over_reference_idle_estimate=(row["step_s"] * peaks["float32"] / IDLE_CONV_PEAK
                                              / reference))


def print_row(row: dict) -> None:
    print(f"{row['task']:<5}{row['mode']:<7}{row['policy']:<16}{row['step_s']:>8.2f}"
          f"{row['over_reference']:>8.2f}{row['over_reference_idle_estimate']:>10.2f}"
          f"{row['flops'] / 1e9:>9.0f}{row['gflops_per_s']:>9.0f}"
          f"{row['fraction_of_conv_peak']:>8.2f}{row['first_call_s']:>9.0f}"
          f"{row['load_before']:>7.1f}{row['load_after']:>6.1f}", flush=True)
    for op_type, seconds, count in row.get("op_table", ()):
        print(f"      {op_type:<40}{seconds:>8.2f} s{count:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="seg,sde")
    parser.add_argument("--modes", default="graph,plain,xla")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--rounds", type=int, default=1, help="cycles over all variants")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of timed steps per variant: stop timing (and skip the "
                             "warm-up when the first call took longer) once spent")
    parser.add_argument("--profile", default="", help="folder for one profiled step each")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, mode, policy, records = json.loads(args.child)
        print(json.dumps(run_variant(task, mode, policy, records, args.warmup, args.repeats,
                                     args.budget, args.profile)))
        return

    def names(value, allowed):
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown or not chosen:
            parser.error(f"choose from {sorted(allowed)}; got {value!r}")
        return chosen

    task_names = names(args.tasks, WORKLOADS)
    modes, policies = names(args.modes, MODES), names(args.policies, POLICIES)
    import tensorflow as tf
    peaks = conv_peaks(5)
    print(f"3x3 conv peak now: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 "
          f"{peaks['bfloat16']:.0f} GFLOP/s (idle float32: {IDLE_CONV_PEAK:.0f}); load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'task':<5}{'mode':<7}{'policy':<16}{'s/step':>8}{'x ref':>8}{'x ref@idle':>10}"
          f"{'GFLOP':>9}{'GFLOP/s':>9}{'of peak':>8}{'first s':>9}{'load':>7}{'->':>6}")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        records = {task: write_records(task, root) for task in task_names}
        for _ in range(args.rounds):
            for task in task_names:
                for mode in modes:
                    if mode == "plain" and task not in LOSS_TASKS:
                        continue  # the same step as "graph"
                    for policy in policies:
                        row = describe(run_child(args, task, mode, policy, records[task]),
                                       peaks)
                        print_row(row)
                        rows.append(row)
    peaks_after = conv_peaks(5)
    print(f"3x3 conv peak after: float32 {peaks_after['float32']:.0f}, bfloat16 "
          f"{peaks_after['bfloat16']:.0f} GFLOP/s; load {os.getloadavg()[0]:.1f}")
    report = {"tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
              "warmup": args.warmup, "repeats": args.repeats, "conv_peak_gflops_per_s": peaks,
              "conv_peak_after_gflops_per_s": peaks_after,
              "idle_conv_peak_gflops_per_s": IDLE_CONV_PEAK,
              "workloads": {task: dict(zip(("config", "batch", "height", "width",
                                            "reference_step_s", "overrides"), spec))
                            for task, spec in WORKLOADS.items()},
              "results": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    temporary = args.out + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(report, handle, indent=1)
    os.replace(temporary, args.out)  # atomic: never a half-written result file
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
