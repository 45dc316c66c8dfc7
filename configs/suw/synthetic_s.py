"""SUW-Learn encoder-decoder on the built-in synthetic drives: S only: soft classification over log-depth bins.

Data: `make demo` (or make_synthetic --layout=kitti -> convert_kitti -> generate_weak_labels)
writes the records to workdir/data/kitti_records/ (depth, neighbour frames, K, weak pairs).

Command:

    bazel run //tools:train -- --config=suw/synthetic_s --workdir=workdir/synthetic_s
    bazel run //tools:evaluate -- --workdir=workdir/synthetic_s --baselines

Expected: see docs/suw_study.md for this variant at equal budgets (64x208, 150 steps); the
smoke variant (--smoke) runs a few steps in seconds and only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("synthetic_s", supervised="soft_classification", unsupervised="none",
                              weak="none", smoke=smoke)
