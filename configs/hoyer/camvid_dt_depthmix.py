"""Hoyer et al. on CamVid: The paper's full method DT+XD: SDE transfer + mean teacher + DepthMix.

The camvid segmentation recipe of camvid_seg_dt (_seg_common.py), 100 random labels by default
(50 / 100 / 367: `--set seg.labeled_count=50|100|0`), run as task=semisup (_semisup_common.py):
batch 2 labelled + 2 unlabelled, EMA teacher, colour jitter + blur after mixing, pseudo-label CE
weighted by the confident fraction. Student and teacher start from the SDE run (seg.init_from);
the unlabelled stream (batch 2) reads every training record (labelled ones mix their one-hot
ground truth: the reference's mix_use_gt); image i is pasted onto its partner where its SDE
disparity, precomputed into the records, is in front (margin 0.03). The reference's
transfer_dcompgt0.030.

Data (once): python -m tools.convert_camvid --input_dir=<SegNet CamVid> --output_dir=data/camvid
then the pseudo disparity of the SDE run (configs/hoyer/cityscapes_sde.py):

    bazel run //tools:predict_pseudo_depth -- --input='data/camvid/train-*.tfrecord' \
        --sde=runs/cityscapes_sde --output_dir=data/camvid_pseudo_depth \
        --figure=runs/camvid_dt_depthmix_mix.png

(or skip it: `--set semisup.depth_source=network --set semisup.sde_from=runs/cityscapes_sde`
runs the SDE in every step instead, slower).

Command:

    bazel run //tools:train -- --config=hoyer/camvid_dt_depthmix --workdir=runs/camvid_dt_depthmix
    bazel run //tools:evaluate -- --workdir=runs/camvid_dt_depthmix --compare=runs/camvid_seg

Expected (GPU, full schedule; paper Table S2 "Ours (DT+XD)", mIoU over 3 seeds): 66.82 +-
1.16 % with 50 labels, 68.91 +- 0.62 % with 100, 71.46 +- 0.22 % with all 367.
TensorBoard shows the student's and the teacher's predictions and the DepthMix figure (paper
Fig. S2).
--smoke runs 4 steps at 64x84 on 4 labels (wiring only); it needs the pseudo-depth records too.
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("camvid_dt_depthmix", dataset="camvid",
                                          mix="depthmix", transfer=True, smoke=smoke)
