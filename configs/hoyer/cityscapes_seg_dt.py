"""Hoyer et al. SDE transfer (DT) on Cityscapes: encoder and decoder start from the SDE.

As cityscapes_seg (372 labels by default; 744 / 2975 with `--set seg.labeled_count=744|0`),
but a fresh run starts its encoder and decoder from the self-supervised depth run
`runs/cityscapes_sde` (configs/hoyer/cityscapes_sde.py, trained on the Cityscapes sequences);
another one with `--set seg.init_from=<its workdir or export>`. Its architecture
(sde.backbone, sde.dilate_last_stage, sde.encoder_weights) must equal this run's seg.*: an
error line says what to set. The training log names the variables restored and those left at
their initialisation (the classification head).

Command (after the SDE run):

    bazel run //tools:train -- --config=hoyer/cityscapes_seg_dt --workdir=runs/cityscapes_seg_dt
    bazel run //tools:evaluate -- --workdir=runs/cityscapes_seg_dt --compare=runs/cityscapes_seg

Expected (GPU, full schedule): the paper's Table 1 "DT" row, a few mIoU points above the
baseline at 372 labels (its supplement reports +3.2 to +3.6 on CamVid). --smoke needs the SDE
run as well; it runs 4 steps and proves the wiring.
"""

from configs.hoyer import _seg_common


def get_config(smoke: bool = False):
    return _seg_common.seg_config("cityscapes_seg_dt", dataset="cityscapes", transfer=True,
                                  smoke=smoke)
