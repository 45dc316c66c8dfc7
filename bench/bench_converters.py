"""Converter throughput (examples/s) per dataset on synthetic layouts.

Generates a small synthetic dataset in each layout (tf_depthseg.synthetic.layouts), converts its
train split with 1 worker and with --num_workers workers, and reports examples/s and the
speed-up of the parallel run (measured in this run; the machine's other load affects both).

Example:
  python bench/bench_converters.py --num_drives=2 --frames_per_drive=12 --num_workers=2
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_depthseg import synthetic  # noqa: E402
from tf_depthseg.converters import (base, camvid, cityscapes, kitti, mannequin,  # noqa: E402
                                    megadepth)
from tf_depthseg.synthetic import layouts  # noqa: E402

# layout -> (converter module, options at the stored sizes of the papers or native KITTI).
CONVERTERS = {
    "kitti": (kitti, kitti.Options()),
    "kitti_velodyne": (kitti, kitti.Options(depth_source="velodyne")),
    "cityscapes": (cityscapes, cityscapes.Options()),
    "camvid": (camvid, camvid.Options()),
    "mannequin": (mannequin, mannequin.Options()),
    "megadepth": (megadepth, megadepth.Options()),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_drives", type=int, default=2)
    parser.add_argument("--frames_per_drive", type=int, default=12)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "bench_converters.json"))
    args = parser.parse_args()
    os.environ.setdefault("TF_DEPTHSEG_PROGRESS", "0")
    config = synthetic.SceneConfig(height=args.height, width=args.width,
                                   frames_per_drive=args.frames_per_drive)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, options) in CONVERTERS.items():
            layout = name.split("_")[0]
            root = os.path.join(tmp, layout)
            if not os.path.isdir(root):
                entries = {}
                for index in range(args.num_drives):
                    split, drive_entries = layouts.generate_and_write(
                        layout, root, config, 0, index, num_drives=1)
                    entries.setdefault(split, []).extend(drive_entries)
                layouts.finish_layout(layout, root, entries)
            specs = module.list_samples(root, "train", options)
            row = {"examples": len(specs)}
            for workers in (1, args.num_workers):
                start = time.perf_counter()
                base.convert_split(module.load_sample, specs, options,
                                   os.path.join(tmp, "out", f"{name}_{workers}"), "train",
                                   num_shards=2, num_workers=workers, resume=False)
                row[f"examples_per_s_{workers}_workers"] = len(specs) / (
                    time.perf_counter() - start)
            row["parallel_speedup"] = (row[f"examples_per_s_{args.num_workers}_workers"]
                                       / row["examples_per_s_1_workers"])
            results[name] = row
            print(f"{name:15s} {len(specs):4d} examples  1 worker "
                  f"{row['examples_per_s_1_workers']:7.1f}/s  {args.num_workers} workers "
                  f"{row[f'examples_per_s_{args.num_workers}_workers']:7.1f}/s  "
                  f"speed-up x{row['parallel_speedup']:.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
