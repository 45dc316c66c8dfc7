"""SUW-Learn (S + U + W) encoder-decoder on the built-in synthetic KITTI-layout drives.

Command (after `make demo` has generated and converted the data into workdir/data):

    bazel run //tools:train -- --config=suw/synthetic_suw --workdir=workdir/suw_synthetic

Expected: on the smoke variant (CPU, minutes) AbsRel well below the constant-median-depth
baseline on held-out drives; see docs/ for the measured table.
"""

from tf_depthseg import config as cfg


def get_config(smoke: bool = False) -> cfg.ExperimentConfig:
    data = cfg.DataConfig(
        dataset="synthetic",
        train_pattern="workdir/data/kitti_records/train-*.tfrecord",
        eval_pattern="workdir/data/kitti_records/val-*.tfrecord",
        keys=("image", "context", "intrinsics", "depth", "semantic", "weak_pairs"),
        image_size=(128, 416),
        batch_size=4)
    config = cfg.ExperimentConfig(
        name="suw_synthetic",
        data=data,
        model=cfg.ModelConfig(name="suw_encoder_decoder", num_bins=64, min_depth=1.0,
                              max_depth=80.0),
        loss=cfg.LossConfig(supervised="soft_classification", unsupervised="ego",
                            weak="patch"),
        optim=cfg.OptimConfig(optimizer="adam", learning_rate=1e-4,
                              schedule="paper_encoder_decoder"),
        train=cfg.TrainConfig(steps=20000, eval_every=1000, checkpoint_every=500))
    if smoke:
        config = cfg.apply_overrides(config, [
            "data.image_size=[64,208]", "data.batch_size=2", "train.steps=20",
            "train.eval_every=10", "train.checkpoint_every=10", "train.log_every=5",
            "eval.max_examples=4", "export.image_size=[64,208]"])
    return config
