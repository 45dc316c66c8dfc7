"""SUW-Learn encoder-decoder on the KITTI Eigen split: S only.

Data (once): tools/convert_kitti.py into data/kitti (train, test), then
tools/align_object_masks.py (instance masks of a segmenter, for the object-motion U loss) and
tools/generate_weak_labels.py (--strategy=same+diff, from semantic masks) into data/kitti_suw.

Command:

    bazel run //tools:train -- --config=suw/kitti_s --workdir=runs/kitti_s
    bazel run //tools:evaluate -- --workdir=runs/kitti_s --baselines

Expected (GPU, full schedule): REL 6.61 %, RMSE 3.058 m (paper Table 3, S row; 80 m cap). The smoke variant only proves the wiring.
"""

from configs.suw import _common


def get_config(smoke: bool = False):
    return _common.suw_config("kitti_s", supervised="soft_classification", unsupervised="none",
                              weak="none", dataset="kitti", smoke=smoke, steps=120000)
