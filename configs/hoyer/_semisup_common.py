"""Shared settings of the Hoyer et al. semi-supervised configs (not an experiment itself).

`semisup_config(...)` builds every `configs/hoyer/*_classmix.py` / `*_depthmix.py` experiment:
the segmentation recipe of `_seg_common.seg_config` (network, SGD, schedule, labelled subset,
DT's `seg.init_from`) run as task "semisup" with the reference's unlabelled branch
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, experiments.py id 210):

* ClassMix ("scratch_classmix"): encoder from ImageNet, `mix_mask="class"`,
  `only_unlabeled=True`, `mix_use_gt=False` (the unlabelled stream reads the records outside
  the labelled subset, all targets from the teacher);
* DepthMix ("transfer_dcompgt0.030", the paper's DT+XD when `transfer`): `mix_mask=
  "depthcomp"`, margin 0.03, foreground threshold 0, `only_unlabeled=False`,
  `mix_use_gt=True` (every record; labelled ones mix their one-hot ground truth); without
  `transfer` the same from ImageNet (XD alone: not a row of the paper);
* both: consistency weight 1, colour jitter and blur after mixing, batch 2 labelled + 2
  unlabelled, EMA teacher alpha = min(1 - 1/(t+1), 0.99).

DepthMix's disparity comes from the records (`semisup.depth_source=records`, the reference's
precomputed pseudo depth): `tools/predict_pseudo_depth` writes the training records again with
it (the `*_PSEUDO_DEPTH` folders below), and data.train_pattern points there. Measured faster
than running the SDE in the step (bench/bench_semisup.py); `--set semisup.depth_source=network
--set semisup.sde_from=<SDE run>` runs the SDE in the step instead (no records to write).
"""

import dataclasses

from configs.hoyer import _seg_common
from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.semisup_config import SemisupConfig

# tools/predict_pseudo_depth outputs (the training records + depth/pseudo/encoded).
CAMVID_PSEUDO_DEPTH = "data/camvid_pseudo_depth/train-*.tfrecord"
CITYSCAPES_PSEUDO_DEPTH = "data/cityscapes_pseudo_depth/train-*.tfrecord"
SYNTHETIC_CAMVID_PSEUDO_DEPTH = "workdir/data/camvid_pseudo_depth/train-*.tfrecord"
PSEUDO_DEPTH_TRAIN = {"camvid": CAMVID_PSEUDO_DEPTH, "cityscapes": CITYSCAPES_PSEUDO_DEPTH,
                      "synthetic_camvid": SYNTHETIC_CAMVID_PSEUDO_DEPTH}

SMOKE_OVERRIDES = ["semisup.unlabeled_batch_size=2"]


def semisup_config(name: str, *, dataset: str, mix: str, transfer: bool = False,
                   smoke: bool = False, extra=()) -> cfg.ExperimentConfig:
    """One semi-supervised experiment.

    Args:
      name: experiment name.
      dataset: "camvid", "cityscapes" or "synthetic_camvid" (`_seg_common.seg_config`).
      mix: "classmix" or "depthmix" (the reference's settings of each, see module doc).
      transfer: start the student (and so the teacher) from the SDE run (DT).
      smoke: the seconds-long variant.
      extra: further `key=value` overrides (applied before the smoke ones).
    """
    base = _seg_common.seg_config(name, dataset=dataset, transfer=transfer)
    if mix == "depthmix":
        semisup = SemisupConfig(mix="depthmix", mix_use_gt=True, depth_source="records")
        base = cfg.apply_overrides(base, [f"data.train_pattern={PSEUDO_DEPTH_TRAIN[dataset]}"])
    elif mix == "classmix":
        semisup = SemisupConfig(mix="classmix", mix_use_gt=False)
    else:
        raise ValueError(f"unknown mix {mix!r}")
    config = dataclasses.replace(base, task="semisup",
                                 task_sections={"seg": base.seg, "semisup": semisup})
    config = cfg.apply_overrides(config, list(extra))
    if smoke:
        overrides = list(_seg_common.SMOKE_OVERRIDES) + SMOKE_OVERRIDES
        if dataset in _seg_common.RECIPES:
            overrides += ["seg.encoder_weights=", "data.image_size=[64,84]",
                          "data.crop_size=[64,64]"]
        config = cfg.apply_overrides(config, overrides)
    return config
