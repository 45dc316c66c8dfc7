"""SDE on the built-in synthetic drives in the KITTI layout, sized for 2 CPU cores.

Data: `make demo` (or make_synthetic --layout=kitti -> convert_kitti) writes the records to
workdir/data/kitti_records/ (64x208 frames with neighbours, K, sparse depth; drives for train,
val and a held-out test split). ResNet-18 (undilated) + the ASPP U-Net decoder at the drives'
64x208, batch 4, Adam 1e-4 constant, 600 steps; evaluated with per-image median scaling.

Command:

    bazel run //tools:train -- --config=hoyer/synthetic_kitti_sde --workdir=workdir/sde
    bazel run //tools:evaluate -- --workdir=workdir/sde --baselines \
        --split='workdir/data/kitti_records/test-*.tfrecord'

Expected: see docs/sde.md (learning curve, median-scaled AbsRel against the constant
baseline on the held-out drive); the smoke variant (--smoke) runs a few steps and proves the
wiring (train, checkpoint, resume, evaluate).
"""

from configs.hoyer import _common


def get_config(smoke: bool = False):
    return _common.sde_config("synthetic_kitti_sde", dataset="synthetic_kitti", smoke=smoke)
