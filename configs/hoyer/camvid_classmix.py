"""Hoyer et al. on CamVid: ClassMix baseline (Olsson et al.): mean teacher + ClassMix, encoder
from ImageNet.

The camvid segmentation recipe of camvid_seg (_seg_common.py), 100 random labels by default (50
/ 100 / 367: `--set seg.labeled_count=50|100|0`), run as task=semisup (_semisup_common.py):
batch 2 labelled + 2 unlabelled, EMA teacher, colour jitter + blur after mixing, pseudo-label CE
weighted by the confident fraction. The unlabelled stream (batch 2) reads the training records
outside the labelled subset; the teacher's pseudo-labels of image i's half of its classes are
pasted with the image onto its partner (the reference's scratch_classmix: mix_use_gt=False).

Data (once): python -m tools.convert_camvid --input_dir=<SegNet CamVid> --output_dir=data/camvid

Command:

    bazel run //tools:train -- --config=hoyer/camvid_classmix --workdir=runs/camvid_classmix
    bazel run //tools:evaluate -- --workdir=runs/camvid_classmix --compare=runs/camvid_seg

Expected (GPU, full schedule; paper Table S2, mIoU over 3 seeds): 65.89 +- 0.33 % with 50
labels, 67.48 +- 1.02 % with 100 (baseline 59.16 / 63.05).
TensorBoard shows the student's and the teacher's predictions.
--smoke runs 4 steps at 64x84 on 4 labels (wiring only).
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("camvid_classmix", dataset="camvid",
                                          mix="classmix", transfer=False, smoke=smoke)
