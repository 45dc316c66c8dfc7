"""SDE transfer (DT) on synthetic CamVid-layout drives, sized for 2 CPU cores.

As synthetic_camvid_seg, but a fresh run starts its encoder and decoder from the synthetic
Cityscapes-sequence SDE run `workdir/sde_cs` (configs/hoyer/synthetic_cityscapes_sde.py: the
paper's cross-dataset setting, SDE on Cityscapes sequences, segmentation on CamVid); another
one with `--set seg.init_from=<workdir or export>`. The log names what was restored.

Data: the commands of synthetic_camvid_seg.py and of synthetic_cityscapes_sde.py, then

    bazel run //tools:train -- --config=hoyer/synthetic_cityscapes_sde --workdir=workdir/sde_cs
    bazel run //tools:train -- --config=hoyer/synthetic_camvid_seg_dt \
        --workdir=workdir/seg_camvid_dt
    bazel run //tools:evaluate -- --workdir=workdir/seg_camvid_dt --compare=workdir/seg_camvid

Expected: the log line "restored 148 variables (100 encoder, 48 decoder) ..."; the result
follows the SDE. Measured (docs/seg.md, one seed, SDE at step 400): val mIoU 0.40 at step 100
and 0.49 at 200 (baseline 0.36, 0.44), 0.52 at 600 (baseline 0.52); test drive 0.47 (baseline
0.48). --smoke needs an
SDE run too (any length: `--smoke` of synthetic_cityscapes_sde is enough for the wiring).
"""

from configs.hoyer import _seg_common


def get_config(smoke: bool = False):
    return _seg_common.seg_config("synthetic_camvid_seg_dt", dataset="synthetic_camvid",
                                  transfer=True, smoke=smoke)
