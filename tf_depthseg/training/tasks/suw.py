"""SUW-Learn training task: Supervised + Unsupervised + Weakly supervised monocular depth.

One `SUWTask` trains either network of the SUW text (`suw.network`: the encoder-decoder with
its soft-classification head, or the inception hourglass) with any combination of

* S (`suw.supervised`): soft classification over log-depth bins (the paper's L_cls, on the
  head's native resolution against `downsample_sparse_depth` of the ground truth), or L1 on
  log depth, the scale-invariant log loss, berHu (on the full-resolution depth);
* U (`suw.unsupervised`): view synthesis from the neighbour frames with
  - "ego": a pose net that shares the encoder (`build_pose_net(depth_model)`),
  - "ego_object": struct2depth: the pose net sees frames with the aligned objects blacked out,
    an object-motion net (`build_object_motion_net`, same shared encoder) predicts each
    aligned object's own motion from frames that keep only that object, and the target is
    reconstructed with the ego-motion for the background and ego @ object motion inside each
    object's target mask (`geometry.warp.reconstruct_with_object_motion`),
  - "known_pose": camera motion from the records' poses (`transforms.relative_pose`), no
    pose net (Mannequin Challenge; also the synthetic drives);
* W (`suw.weak`): the ordinal ranking loss on `suw.weak_pairs_per_image` pairs per image
  per step, drawn from the record's pre-generated pairs with the Trainer's checkpointed RNG
  (so a resumed run draws the same pairs); "patch" compares the stored patches, "pixel" only
  their centre pixels.

The total is `supervised_weight * S + unsupervised_weight * U + weak_weight * W`. Each term is
a mean (S over valid pixels, U over pixels, scales and examples as Monodepth2, W over the drawn
pairs), so the weights are the only thing that balances them. The text gives none; the configs
weigh W by 0.1 (`configs/suw/_common.py`): a mean over one pair per image has a concentrated
gradient ~5x that of S on the shared network, which at weight 1 slowed S (docs/suw_study.md).

Choices where the text is silent (documented here, one place):

* Depth for view synthesis. Both networks predict metric depth, while
  `multiscale_view_synthesis_loss` takes sigmoid disparities d and converts them with
  `disp_to_depth(d) = 1 / (1/max + (1/min - 1/max) d)`. We hand it
  `d = (1/depth - 1/max) / (1/min - 1/max)` with min/max = `suw.min_depth/max_depth`, the
  exact inverse, so the loss warps with the predicted depth itself (`depth_to_disparity`).
  Its smoothness term sees the same d (mean-normalised, so the affine map hardly matters).
* Scales. Each network has one output: the encoder-decoder at 1/4 resolution (its native
  head, upsampled to full resolution inside the loss before warping, as Monodepth2 does with
  its coarse scales), the hourglass at full resolution. `suw.num_scales` > 1 adds coarser
  scales made by 2^s average pooling of that output (Monodepth2's coarse-scale gradients).
* The pose net's 6 numbers for source i are used directly as T_target_to_source_i (the net
  sees the target first; the loss fixes the meaning). For the hourglass, which has no SUW
  encoder, the pose nets get their own SUW encoder body (`build_suw_encoder_body`).
* Objects: up to `suw.max_objects` aligned objects per clip, the largest in the target
  frame first; padding slots have empty masks and do not change the reconstruction.
* Translation unit. The motion nets end in Monodepth2's 0.01 factor, chosen there for a depth
  that starts near 0.2 m; the SUW head is metric and starts near 9 m (the geometric middle of
  its bins), so the untrained translation / depth ratio was ~100x below a drive's (~1 m per
  frame) and the warp hardly depended on depth. `suw.pose_translation_scale` multiplies the
  translation before the warp (default 1 = unchanged; the U-only synthetic config uses 100,
  measured in docs/u_term.md; rotations are not scaled).
* The shared encoder's batch-norm layers see the depth, pose and object inputs in training
  mode (the paper shares the weights; it does not say how it handles their statistics), but
  only the depth net's pass updates their moving statistics (`frozen_bn_statistics`): only it
  runs at inference. Before, the pose frames' statistics were averaged in and the evaluated
  depth of a U run drifted away from the trained one (docs/u_term.md).
* Mixed datasets (M&M, SUW text 2.2): with `suw.weak_train_pattern`, the task has two input
  streams (`train_streams`): "train", `data.batch_size - suw.weak_batch_size` examples of the
  main set (S and U losses only), and "weak", `suw.weak_batch_size` examples of the weak set
  (W loss only); the depth net sees both in one forward pass.
* Evaluation: KITTI Eigen protocol (`metrics.depth.per_image_depth_metrics`) with the
  `config.eval` settings; by default against the ground truth at the stored size
  (`eval.native_resolution`), the image resized to `data.image_size` for the network.
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import pipeline
from tf_depthseg.evaluation.depth import depth_eval_outputs, update_depth_accumulator
from tf_depthseg.geometry import transforms
from tf_depthseg.geometry import warp as warp_lib
from tf_depthseg.losses import depth as depth_losses
from tf_depthseg.losses import ranking
from tf_depthseg.losses import view_synthesis
from tf_depthseg.metrics import depth as depth_metrics
from tf_depthseg.models import hourglass, pose, suw
from tf_depthseg.models.batch_norm import frozen_bn_statistics, set_bn_momentum
from tf_depthseg.training import loop
from tf_depthseg.training.tasks.suw_config import SUWConfig

# Model roles (checkpoint paths `models/<key>/...`) and loss entries (TensorBoard names
# `loss/<name>`, already weighted) are `common.MODEL_*` and `common.LOSS_*`.

# Input streams (`train_streams`): the main set, and the weak-only set of mixed datasets.
TRAIN_STREAM = "train"
WEAK_STREAM = "weak"


def depth_to_disparity(depth, min_depth: float, max_depth: float):
    """Inverse of `view_synthesis.disp_to_depth`: the "sigmoid disparity" that maps to `depth`.

    `d = (1/depth - 1/max) / (1/min - 1/max)`; exact for any depth > 0 (d leaves [0, 1] for
    depths outside [min, max], and disp_to_depth still returns the depth).
    """
    depth = tf.convert_to_tensor(depth, tf.float32)
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return (1.0 / tf.maximum(depth, 1e-6) - min_disp) / (max_disp - min_disp)


def scale_translation(motion, scale: float):
    """Motion vectors `[..., 6]` (axis-angle, translation) with the translation times `scale`.

    The warp is invariant to scaling depth and translation together, so this sets the unit of
    the motion nets' translation relative to the depth head's metres (`suw.pose_translation_scale`,
    see the module docstring); rotations are untouched (they have no scale).
    """
    motion = tf.convert_to_tensor(motion)
    if scale == 1.0:
        return motion
    return tf.concat([motion[..., :3], motion[..., 3:] * scale], axis=-1)


def required_keys(config) -> list:
    """Batch keys the enabled losses need from the main training records."""
    keys = [common.IMAGE]
    suw_config = config.suw
    if suw_config.supervised != "none":
        keys.append(common.DEPTH)
    if suw_config.unsupervised != "none":
        keys += [common.CONTEXT, common.INTRINSICS]
    if suw_config.unsupervised == "known_pose":
        keys.append(common.POSES)
    if suw_config.unsupervised == "ego_object":
        keys.append(common.INSTANCES)
    if suw_config.weak != "none" and not suw_config.weak_train_pattern:
        keys.append(common.WEAK_PAIRS)
    return keys


def check_config(config) -> None:
    """Combinations of config values the SUW task cannot train: ConfigError naming the keys
    and the fix, so the tools print one line instead of a traceback."""
    data, suw_config = config.data, config.suw
    bad = errors.ConfigError
    if (suw_config.supervised == "none" and suw_config.unsupervised == "none"
            and suw_config.weak == "none"):
        raise bad("SUW task: every loss is off; set suw.supervised, suw.unsupervised or "
                  "suw.weak.")
    if suw_config.unsupervised != "none" and data.num_context < 1:
        raise bad(f"suw.unsupervised={suw_config.unsupervised} needs neighbour frames; "
                  f"data.num_context is {data.num_context}; set data.num_context=2.")
    if suw_config.unsupervised in ("ego", "ego_object") and not suw_config.pose_net:
        raise bad(f"suw.unsupervised={suw_config.unsupervised} needs the pose net; set "
                  "suw.pose_net=true (or use suw.unsupervised=known_pose).")
    if suw_config.unsupervised == "ego_object" and suw_config.max_objects < 1:
        raise bad("suw.unsupervised=ego_object needs suw.max_objects >= 1.")
    if suw_config.weak != "none" and suw_config.weak_pairs_per_image < 1:
        raise bad("suw.weak is on but suw.weak_pairs_per_image < 1; set it to 1 (the paper's "
                  "one pair per image per step).")
    if (suw_config.network == "hourglass" and suw_config.supervised == "soft_classification"
            and suw_config.hourglass_head == "log_depth"):
        raise bad("suw.supervised=soft_classification needs the hourglass's bins head; set "
                  "suw.hourglass_head=auto or bins.")
    if suw_config.weak_train_pattern:
        if suw_config.weak == "none":
            raise bad("suw.weak_train_pattern is set but suw.weak is 'none'; the weak set "
                      "only feeds the W loss.")
        if not 0 < suw_config.weak_batch_size < data.batch_size:
            raise bad(f"suw.weak_batch_size={suw_config.weak_batch_size} must be in "
                      f"(0, data.batch_size={data.batch_size}) with a weak set.")
    elif suw_config.weak_batch_size:
        raise bad(f"suw.weak_batch_size={suw_config.weak_batch_size} without "
                  "suw.weak_train_pattern; set both, or suw.weak_batch_size=0.")


def _largest_object_ids(target_instances, max_objects: int):
    """Ids of the `max_objects` largest objects of each target instance map.

    Args:
      target_instances: int32 `[B, H, W]`, 0 = no object.
    Returns:
      int32 `[B, max_objects]`, 0 in unused slots.
    """
    def one(instance_map):
        # Pixel counts per id by sorting, not tf.unique_with_counts: XLA cannot compile that
        # (train.jit_compile), and the sorted runs keep every shape static (one slot per pixel,
        # empty slots count 0). Ties go to the smaller id.
        flat = tf.sort(tf.reshape(instance_map, [-1]))
        size = tf.shape(flat)[0]
        starts = tf.concat([[True], flat[1:] != flat[:-1]], axis=0)
        runs = tf.cumsum(tf.cast(starts, tf.int32)) - 1
        counts = tf.math.unsorted_segment_sum(tf.ones_like(flat), runs, size)
        ids = tf.math.unsorted_segment_max(flat, runs, size)
        counts = tf.where(ids > 0, counts, tf.zeros_like(counts))  # background never wins
        padded_counts = tf.pad(counts, [[0, max_objects]])
        padded_ids = tf.pad(ids, [[0, max_objects]])
        _, order = tf.math.top_k(padded_counts, k=max_objects)
        chosen = tf.gather(padded_ids, order)
        return tf.where(tf.gather(padded_counts, order) > 0, chosen, tf.zeros_like(chosen))

    return tf.map_fn(one, tf.cast(target_instances, tf.int32),
                     fn_output_signature=tf.TensorSpec([max_objects], tf.int32))


def object_masks(instances, object_ids):
    """Per-frame masks of the chosen objects.

    Args:
      instances: int32 `[B, F, H, W]` aligned instance maps (target first).
      object_ids: int32 `[B, M]` (0 = unused slot).
    Returns:
      float32 `[B, F, H, W, M]`, 1 inside object m in frame f.
    """
    instances = tf.cast(instances, tf.int32)
    ids = object_ids[:, None, None, None, :]
    return tf.cast(tf.logical_and(instances[..., None] == ids, ids > 0), tf.float32)


class SUWTask(loop.Task):
    """SUW-Learn on the engine's `Trainer` (see the module docstring)."""

    config_sections = {"suw": SUWConfig}

    def check_config(self, config) -> None:
        check_config(config)

    # ----------------------------------------------------------------------------------
    # Models.
    # ----------------------------------------------------------------------------------

    @staticmethod
    def hourglass_head(config) -> str:
        head = config.suw.hourglass_head
        if head == "auto":
            return "bins" if config.suw.supervised == "soft_classification" else "log_depth"
        return head

    def build_depth_model(self, config) -> keras.Model:
        """The depth network of `config.suw` (input "image" `[B, H, W, 3]` in [0, 1])."""
        net = config.suw
        if net.network == "suw_encoder_decoder":
            return suw.build_suw_encoder_decoder(
                num_bins=net.num_bins, min_depth=net.min_depth, max_depth=net.max_depth,
                sam_dilations=net.sam_dilations)
        return hourglass.build_hourglass(head=self.hourglass_head(config),
                                         num_bins=net.num_bins, min_depth=net.min_depth,
                                         max_depth=net.max_depth)

    def build(self, config) -> Dict[str, keras.Model]:
        depth_model = self.build_depth_model(config)
        models = {common.MODEL_DEPTH: depth_model}
        if config.suw.unsupervised in ("ego", "ego_object"):
            if config.suw.network == "suw_encoder_decoder":
                encoder = depth_model  # pose nets share the depth net's encoder body
            else:
                encoder = suw.build_suw_encoder_body(name="pose_suw_encoder_body")
            num_sources = config.data.num_context
            models[common.MODEL_POSE] = pose.build_pose_net(encoder, num_sources)
            if config.suw.unsupervised == "ego_object":
                models[common.MODEL_OBJECT_MOTION] = pose.build_object_motion_net(
                    encoder, num_sources)
        for model in models.values():
            set_bn_momentum(model, config.model.bn_momentum)
        return models

    def serving_model(self, config, models) -> keras.Model:
        return models[common.MODEL_DEPTH]

    # ----------------------------------------------------------------------------------
    # Data.
    # ----------------------------------------------------------------------------------

    def train_keys(self, config) -> list:
        """Keys parsed from the main training records: what the losses need plus data.keys."""
        return list(dict.fromkeys(required_keys(config) + list(config.data.keys)))

    def train_streams(self, config) -> Dict[str, int]:
        weak_batch = config.suw.weak_batch_size if config.suw.weak_train_pattern else 0
        streams = {TRAIN_STREAM: config.data.batch_size - weak_batch}
        if weak_batch:
            streams[WEAK_STREAM] = weak_batch
        return streams

    def make_train_dataset(self, config, stream, input_context):
        data = config.data
        batch_size = self.train_streams(config)[stream]
        if stream == WEAK_STREAM:  # images and pairs only: it feeds the W loss alone
            return pipeline.make_training_dataset(config, config.suw.weak_train_pattern,
                                                  [common.IMAGE, common.WEAK_PAIRS],
                                                  batch_size, input_context, 1)
        if not data.train_pattern:
            raise errors.ConfigError(
                "data.train_pattern is empty; point it at the training shards, e.g. "
                "--set data.train_pattern='data/kitti/train-*.tfrecord'.")
        return pipeline.make_training_dataset(config, data.train_pattern,
                                              self.train_keys(config), batch_size,
                                              input_context, 0)

    def make_eval_dataset(self, config, pattern: Optional[str] = None
                          ) -> Optional[tf.data.Dataset]:
        """Evaluation batches of IMAGE and DEPTH (`pattern` overrides data.eval_pattern)."""
        return pipeline.make_depth_eval_dataset(config, pattern)

    def num_train_examples(self, config) -> Optional[int]:
        return pipeline.count_train_examples(config)

    # ----------------------------------------------------------------------------------
    # Losses.
    # ----------------------------------------------------------------------------------

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        suw_config = config.suw
        batch = batches[TRAIN_STREAM]
        weak_batch = batches.get(WEAK_STREAM)
        images = batch[common.IMAGE]
        main_batch = images.shape[0]
        if weak_batch is not None:
            images = tf.concat([images, weak_batch[common.IMAGE]], axis=0)
        outputs = models[common.MODEL_DEPTH](images, training=training)
        outputs = {k: tf.cast(v, tf.float32) for k, v in outputs.items()}
        main_outputs = ({k: v[:main_batch] for k, v in outputs.items()}
                        if weak_batch is not None else outputs)
        # Per-batch means times (local examples / global examples of that stream): summed
        # over replicas this is the mean over the global batch (see loop.global_mean). The
        # main stream (S, U) and the weak stream (W) are averaged separately.
        main_global = global_batch_sizes[TRAIN_STREAM]
        share = float(main_batch) / float(main_global)
        losses = {}
        total = tf.constant(0.0)
        if suw_config.supervised != "none":
            value = self.supervised_loss(config, main_outputs, batch[common.DEPTH])
            losses[common.LOSS_SUPERVISED] = suw_config.supervised_weight * value * share
            total += losses[common.LOSS_SUPERVISED]
        if suw_config.unsupervised != "none":
            terms = self.unsupervised_loss(models, config, main_outputs, batch,
                                           training=training,
                                           global_batch_size=main_global, rng=rng)
            weight = suw_config.unsupervised_weight
            losses[common.LOSS_UNSUPERVISED] = weight * terms[common.LOSS_TOTAL]
            losses[common.LOSS_PHOTOMETRIC] = weight * terms[common.LOSS_PHOTOMETRIC]
            losses[common.LOSS_SMOOTHNESS] = weight * terms[common.LOSS_SMOOTHNESS]
            total += losses[common.LOSS_UNSUPERVISED]
        if suw_config.weak != "none":
            if weak_batch is not None:
                depth = outputs[common.OUT_DEPTH][main_batch:]
                pairs_batch = weak_batch
                weak_share = float(depth.shape[0]) / float(global_batch_sizes[WEAK_STREAM])
            else:
                depth = outputs[common.OUT_DEPTH]
                pairs_batch = batch
                weak_share = share
            value = self.weak_loss(config, depth, pairs_batch[common.WEAK_PAIRS],
                                   pairs_batch[common.NUM_WEAK_PAIRS], rng)
            losses[common.LOSS_WEAK] = suw_config.weak_weight * value * weak_share
            total += losses[common.LOSS_WEAK]
        losses[common.LOSS_TOTAL] = total
        return losses

    def supervised_loss(self, config, outputs, gt_depth):
        """The S term (unweighted batch mean) for `suw.supervised`."""
        suw_config = config.suw
        gt_depth = tf.cast(gt_depth, tf.float32)
        if suw_config.supervised == "soft_classification":
            logits = outputs[common.OUT_DEPTH_BIN_LOGITS]
            factor = suw.OUTPUT_STRIDE if suw_config.network == "suw_encoder_decoder" else 1
            target = depth_losses.downsample_sparse_depth(gt_depth, factor)
            return depth_losses.soft_classification_loss(
                logits, target, suw_config.num_bins, suw_config.min_depth, suw_config.max_depth,
                sharpness=suw_config.soft_target_a)
        prediction = outputs[common.OUT_DEPTH]
        if suw_config.supervised == "l1_log":
            return depth_losses.l1_log_loss(prediction, gt_depth)
        if suw_config.supervised == "scale_invariant":
            return depth_losses.scale_invariant_log_loss(prediction, gt_depth,
                                                         lam=suw_config.silog_lambda)
        if suw_config.supervised == "berhu":
            return depth_losses.berhu_loss(prediction, gt_depth)
        raise ValueError(f"unknown suw.supervised={suw_config.supervised!r}")

    def _disparity_scales(self, config, outputs):
        """Sigmoid-style disparities (see module doc) of the network output, coarsest last."""
        suw_config = config.suw
        key = (common.OUT_DEPTH_LOW if suw_config.network == "suw_encoder_decoder"
               else common.OUT_DEPTH)
        base = depth_to_disparity(outputs[key], suw_config.min_depth, suw_config.max_depth)
        scales = [base]
        height, width = base.shape[1], base.shape[2]
        for scale in range(1, config.suw.num_scales):
            factor = 2 ** scale
            if height is not None and width is not None and min(
                    -(-height // factor), -(-width // factor)) < 2:
                # The smoothness term takes differences between neighbours: a 1-pixel side
                # has none (its mean would be NaN).
                raise errors.ConfigError(
                    f"suw.num_scales={config.suw.num_scales} is too many for the network's "
                    f"{height}x{width} output: scale {scale} would be narrower than 2 pixels. "
                    "Lower suw.num_scales.")
            scales.append(tf.nn.avg_pool2d(base, factor, factor, "SAME"))
        return scales

    def unsupervised_loss(self, models, config, outputs, batch, *, training,
                          global_batch_size, rng):
        """The U terms (`view_synthesis` dict, already divided by the global batch)."""
        suw_config = config.suw
        image = tf.cast(batch[common.IMAGE], tf.float32)
        context = tf.cast(batch[common.CONTEXT], tf.float32)
        intrinsics = tf.cast(batch[common.INTRINSICS], tf.float32)
        num_sources = context.shape[1]
        masks = object_transforms = None
        if suw_config.unsupervised == "known_pose":
            poses = tf.cast(batch[common.POSES], tf.float32)
            target_to_source = tf.stack(
                [transforms.relative_pose(poses[:, 0], poses[:, 1 + i])
                 for i in range(num_sources)], axis=1)
        else:
            frames = pose.stack_frames(image, context)  # [B, H, W, 3 (N + 1)]
            if suw_config.unsupervised == "ego_object":
                instances = batch[common.INSTANCES]  # [B, N + 1, H, W], target first
                ids = _largest_object_ids(instances[:, 0], suw_config.max_objects)
                per_frame = object_masks(instances, ids)  # [B, N + 1, H, W, M]
                # Ego-motion from the static scene only: every object of every frame blacked out.
                union = tf.reduce_max(per_frame, axis=[1, 4])[..., None]  # [B, H, W, 1]
                ego_input = warp_lib.mask_objects(frames, union)
                masks = per_frame[:, 0]  # [B, H, W, M] target-frame masks
                # Object motion: one row per (example, object), frames keeping only that object.
                batch_size, height, width = (tf.shape(frames)[0], tf.shape(frames)[1],
                                             tf.shape(frames)[2])
                per_object = tf.transpose(per_frame, [0, 4, 2, 3, 1])  # [B, M, H, W, N + 1]
                object_frames = pose.mask_frames(
                    tf.repeat(frames, suw_config.max_objects, axis=0),
                    tf.reshape(per_object, [-1, height, width, num_sources + 1]))
                with frozen_bn_statistics(models[common.MODEL_OBJECT_MOTION]):
                    motion = models[common.MODEL_OBJECT_MOTION](object_frames,
                                                                training=training)
                motion = tf.cast(motion[common.OUT_OBJECT_MOTION], tf.float32)
                motion = tf.reshape(motion, [batch_size, suw_config.max_objects, num_sources, 6])
                motion = scale_translation(motion, suw_config.pose_translation_scale)
                object_transforms = tf.transpose(transforms.pose_vec_to_matrix(motion),
                                                 [0, 2, 1, 3, 4])  # [B, N, M, 4, 4]
            else:
                ego_input = frames
            with frozen_bn_statistics(models[common.MODEL_POSE]):
                pose_vec = models[common.MODEL_POSE](ego_input, training=training)
            target_to_source = transforms.pose_vec_to_matrix(scale_translation(
                tf.cast(pose_vec[common.OUT_POSE], tf.float32),
                suw_config.pose_translation_scale))  # [B, N, 4, 4]
        noise_seed = rng.make_seeds(1)[:, 0]
        return view_synthesis.multiscale_view_synthesis_loss(
            image, context, self._disparity_scales(config, outputs), intrinsics,
            target_to_source, object_masks=masks, object_transforms=object_transforms,
            min_depth=suw_config.min_depth, max_depth=suw_config.max_depth,
            ssim_weight=suw_config.ssim_weight, smoothness_weight=suw_config.smoothness_weight,
            automask=suw_config.automask, noise_seed=noise_seed,
            global_batch_size=global_batch_size)

    def draw_pairs(self, config, pairs, counts, rng):
        """`suw.weak_pairs_per_image` pairs per image, uniformly from its valid rows.

        Args:
          pairs: float32 `[B, P, 6]` padded pairs; counts: int32 `[B]` valid rows.
          rng: the Trainer's `tf.random.Generator` (checkpointed: resumes draw the same).
        Returns:
          (drawn `[B, k, 6]`, num_valid int32 `[B]`: k, or 0 for images without pairs).
        """
        k = config.suw.weak_pairs_per_image
        counts = tf.cast(counts, tf.int32)
        uniform = rng.uniform(tf.stack([tf.shape(pairs)[0], k]), dtype=tf.float32)
        index = tf.cast(tf.floor(uniform * tf.cast(counts[:, None], tf.float32)), tf.int32)
        index = tf.clip_by_value(index, 0, tf.maximum(counts[:, None] - 1, 0))
        drawn = tf.gather(pairs, index, batch_dims=1)
        if config.suw.weak == "pixel":
            drawn = tf.concat([drawn[..., :4], tf.zeros_like(drawn[..., 4:5]), drawn[..., 5:]],
                              axis=-1)
        return drawn, tf.where(counts > 0, k, 0)

    def weak_loss(self, config, pred_depth, pairs, counts, rng):
        """The W term (unweighted mean over the drawn pairs)."""
        drawn, num_valid = self.draw_pairs(config, tf.cast(pairs, tf.float32), counts, rng)
        return ranking.ranking_loss(pred_depth, drawn, num_valid=num_valid)

    # ----------------------------------------------------------------------------------
    # Evaluation and pictures.
    # ----------------------------------------------------------------------------------

    def predict_depth(self, config, models, images, training: bool = False):
        """Metric depth `[B, h, w, 1]` for images `[B, h, w, 3]` of any size: the images are
        resized to data.image_size for the network and the depth back to (h, w)."""
        images = tf.cast(images, tf.float32)
        size = tf.shape(images)[1:3]
        model_size = tuple(config.data.image_size)
        static = tuple(images.shape[1:3])
        same = static == model_size
        inputs = images if same else tf.image.resize(images, model_size, method="bilinear")
        depth = tf.cast(models[common.MODEL_DEPTH](inputs, training=training)[common.OUT_DEPTH],
                        tf.float32)
        if same:
            return depth
        return tf.image.resize(depth, size, method="bilinear")

    def eval_outputs(self, config, models, batch):
        prediction = self.predict_depth(config, models, batch[common.IMAGE])
        return depth_eval_outputs(prediction, batch[common.DEPTH], config.eval)

    def init_metrics(self, config):
        return depth_metrics.DepthMetricAccumulator()

    def update_metrics(self, config, state, outputs):
        return update_depth_accumulator(state, outputs)

    def result_metrics(self, config, state):
        return state.result()

    def image_summaries(self, config, models, batch):
        outputs = models[common.MODEL_DEPTH](tf.cast(batch[common.IMAGE], tf.float32),
                                             training=False)
        depth = tf.cast(outputs[common.OUT_DEPTH], tf.float32)
        pictures = {"input": visualize.to_rgb_uint8_tf(batch[common.IMAGE]),
                    "depth": visualize.colorize_depth_tf(depth)}
        if common.DEPTH in batch:
            gt = tf.cast(batch[common.DEPTH], tf.float32)
            pictures["ground_truth"] = visualize.colorize_depth_tf(gt)
            pictures["abs_rel_error"] = visualize.colorize_error_tf(depth, gt)
        if common.OUT_UNCERTAINTY in outputs:
            pictures["uncertainty"] = visualize.colorize_uncertainty_tf(
                outputs[common.OUT_UNCERTAINTY])
        return pictures
