"""Multi-task task (Hoyer et al. 2021, "DM"): segmentation + self-supervised depth in one step.

One network (`models.hoyer.build_multitask_net`: a shared ResNet encoder, a depth and a
segmentation ASPP U-Net decoder that exchange PAD-Net messages after the third decoder block,
a segmentation side output there) gives segmentation logits, side logits and the disparities;
a pose network (as the SDE task's) gives the camera motion. The loss of a step is

    seg_weight * (CE(final) + CE(side)) / 2  +  sde_weight * (photometric + smoothness)

with the segmentation task's cross-entropy (ignore 255, each image's mean; the side logits,
at 1/4 resolution, upsampled bilinearly with aligned corners to the labels first, as the
reference's `cross_entropy2d` does) and the SDE task's Monodepth2 loss (`sde` section:
pairs pose input, min/max depth, SSIM, smoothness, auto-masking). Without the side output the
segmentation term is CE(final). Constants of the reference
(`lhoyer/improving_segmentation_with_selfsupervised_depth`, experiments.py id 212, train.py
`train_step`): both lambdas 1, no feature distance, SGD lr 1e-2 with the encoder at 1e-3 and
the pose net at 1e-6, gradient clipping 10 over all parameters, batch 2, crop 512x512.

Data ("streams"):
* "labeled": the labelled subset of data.train_pattern (`seg.labeled_count` / `_seed` /
  `_ids_file`, the segmentation task's augmentation: crop, flip, colour jitter). With
  `multitask.video_pattern=""` (the reference: its multi-task runs load each labelled
  Cityscapes frame with its sequence neighbours, `load_labels` and `load_sequence` in one
  batch) these records also carry t-1/t+1 and K (data.num_context=2) and the SDE loss is
  computed on the same batch, one forward pass.
* "video" (only with `multitask.video_pattern`): sequence records (target + t-1/t+1 + K) for
  the SDE loss, `multitask.video_batch_size` per step, resized to `multitask.video_image_size`
  and then augmented like the labelled stream. Needed for CamVid, whose SegNet release has no
  neighbour frames (our converter writes none): its configs take the video from Cityscapes
  sequences, the paper's cross-dataset setting (supplement B).

Initialisation (`seg.init_from`, fresh runs only): from an SDE run, like the reference's
`backbone_pretraining`, `depth_pretraining`, `segmentation_args.weights` and
`pose_pretraining` = the SDE: the encoder, the depth decoder with its disparity heads, the
segmentation decoder (from the SDE's depth decoder, as the segmentation task's transfer) and the
pose network; the PAD modules and both segmentation heads keep their initialisation. The
segmentation task's `transfer_weights` does the copying and its checks.

Parameter groups (`optim.lr_multipliers`): "encoder", "decoder" (segmentation decoder, the
depth->segmentation message and both heads: the reference's `segmentation_params`),
"depth_decoder" (depth decoder, disparity heads, the segmentation->depth message:
`depth_params`) and "pose".

Evaluation: the segmentation task's (confusion matrix, per-class IoU, mIoU, pixel accuracy
on data.eval_pattern); labelled evaluation records carry no depth ground truth in the
Hoyer et al. datasets, so the run reports no depth metrics (`tools/evaluate` on a split with
depth computes both from the export). Serving: class ids, probabilities, the disparity and
its relative depth (`sde.DisparityToDepth`) from one SavedModel.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import pipeline
from tf_depthseg.losses import segmentation as seg_losses
from tf_depthseg.losses import view_synthesis
from tf_depthseg.models import batch_norm, hoyer, pose, resnet
from tf_depthseg.training import checkpoints, loop
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks import seg as seg_task
from tf_depthseg.training.tasks.multitask_config import SECTIONS

LABELED_STREAM = "labeled"
VIDEO_STREAM = "video"
MODEL_MULTITASK = "multitask"
NUM_CONTEXT = 2  # t-1 and t+1
# Loss entries besides the SDE task's photometric / smoothness (weighted by sde_weight).
LOSS_SEGMENTATION = "segmentation"  # seg_weight * (CE(final) + CE(side)) / 2
LOSS_CROSS_ENTROPY = seg_task.LOSS_CROSS_ENTROPY  # CE(final), unweighted (as task=seg logs)
LOSS_SIDE_CROSS_ENTROPY = "side_cross_entropy"  # CE(side), unweighted
# Parameter groups.
GROUP_ENCODER, GROUP_DECODER = seg_task.GROUP_ENCODER, seg_task.GROUP_DECODER
GROUP_DEPTH_DECODER, GROUP_POSE = sde_task.GROUP_DECODER, sde_task.GROUP_POSE
# Layers of the multi-task net on the depth side (the reference's `PAD.depth_params`).
DEPTH_SIDE_PREFIXES = (hoyer.DEPTH_DECODER + "_", "pad_seg_to_depth_")
# Layers an SDE has no counterpart of (kept at their initialisation by the transfer).
NEW_PREFIXES = ("seg_head_", "pad_")


def check_config(config) -> None:
    """Settings the multi-task task cannot train: ConfigError naming the key and the fix."""
    seg_task.check_config(config)
    seg, sde, multitask, data = config.seg, config.sde, config.multitask, config.data
    bad = errors.ConfigError
    for key in ("backbone", "dilate_last_stage", "encoder_weights"):
        if getattr(sde, key) != getattr(seg, key):
            raise bad(f"task=multitask builds one encoder from seg.{key}="
                      f"{getattr(seg, key)!r}, but sde.{key}={getattr(sde, key)!r}; set "
                      f"sde.{key} to the same value (the sde section gives the pose net and "
                      "the depth loss).")
    if sde.feature_distance_weight > 0:
        raise bad(f"sde.feature_distance_weight={sde.feature_distance_weight:g}: task=multitask "
                  "has no frozen-encoder regulariser (the reference's multi-task runs use "
                  "feat_dist_lambda 0); set sde.feature_distance_weight=0.")
    if sde.num_scales != len(hoyer.DISPARITY_SCALES):
        raise bad(f"sde.num_scales={sde.num_scales}: task=multitask trains all "
                  f"{len(hoyer.DISPARITY_SCALES)} disparity heads of the network; set "
                  f"sde.num_scales={len(hoyer.DISPARITY_SCALES)}.")
    if seg.head_inter:
        raise bad("seg.head_inter=true: the multi-task network's head is one 1x1 conv on the "
                  "last segmentation block (the reference's PAD); set seg.head_inter=false.")
    if not multitask.video_pattern and data.num_context != NUM_CONTEXT:
        raise bad(f"multitask.video_pattern is empty, so the SDE loss uses the labelled "
                  f"records' own neighbour frames, but data.num_context={data.num_context}; "
                  f"set data.num_context={NUM_CONTEXT} (e.g. Cityscapes labelled records), or "
                  "multitask.video_pattern=<sequence records> for labelled records without "
                  "neighbours (CamVid).")


# ------------------------------------------------------------------------------------------
# Networks.
# ------------------------------------------------------------------------------------------
def build_multitask_model(config) -> keras.Model:
    """`hoyer.build_multitask_net` on `config.seg`'s encoder (named like the SDE's, so that
    variable paths match an SDE run's), plus OUT_DEPTH (`sde.DisparityToDepth` of
    disparity_s0, the SDE task's depth range) in one graph.

    Returns:
      "image" `[B, H, W, 3]` in [0, 1] -> {"semantic_logits" `[B, H, W, C]`,
      "semantic_side_logits" `[B, H/4, W/4, C]` (with multitask.side_output),
      "disparity_s0".."disparity_s3", "depth" `[B, H, W, 1]`, "features"}.
    """
    seg, multitask, sde = config.seg, config.multitask, config.sde
    encoder = resnet.build_backbone(sde_task.backbone_name(seg.backbone, seg.dilate_last_stage),
                                    weights=seg.encoder_weights or None,
                                    name=seg_task.ENCODER_NAME)
    net = hoyer.build_multitask_net(seg_task.num_classes(config), encoder,
                                    distillation_block=multitask.distillation_block,
                                    side_output=multitask.side_output, name="multitask_net")
    outputs = dict(net.output)
    outputs[common.OUT_DEPTH] = sde_task.DisparityToDepth(
        sde.min_depth, sde.max_depth, name="disparity_to_depth")(
            outputs[common.disparity_key(0)])
    return keras.Model(net.inputs, outputs, name="multitask")


def build_pose_model(sde, num_context: int = NUM_CONTEXT) -> keras.Model:
    """The SDE task's pose network for section `sde` (ResNet on a frame pair or on all
    `num_context + 1` frames, Monodepth2's pose decoder)."""
    frames = 2 if sde.pose_input == "pairs" else num_context + 1
    encoder = resnet.build_backbone(sde.pose_backbone, input_channels=3 * frames,
                                    weights=sde.pose_weights or None, name="pose_encoder")
    return pose.build_pose_net(encoder, frames - 1, decoder="monodepth2")


def multitask_param_groups(model: keras.Model) -> Dict[str, list]:
    """{"encoder", "decoder" (segmentation side), "depth_decoder"} variables of the network."""
    groups = hoyer.parameter_groups(model)
    depth_side = {id(v) for layer in model.layers if layer.name.startswith(DEPTH_SIDE_PREFIXES)
                  for v in layer.trainable_weights}
    return {GROUP_ENCODER: groups["backbone"],
            GROUP_DECODER: [v for v in groups["decoder"] if id(v) not in depth_side],
            GROUP_DEPTH_DECODER: [v for v in groups["decoder"] if id(v) in depth_side]}


# ------------------------------------------------------------------------------------------
# Transfer from a self-supervised depth run.
# ------------------------------------------------------------------------------------------
def transfer_from_sde(config, models) -> Dict[str, seg_task.TransferReport]:
    """Initialises the multi-task net and the pose net from `config.seg.init_from` (an SDE
    run: workdir, checkpoint or export, `seg.resolve_sde_source`).

    Returns:
      {MODEL_MULTITASK: report, common.MODEL_POSE: report}.
    Raises:
      errors.ConfigError: not an SDE run, or another encoder / pose architecture (naming the
        setting and the fix).
    """
    seg, sde = config.seg, config.sde
    prefix, donor_config = seg_task.resolve_sde_source(seg.init_from)
    donor = donor_config.sde
    key = f"seg.init_from={seg.init_from}"
    fix = (f"The SDE run has sde.backbone={donor.backbone}, sde.dilate_last_stage="
           f"{str(donor.dilate_last_stage).lower()}, sde.encoder_weights="
           f"{donor.encoder_weights!r}, sde.pose_backbone={donor.pose_backbone}, "
           f"sde.pose_input={donor.pose_input}; set seg.* and sde.* of this run to match.")
    mine = sde_task.backbone_name(seg.backbone, seg.dilate_last_stage)
    theirs = sde_task.backbone_name(donor.backbone, donor.dilate_last_stage)
    if mine != theirs:
        raise errors.ConfigError(f"{key}: its encoder is {theirs}, this run's {mine}. {fix}")
    if (donor.pose_backbone, donor.pose_input) != (sde.pose_backbone, sde.pose_input):
        raise errors.ConfigError(
            f"{key}: its pose net is {donor.pose_backbone} on {donor.pose_input!r}, this run's "
            f"{sde.pose_backbone} on {sde.pose_input!r}. {fix}")
    donors = {common.MODEL_DEPTH: sde_task.build_depth_model(donor_config),
              common.MODEL_POSE: build_pose_model(donor, donor_config.data.num_context)}
    checkpoints.load_models(donors, prefix)
    reports = {
        MODEL_MULTITASK: seg_task.transfer_weights(models[MODEL_MULTITASK],
                                                   donors[common.MODEL_DEPTH], prefix,
                                                   new_prefixes=NEW_PREFIXES, fix=fix),
        common.MODEL_POSE: seg_task.transfer_weights(models[common.MODEL_POSE],
                                                     donors[common.MODEL_POSE], prefix,
                                                     new_prefixes=(), fix=fix)}
    logging.info("%s: multi-task net: %s", key, reports[MODEL_MULTITASK].summary())
    logging.info("%s: pose net: restored %d variables.", key,
                 len(reports[common.MODEL_POSE].restored))
    return reports


# ------------------------------------------------------------------------------------------
# Losses.
# ------------------------------------------------------------------------------------------
def upsample_aligned(logits, size):
    """Bilinear resize with aligned corners (PyTorch `align_corners=True`, the reference's
    `cross_entropy2d`) of `[B, h, w, C]` to `size` (h', w'); no-op at that size."""
    if tuple(logits.shape[1:3]) == tuple(size):
        return logits
    return tf.raw_ops.ResizeBilinear(images=tf.cast(logits, tf.float32), size=list(size),
                                     align_corners=True, half_pixel_centers=False)


def segmentation_cross_entropies(outputs, labels) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Per-image CE of the final logits and of the side logits (None without side output),
    float32 `[B]` each; labels int `[B, H, W(, 1)]` with 255 ignored."""
    final = seg_losses.cross_entropy_with_ignore(outputs[common.OUT_SEMANTIC_LOGITS], labels)
    side = outputs.get(common.OUT_SEMANTIC_SIDE_LOGITS)
    if side is None:
        return final, None
    size = tuple(labels.shape[1:3])
    return final, seg_losses.cross_entropy_with_ignore(upsample_aligned(side, size), labels)


class MultitaskTask(seg_task.SegTask):
    """Segmentation + self-supervised depth with PAD-Net distillation (module docstring).

    Reuses the segmentation task's labelled subsets, evaluation, metrics and transfer checks
    (subclass) and the SDE task's pose wiring (`SDETask.target_to_source`).
    """

    config_sections = SECTIONS

    def __init__(self):
        self._sde = sde_task.SDETask()

    def check_config(self, config) -> None:
        check_config(config)

    # ----------------------------------------------------------------------------------
    # Models.
    # ----------------------------------------------------------------------------------

    def build(self, config) -> Dict[str, keras.Model]:
        models = {MODEL_MULTITASK: build_multitask_model(config),
                  common.MODEL_POSE: build_pose_model(config.sde)}
        for model in models.values():
            batch_norm.set_bn_momentum(model, config.model.bn_momentum)
        return models

    def initialize_models(self, config, models) -> None:
        if config.seg.init_from:
            transfer_from_sde(config, models)

    def param_groups(self, config, models):
        groups = multitask_param_groups(models[MODEL_MULTITASK])
        groups[GROUP_POSE] = list(models[common.MODEL_POSE].trainable_variables)
        return groups

    def serving_model(self, config, models) -> keras.Model:
        return models[MODEL_MULTITASK]

    # ----------------------------------------------------------------------------------
    # Data.
    # ----------------------------------------------------------------------------------

    def train_streams(self, config) -> Dict[str, int]:
        streams = {LABELED_STREAM: config.data.batch_size}
        if config.multitask.video_pattern:
            streams[VIDEO_STREAM] = config.multitask.video_batch_size
        return streams

    def video_config(self, config):
        """`config` with the data settings of the video stream (its pattern and size, two
        neighbours); crop and augmentation stay the labelled stream's."""
        multitask = config.multitask
        data = dataclasses.replace(config.data, train_pattern=multitask.video_pattern,
                                   image_size=multitask.video_image_size
                                   or config.data.image_size, num_context=NUM_CONTEXT)
        return dataclasses.replace(config, data=data)

    def make_train_dataset(self, config, stream, input_context):
        data = config.data
        if stream == VIDEO_STREAM:
            video = self.video_config(config)
            return pipeline.make_training_dataset(
                video, video.data.train_pattern,
                [common.IMAGE, common.CONTEXT, common.INTRINSICS],
                config.multitask.video_batch_size, input_context, seed_offset=1)
        if not data.train_pattern:
            raise errors.ConfigError(
                "data.train_pattern is empty; point it at records with semantic labels, e.g. "
                "--set data.train_pattern='data/cityscapes/train-*.tfrecord'.")
        keys = [common.IMAGE, common.SEMANTIC]
        if not config.multitask.video_pattern:
            keys += [common.CONTEXT, common.INTRINSICS]
        return pipeline.make_training_dataset(config, data.train_pattern, keys,
                                              data.batch_size, input_context,
                                              source_ids=seg_task.labelled_source_ids(config))

    # ----------------------------------------------------------------------------------
    # Loss.
    # ----------------------------------------------------------------------------------

    def sde_terms(self, config, models, batch, outputs, *, training, global_batch, rng):
        """The SDE task's view-synthesis loss of `batch` (IMAGE, CONTEXT, INTRINSICS) with
        the multi-task net's disparities `outputs`: {photometric, smoothness, total, ...}."""
        sde = config.sde
        image = tf.cast(batch[common.IMAGE], tf.float32)
        context = tf.cast(batch[common.CONTEXT], tf.float32)
        disparities = [tf.cast(outputs[common.disparity_key(s)], tf.float32)
                       for s in range(sde.num_scales)]
        return view_synthesis.multiscale_view_synthesis_loss(
            image, context, disparities, tf.cast(batch[common.INTRINSICS], tf.float32),
            self._sde.target_to_source(config, models, image, context, training=training),
            min_depth=sde.min_depth, max_depth=sde.max_depth, ssim_weight=sde.ssim_weight,
            smoothness_weight=sde.smoothness_weight, automask=sde.automask,
            noise_seed=rng.make_seeds(1)[:, 0], global_batch_size=global_batch)

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        multitask = config.multitask
        net = models[MODEL_MULTITASK]
        labeled = batches[LABELED_STREAM]
        outputs = net(tf.cast(labeled[common.IMAGE], tf.float32), training=training)
        final, side = segmentation_cross_entropies(outputs, labeled[common.SEMANTIC])
        batch_size = global_batch_sizes[LABELED_STREAM]
        final = loop.global_mean(final, batch_size)
        losses = {LOSS_CROSS_ENTROPY: final}
        segmentation = final
        if side is not None:
            side = loop.global_mean(side, batch_size)
            losses[LOSS_SIDE_CROSS_ENTROPY] = side
            segmentation = (final + side) / 2.0
        losses[LOSS_SEGMENTATION] = multitask.seg_weight * segmentation
        if multitask.video_pattern:
            video = batches[VIDEO_STREAM]
            video_outputs = net(tf.cast(video[common.IMAGE], tf.float32), training=training)
            video_batch = global_batch_sizes[VIDEO_STREAM]
        else:
            video, video_outputs, video_batch = labeled, outputs, batch_size
        terms = self.sde_terms(config, models, video, video_outputs, training=training,
                               global_batch=video_batch, rng=rng)
        for key in (common.LOSS_PHOTOMETRIC, common.LOSS_SMOOTHNESS):
            losses[key] = multitask.sde_weight * terms[key]
        losses[common.LOSS_TOTAL] = (losses[LOSS_SEGMENTATION]
                                     + multitask.sde_weight * terms[common.LOSS_TOTAL])
        return losses

    # ----------------------------------------------------------------------------------
    # Evaluation and pictures (the segmentation task's metrics via predict_classes).
    # ----------------------------------------------------------------------------------

    def predict_classes(self, models, images):
        logits = models[MODEL_MULTITASK](tf.cast(images, tf.float32),
                                         training=False)[common.OUT_SEMANTIC_LOGITS]
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def image_summaries(self, config, models, batch):
        image = tf.cast(batch[common.IMAGE], tf.float32)
        outputs = models[MODEL_MULTITASK](image, training=False)
        palette = seg_task.class_palette(config)
        colorize = seg_task._colorize_classes_tf  # pylint: disable=protected-access
        classes = tf.argmax(outputs[common.OUT_SEMANTIC_LOGITS], axis=-1, output_type=tf.int32)
        pictures = {"input": visualize.to_rgb_uint8_tf(image),
                    "prediction": colorize(classes, palette),
                    "disparity": visualize.colorize_disparity_tf(
                        outputs[common.disparity_key(0)])}
        if common.SEMANTIC in batch:
            pictures["ground_truth"] = colorize(batch[common.SEMANTIC][..., 0], palette)
        return pictures
