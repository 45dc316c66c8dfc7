"""Hoyer et al. SDE transfer (DT) on CamVid: encoder and decoder start from a Cityscapes SDE.

As camvid_seg (the CamVid recipe, 100 labels by default; 50 / 100 / 367 with
`--set seg.labeled_count=50|100|0`), but a fresh run starts its encoder and decoder from the
self-supervised depth run `runs/cityscapes_sde` (configs/hoyer/cityscapes_sde.py; the paper's
supplement B trains the SDE on Cityscapes sequences and transfers it to CamVid). Another SDE:
`--set seg.init_from=<its workdir or export>`; its architecture (sde.backbone,
sde.dilate_last_stage, sde.encoder_weights) must equal this run's seg.* (an error line says
what to set). The training log names the variables restored and those left at their
initialisation (the classification head).

Command (after the SDE run):

    bazel run //tools:train -- --config=hoyer/camvid_seg_dt --workdir=runs/camvid_seg_dt
    bazel run //tools:evaluate -- --workdir=runs/camvid_seg_dt --compare=runs/camvid_seg

Expected (GPU, full schedule; paper Table S2, mIoU over 3 seeds): 62.75 +- 2.32 % with 50
labels (+3.6 over the baseline), 66.19 +- 0.96 % with 100, 70.45 +- 0.35 % with all 367.
--smoke needs the SDE run as well (or --set seg.init_from=<a smoke SDE run with
--set sde.backbone=resnet101 ...>); it runs 4 steps and proves the wiring.
"""

from configs.hoyer import _seg_common


def get_config(smoke: bool = False):
    return _seg_common.seg_config("camvid_seg_dt", dataset="camvid", transfer=True, smoke=smoke)
