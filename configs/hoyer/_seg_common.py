"""Shared settings of the Hoyer et al. segmentation configs (not an experiment itself).

`seg_config(...)` builds every `configs/hoyer/*_seg*.py` experiment from the dataset, the
number of labelled images and whether it starts from an SDE (DT). Sources of the constants
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, experiments.py id 210 and
`setup_dataset`, `setup_optimizer`; loader/sequence_segmentation_loader.py; paper supplement
section B):
* SGD momentum 0.9, weight decay 5e-4, lr 1e-2 with the backbone at 1e-3 (encoder group 0.1x),
  gradient clipping at a global norm of 10, batch 2, random crop 512x512 and flip 0.5, colour
  jitter brightness/contrast/saturation 0.2, hue 0.1 with p = 0.5, no random scaling;
* CamVid: images 480x360 -> 672x512 (the converter's default size), 20k iterations with the
  learning rate x0.1 at 15k, evaluated on the test split; labels 50 / 100 / 367 (all);
* Cityscapes: 1024x512, 40k iterations, x0.1 at 30k, evaluated on val; labels 372 / 744 /
  2975 (all);
* the baseline's encoder starts from ImageNet (`imnet`), DT's encoder and decoder from the SDE
  (`seg.init_from`), whose ResNet graph (ImageNet's v1 graph) the run must share;
* PyTorch's batch-norm momentum 0.1 is Keras' 0.9 (`model.bn_momentum`).
The subset seed is `seg.labeled_seed` (the reference's dataset seeds are 42, 43, 44).
"""

from configs.hoyer._common import PAPER_MIXED_PRECISION
from tf_depthseg import config as cfg
from tf_depthseg.training.tasks.seg_config import SegConfig

# Converted records: tools/convert_camvid.py (default 672x512) and tools/convert_cityscapes.py
# (--mode=labelled, default 1024x512).
CAMVID_TRAIN = "data/camvid/train-*.tfrecord"
CAMVID_EVAL = "data/camvid/test-*.tfrecord"
CITYSCAPES_TRAIN = "data/cityscapes/train-*.tfrecord"
CITYSCAPES_EVAL = "data/cityscapes/val-*.tfrecord"
# The SDE runs the DT configs start from (the commands of configs/hoyer/*_sde.py).
CITYSCAPES_SDE_RUN = "runs/cityscapes_sde"
# Built-in synthetic drives in the CamVid layout (commands in synthetic_camvid_seg.py) and the
# synthetic Cityscapes-sequence SDE (synthetic_cityscapes_sde.py).
SYNTHETIC_CAMVID_TRAIN = "workdir/data/camvid_records/train-*.tfrecord"
SYNTHETIC_CAMVID_EVAL = "workdir/data/camvid_records/val-*.tfrecord"
SYNTHETIC_SDE_RUN = "workdir/sde_cs"

# dataset -> (image size, steps, step-decay boundary, labels by default, train, eval)
RECIPES = {
    "camvid": ((512, 672), 20000, 15000, 100, CAMVID_TRAIN, CAMVID_EVAL),
    "cityscapes": ((512, 1024), 40000, 30000, 372, CITYSCAPES_TRAIN, CITYSCAPES_EVAL),
}

SMOKE_OVERRIDES = [
    "train.steps=4", "train.log_every=2", "train.checkpoint_every=2", "train.eval_every=4",
    "train.image_summaries_every=0", "eval.max_examples=2", "data.batch_size=2",
    "data.eval_batch_size=2", "data.shuffle_buffer=8", "train.mixed_precision=float32",
    "model.bn_momentum=0.5", "optim.decay_steps=[3]", "seg.labeled_count=4",
]


def seg_config(name: str, *, dataset: str, transfer: bool, smoke: bool = False,
               extra=()) -> cfg.ExperimentConfig:
    """One segmentation experiment.

    Args:
      name: experiment name.
      dataset: "camvid", "cityscapes" or "synthetic_camvid".
      transfer: start encoder and decoder from the SDE run (DT).
      smoke: the seconds-long variant (tiny images, a few steps).
      extra: further `key=value` overrides (applied before the smoke ones).
    """
    if dataset == "synthetic_camvid":
        # CPU-sized (docs/seg.md): the drives at 64x84 (672x512 / 8) cropped to 64x64, 50
        # labelled images, ResNet-18 undilated like the synthetic SDE.
        data = cfg.DataConfig(train_pattern=SYNTHETIC_CAMVID_TRAIN,
                              eval_pattern=SYNTHETIC_CAMVID_EVAL, keys=("image", "semantic"),
                              num_context=0, image_size=(64, 84), crop_size=(64, 64),
                              batch_size=2, eval_batch_size=8, color_jitter=0.2,
                              shuffle_buffer=64)
        seg = SegConfig(dataset="camvid", backbone="resnet18", dilate_last_stage=False,
                        labeled_count=50, init_from=SYNTHETIC_SDE_RUN if transfer else "")
        steps, boundary = 600, 450
        train = cfg.TrainConfig(steps=steps, eval_every=150, checkpoint_every=150,
                                log_every=50, best_metric="miou", best_mode="max",
                                image_summaries_every=150)
    elif dataset in RECIPES:
        size, steps, boundary, labels, train_pattern, eval_pattern = RECIPES[dataset]
        data = cfg.DataConfig(train_pattern=train_pattern, eval_pattern=eval_pattern,
                              keys=("image", "semantic"), num_context=0, image_size=size,
                              crop_size=(512, 512), batch_size=2, eval_batch_size=2,
                              color_jitter=0.2)
        seg = SegConfig(dataset=dataset, backbone="resnet101", dilate_last_stage=True,
                        encoder_weights="imagenet", labeled_count=labels,
                        init_from=CITYSCAPES_SDE_RUN if transfer else "")
        train = cfg.TrainConfig(steps=steps, eval_every=1000, checkpoint_every=1000,
                                log_every=100, best_metric="miou", best_mode="max",
                                mixed_precision=PAPER_MIXED_PRECISION)
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    optim = cfg.OptimConfig(optimizer="sgd", learning_rate=1e-2, momentum=0.9,
                            weight_decay=5e-4, lr_multipliers=(("encoder", 0.1),),
                            clip_norm=10.0, schedule="step", decay_steps=(boundary,),
                            decay_rate=0.1)
    config = cfg.ExperimentConfig(name=name, task="seg", data=data, optim=optim, train=train,
                                  model=cfg.ModelConfig(bn_momentum=0.9),
                                  export=cfg.ExportConfig(tflite=True),
                                  task_sections={"seg": seg})
    config = cfg.apply_overrides(config, list(extra))
    if smoke:
        overrides = list(SMOKE_OVERRIDES)
        if dataset in RECIPES:
            # Offline and small: no ImageNet weights, 64x84 images, a 64x64 crop.
            overrides += ["seg.encoder_weights=", "data.image_size=[64,84]",
                          "data.crop_size=[64,64]"]
        config = cfg.apply_overrides(config, overrides)
    return config
