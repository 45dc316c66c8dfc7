"""Multi-task (DM) on synthetic drives in the CamVid layout, sized for 2 CPU cores.

As synthetic_camvid_seg_dt (the CamVid recipe scaled down: 64x84 cropped to 64x64, 50
labelled images, ResNet-18 undilated, SGD 1e-2 / encoder 1e-3, clipping 10, evaluated on the
val drive with keep-best on mIoU), with the PAD-Net multi-task network and loss
`(CE(final) + CE(side)) / 2 + SDE` (configs/hoyer/_multitask_common.py). The synthetic CamVid
layout, like the real one, has no neighbour frames: the SDE loss reads 2 frames per step of
the synthetic Cityscapes sequences (64x128, cropped to 64x64). A fresh run starts encoder,
both decoders and the pose net from the synthetic SDE run workdir/sde_cs.

Data (once, ~20 s): the CamVid-layout records of synthetic_camvid_seg.py and the
Cityscapes-sequence records of synthetic_cityscapes_sde.py:

    python -m tools.make_synthetic --layout=camvid --output_dir=workdir/data/camvid_raw \
        --num_drives=5 --frames_per_drive=24 --height=72 --width=96 --num_workers=2
    python -m tools.convert_camvid --input_dir=workdir/data/camvid_raw \
        --output_dir=workdir/data/camvid_records --height=64 --width=84 --num_shards=2
    python -m tools.make_synthetic --layout=cityscapes --output_dir=workdir/data/cityscapes_raw \
        --num_drives=6 --frames_per_drive=24 --height=64 --width=128 --num_workers=2
    python -m tools.convert_cityscapes --input_dir=workdir/data/cityscapes_raw \
        --output_dir=workdir/data/cityscapes_sequence --mode=sequence --height=64 --width=128

Command (after `bazel run //tools:train -- --config=hoyer/synthetic_cityscapes_sde
--workdir=workdir/sde_cs`):

    bazel run //tools:train -- --config=hoyer/synthetic_camvid_multitask \
        --workdir=workdir/multitask_camvid
    bazel run //tools:evaluate -- --workdir=workdir/multitask_camvid
    bazel run //tools:export -- --workdir=workdir/multitask_camvid \
        --output_dir=workdir/multitask_camvid/export

Expected: the export serves semantic_class_ids, semantic_probabilities, disparity and depth
(relative: monocular scale). --smoke trains 4 steps on 4 labelled images and 2 video frames
a step, evaluates and checkpoints (wiring only); it starts from workdir/sde_cs too, or from
scratch with `--set seg.init_from=`.
"""

from configs.hoyer import _multitask_common


def get_config(smoke: bool = False):
    return _multitask_common.multitask_config("synthetic_camvid_multitask",
                                              dataset="synthetic_camvid", smoke=smoke)
