"""Synthetic street generator throughput (frames/s) on one CPU core.

Not a test. Generates drives with `synthetic.generate_drive` at 128x416 (the target: >= 20
frames/s on one core) and, for information, at 192x640 and 375x1242. The process is pinned to
one core and numpy's thread pools are limited to one thread before numpy is imported.

Reports frames/s from the process CPU time (what one core delivers, robust to other jobs on a
shared machine) and from wall time (includes waiting when the machine is busy), and the share
of time spent laying out the scene vs rendering frames.

Example:
  .venv/bin/python bench/bench_synthetic.py --frames=30 --drives=2
  (writes bench/results/bench_synthetic.json)
"""

from __future__ import annotations

import os

# One core: limit BLAS/OpenMP pools before numpy loads, then pin the process.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_depthseg import synthetic  # noqa: E402

SIZES = ((128, 416), (192, 640), (375, 1242))
TARGET_FPS = 20.0


def measure(height: int, width: int, frames: int, drives: int) -> dict:
    """Times layout and rendering of `drives` drives of `frames` frames at one size."""
    config = synthetic.SceneConfig(height=height, width=width, frames_per_drive=frames)
    # Warm-up (imports, first-call allocations) outside the timing.
    synthetic.generate_drive(synthetic.SceneConfig(height=height, width=width,
                                                   frames_per_drive=1), seed=10_000)
    layout_cpu = render_cpu = 0.0
    wall_start = time.perf_counter()
    for seed in range(drives):
        start = time.process_time()
        scene = synthetic.build_scene(config, seed)
        renderer = synthetic.Renderer(scene)
        layout_cpu += time.process_time() - start
        start = time.process_time()
        for t in range(frames):
            synthetic.render_frame(scene, t, renderer)
        render_cpu += time.process_time() - start
    wall = time.perf_counter() - wall_start
    total = frames * drives
    return {
        "height": height, "width": width, "frames": total,
        "fps_cpu": total / (layout_cpu + render_cpu),
        "fps_wall": total / wall,
        "layout_share": layout_cpu / (layout_cpu + render_cpu),
        "render_ms_per_frame_cpu": 1000.0 * render_cpu / total,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per drive")
    parser.add_argument("--drives", type=int, default=2, help="drives per size")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: no pin)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "bench_synthetic.json"))
    args = parser.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    results = []
    for height, width in SIZES:
        # Large sizes get fewer frames: they are for information only.
        scale = max(1, (height * width) // (128 * 416))
        frames = max(2, args.frames // scale)
        row = measure(height, width, frames, args.drives)
        results.append(row)
        print(f"{height:4d}x{width:<5d} {row['fps_cpu']:6.1f} frames/s (CPU time), "
              f"{row['fps_wall']:6.1f} frames/s (wall), "
              f"{row['render_ms_per_frame_cpu']:6.1f} ms/frame render, "
              f"layout {100 * row['layout_share']:.0f}% of time")
    main_row = results[0]
    verdict = "meets" if main_row["fps_cpu"] >= TARGET_FPS else "MISSES"
    print(f"128x416: {main_row['fps_cpu']:.1f} frames/s on one core {verdict} the "
          f"{TARGET_FPS:.0f} frames/s target")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"target_fps": TARGET_FPS, "frames_per_drive": args.frames,
                   "drives": args.drives, "machine": platform.processor() or platform.machine(),
                   "load_average": os.getloadavg(), "results": results}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
