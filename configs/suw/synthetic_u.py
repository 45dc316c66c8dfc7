"""SUW-Learn encoder-decoder on the built-in synthetic drives: U only: view synthesis with a pose net sharing the encoder (scale-ambiguous: evaluated with median scaling).

Data: `make demo` (or make_synthetic --layout=kitti -> convert_kitti -> generate_weak_labels)
writes the records to workdir/data/kitti_records/ (depth, neighbour frames, K, weak pairs).

Command:

    bazel run //tools:train -- --config=suw/synthetic_u --workdir=workdir/synthetic_u
    bazel run //tools:evaluate -- --workdir=workdir/synthetic_u --baselines

Expected: docs/u_term.md (median-scaled AbsRel curves on the held-out drive, 800 steps at
64x208, Adam 1e-3, against the constant baseline); docs/suw_study.md for the first study. The
smoke variant (--smoke) runs a few steps in seconds and only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    # Translation unit of the pose net: x100 over Monodepth2's 0.01, so the untrained warp
    # moves the scene at the drives' scale (~1 m per frame against the metric head's ~9 m
    # initial depth); with 0.01 the warp hardly depended on depth and U did not move the depth
    # net off its initial constant for hundreds of steps (docs/u_term.md).
    # No auto-masking, as in the synthetic SDE configs: from random weights the pose net's
    # first motion is partly sideways and auto-masking keeps only the pixels that motion
    # explains, which locks it in (held-out AbsRel with it 0.40 -> 0.58 over 800 steps, above
    # the constant baseline; without it 0.26-0.33 in both seeds; docs/u_term.md).
    return _common.suw_config("synthetic_u", supervised="none", unsupervised="ego",
                              weak="none", smoke=smoke,
                              extra=["suw.pose_translation_scale=100", "suw.automask=false"])
