"""Hoyer et al. segmentation baseline on Cityscapes: supervised, encoder from ImageNet.

The paper's Cityscapes recipe (reference experiments.py id 210, see _seg_common.py): ResNet-101
(dilated last stage) + ASPP U-Net decoder, 1024x512 images, random 512x512 crops, flip, colour
jitter, batch 2, SGD lr 1e-2 (encoder 1e-3), momentum 0.9, weight decay 5e-4, clipping 10, 40k
iterations with x0.1 at 30k, evaluated on val (19 classes). Labels: 372 random training images
by default; 744 / all 2975 with `--set seg.labeled_count=744` / `0`, the seed with
`--set seg.labeled_seed=42`, a chosen subset with `--set seg.labeled_count=0
--set seg.labeled_ids_file=<ids.txt>`.

Data (once): python -m tools.convert_cityscapes --mode=labelled --input_dir=<cityscapes> \
    --output_dir=data/cityscapes

Command:

    bazel run //tools:train -- --config=hoyer/cityscapes_seg --workdir=runs/cityscapes_seg
    bazel run //tools:evaluate -- --workdir=runs/cityscapes_seg

Expected (GPU, full schedule): the paper's Table 1 baseline row for 372 / 744 / 2975 labels
(the main paper is not in ../shared/papers; its supplement's CamVid baseline is 59-68 % mIoU).
Needs keras.applications' ResNet101 ImageNet weights in Keras' cache (else the encoder starts
random with a warning line). --smoke runs 4 steps at 64x84 on 4 labels (wiring only).
"""

from configs.hoyer import _seg_common


def get_config(smoke: bool = False):
    return _seg_common.seg_config("cityscapes_seg", dataset="cityscapes", transfer=False,
                                  smoke=smoke)
