"""Semi-supervised segmentation task (Hoyer et al. 2021): mean teacher + DepthMix / ClassMix.

Every step sees two batches (`train_streams`):

* "train" (data.batch_size, 2 in the paper): labelled images of the `seg.*` subset with the
  segmentation task's augmentation and cross-entropy (`SegTask`, reused by subclassing);
* "unlabeled" (semisup.unlabeled_batch_size, 2): images of semisup.unlabeled_pattern (default
  data.train_pattern) with the same geometric and colour augmentation. Following the
  reference's DepthMix runs (`experiments.py` id 210, `only_unlabeled=False`,
  `mix_use_gt=True`) this stream reads *every* record, and those of the labelled subset mix
  their one-hot ground truth instead of the teacher's probabilities
  (`mean_teacher.soft_targets`); with `semisup.mix_use_gt=false` (its ClassMix runs,
  `only_unlabeled=True`) it reads only the records outside the labelled subset.

On the unlabelled batch (`compute_losses`): the teacher - an exponential moving average of the
student (a model of `build()`, frozen for the optimizer, updated in `after_apply` with alpha =
min(1 - 1/(step+1), 0.99), checkpointed with the run; a fresh run starts it as an exact copy
of the student after the DT transfer; by default run in training mode like the reference's
`ema_model.train()`: batch statistics, ASPP dropout on) - gives softmax probabilities; images
and targets are mixed with one mask (`semisup.mix`: "none", "depthmix" from SDE disparity,
"classmix" from the targets' classes; image i pasted onto its partner (i + 1) % B); the mixed
images get the strong augmentation (colour jitter p=0.8 strength 0.25, Gaussian blur p=0.5);
the student's cross-entropy to the mixed pseudo-labels (argmax) is weighted by the fraction of
pixels whose mixed target probability is >= 0.968. Total loss = CE(labelled) +
semisup.unlabeled_weight * that, as in the reference (`train.py` `train_step` +
`train_step_segmentation_unlabeled`; two student passes, one per batch, as there).

DepthMix's disparity (`semisup.depth_source`):

* "network": a frozen SDE depth network (model "sde_depth", restored on a fresh run from
  semisup.sde_from: an SDE run's workdir, checkpoint or export; checkpointed with the run) runs
  in the step on the augmented unlabelled crop; its disparity is normalised per crop (the
  reference's `depthmix_online_depth`).
* "records": the pseudo disparity `tools/predict_pseudo_depth` stored in the records
  (`depth/pseudo/encoded`, normalised per full image, then cropped and scaled with the image
  by the pipeline; the reference's default, precomputed by its `DepthEstimator`). No SDE in the
  step: faster (bench/bench_semisup.py).

Randomness in the step (ClassMix's classes, the strong augmentation) is stateless, seeded from
the Trainer's checkpointed generator, so a resumed run repeats the uninterrupted one.

Differences from the reference, on purpose: the confidence weight is the fraction over one
replica's batch (the reference's single GPU: the whole batch); ClassMix chooses among the
classes of the targets' argmax with ignored pixels excluded (the reference's argmax of an
all-zero one-hot ignored pixel is class 0); the strong augmentation draws its coin flips per
image (semisup/augment.py).

Pictures (`image_summaries`, TensorBoard): the student's and the teacher's predictions and,
with DepthMix, the paper's Fig. S2 of the first pair of the batch ("depthmix": sources with
their SDE, the mixed image with the mask border, the mixed SDE and labels).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import pipeline, records, schema, subsets
from tf_depthseg.losses import segmentation as seg_losses
from tf_depthseg.models import batch_norm
from tf_depthseg.semisup import augment, classmix, depthmix, mean_teacher
from tf_depthseg.semisup import rng as rng_lib
from tf_depthseg.training import checkpoints, loop
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks import seg as seg_task
from tf_depthseg.training.tasks.seg_config import SegConfig
from tf_depthseg.training.tasks.semisup_config import SemisupConfig

LABELED_STREAM = seg_task.TRAIN_STREAM
UNLABELED_STREAM = "unlabeled"
MODEL_STUDENT = seg_task.MODEL_SEGMENTATION
MODEL_TEACHER = "teacher"
MODEL_SDE = "sde_depth"
IS_LABELED = "is_labeled"  # bool [B] in unlabelled batches with semisup.mix_use_gt
LOSS_UNLABELED = "pseudo_label_ce"
CONFIDENT_FRACTION = "confident_fraction"  # logged with the losses (not minimised)
PREDICT_PSEUDO_DEPTH = "tools/predict_pseudo_depth"


def uses_depth(config) -> bool:
    return config.semisup.mix == "depthmix"


def uses_sde_network(config) -> bool:
    return uses_depth(config) and config.semisup.depth_source == "network"


def uses_pseudo_depth_records(config) -> bool:
    return uses_depth(config) and config.semisup.depth_source == "records"


def unlabeled_pattern(config) -> str:
    return config.semisup.unlabeled_pattern or config.data.train_pattern


def check_config(config) -> None:
    """Settings the semi-supervised task cannot train: ConfigError naming the key and the fix."""
    seg_task.check_config(config)
    semi, seg = config.semisup, config.seg
    bad = errors.ConfigError
    if uses_sde_network(config) and not semi.sde_from:
        raise bad("semisup.mix=depthmix with semisup.depth_source=network needs the SDE run: "
                  "--set semisup.sde_from=<an SDE workdir or its export>; or precompute the "
                  f"disparity into the records with {PREDICT_PSEUDO_DEPTH} and set "
                  "semisup.depth_source=records.")
    if uses_sde_network(config):
        resolve_sde(config)  # UserError naming semisup.sde_from when it is no SDE run
    if semi.sde_from and not uses_sde_network(config):
        logging.warning("semisup.sde_from=%s is not used (semisup.mix=%s, "
                        "semisup.depth_source=%s).", semi.sde_from, semi.mix, semi.depth_source)
    if semi.mix != "none" and semi.unlabeled_batch_size < 2:
        raise bad(f"semisup.unlabeled_batch_size={semi.unlabeled_batch_size}: semisup.mix="
                  f"{semi.mix} pastes each image onto another image of its batch; use at least "
                  "2 per replica (the paper: 2), or semisup.mix=none.")
    if (not semi.mix_use_gt and not semi.unlabeled_pattern and not seg.labeled_count
            and not seg.labeled_ids_file):
        raise bad("semisup.mix_use_gt=false reads only the records outside the labelled subset, "
                  "but every record of data.train_pattern is labelled (seg.labeled_count=0, no "
                  "seg.labeled_ids_file): set seg.labeled_count, semisup.unlabeled_pattern, or "
                  "semisup.mix_use_gt=true.")


# ------------------------------------------------------------------------------------------
# Streams.
# ------------------------------------------------------------------------------------------
def _all_source_ids(pattern: str, allow_incomplete: bool) -> Tuple[str, ...]:
    files = records.list_checked_shards(pattern, allow_incomplete,
                                        pipeline.ALLOW_INCOMPLETE_OVERRIDE)
    return tuple(subsets.read_source_ids(files))


def _check_pseudo_depth(pattern: str) -> None:
    """The first record of `pattern` must carry the pseudo disparity (a clearer message than
    the pipeline's generic missing-feature error: which tool writes it)."""
    if pattern.startswith(config_lib.TFDS_PREFIX):
        return
    for path in records.list_shards(pattern):
        first = next(iter(tf.data.TFRecordDataset(path).take(1).as_numpy_iterator()), None)
        if first is None:
            continue
        if schema.missing_feature(first, [common.PSEUDO_DISPARITY], 0) is not None:
            raise errors.BadInputError(
                f"{path}: record {records.source_id_of(first)} has no "
                f"{common.KEY_DEPTH_PSEUDO_ENCODED} feature, which semisup.depth_source=records "
                f"reads; write records with it (python -m {PREDICT_PSEUDO_DEPTH.replace('/', '.')}"
                " --input_pattern=... --sde=<SDE run> --output_dir=...) and point "
                "semisup.unlabeled_pattern (or data.train_pattern) there, or set "
                "semisup.depth_source=network with semisup.sde_from.")
        return


def _add_is_labeled(dataset: tf.data.Dataset, labelled: Optional[Tuple[str, ...]]):
    """Adds IS_LABELED (bool `[B]`) to every batch: the source id is in `labelled` (None =
    every record is labelled)."""
    if labelled is None:
        def add(batch):
            return {**batch, IS_LABELED: tf.ones_like(batch[common.SOURCE_ID], tf.bool)}
    else:
        wanted = tf.constant(sorted(set(labelled)), tf.string)

        def add(batch):
            ids = batch[common.SOURCE_ID]
            return {**batch, IS_LABELED: tf.reduce_any(
                tf.equal(ids[:, None], wanted[None, :]), axis=1)}
    return dataset.map(tf.autograph.experimental.do_not_convert(add))


# ------------------------------------------------------------------------------------------
# The depth network of DepthMix.
# ------------------------------------------------------------------------------------------
def resolve_sde(config):
    """(checkpoint prefix, the SDE run's config) of semisup.sde_from."""
    return seg_task.resolve_sde_source(config.semisup.sde_from, "semisup.sde_from")


def normalized_disparity(sde_model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """The frozen SDE's disparity of `images` `[B, H, W, 3]`, normalised per image to [0, 1]:
    float32 `[B, H, W, 1]`."""
    disparity = sde_model(images, training=False)[common.disparity_key(0)]
    return depthmix.normalize_disparity(tf.stop_gradient(tf.cast(disparity, tf.float32)))


class SemisupTask(seg_task.SegTask):
    """Semi-supervised segmentation (see the module docstring)."""

    config_sections = {"seg": SegConfig, "semisup": SemisupConfig}

    def check_config(self, config) -> None:
        check_config(config)

    # ----------------------------------------------------------------------------------
    # Models.
    # ----------------------------------------------------------------------------------

    def build(self, config) -> Dict[str, keras.Model]:
        models = super().build(config)
        # The same builder: the teacher's variables pair with the student's in order.
        teacher = seg_task.build_segmentation_model(config)
        batch_norm.set_bn_momentum(teacher, config.model.bn_momentum)
        models[MODEL_TEACHER] = teacher
        if uses_sde_network(config):
            try:
                _, sde_config = resolve_sde(config)
            except errors.UserError as error:
                # Training never gets here (check_config resolves it first); evaluation and
                # export restore the student only, so a moved SDE run must not stop them.
                logging.warning("%s Building the models without DepthMix's SDE network (enough "
                                "to evaluate and export the student).", error)
            else:
                models[MODEL_SDE] = sde_task.build_depth_model(sde_config)
        return models

    def frozen_models(self, config) -> List[str]:
        return [MODEL_TEACHER] + ([MODEL_SDE] if uses_sde_network(config) else [])

    def initialize_models(self, config, models) -> None:
        super().initialize_models(config, models)  # seg.init_from (DT)
        if uses_sde_network(config):
            prefix, _ = resolve_sde(config)
            checkpoints.load_models({common.MODEL_DEPTH: models[MODEL_SDE]}, prefix)
            logging.info("DepthMix SDE restored from %s", prefix)
        # The teacher starts as an exact copy (the reference's create_ema_model).
        mean_teacher.copy_to_teacher(mean_teacher.teacher_variable_pairs(
            models[MODEL_STUDENT], models[MODEL_TEACHER], include_moving_statistics=True))

    def teacher_pairs(self, config, models) -> mean_teacher.VariablePairs:
        """(teacher, student) variables the EMA averages (see semisup.teacher_batch_stats)."""
        return mean_teacher.teacher_variable_pairs(
            models[MODEL_STUDENT], models[MODEL_TEACHER],
            include_moving_statistics=not config.semisup.teacher_batch_stats)

    def after_apply(self, config, models, step) -> None:
        mean_teacher.update_teacher(self.teacher_pairs(config, models), step,
                                    config.semisup.ema_max_alpha)

    # ----------------------------------------------------------------------------------
    # Data.
    # ----------------------------------------------------------------------------------

    def train_streams(self, config) -> Dict[str, int]:
        # The unlabelled stream first: TensorBoard's training pictures (the DepthMix figure)
        # are drawn from the first stream's batch.
        return {UNLABELED_STREAM: config.semisup.unlabeled_batch_size,
                LABELED_STREAM: config.data.batch_size}

    def make_train_dataset(self, config, stream, input_context):
        if stream == LABELED_STREAM:
            return super().make_train_dataset(config, stream, input_context)
        semi, data = config.semisup, config.data
        pattern = unlabeled_pattern(config)
        if not pattern:
            raise errors.ConfigError(
                "data.train_pattern and semisup.unlabeled_pattern are empty; point "
                "data.train_pattern at records with semantic labels.")
        keys = [common.IMAGE]
        if semi.mix_use_gt:
            keys.append(common.SEMANTIC)
        if uses_pseudo_depth_records(config):
            _check_pseudo_depth(pattern)
            keys.append(common.PSEUDO_DISPARITY)
        labelled = seg_task.labelled_source_ids(config)
        source_ids = None
        if not semi.mix_use_gt and not semi.unlabeled_pattern:
            chosen = set(labelled)
            source_ids = [i for i in _all_source_ids(pattern, data.allow_incomplete)
                          if i not in chosen]
            if not source_ids:
                raise errors.ConfigError(
                    f"semisup.mix_use_gt=false: every record of {pattern} is in the labelled "
                    "subset, so none is left for the unlabelled stream; label fewer "
                    "(seg.labeled_count) or set semisup.unlabeled_pattern.")
        dataset = pipeline.make_training_dataset(config, pattern, keys,
                                                 semi.unlabeled_batch_size, input_context,
                                                 seed_offset=1, source_ids=source_ids)
        if semi.mix_use_gt:
            if labelled is None and semi.unlabeled_pattern:
                labelled = _all_source_ids(data.train_pattern, data.allow_incomplete)
            dataset = _add_is_labeled(dataset, labelled)
        return dataset

    def num_train_examples(self, config) -> Optional[int]:
        """Records of the unlabelled stream (the first stream; see train_streams)."""
        semi = config.semisup
        if not semi.mix_use_gt and not semi.unlabeled_pattern:
            total = pipeline.count_train_examples(config)
            return total - len(seg_task.labelled_source_ids(config) or ())
        return pipeline.count_examples(unlabeled_pattern(config),
                                       config.data.allow_incomplete,
                                       config.data.tfds_data_dir or None)

    # ----------------------------------------------------------------------------------
    # Loss.
    # ----------------------------------------------------------------------------------

    def teacher_probabilities(self, config, models, images) -> tf.Tensor:
        """Softmax of the teacher's logits, float32 `[B, H, W, C]`, no gradient."""
        logits = models[MODEL_TEACHER](images, training=config.semisup.teacher_batch_stats)[
            common.OUT_SEMANTIC_LOGITS]
        return tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1))

    def targets(self, config, models, batch) -> tf.Tensor:
        """What gets mixed as each unlabelled image's label: float32 `[B, H, W, C]`."""
        probs = self.teacher_probabilities(config, models, batch[common.IMAGE])
        if config.semisup.mix_use_gt and IS_LABELED in batch:
            return mean_teacher.soft_targets(probs, batch[common.SEMANTIC], batch[IS_LABELED])
        return probs

    def disparity(self, config, models, batch) -> tf.Tensor:
        """DepthMix's normalised disparity of an unlabelled batch, float32 `[B, H, W, 1]`: the
        SDE's, normalised per crop, or the records' (normalised per full image, not again:
        the reference's precomputed pseudo depth)."""
        if config.semisup.depth_source == "network":
            return normalized_disparity(models[MODEL_SDE], batch[common.IMAGE])
        return tf.cast(batch[common.PSEUDO_DISPARITY], tf.float32)

    def mix(self, config, models, batch, targets, seed) -> Dict[str, tf.Tensor]:
        """Mixes images and targets of an unlabelled batch with one mask (`semisup.mix`):
        {"image", "target", "mask" (bool `[B, H, W, 1]`), "disparity" (DepthMix)}."""
        semi = config.semisup
        images = tf.cast(batch[common.IMAGE], tf.float32)
        if semi.mix == "none":
            return {"image": images, "target": targets,
                    "mask": tf.ones_like(images[..., :1], tf.bool)}
        if semi.mix == "depthmix":
            return depthmix.depthmix({"image": images, "target": targets},
                                     self.disparity(config, models, batch),
                                     margin=semi.depthmix_margin,
                                     foreground_threshold=semi.depthmix_foreground_threshold,
                                     normalize=False)
        labels, _ = mean_teacher.pseudo_labels(targets)
        return classmix.classmix({"image": images, "target": targets}, labels,
                                 seg_task.num_classes(config), seed)

    def compute_losses(self, config, models, batches, *, training, global_batch_sizes, rng):
        semi = config.semisup
        batch = batches[UNLABELED_STREAM]
        per_replica = batch[common.IMAGE].shape[0]
        if semi.mix != "none" and per_replica is not None and per_replica < 2:
            # Mixing pairs images of one replica's batch: with one, it would mix with itself.
            raise errors.ConfigError(
                f"semisup.unlabeled_batch_size={semi.unlabeled_batch_size} leaves "
                f"{per_replica} unlabelled image per replica, but semisup.mix={semi.mix} pastes "
                "each image onto another image of its replica's batch; use at least 2 per "
                "replica (2 x the number of replicas).")
        losses = super().compute_losses(config, models, batches, training=training,
                                        global_batch_sizes=global_batch_sizes, rng=rng)
        targets = self.targets(config, models, batch)
        # One fresh stateless seed per step from the checkpointed generator.
        mix_seed, augment_seed = tf.unstack(rng_lib.split_seed(
            tf.cast(rng.make_seeds(1)[:, 0], tf.int32), 2))
        mixed = self.mix(config, models, batch, targets, mix_seed)
        images = augment.strong_augment(
            mixed["image"], augment_seed,
            jitter_prob=augment.JITTER_PROB if semi.color_jitter else 0.0,
            jitter_strength=semi.jitter_strength,
            blur_prob=augment.BLUR_PROB if semi.blur else 0.0)
        logits = models[MODEL_STUDENT](images, training=training)[common.OUT_SEMANTIC_LOGITS]
        labels, max_prob = mean_teacher.pseudo_labels(mixed["target"])
        weight = mean_teacher.confidence_weight(max_prob, semi.confidence_threshold)
        per_image = semi.unlabeled_weight * seg_losses.pseudo_label_cross_entropy(
            logits, labels, weight)
        unlabeled = loop.global_mean(per_image, global_batch_sizes[UNLABELED_STREAM])
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        losses[LOSS_UNLABELED] = unlabeled
        # Summed over replicas like the losses: each replica adds its share of the mean.
        losses[CONFIDENT_FRACTION] = weight / replicas
        losses[common.LOSS_TOTAL] = losses[common.LOSS_TOTAL] + unlabeled
        return losses

    # ----------------------------------------------------------------------------------
    # Pictures.
    # ----------------------------------------------------------------------------------

    def image_summaries(self, config, models, batch):
        pictures = super().image_summaries(config, models, batch)
        images = tf.cast(batch[common.IMAGE], tf.float32)
        probs = self.teacher_probabilities(config, models, images)
        palette = seg_task.class_palette(config)
        pictures["teacher_prediction"] = seg_task._colorize_classes_tf(  # pylint: disable=protected-access
            tf.argmax(probs, axis=-1, output_type=tf.int32), palette)
        if uses_depth(config) and (uses_sde_network(config)
                                   or common.PSEUDO_DISPARITY in batch):
            pictures["depthmix"] = self.depthmix_figure_tf(config, models, batch)
        return pictures

    def depthmix_figure_tf(self, config, models, batch) -> tf.Tensor:
        """`visualize.depthmix_figure` of the batch's first two images: uint8 `[1, h, w, 3]`
        (an all-black 1x1 picture for a batch of one). Labels: what the step would mix (ground
        truth of labelled images, else the teacher's argmax); evaluation batches (no
        IS_LABELED) show their ground truth, as the paper's Fig. S2 does."""
        images = tf.cast(batch[common.IMAGE], tf.float32)
        disparity = self.disparity(config, models, batch)
        if common.SEMANTIC in batch and IS_LABELED not in batch:
            labels = tf.cast(batch[common.SEMANTIC][..., 0], tf.int32)
        else:
            labels, _ = mean_teacher.pseudo_labels(self.targets(config, models, batch))
        mask = depthmix.depthmix_mask(disparity, margin=config.semisup.depthmix_margin,
                                      foreground_threshold=(
                                          config.semisup.depthmix_foreground_threshold))
        palette = seg_task.class_palette(config)

        def draw(images, disparity, mask, labels):
            if images.shape[0] < 2:
                return np.zeros((1, 1, 3), np.uint8)
            # The mask of image 0 over its partner, image 1 (mix.partner_indices).
            return visualize.depthmix_figure(images[:2], disparity[:2], mask[0], labels[:2],
                                             palette=palette)

        figure = tf.numpy_function(draw, [images, disparity, mask, labels], tf.uint8,
                                   stateful=False)
        return tf.ensure_shape(figure, [None, None, 3])[None]
