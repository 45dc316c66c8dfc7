"""Hoyer et al. on CamVid: DepthMix (XD) without transfer: mean teacher + DepthMix, encoder from
ImageNet.

The camvid segmentation recipe of camvid_seg (_seg_common.py), 100 random labels by default (50
/ 100 / 367: `--set seg.labeled_count=50|100|0`), run as task=semisup (_semisup_common.py):
batch 2 labelled + 2 unlabelled, EMA teacher, colour jitter + blur after mixing, pseudo-label CE
weighted by the confident fraction. The unlabelled stream (batch 2) reads every training record
(labelled ones mix their one-hot ground truth: the reference's mix_use_gt); image i is pasted
onto its partner where its SDE disparity, precomputed into the records, is in front (margin
0.03).

Data (once): python -m tools.convert_camvid --input_dir=<SegNet CamVid> --output_dir=data/camvid
then the pseudo disparity of the SDE run (configs/hoyer/cityscapes_sde.py):

    bazel run //tools:predict_pseudo_depth -- --input='data/camvid/train-*.tfrecord' \
        --sde=runs/cityscapes_sde --output_dir=data/camvid_pseudo_depth \
        --figure=runs/camvid_depthmix_mix.png

(or skip it: `--set semisup.depth_source=network --set semisup.sde_from=runs/cityscapes_sde`
runs the SDE in every step instead, slower).

Command:

    bazel run //tools:train -- --config=hoyer/camvid_depthmix --workdir=runs/camvid_depthmix
    bazel run //tools:evaluate -- --workdir=runs/camvid_depthmix --compare=runs/camvid_seg

Expected: no paper row (the paper's DepthMix runs start from the SDE, camvid_dt_depthmix);
between the baseline (59.16 % / 63.05 % with 50 / 100 labels) and DT+XD.
TensorBoard shows the student's and the teacher's predictions and the DepthMix figure (paper
Fig. S2).
--smoke runs 4 steps at 64x84 on 4 labels (wiring only); it needs the pseudo-depth records too.
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("camvid_depthmix", dataset="camvid",
                                          mix="depthmix", transfer=False, smoke=smoke)
