"""Segmentation baseline on synthetic drives in the CamVid layout, sized for 2 CPU cores.

The CamVid recipe scaled down (see _seg_common.py): the drives converted at 64x84 (672x512 / 8)
and cropped to 64x64, 50 labelled training images (seed 0), ResNet-18 undilated (as the
synthetic SDE, so synthetic_camvid_seg_dt can start from it) + the ASPP U-Net decoder, batch 2,
SGD lr 1e-2 (encoder 1e-3), momentum 0.9, weight decay 5e-4, clipping 10, 600 steps with x0.1
at 450; evaluated on the val drive (22 frames) every 150 steps, keep-best on mIoU.

Data (once, ~10 s):

    python -m tools.make_synthetic --layout=camvid --output_dir=workdir/data/camvid_raw \
        --num_drives=5 --frames_per_drive=24 --height=72 --width=96 --num_workers=2
    python -m tools.convert_camvid --input_dir=workdir/data/camvid_raw \
        --output_dir=workdir/data/camvid_records --height=64 --width=84 --num_shards=2

Command:

    bazel run //tools:train -- --config=hoyer/synthetic_camvid_seg --workdir=workdir/seg_camvid
    bazel run //tools:evaluate -- --workdir=workdir/seg_camvid
    bazel run //tools:export -- --workdir=workdir/seg_camvid --output_dir=workdir/seg_camvid/export

Expected (docs/seg.md, one seed, 2 cores, 2-5 s per step under load): mIoU 0.42 at step 150,
0.50 at 300, 0.53 at 600 on the val drive (pixel accuracy 0.92; sky, road, building, tree,
pavement, car 0.8-0.95, the thin and small classes 0); --smoke trains 4 steps on 4 labelled
images, evaluates and checkpoints (wiring only).
"""

from configs.hoyer import _seg_common


def get_config(smoke: bool = False):
    return _seg_common.seg_config("synthetic_camvid_seg", dataset="synthetic_camvid",
                                  transfer=False, smoke=smoke)
