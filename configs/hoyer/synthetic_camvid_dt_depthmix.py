"""The paper's full method DT+XD (transfer + DepthMix) on synthetic CamVid drives.

synthetic_camvid_seg_dt (student and teacher start from workdir/sde_cs): 64x84 drives cropped to
64x64, 50 labelled images, ResNet-18 undilated, SGD lr 1e-2 (encoder 1e-3) and its step
schedule, run as task=semisup with the reference's DepthMix branch (_semisup_common.py): + 2
unlabelled images a step from every training record (the labelled ones mix their one-hot ground
truth), EMA teacher (alpha min(1 - 1/(t+1), 0.99)), image i pasted onto its partner where its
SDE disparity is in front (margin 0.03), colour jitter + blur, pseudo-label CE weighted by the
fraction of confident pixels (>= 0.968). The disparity is the synthetic SDE's (workdir/sde_cs),
precomputed into the records.

Data: the commands of synthetic_camvid_seg.py and of synthetic_cityscapes_sde.py.
Then the pseudo disparity (and the DepthMix figure, paper Fig. S2):

    bazel run //tools:train -- --config=hoyer/synthetic_cityscapes_sde --workdir=workdir/sde_cs
    bazel run //tools:predict_pseudo_depth -- \
        --input='workdir/data/camvid_records/train-*.tfrecord' --sde=workdir/sde_cs \
        --output_dir=workdir/data/camvid_pseudo_depth --figure=workdir/depthmix.png

Command:

    bazel run //tools:train -- --config=hoyer/synthetic_camvid_dt_depthmix \
        --workdir=workdir/seg_camvid_dt_depthmix
    bazel run //tools:evaluate -- --workdir=workdir/seg_camvid_dt_depthmix \
        --compare=workdir/seg_camvid

Without the records: --set semisup.depth_source=network --set semisup.sde_from=workdir/sde_cs
(the SDE runs in every step; slower, bench/bench_semisup.py). TensorBoard shows the DepthMix
figure of the first unlabelled pair every train.image_summaries_every steps.

Expected: steps cost about 2.5x those of synthetic_camvid_seg (the paper's Table S1: 476 ms/it
with pseudo-labels and DepthMix vs 188 ms/it without, P100); the one-seed comparison with the
baseline, DT and ClassMix is in docs/seg.md. --smoke trains 4 steps on 4 labelled images,
evaluates and checkpoints (wiring only; it needs the pseudo-depth records, or the --set pair
above).
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("synthetic_camvid_dt_depthmix",
                                          dataset="synthetic_camvid", mix="depthmix",
                                          transfer=True, smoke=smoke)
