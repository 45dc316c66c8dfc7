"""Hoyer et al. multi-task learning (DM) on CamVid, with Cityscapes sequences for the SDE loss.

The CamVid segmentation recipe (configs/hoyer/_seg_common.py: 100 labels by default, 50 / 367
with `--set seg.labeled_count=50|0`; 672x512 cropped to 512x512, SGD 1e-2, encoder 1e-3,
clipping 10, 20k iterations with x0.1 at 15k, batch 2) with the PAD-Net multi-task network and
loss `(CE(final) + CE(side)) / 2 + SDE` (configs/hoyer/_multitask_common.py). CamVid's SegNet
release has no neighbour frames, so the SDE loss reads a second stream: 2 Cityscapes sequence
frames per step (tools/convert_cityscapes.py --mode=sequence, 1024x512, cropped to 512x512
like the labelled images), the paper's cross-dataset setting (supplement B: SDE on Cityscapes,
segmentation on CamVid). A fresh run starts encoder, both decoders and the pose net from
`runs/cityscapes_sde` (configs/hoyer/cityscapes_sde.py).

Command (after the SDE run):

    bazel run //tools:train -- --config=hoyer/camvid_multitask --workdir=runs/camvid_multitask
    bazel run //tools:evaluate -- --workdir=runs/camvid_multitask --compare=runs/camvid_seg_dt
    bazel run //tools:export -- --workdir=runs/camvid_multitask \
        --output_dir=runs/camvid_multitask/export

Expected: the paper reports no multi-task run on CamVid (Table S2 has DT, DT+XD, DT+XD+S); DT
reaches 66.19 +- 0.96 % mIoU at 100 labels, the reference point for this run. --smoke needs
the SDE run as well (or `--set seg.init_from=`); it runs 4 steps and proves the wiring.
"""

from configs.hoyer import _multitask_common


def get_config(smoke: bool = False):
    return _multitask_common.multitask_config("camvid_multitask", dataset="camvid",
                                              smoke=smoke)
