"""DepthMix's pseudo disparity precomputed into the records (`tools/predict_pseudo_depth`), and
the DepthMix figure of two records.

The SDE (an SDE run's workdir, checkpoint prefix, or its tools/export folder, resolved like
`seg.init_from`) runs on every record's image at its stored size in inference mode; its
full-resolution disparity (`disparity_s0`, larger = closer) is normalised per image to [0, 1]
(`semisup.depthmix.normalize_disparity`, the reference's `DepthEstimator`, which normalises
per full image before any crop) and stored as the uint16 PNG feature `depth/pseudo/encoded`
(`schema.with_pseudo_disparity`; 1/65535 steps where the reference's 8-bit PNG has 1/255). The
records are rewritten shard by shard into a new folder (`records.rewrite_records`: atomic
shards, manifest with checksums); every other feature keeps its bytes.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import errors
from tf_depthseg import visualize
from tf_depthseg.data import image_io, records, schema
from tf_depthseg.semisup import depthmix
from tf_depthseg.training import checkpoints
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks import seg as seg_task

Predictor = Callable[[np.ndarray], np.ndarray]


def load_sde(path: str, key_name: str = "--sde") -> Tuple[keras.Model, str]:
    """(the SDE depth model restored from `path`, the checkpoint prefix read).

    Raises:
      errors.UserError: nothing usable at `path`, or not an SDE run (naming `key_name`).
    """
    prefix, sde_config = seg_task.resolve_sde_source(path, key_name)
    model = sde_task.build_depth_model(sde_config)
    checkpoints.load_models({common.MODEL_DEPTH: model}, prefix)
    logging.info("%s=%s: SDE restored from %s", key_name, path, prefix)
    return model, prefix


def disparity_predictor(model: keras.Model) -> Predictor:
    """image uint8 or float `[H, W, 3]` -> normalised disparity float32 `[H, W]` in [0, 1]."""

    @tf.function(reduce_retracing=True)
    def predict(image):
        disparity = model(image[None], training=False)[common.disparity_key(0)]
        return depthmix.normalize_disparity(disparity)[0, ..., 0]

    def run(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        return predict(tf.constant(image, tf.float32)).numpy()

    return run


def add_pseudo_disparity(serialized: bytes, predict: Predictor) -> bytes:
    """The record with the pseudo disparity of its image added (see module doc)."""
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    source_id = records.source_id_of(serialized)
    if common.KEY_IMAGE_ENCODED not in feature:
        raise errors.BadInputError(f"record {source_id} has no {common.KEY_IMAGE_ENCODED}; "
                                   "convert it again with a tools/convert_* tool.")
    image = image_io.decode_image_bytes(feature[common.KEY_IMAGE_ENCODED].bytes_list.value[0],
                                        f"{source_id} image")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return schema.with_pseudo_disparity(serialized, predict(image[..., :3]))


def write_pseudo_depth_records(input_pattern: str, output_dir: str, predict: Predictor,
                               skip_bad: bool = False, default_split: str = "train",
                               allow_incomplete: bool = False, source: str = ""
                               ) -> Dict[str, dict]:
    """Rewrites the records of `input_pattern` into `output_dir` with the pseudo disparity
    (`records.rewrite_records`: same shards and order, a progress bar per shard)."""
    return records.rewrite_records(
        input_pattern, output_dir, lambda serialized: add_pseudo_disparity(serialized, predict),
        skip_bad=skip_bad, source=source or "tools/predict_pseudo_depth",
        default_split=default_split, desc="pseudo depth", allow_incomplete=allow_incomplete)


def depthmix_figure_of_records(pattern: str, source_ids: Sequence[str] = (),
                               predict: Optional[Predictor] = None,
                               margin: float = depthmix.MARGIN,
                               palette: Optional[np.ndarray] = None) -> np.ndarray:
    """The paper's Fig. S2 (`visualize.depthmix_figure`) of two records of `pattern`: image i
    pasted onto image j where it is in front.

    Args:
      pattern: records (e.g. written by `write_pseudo_depth_records`).
      source_ids: the two records (i, j) by source id; default the first two.
      predict: SDE predictor for records without pseudo disparity (else they must carry it).
      margin: DepthMix margin (semisup.depthmix_margin).
      palette: class colours of the mixed ground-truth labels (drawn when both have labels).
    Returns:
      uint8 `[h, w, 3]`.
    Raises:
      errors.BadInputError: fewer than two records / unknown ids, different image sizes,
        no pseudo disparity and no `predict`.
    """
    wanted = list(source_ids)
    if wanted and len(wanted) != 2:
        raise errors.BadInputError(f"the DepthMix figure needs two source ids, got {wanted}")
    chosen = {}
    for serialized in records.iterate_records(pattern):
        source_id = records.source_id_of(serialized)
        if (not wanted and len(chosen) < 2) or source_id in wanted:
            chosen[source_id] = schema.decode_example(serialized)
        if len(chosen) == 2 and (not wanted or set(wanted) <= set(chosen)):
            break
    if predict is None:
        for source_id, sample in chosen.items():
            if sample.pseudo_disparity is None:
                raise errors.BadInputError(
                    f"{pattern}: record {source_id} has no {common.KEY_DEPTH_PSEUDO_ENCODED}; "
                    "pass --sde to predict it, or records written by "
                    "tools/predict_pseudo_depth.")
    order = wanted or list(chosen)
    missing = [i for i in wanted if i not in chosen]
    if missing or len(chosen) < 2:
        raise errors.BadInputError(
            f"{pattern}: the DepthMix figure needs two records; "
            + (f"no record has source id {missing[0]!r}" if missing
               else f"found {len(chosen)}") + ".")
    samples = [chosen[i] for i in order]
    if samples[0].image.shape != samples[1].image.shape:
        raise errors.BadInputError(
            f"{pattern}: records {order[0]} and {order[1]} have images of different sizes "
            f"{samples[0].image.shape[:2]} and {samples[1].image.shape[:2]}; pick two of one "
            "size.")
    disparities = []
    for sample in samples:
        disparities.append(sample.pseudo_disparity if sample.pseudo_disparity is not None
                           else predict(sample.image))
    disparities = np.stack(disparities).astype(np.float32)[..., None]
    mask = depthmix.depthmix_mask(tf.constant(disparities), margin=margin).numpy()[0]
    labels = None
    if all(sample.semantic is not None for sample in samples):
        labels = np.stack([sample.semantic for sample in samples])
    images = np.stack([sample.image for sample in samples])
    return visualize.depthmix_figure(images, disparities, mask, labels, palette=palette)
