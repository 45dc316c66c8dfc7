"""ClassMix baseline on synthetic drives in the CamVid layout, sized for 2 CPU cores.

synthetic_camvid_seg (64x84 drives cropped to 64x64, 50 labelled images, ResNet-18 undilated,
SGD lr 1e-2 / encoder 1e-3 and its step schedule) run as task=semisup with the reference's
ClassMix branch (_semisup_common.py): + 2 unlabelled images a step from the training records
outside the 50 labelled ones, EMA teacher (alpha min(1 - 1/(t+1), 0.99)), half of image i's
classes (teacher's argmax) pasted onto its partner, colour jitter + blur, pseudo-label CE
weighted by the fraction of pixels with confidence >= 0.968.

Data: the commands of synthetic_camvid_seg.py. Command:

    bazel run //tools:train -- --config=hoyer/synthetic_camvid_classmix \
        --workdir=workdir/seg_camvid_classmix
    bazel run //tools:evaluate -- --workdir=workdir/seg_camvid_classmix \
        --compare=workdir/seg_camvid

Expected: steps cost about 2.5x those of synthetic_camvid_seg (the teacher's pass and the
student's second pass; the paper's Table S1: 466 ms/it with pseudo-labels vs 188 ms/it without,
P100). Measured (docs/seg.md, one seed): val mIoU 0.36, 0.41, 0.48 at steps 100-300 (lagging
the baseline), 0.52 at 600 like it; test drive 0.478 (baseline 0.480).
--smoke trains 4 steps on 4 labelled images, evaluates and checkpoints (wiring only).
"""

from configs.hoyer import _semisup_common


def get_config(smoke: bool = False):
    return _semisup_common.semisup_config("synthetic_camvid_classmix",
                                          dataset="synthetic_camvid", mix="classmix",
                                          smoke=smoke)
