"""SDE training task: self-supervised monocular depth from video (Hoyer et al. 2021, section A).

The depth network (ResNet encoder, ASPP U-Net decoder, sigmoid disparity heads at 1/1, 1/2,
1/4, 1/8) and a pose network (ResNet-18 on a frame pair, Monodepth2's pose decoder) are trained
with Monodepth2's loss (`losses.view_synthesis.multiscale_view_synthesis_loss`): the target
frame t reconstructed from t-1 and t+1 with the predicted depth and motion, per-pixel minimum
reprojection over the two sources, auto-masking, SSIM + L1 (0.85 / 0.15), edge-aware
smoothness 1e-3 / 2^s, every scale upsampled to full resolution before warping, depth
`disp_to_depth(d, 0.1, 100)`. Constants from the reference code
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, `loss/monodepth_loss.py`,
`configs/cityscapes_monodepth_highres_dec6_crop.yml`), which follows Monodepth2.

Choices and their sources:

* Pose input "pairs" (reference `pose_model_input: pairs`, `models/joint_segmentation_depth.py`
  `predict_poses`): one pose-net pass per source frame on the pair in temporal order, (t-1, t)
  and (t, t+1); the transform of the (t, t+1) pass is used as T_target_to_source, the one of
  (t-1, t) is inverted (Monodepth2's `invert=(frame_id < 0)`). Context frames are [t-1, t+1]
  (`data.num_context=2`, the records' order). "all" stacks [t, t-1, t+1] in one pass.
* Feature distance (reference `feat_dist_lambda`, train.py: `torch.dist(encoder_features,
  imnet_features, p=2)`): the L2 norm of the difference between the depth encoder's deepest
  feature and that of a frozen ImageNet encoder (same architecture, inference mode). The
  reference takes one norm over the whole batch; ours is the mean of the per-example norms
  times sqrt(global batch), which equals the reference's value (and gradient) when the examples
  are equally far, and, being a sum over examples, splits across replicas. It anchors the
  encoder to ImageNet features: with random weights it only anchors it to a random network, so
  a log line says so.
* One learning rate (the reference's dec6 recipe); parameter groups "encoder" (the depth net's
  backbone), "depth_decoder" (the rest of the depth net) and "pose" let `optim.lr_multipliers`
  reproduce the reference's first stage (`..._dec5_crop.yml`: frozen backbone, i.e.
  [["encoder", 0.0]]) or its commented-out lower pose learning rate.
* The served network (`serving_model`) is the depth network plus `DisparityToDepth`: outputs
  the full-resolution disparity (common.disparity_key(0)) and `common.OUT_DEPTH` =
  disp_to_depth(disparity), metric only up to the unknown scale of monocular training (the
  export says so; evaluation uses per-image median scaling).
* Evaluation (`evaluation.depth.disparity_eval_outputs`): Monodepth2's convention, the
  disparity resized to the ground truth's size, then inverted, then median-scaled.
* Augmentation: the pipeline's colour jitter and flip apply to the target and its neighbours
  alike, and the loss compares the jittered frames (Monodepth2 feeds jittered frames to the
  networks but computes the loss on the original colours; our pipeline keeps one copy).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import keras
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import pipeline
from tf_depthseg.evaluation import depth as depth_eval
from tf_depthseg.geometry import transforms
from tf_depthseg.losses import view_synthesis
from tf_depthseg.metrics import depth as depth_metrics
from tf_depthseg.models import backbones, batch_norm, hoyer, pose, resnet
from tf_depthseg.training import loop
from tf_depthseg.training.tasks.sde_config import SDEConfig

TRAIN_STREAM = "train"
MODEL_IMAGENET_ENCODER = "imagenet_encoder"  # the frozen encoder of the feature distance
LOSS_FEATURE_DISTANCE = "feature_distance"
# Parameter groups (`param_groups`, `optim.lr_multipliers`).
GROUP_ENCODER, GROUP_DECODER, GROUP_POSE = "encoder", "depth_decoder", "pose"
DEPTH_NET_NAME = "depth_net"
ENCODER_NAME = "encoder"
MIN_INPUT_SIDE = 32  # models/hoyer.py: "any H, W >= 32"


@keras.saving.register_keras_serializable(package="tf_depthseg")
class DisparityToDepth(keras.layers.Layer):
    """Sigmoid disparity `[B, H, W, 1]` -> depth `disp_to_depth(d, min_depth, max_depth)`.

    Its attributes tell the export what the depth means: `min_depth` / `max_depth` (the
    range, `export.exporter.depth_range_of`), `metric_depth` (False: monocular training, the
    depth is right only up to an unknown scale), and `disparity_to_depth` converts a disparity
    of any size, so the served depth can follow Monodepth2's convention (resize the disparity,
    then invert: `export.saved_model.network_outputs`).
    """

    def __init__(self, min_depth: float, max_depth: float, metric_depth: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.metric_depth = bool(metric_depth)

    def disparity_to_depth(self, disparity):
        return view_synthesis.disp_to_depth(tf.cast(disparity, tf.float32), self.min_depth,
                                            self.max_depth)[1]

    def call(self, disparity):
        return self.disparity_to_depth(disparity)

    def get_config(self):
        return {**super().get_config(), "min_depth": self.min_depth,
                "max_depth": self.max_depth, "metric_depth": self.metric_depth}


def backbone_name(backbone: str, dilate: bool) -> str:
    """`resnet.build_backbone` name: "resnet101" + "_dilated" for a dilated last stage."""
    return f"{backbone}_dilated" if dilate else backbone


def check_config(config) -> None:
    """Settings the SDE task cannot train: ConfigError naming the key and the fix."""
    sde, data = config.sde, config.data
    bad = errors.ConfigError
    if data.num_context != 2:
        raise bad(f"task=sde needs the neighbour frames t-1 and t+1; data.num_context is "
                  f"{data.num_context}; set data.num_context=2.")
    size = data.crop_size or data.image_size
    # The decoder's reflection padding needs >= 2 pixels at stride 16 (models/hoyer.py), and
    # the smoothness of the coarsest scale needs neighbours.
    smallest = max(MIN_INPUT_SIDE, 2 ** sde.num_scales)
    if min(size) < smallest:
        raise bad(f"task=sde needs training images of at least {smallest} pixels a side; got "
                  f"{list(size)} (data.crop_size or data.image_size). Raise data.image_size.")


def build_depth_model(config) -> keras.Model:
    """The SDE depth model: `hoyer.build_depth_net` on `config.sde`'s backbone, plus
    OUT_DEPTH (`DisparityToDepth` of disparity_s0) and OUT_ENCODER_FEATURES (the encoder's deepest
    feature, for the feature distance), all in one graph (the same layers and variables).

    Returns:
      "image" `[B, H, W, 3]` in [0, 1] -> {disparity_s0..s3, features, depth,
      encoder_features}.
    """
    sde = config.sde
    encoder = resnet.build_backbone(backbone_name(sde.backbone, sde.dilate_last_stage),
                                    weights=sde.encoder_weights or None, name=ENCODER_NAME)
    net = hoyer.build_depth_net(encoder, encoder_features=True, name=DEPTH_NET_NAME)
    outputs = dict(net.output)
    outputs[common.OUT_DEPTH] = DisparityToDepth(sde.min_depth, sde.max_depth,
                                                 name="disparity_to_depth")(
        outputs[common.disparity_key(0)])
    return keras.Model(net.inputs, outputs, name="sde_depth")


class SDETask(loop.Task):
    """Self-supervised depth estimation (see the module docstring)."""

    config_sections = {"sde": SDEConfig}

    def check_config(self, config) -> None:
        check_config(config)

    # ----------------------------------------------------------------------------------
    # Models.
    # ----------------------------------------------------------------------------------

    def build(self, config) -> Dict[str, keras.Model]:
        sde = config.sde
        models = {common.MODEL_DEPTH: build_depth_model(config)}
        frames = 2 if sde.pose_input == "pairs" else config.data.num_context + 1
        pose_encoder = resnet.build_backbone(sde.pose_backbone, input_channels=3 * frames,
                                             weights=sde.pose_weights or None,
                                             name="pose_encoder")
        models[common.MODEL_POSE] = pose.build_pose_net(pose_encoder, frames - 1,
                                                        decoder="monodepth2")
        if sde.feature_distance_weight > 0:
            if sde.encoder_weights != "imagenet":
                logging.warning(
                    "sde.feature_distance_weight=%g without ImageNet weights "
                    "(sde.encoder_weights=%r): the regulariser pulls the encoder towards %s, "
                    "which is only meaningful for ImageNet features "
                    "(sde.encoder_weights=imagenet).", sde.feature_distance_weight,
                    sde.encoder_weights, "the file's initial features" if sde.encoder_weights
                    else "a random network's features")
            # Reference `enable_imnet_encoder`: the same (dilated) architecture, frozen.
            models[MODEL_IMAGENET_ENCODER] = resnet.build_backbone(
                backbone_name(sde.backbone, sde.dilate_last_stage),
                weights=sde.encoder_weights or None, name=MODEL_IMAGENET_ENCODER)
        for model in models.values():
            batch_norm.set_bn_momentum(model, config.model.bn_momentum)
        return models

    def frozen_models(self, config):
        return (MODEL_IMAGENET_ENCODER,) if config.sde.feature_distance_weight > 0 else ()

    def param_groups(self, config, models):
        groups = hoyer.parameter_groups(models[common.MODEL_DEPTH])
        return {GROUP_ENCODER: groups["backbone"], GROUP_DECODER: groups["decoder"],
                GROUP_POSE: list(models[common.MODEL_POSE].trainable_variables)}

    def serving_model(self, config, models) -> keras.Model:
        return models[common.MODEL_DEPTH]

    # ----------------------------------------------------------------------------------
    # Data.
    # ----------------------------------------------------------------------------------

    def make_train_dataset(self, config, stream, input_context):
        data = config.data
        if not data.train_pattern:
            raise errors.ConfigError(
                "data.train_pattern is empty; point it at video records with neighbour frames "
                "and K, e.g. --set data.train_pattern='workdir/data/kitti_records/train-*"
                ".tfrecord'.")
        keys = list(dict.fromkeys([common.IMAGE, common.CONTEXT, common.INTRINSICS]
                                  + list(data.keys)))
        return pipeline.make_training_dataset(config, data.train_pattern, keys,
                                              data.batch_size, input_context)

    def make_eval_dataset(self, config, pattern: Optional[str] = None
                          ) -> Optional[tf.data.Dataset]:
        """Evaluation batches of IMAGE and DEPTH (`pattern` overrides data.eval_pattern)."""
        return pipeline.make_depth_eval_dataset(config, pattern)

    def num_train_examples(self, config) -> Optional[int]:
        return pipeline.count_train_examples(config)

    # ----------------------------------------------------------------------------------
    # Losses.
    # ----------------------------------------------------------------------------------

    def target_to_source(self, config, models, image, context, *, training):
        """T_target_to_source `[B, 2, 4, 4]` for the context frames [t-1, t+1]."""
        if config.sde.pose_input == "all":
            vec = models[common.MODEL_POSE](pose.stack_frames(image, context),
                                            training=training)[common.OUT_POSE]
            return transforms.pose_vec_to_matrix(tf.cast(vec, tf.float32))
        matrices = []
        for index in range(context.shape[1]):
            source = context[:, index]
            # Temporal order: t-1 is the first source of the records' context.
            earlier = index == 0
            pair = tf.concat([source, image] if earlier else [image, source], axis=-1)
            vec = models[common.MODEL_POSE](pair, training=training)[common.OUT_POSE][:, 0]
            matrices.append(transforms.pose_vec_to_matrix(tf.cast(vec, tf.float32),
                                                          invert=earlier))
        return tf.stack(matrices, axis=1)

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        sde = config.sde
        batch = batches[TRAIN_STREAM]
        global_batch = global_batch_sizes[TRAIN_STREAM]
        image = tf.cast(batch[common.IMAGE], tf.float32)
        context = tf.cast(batch[common.CONTEXT], tf.float32)
        outputs = models[common.MODEL_DEPTH](image, training=training)
        disparities = [tf.cast(outputs[common.disparity_key(s)], tf.float32)
                       for s in range(sde.num_scales)]
        terms = view_synthesis.multiscale_view_synthesis_loss(
            image, context, disparities, tf.cast(batch[common.INTRINSICS], tf.float32),
            self.target_to_source(config, models, image, context, training=training),
            min_depth=sde.min_depth, max_depth=sde.max_depth, ssim_weight=sde.ssim_weight,
            smoothness_weight=sde.smoothness_weight, automask=sde.automask,
            noise_seed=rng.make_seeds(1)[:, 0], global_batch_size=global_batch)
        losses = {common.LOSS_PHOTOMETRIC: terms[common.LOSS_PHOTOMETRIC],
                  common.LOSS_SMOOTHNESS: terms[common.LOSS_SMOOTHNESS]}
        total = terms[common.LOSS_TOTAL]
        if sde.feature_distance_weight > 0:
            reference = models[MODEL_IMAGENET_ENCODER](image, training=False)
            reference = tf.stop_gradient(tf.cast(
                reference[backbones.deepest_level(models[MODEL_IMAGENET_ENCODER])],
                tf.float32))
            features = tf.cast(outputs[common.OUT_ENCODER_FEATURES], tf.float32)
            per_example = tf.sqrt(tf.reduce_sum(tf.square(features - reference), axis=[1, 2, 3])
                                  + 1e-12)
            value = (sde.feature_distance_weight * math.sqrt(global_batch)
                     * loop.global_mean(per_example, global_batch))
            losses[LOSS_FEATURE_DISTANCE] = value
            total += value
        losses[common.LOSS_TOTAL] = total
        return losses

    # ----------------------------------------------------------------------------------
    # Evaluation and pictures.
    # ----------------------------------------------------------------------------------

    def predict_disparity(self, config, models, images):
        """Sigmoid disparity `[B, h', w', 1]` at data.image_size for images of any size."""
        images = tf.cast(images, tf.float32)
        size = tuple(config.data.image_size)
        if tuple(images.shape[1:3]) != size:
            images = tf.image.resize(images, size, method="bilinear")
        outputs = models[common.MODEL_DEPTH](images, training=False)
        return tf.cast(outputs[common.disparity_key(0)], tf.float32)

    def eval_outputs(self, config, models, batch):
        disparity = self.predict_disparity(config, models, batch[common.IMAGE])
        return depth_eval.disparity_eval_outputs(disparity, batch[common.DEPTH], config.eval,
                                                 config.sde.min_depth, config.sde.max_depth)

    def init_metrics(self, config):
        return depth_metrics.DepthMetricAccumulator()

    def update_metrics(self, config, state, outputs):
        return depth_eval.update_depth_accumulator(state, outputs)

    def result_metrics(self, config, state):
        return state.result()

    def image_summaries(self, config, models, batch):
        image = tf.cast(batch[common.IMAGE], tf.float32)
        outputs = models[common.MODEL_DEPTH](image, training=False)
        pictures = {"input": visualize.to_rgb_uint8_tf(image)}
        for scale in range(config.sde.num_scales):
            pictures[f"disparity_s{scale}"] = visualize.colorize_disparity_tf(
                outputs[common.disparity_key(scale)])
        if common.DEPTH in batch:
            pictures["ground_truth"] = visualize.colorize_depth_tf(
                tf.cast(batch[common.DEPTH], tf.float32))
        return pictures
