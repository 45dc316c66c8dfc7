"""SUW-Learn encoder-decoder on the KITTI Eigen split: S + W (patch pairs, same+diff).

Data (once): tools/convert_kitti.py into data/kitti (train, test), then
tools/align_object_masks.py (instance masks of a segmenter, for the object-motion U loss) and
tools/generate_weak_labels.py (--strategy=same+diff, from semantic masks) into data/kitti_suw.

Command:

    bazel run //tools:train -- --config=suw/kitti_sw --workdir=runs/kitti_sw
    bazel run //tools:evaluate -- --workdir=runs/kitti_sw --baselines

Expected (GPU, full schedule): REL 5.17 %, RMSE 2.478 m (paper Table 3, best S+W row). The smoke variant only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("kitti_sw", supervised="soft_classification", unsupervised="none",
                              weak="patch", dataset="kitti", smoke=smoke, steps=120000)
