"""Hoyer et al. on Cityscapes: The paper's full method DT+XD: SDE transfer + mean teacher +
DepthMix.

The cityscapes segmentation recipe of cityscapes_seg_dt (_seg_common.py), 372 random labels by
default (372 / 744 / 2975: `--set seg.labeled_count=372|744|0`), run as task=semisup
(_semisup_common.py): batch 2 labelled + 2 unlabelled, EMA teacher, colour jitter + blur after
mixing, pseudo-label CE weighted by the confident fraction. Student and teacher start from the
SDE run (seg.init_from); the unlabelled stream (batch 2) reads every training record (labelled
ones mix their one-hot ground truth: the reference's mix_use_gt); image i is pasted onto its
partner where its SDE disparity, precomputed into the records, is in front (margin 0.03). The
reference's transfer_dcompgt0.030.

Data (once): python -m tools.convert_cityscapes --mode=labelled ... --output_dir=data/cityscapes
then the pseudo disparity of the SDE run (configs/hoyer/cityscapes_sde.py):

    bazel run //tools:predict_pseudo_depth -- --input='data/cityscapes/train-*.tfrecord' \
        --sde=runs/cityscapes_sde --output_dir=data/cityscapes_pseudo_depth \
        --figure=runs/cityscapes_dt_depthmix_mix.png

(or skip it: `--set semisup.depth_source=network --set semisup.sde_from=runs/cityscapes_sde`
runs the SDE in every step instead, slower).

Command:

    bazel run //tools:train -- \
        --config=hoyer/cityscapes_dt_depthmix --workdir=runs/cityscapes_dt_depthmix
    bazel run //tools:evaluate -- \
        --workdir=runs/cityscapes_dt_depthmix --compare=runs/cityscapes_seg

Expected (GPU, full schedule): the main paper's Table 1 DT+XD row, above ClassMix (the main
paper is not in ../shared/papers; on CamVid, Table S2, DT+XD is 1-1.4 points above ClassMix).
TensorBoard shows the student's and the teacher's predictions and the DepthMix figure (paper
Fig. S2).
--smoke runs 4 steps at 64x84 on 4 labels (wiring only); it needs the pseudo-depth records too.
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("cityscapes_dt_depthmix", dataset="cityscapes",
                                          mix="depthmix", transfer=True, smoke=smoke)
