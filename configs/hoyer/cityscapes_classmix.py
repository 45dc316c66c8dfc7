"""Hoyer et al. on Cityscapes: ClassMix baseline (Olsson et al.): mean teacher + ClassMix,
encoder from ImageNet.

The cityscapes segmentation recipe of cityscapes_seg (_seg_common.py), 372 random labels by
default (372 / 744 / 2975: `--set seg.labeled_count=372|744|0`), run as task=semisup
(_semisup_common.py): batch 2 labelled + 2 unlabelled, EMA teacher, colour jitter + blur after
mixing, pseudo-label CE weighted by the confident fraction. The unlabelled stream (batch 2)
reads the training records outside the labelled subset; the teacher's pseudo-labels of image i's
half of its classes are pasted with the image onto its partner (the reference's
scratch_classmix: mix_use_gt=False).

Data (once): python -m tools.convert_cityscapes --mode=labelled ... --output_dir=data/cityscapes

Command:

    bazel run //tools:train -- \
        --config=hoyer/cityscapes_classmix --workdir=runs/cityscapes_classmix
    bazel run //tools:evaluate -- --workdir=runs/cityscapes_classmix --compare=runs/cityscapes_seg

Expected (GPU, full schedule): the main paper's Table 1 ClassMix row (the main paper is not
in ../shared/papers; on CamVid, Table S2, ClassMix gains 4-7 mIoU points over the baseline).
TensorBoard shows the student's and the teacher's predictions.
--smoke runs 4 steps at 64x84 on 4 labels (wiring only).
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("cityscapes_classmix", dataset="cityscapes",
                                          mix="classmix", transfer=False, smoke=smoke)
