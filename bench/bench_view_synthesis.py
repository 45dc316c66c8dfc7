"""Forward + backward time of the full multi-scale view-synthesis loss, graph mode vs XLA.

Not a test. Monodepth2's training setting: 192x640 images, batch 4, three frames (target + 2
sources), four disparity scales; disparities and pose vectors are random tf.Variables so the
gradient runs through disp_to_depth, the warp, the bilinear sampler, SSIM, the per-pixel
minimum with auto-masking and the smoothness term. Both variants run in the same process;
compilation/tracing is excluded (warm-up steps), the reported time is the mean over timed steps.

Example:
  .venv/bin/python bench/bench_view_synthesis.py --steps=5
  (writes bench/results/bench_view_synthesis.json)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from tf_depthseg import common
from tf_depthseg.geometry import intrinsics as intrinsics_lib  # noqa: E402
from tf_depthseg.geometry import transforms  # noqa: E402
from tf_depthseg.losses import view_synthesis  # noqa: E402
from tf_depthseg import utils


def make_step(args, jit_compile: bool):
    """Builds inputs, variables and a compiled train-like step returning (loss, grad norm)."""
    rng = np.random.default_rng(0)
    height, width, batch = args.height, args.width, args.batch
    target = tf.constant(rng.uniform(size=(batch, height, width, 3)), tf.float32)
    sources = tf.constant(rng.uniform(size=(batch, args.num_sources, height, width, 3)),
                          tf.float32)
    # KITTI-like normalised intrinsics (Monodepth2's) at the benchmark size.
    k = intrinsics_lib.make_intrinsics(0.58 * width, 1.92 * height, 0.5 * width,
                                       0.5 * height, dtype=np.float32)
    disparities = [tf.Variable(rng.uniform(0.01, 0.3, size=(batch, height // 2 ** s,
                                                            width // 2 ** s, 1)),
                               dtype=tf.float32, name=f"disparity_s{s}")
                   for s in range(args.num_scales)]
    pose = tf.Variable(rng.normal(scale=0.01, size=(batch, args.num_sources, 6)),
                       dtype=tf.float32, name="pose")
    variables = disparities + [pose]

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            terms = view_synthesis.multiscale_view_synthesis_loss(
                target, sources, disparities, k, transforms.pose_vec_to_matrix(pose))
        grads = tape.gradient(terms[common.LOSS_TOTAL], variables)
        return terms[common.LOSS_TOTAL], tf.linalg.global_norm(grads)

    return step


def time_step(step, warmup: int, steps: int):
    start = time.perf_counter()
    for _ in range(warmup):
        loss, grad_norm = step()
    loss.numpy()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss, grad_norm = step()
    loss.numpy()
    per_step = (time.perf_counter() - start) / steps
    return {"ms_per_iter": 1000.0 * per_step, "warmup_s": first, "loss": float(loss),
            "grad_norm": float(grad_norm)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--num_sources", type=int, default=2)
    parser.add_argument("--num_scales", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=os.path.join("bench", "results",
                                                      "bench_view_synthesis.json"))
    args = parser.parse_args()

    results = {"config": vars(args), "device": "GPU" if tf.config.list_physical_devices("GPU")
               else "CPU"}
    for name, jit in (("graph", False), ("xla", True)):
        results[name] = time_step(make_step(args, jit), args.warmup, args.steps)
        print(f"{name:5s}: {results[name]['ms_per_iter']:8.1f} ms/iter forward+backward "
              f"(warm-up incl. compile {results[name]['warmup_s']:.1f} s, "
              f"loss {results[name]['loss']:.4f})")
    ratio = results["graph"]["ms_per_iter"] / results["xla"]["ms_per_iter"]
    results["xla_speedup"] = ratio
    print(f"XLA speed-up over graph mode: {ratio:.2f}x "
          f"({args.batch}x{args.height}x{args.width}, {args.num_sources + 1} frames, "
          f"{args.num_scales} scales, {results['device']})")
    utils.atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
