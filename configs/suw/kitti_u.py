"""SUW-Learn encoder-decoder on the KITTI Eigen split: U only (ego + object motion, struct2depth-style, aligned instance masks).

Data (once): tools/convert_kitti.py into data/kitti (train, test), then
tools/align_object_masks.py (instance masks of a segmenter, for the object-motion U loss) and
tools/generate_weak_labels.py (--strategy=same+diff, from semantic masks) into data/kitti_suw.

Command:

    bazel run //tools:train -- --config=suw/kitti_u --workdir=runs/kitti_u
    bazel run //tools:evaluate -- --workdir=runs/kitti_u --baselines

Expected (GPU, full schedule): scale-ambiguous; evaluate with --set eval.median_scaling=true (the config does); expect monocular-level numbers (Monodepth2 mono AbsRel 0.115 for reference). The smoke variant only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("kitti_u", supervised="none", unsupervised="ego_object",
                              weak="none", dataset="kitti", smoke=smoke, steps=120000)
