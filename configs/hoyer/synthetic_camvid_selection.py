"""Annotation data selection on synthetic drives in the CamVid layout, sized for 2 CPU cores.

Chooses 12, then 25, then 50 of the 66 training frames of synthetic_camvid_seg.py's records
(commands there) with the synthetic Cityscapes-sequence SDE (synthetic_cityscapes_sde.py,
workdir/sde_cs) as the teacher; a ResNet-18 student is trained from scratch for 100 steps on
the first 12 and for 200 on the first 25 (see _selection_common.py for the paper's recipe).

Command (a few minutes; rerun the same command to continue after a kill):

    bazel run //tools:select_annotations -- --config=hoyer/synthetic_camvid_selection \
        --output_dir=workdir/selection_camvid

Then train the segmentation on the 50 chosen frames instead of 50 random ones:

    bazel run //tools:train -- --config=hoyer/synthetic_camvid_seg_dt \
        --workdir=workdir/seg_dt_selected --set seg.labeled_count=0 \
        --set seg.labeled_ids_file=workdir/selection_camvid/selected_50.txt

Expected and measured: docs/selection.md. --smoke chooses 2 then 4 frames with a 2-step
student (wiring only).
"""

from configs.hoyer import _selection_common


def get_config(smoke: bool = False):
    return _selection_common.selection_config("synthetic_camvid_selection",
                                              dataset="synthetic_camvid", smoke=smoke)
