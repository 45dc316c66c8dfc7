"""SUW-Learn encoder-decoder on the KITTI Eigen split: S + U + W, the full SUW-Learn recipe.

Data (once): tools/convert_kitti.py into data/kitti (train, test), then
tools/align_object_masks.py (instance masks of a segmenter, for the object-motion U loss) and
tools/generate_weak_labels.py (--strategy=same+diff, from semantic masks) into data/kitti_suw.

Command:

    bazel run //tools:train -- --config=suw/kitti_suw --workdir=runs/kitti_suw
    bazel run //tools:evaluate -- --workdir=runs/kitti_suw --baselines

Expected (GPU, full schedule): the paper's best KITTI row (better than S+W). The smoke variant only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("kitti_suw", supervised="soft_classification", unsupervised="ego_object",
                              weak="patch", dataset="kitti", smoke=smoke, steps=120000)
