"""Hoyer et al. multi-task learning (DM) on Cityscapes: segmentation + SDE in one network.

The Cityscapes segmentation recipe (configs/hoyer/_seg_common.py: 372 labels by default,
744 / 2975 with `--set seg.labeled_count=744|0`; SGD 1e-2, encoder 1e-3, clipping 10, 40k
iterations with x0.1 at 30k, batch 2, crop 512x512 + flip + colour jitter) with the PAD-Net
multi-task network and loss `(CE(final) + CE(side)) / 2 + SDE` (configs/hoyer/
_multitask_common.py; the reference's experiments.py id 212). The SDE loss is computed on the
labelled frames' own neighbours t-1/t+1 (the labelled records of tools/convert_cityscapes.py
--mode=labelled carry them and K by default, --frame_gap=1), one stream, as the reference. A
fresh run starts encoder, both decoders and the pose net from the SDE run `runs/cityscapes_sde`
(configs/hoyer/cityscapes_sde.py); the log names what was restored.

Command (after the SDE run):

    bazel run //tools:train -- --config=hoyer/cityscapes_multitask \
        --workdir=runs/cityscapes_multitask
    bazel run //tools:evaluate -- --workdir=runs/cityscapes_multitask \
        --compare=runs/cityscapes_seg_dt
    bazel run //tools:export -- --workdir=runs/cityscapes_multitask \
        --output_dir=runs/cityscapes_multitask/export

Expected (GPU, full schedule): the paper's Table 1 "DM" row, above DT at 372 labels (its
supplement Table S1: 1215 ms per iteration with pseudo-labels and DepthMix on a P100, the
multi-task net is ~2.5x the cost of DT). The export serves class ids, probabilities, the
disparity and its relative depth. --smoke needs the SDE run as well (or
`--set seg.init_from=`); it runs 4 steps and proves the wiring.
"""

from configs.hoyer import _multitask_common


def get_config(smoke: bool = False):
    return _multitask_common.multitask_config("cityscapes_multitask", dataset="cityscapes",
                                              smoke=smoke)
