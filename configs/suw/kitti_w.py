"""SUW-Learn encoder-decoder on the KITTI Eigen split: W only (patch pairs from semantic masks).

Data (once): tools/convert_kitti.py into data/kitti (train, test), then
tools/align_object_masks.py (instance masks of a segmenter, for the object-motion U loss) and
tools/generate_weak_labels.py (--strategy=same+diff, from semantic masks) into data/kitti_suw.

Command:

    bazel run //tools:train -- --config=suw/kitti_w --workdir=runs/kitti_w
    bazel run //tools:evaluate -- --workdir=runs/kitti_w --baselines

Expected (GPU, full schedule): ordinal only, median-scaled; far from the supervised numbers. The smoke variant only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("kitti_w", supervised="none", unsupervised="none",
                              weak="patch", dataset="kitti", smoke=smoke, steps=120000)
