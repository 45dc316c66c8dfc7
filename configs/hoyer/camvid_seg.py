"""Hoyer et al. segmentation baseline on CamVid: supervised, encoder from ImageNet.

The paper's CamVid recipe (supplement B; reference experiments.py id 210, see _seg_common.py):
ResNet-101 (dilated last stage) + ASPP U-Net decoder, 480x360 images converted to 672x512,
random 512x512 crops, flip, colour jitter, batch 2, SGD lr 1e-2 (encoder 1e-3), momentum 0.9,
weight decay 5e-4, clipping 10, 20k iterations with x0.1 at 15k, evaluated on the test split.
Labels: 100 random training images by default; the paper's 50 / 100 / 367 (all) are
`--set seg.labeled_count=50` / `100` / `0`, their seed `--set seg.labeled_seed=42`; a chosen
subset: `--set seg.labeled_count=0 --set seg.labeled_ids_file=<ids.txt>`.

Data (once): python -m tools.convert_camvid --input_dir=<SegNet CamVid> --output_dir=data/camvid

Command:

    bazel run //tools:train -- --config=hoyer/camvid_seg --workdir=runs/camvid_seg
    bazel run //tools:evaluate -- --workdir=runs/camvid_seg

Expected (GPU, full schedule; paper Table S2, mIoU over 3 seeds): 59.16 +- 1.79 % with 50
labels, 63.05 +- 0.59 % with 100, 68.18 +- 0.13 % with all 367. Needs keras.applications'
ResNet101 ImageNet weights in Keras' cache (else the encoder starts random, with a warning
line, and the numbers are far lower). --smoke runs 4 steps at 64x84 on 4 labels (wiring only).
"""

from configs.hoyer import _seg_common


def get_config(smoke: bool = False):
    return _seg_common.seg_config("camvid_seg", dataset="camvid", transfer=False, smoke=smoke)
