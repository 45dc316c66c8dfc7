"""SDE on synthetic drives in the Cityscapes-sequence layout, sized for 2 CPU cores.

Data (once; the Cityscapes layout has no depth, so the run evaluates on the KITTI-layout
synthetic drives of `make demo`, same generator, other camera):

    python -m tools.make_synthetic --layout=cityscapes --output_dir=workdir/data/cityscapes_raw \
        --num_drives=6 --frames_per_drive=24 --height=64 --width=128 --num_workers=2
    python -m tools.convert_cityscapes --input_dir=workdir/data/cityscapes_raw \
        --output_dir=workdir/data/cityscapes_sequence --mode=sequence --height=64 --width=128

Command:

    bazel run //tools:train -- --config=hoyer/synthetic_cityscapes_sde --workdir=workdir/sde_cs

Expected: see docs/sde.md; the smoke variant (--smoke) runs a few steps and proves the wiring.
"""

from configs.hoyer import _common


def get_config(smoke: bool = False):
    return _common.sde_config("synthetic_cityscapes_sde", dataset="synthetic_cityscapes",
                              smoke=smoke)
