"""Annotation data selection on Cityscapes (Hoyer et al. 2021, section 4.3): 25, 50, 100, 200,
372, 744 of the 2975 training images, the Cityscapes SDE as the teacher.

The paper's recipe (_selection_common.py): ResNet-50 student (ImageNet encoder) retrained from
scratch for 4k, 8k, ..., 20k iterations, Adam 1e-4 poly, 512x512 crops of 1024x512 images, bias
weight 10 on the difficulty, teacher block-3 features pooled to 4 x 8.

    bazel run //tools:predict_pseudo_depth -- --input='data/cityscapes/train-*.tfrecord' \
        --sde=runs/cityscapes_sde --output_dir=data/cityscapes_pseudo
    bazel run //tools:select_annotations -- --config=hoyer/cityscapes_selection \
        --input='data/cityscapes_pseudo/train-*.tfrecord' \
        --output_dir=runs/cityscapes_selection --seed=42
    bazel run //tools:train -- --config=hoyer/cityscapes_dt_depthmix --workdir=runs/cs_sel \
        --set seg.labeled_count=0 \
        --set seg.labeled_ids_file=runs/cityscapes_selection/selected_372.txt

Expected: the paper's Cityscapes selection curves are in its main text (not quoted in this
repository); the CamVid numbers are in camvid_selection.py.
"""

from configs.hoyer import _selection_common


def get_config(smoke: bool = False):
    return _selection_common.selection_config("cityscapes_selection", dataset="cityscapes",
                                              smoke=smoke)
