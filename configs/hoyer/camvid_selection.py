"""Annotation data selection on CamVid (Hoyer et al. 2021, Table S2 "+S"): 25, 50, 100 of the
367 training images, with the Cityscapes SDE as the teacher (the cross-dataset setting).

The paper's recipe (_selection_common.py): ResNet-50 student (ImageNet encoder) retrained from
scratch for 4k and 8k iterations, Adam 1e-4 poly, 512x512 crops of 672x512 images, bias weight
10 on the difficulty, teacher block-3 features pooled to 4 x 8. Precompute the teacher's
disparity into the records first (the student then reads it; else the SDE runs in every step):

    bazel run //tools:predict_pseudo_depth -- --input='data/camvid/train-*.tfrecord' \
        --sde=runs/cityscapes_sde --output_dir=data/camvid_pseudo
    bazel run //tools:select_annotations -- --config=hoyer/camvid_selection \
        --input='data/camvid_pseudo/train-*.tfrecord' --output_dir=runs/camvid_selection \
        --seed=42

Then train on the chosen 50 or 100 (e.g. the DT + DepthMix config):

    bazel run //tools:train -- --config=hoyer/camvid_dt_depthmix --workdir=runs/camvid_sel \
        --set seg.labeled_count=0 --set seg.labeled_ids_file=runs/camvid_selection/selected_100.txt

Expected (paper Table S2, 3 seeds): DT+XD+S 68.23 +- 0.39 mIoU at 50 labels, 69.62 +- 0.64 at
100 (DT+XD without selection 66.82, 68.91).
"""

from configs.hoyer import _selection_common


def get_config(smoke: bool = False):
    return _selection_common.selection_config("camvid_selection", dataset="camvid",
                                              smoke=smoke)
