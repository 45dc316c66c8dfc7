"""The growing selection schedule: teacher features, student rounds, picks, files, resume.

`run_selection(config, output_dir)` grows the labelled set to `selection.steps` (e.g. 25, 50,
100) out of the records of `data.train_pattern` (the pool), as the reference's
label_selection.py does with choice "ifp" and initial_samples "ifp":

1. The SDE teacher (`selection.sde_from`) runs once over the pool at `data.image_size`:
   decoder block `selection.feature_block`'s output, adaptively pooled to
   `selection.pool_size` (`farthest.adaptive_pool`), standardised per channel
   (`farthest.standardize`).
2. Step 1: a seeded first image, then pure iterative farthest point (no student, no bias) up to
   `steps[0]` (reference `choose_initial_samples(mode="ifp")`: bias_weight 0).
3. Step k > 1: a student (`student.StudentTask`) is trained from scratch on the `steps[k-1]`
   labelled images for (k-1) x `selection.student_steps` steps; every pool image's difficulty
   (`scores.difficulty`: student vs teacher disparity at `data.image_size`) times
   `selection.bias_weight` biases the distances to the unlabelled images; iterative farthest
   point adds `steps[k] - steps[k-1]` images to the labelled set.

Files in the output folder (each written atomically, as soon as it is known):

    selected_<n>.txt     the n chosen source ids in the order chosen, one per line with '#'
                         header lines: what seg.labeled_ids_file reads
    contact_<n>.png      their thumbnails, titled "#rank s=<score> d=<difficulty>"
    selection.json       config, pool, teacher, and per step the ids, every pick's score
                         (distance + bias), distance, bias and difficulty, the difficulty of
                         every pool image, the student's workdir and steps; rewritten after
                         every step (the record of what is done)
    teacher_features.npz the pooled teacher features of the pool (a cache)
    students/student_<n>/ the Trainer workdir of the student trained on the first n images
                         (checkpoints: a killed round resumes where it stopped; deleted once
                         the step is stored unless selection.keep_students)
    timings.json         seconds per step (not part of the result)

Rerunning the same command after a kill continues after the last step in selection.json (a
killed student resumes from its checkpoint); its files equal an uninterrupted run's
(`train.deterministic=true` makes the student bit-exact). The settings that decide the result
must equal the stored ones; `selection.steps` may grow (more steps continue the schedule).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg import utils
from tf_depthseg.data import image_io, pipeline, records, subsets
from tf_depthseg.models import hoyer
from tf_depthseg.selection import farthest, figure, scores
from tf_depthseg.selection import student as student_lib
from tf_depthseg.semisup import depthmix
from tf_depthseg.training import checkpoints, loop
from tf_depthseg.training.tasks import sde as sde_task
from tf_depthseg.training.tasks import seg as seg_task

SELECTION_FILENAME = "selection.json"
FEATURES_FILENAME = "teacher_features.npz"
TIMINGS_FILENAME = "timings.json"
STUDENTS_SUBDIR = "students"
FORMAT_VERSION = 1
ALLOW_INCOMPLETE = "--set data.allow_incomplete=true"
# Keys that do not change the result: a resumed run may differ in them.
_KEYS_FREE_ON_RESUME = ("selection.steps", "selection.thumbnail_width",
                        "selection.keep_students", "train.log_every",
                        "train.checkpoint_every", "train.keep_checkpoints",
                        "train.image_summaries_every", "data.eval_batch_size", "name")


def ids_filename(size: int) -> str:
    return f"selected_{size}.txt"


def sheet_filename(size: int) -> str:
    return f"contact_{size}.png"


def student_dirname(size: int) -> str:
    return os.path.join(STUDENTS_SUBDIR, f"student_{size}")


# ----------------------------------------------------------------------------------------------
# The pool and the teacher.
# ----------------------------------------------------------------------------------------------
def read_pool_ids(pattern: str, allow_incomplete: bool = False) -> List[str]:
    """The sorted source ids of the records of `pattern` (the pool).

    Raises:
      errors.BadInputError: no (complete) shards match, a record has no source id, or two
        records share one (a selection names records by id).
    """
    files = records.list_checked_shards(pattern, allow_incomplete, ALLOW_INCOMPLETE)
    ids = subsets.read_source_ids(files)
    seen = set()
    for source_id in ids:
        if source_id in seen:
            raise errors.BadInputError(
                f"{pattern}: two records have the source id {source_id!r}; a selection names "
                "records by id, so point data.train_pattern (--input) at one split with each "
                "record once.")
        seen.add(source_id)
    return sorted(ids)


def records_have_pseudo_disparity(pattern: str) -> bool:
    """Does the first record of `pattern` carry depth/pseudo/encoded?"""
    for serialized in records.iterate_records(pattern):
        feature = tf.train.Example.FromString(serialized).features.feature
        return common.KEY_DEPTH_PSEUDO_ENCODED in feature
    return False


def resolve_teacher_disparity(config) -> str:
    """`selection.teacher_disparity` with "auto" decided ("records" when the pool's first
    record has the pseudo disparity, else "network").

    Raises:
      errors.BadInputError: "records" but the records have none.
    """
    mode = config.selection.teacher_disparity
    pattern = config.data.train_pattern
    has_records = records_have_pseudo_disparity(pattern)
    if mode == "auto":
        return "records" if has_records else "network"
    if mode == "records" and not has_records:
        raise errors.BadInputError(
            f"{pattern}: the records have no {common.KEY_DEPTH_PSEUDO_ENCODED}, which "
            "selection.teacher_disparity=records trains the student on; write it with "
            "tools/predict_pseudo_depth, or set selection.teacher_disparity=network.")
    return mode


def teacher_outputs_model(sde_model: keras.Model, block: int) -> keras.Model:
    """The SDE depth model's decoder block `block` output (the reference's ("upconv", block))
    and its full-resolution disparity, in one graph.

    Returns:
      "image" `[B, H, W, 3]` -> {"features": `[B, h, w, C]`, "disparity": `[B, H, W, 1]`}.
    """
    features = sde_model.get_layer(f"{hoyer.DEPTH_DECODER}_b{block}_conv1_elu").output
    disparity = sde_model.get_layer(f"{hoyer.DEPTH_DECODER}_disp0_sigmoid").output
    return keras.Model(sde_model.inputs, {"features": features, "disparity": disparity},
                       name="selection_teacher")


def load_teacher(config, prefix: str, sde_config) -> keras.Model:
    """`teacher_outputs_model` of the SDE run's depth network (`sde_config`) restored from
    checkpoint `prefix` (`seg.resolve_sde_source` of `selection.sde_from`)."""
    model = sde_task.build_depth_model(sde_config)
    checkpoints.load_models({common.MODEL_DEPTH: model}, prefix)
    return teacher_outputs_model(model, config.selection.feature_block)


def pool_pass(config, teacher: keras.Model, *, features: bool,
              student: Optional[keras.Model] = None, num_images: int = 0,
              desc: str = "pool") -> Dict[str, Dict[str, np.ndarray]]:
    """One pass over the pool at `data.image_size` (no augmentation).

    Args:
      teacher: `teacher_outputs_model`.
      features: compute each image's pooled teacher features.
      student: compute each image's difficulty with this student (teacher disparity from
        the records or the network, `selection.teacher_disparity`, resolved).
      num_images: the pool's size (for the progress bar).
    Returns:
      {source id: {"features": float64 `[rows, cols, C]`, "difficulty": float}} (the keys
      asked for).
    """
    data, selection = config.data, config.selection
    from_records = selection.teacher_disparity == "records"
    keys = [common.IMAGE] + ([common.PSEUDO_DISPARITY] if student is not None and from_records
                             else [])
    dataset = pipeline.make_dataset(data.train_pattern, keys, data.eval_batch_size,
                                    training=False, image_size=data.image_size, num_context=0,
                                    deterministic=True, allow_incomplete=data.allow_incomplete)

    @tf.function(reduce_retracing=True)
    def run(batch):
        images = batch[common.IMAGE]
        out = {}
        if features or (student is not None and not from_records):
            outputs = teacher(images, training=False)
            if features:
                out["features"] = outputs["features"]
        if student is not None:
            target = (batch[common.PSEUDO_DISPARITY] if from_records
                      else depthmix.normalize_disparity(outputs["disparity"]))
            prediction = student(images, training=False)[common.disparity_key(0)]
            out["difficulty"] = scores.difficulty(
                prediction, target, selection.far_threshold, selection.far_dilation,
                selection.difficulty_bottom_fraction)
        return out

    results: Dict[str, Dict[str, np.ndarray]] = {}
    total = math.ceil(num_images / data.eval_batch_size) if num_images else None
    with pipeline.reading_errors([data.train_pattern]):
        for batch in utils.progress(dataset, total=total, desc=desc, unit="batch"):
            out = {k: v.numpy() for k, v in run(batch).items()}
            for index, source_id in enumerate(batch[common.SOURCE_ID].numpy()):
                entry = results.setdefault(source_id.decode(), {})
                if features:
                    entry["features"] = farthest.adaptive_pool(
                        out["features"][index], selection.pool_size, selection.pooling)
                if student is not None:
                    entry["difficulty"] = float(out["difficulty"][index])
    return results


def pool_features(config, teacher: keras.Model, ids: Sequence[str], output_dir: str
                  ) -> np.ndarray:
    """float64 `[N, rows, cols, C]` pooled teacher features of `ids` (in that order), from
    the output folder's cache when it holds these ids, else computed and cached."""
    path = os.path.join(output_dir, FEATURES_FILENAME)
    if os.path.isfile(path):
        with np.load(path) as cached:
            if list(cached["ids"]) == list(ids):
                return cached["features"].astype(np.float64)
        logging.warning("%s is for other records; computing the features again.", path)
    results = pool_pass(config, teacher, features=True, num_images=len(ids),
                        desc="teacher features")
    features = np.stack([results[source_id]["features"] for source_id in ids])
    with utils.atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.array(ids), features=features.astype(np.float32))
    # The cache holds float32: use the same values now as after a resume.
    return features.astype(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# The student.
# ----------------------------------------------------------------------------------------------
def train_student(config, workdir: str, labelled_ids: Sequence[str],
                  teacher: student_lib.Teacher, steps: int) -> keras.Model:
    """The student trained (or resumed, or restored when finished) in `workdir` for `steps`
    steps on `labelled_ids`; returns it."""
    # No evaluation nor keep-best: the student is only scored by the selection itself.
    config = config_lib.apply_overrides(config, [f"train.steps={int(steps)}",
                                                 "train.eval_every=0", "train.best_metric="])
    task = student_lib.StudentTask(labelled_ids, teacher)
    with pipeline.reading_errors([config.data.train_pattern]):
        trainer = loop.Trainer(config, task, workdir)
        if trainer.start_step < steps:
            logging.info("Student on %d images: %s from step %d to %d in %s.",
                         len(labelled_ids), "resuming" if trainer.start_step else "training",
                         trainer.start_step, steps, workdir)
            trainer.train()
    return trainer.models[student_lib.MODEL_STUDENT]


# ----------------------------------------------------------------------------------------------
# State and output files.
# ----------------------------------------------------------------------------------------------
def _result_key(config) -> dict:
    """The config's entries that decide the result (all but `_KEYS_FREE_ON_RESUME`)."""
    flat = {key: config_lib.get_key(config, key) for key in config_lib.all_keys(config)}
    return {key: value for key, value in json.loads(json.dumps(flat)).items()
            if key not in _KEYS_FREE_ON_RESUME}


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def load_state(output_dir: str, config, pool_ids: Sequence[str], teacher_prefix: str) -> dict:
    """selection.json of an earlier run into `output_dir` (checked: same settings, pool,
    teacher and step sizes so far), or a new state.

    Raises:
      errors.ConfigError: the folder holds a selection made otherwise (naming the first
        difference).
    """
    fresh = {"version": FORMAT_VERSION, "config": config_lib.to_dict(config),
             "result_key": _result_key(config),
             "pool": {"pattern": config.data.train_pattern, "num_images": len(pool_ids),
                      "ids_sha256": _ids_digest(pool_ids)},
             "teacher": {"checkpoint": teacher_prefix,
                         "disparity": config.selection.teacher_disparity},
             "steps": []}
    path = os.path.join(output_dir, SELECTION_FILENAME)
    if not os.path.isfile(path):
        return fresh
    fix = f"use a new --output_dir, or delete {output_dir} to start again."
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as error:
        raise errors.BadInputError(f"{path}: unreadable ({error}); {fix}") from None
    if state.get("version") != FORMAT_VERSION:
        raise errors.ConfigError(f"{path}: written by another version of the selection; {fix}")
    old, new = state["result_key"], fresh["result_key"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise errors.ConfigError(
                f"{output_dir} holds a selection made with {key}={old.get(key)!r}, this run "
                f"has {new.get(key)!r}; rerun with the same settings to continue it, or {fix}")
    if state["pool"]["ids_sha256"] != fresh["pool"]["ids_sha256"]:
        raise errors.ConfigError(
            f"{output_dir} holds a selection from other records ({state['pool']['num_images']} "
            f"images then, {len(pool_ids)} in {config.data.train_pattern} now); {fix}")
    if state["teacher"]["checkpoint"] != teacher_prefix:
        raise errors.ConfigError(
            f"{output_dir} holds a selection made with the SDE checkpoint "
            f"{state['teacher']['checkpoint']}, but selection.sde_from now gives "
            f"{teacher_prefix}; pass that checkpoint, or {fix}")
    sizes = [step["size"] for step in state["steps"]]
    wanted = list(config.selection.steps[:len(sizes)])
    if sizes != wanted:
        raise errors.ConfigError(
            f"{output_dir} holds the steps {sizes}, which do not start the schedule "
            f"selection.steps={list(config.selection.steps)}; give steps that begin with "
            f"{sizes}, or {fix}")
    state["config"] = fresh["config"]
    return state


def write_ids_file(path: str, ids: Sequence[str], header: Sequence[str]) -> None:
    """The ids one per line after '#' header lines (subsets.read_ids_file reads it)."""
    lines = [f"# {line}" for line in header] + list(ids)
    utils.atomic_write_text(path, "\n".join(lines) + "\n")


def read_images(pattern: str, wanted: Sequence[str]) -> Dict[str, np.ndarray]:
    """{source id: uint8 image `[H, W, 3]`} of the records of `pattern` with those ids."""
    wanted = set(wanted)
    images = {}
    for serialized in records.iterate_records(pattern):
        feature = tf.train.Example.FromString(serialized).features.feature
        source_id = feature[common.KEY_SOURCE_ID].bytes_list.value[0].decode()
        if source_id in wanted:
            image = image_io.decode_image_bytes(
                feature[common.KEY_IMAGE_ENCODED].bytes_list.value[0], f"{source_id} image")
            images[source_id] = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
            if len(images) == len(wanted):
                break
    return images


def _tile_title(rank: int, pick: Mapping) -> str:
    if pick["difficulty"] is None:
        return f"#{rank} s={pick['score']:.3g}"
    return f"#{rank} s={pick['score']:.3g} d={pick['difficulty']:.2g}"


def write_contact_sheet(path: str, config, step: Mapping, picks: Sequence[Mapping]) -> None:
    """The step's chosen images in rank order (`figure.contact_sheet`)."""
    images = read_images(config.data.train_pattern, step["ids"])
    titles = [_tile_title(rank, pick) for rank, pick in enumerate(picks, start=1)]
    header = [f"{step['size']} images to annotate ({step['new']} new in this step)",
              "#rank s=distance+bias d=difficulty"]
    sheet = figure.contact_sheet([images[i] for i in step["ids"]], titles, header,
                                 config.selection.thumbnail_width)
    image_io.write_png(path, sheet)


# ----------------------------------------------------------------------------------------------
# The schedule.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Result:
    """What `run_selection` did."""

    steps: List[dict]  # selection.json's step entries
    resumed_after: int  # steps found done (0: a fresh run)
    seconds: Dict[int, float]  # wall time of each step run now, by size


def check_config(config, output_dir: str, key_name: str) -> None:
    """What can be checked before anything is read: ConfigError / UserError naming the key."""
    selection = config.selection
    if not selection.steps:
        raise errors.ConfigError("selection.steps is empty: give the labelled-set sizes, e.g. "
                                 "--steps=25,50,100.")
    if not selection.sde_from:
        raise errors.ConfigError(f"{key_name} is empty: pass the SDE teacher (an SDE run's "
                                 "workdir, a checkpoint, or its tools/export folder).")
    if not config.data.train_pattern:
        raise errors.ConfigError("data.train_pattern is empty: pass the unlabelled records "
                                 "to choose from (--input).")
    if config.data.train_pattern.startswith(config_lib.TFDS_PREFIX):
        raise errors.ConfigError("data selection reads converted TFRecords (it names them by "
                                 "source id); TensorFlow Datasets splits are not supported.")
    records.check_output_dir(output_dir)
    student_lib.check_config(config_lib.replace_key(config, "selection.teacher_disparity",
                                                    "records"))


def run_selection(config, output_dir: str, *, sde_key: str = "selection.sde_from",
                  on_step: Optional[Callable[[int, dict], None]] = None) -> Result:
    """Runs (or continues) the schedule into `output_dir` (module doc).

    Args:
      config: an ExperimentConfig of task "selection", paths resolved.
      sde_key: how error messages name `selection.sde_from` (e.g. "--sde").
      on_step: called after each step's files are written, with the step's index and entry.
    Raises:
      errors.UserError: bad records, steps larger than the pool, no usable SDE, an output
        folder holding another selection.
    """
    check_config(config, output_dir, sde_key)
    selection, pattern = config.selection, config.data.train_pattern
    pool_ids = read_pool_ids(pattern, config.data.allow_incomplete)
    if selection.steps[-1] > len(pool_ids):
        raise errors.ConfigError(
            f"selection.steps={list(selection.steps)} ends at {selection.steps[-1]} images, "
            f"but the records of {pattern} hold {len(pool_ids)}; choose steps of at most "
            f"{len(pool_ids)}.")
    config = config_lib.replace_key(config, "selection.teacher_disparity",
                                    resolve_teacher_disparity(config))
    # The earlier run's settings are checked before the teacher network is built.
    prefix, sde_config = seg_task.resolve_sde_source(selection.sde_from, sde_key)
    state = load_state(output_dir, config, pool_ids, prefix)
    teacher_model = load_teacher(config, prefix, sde_config)
    teacher = student_lib.Teacher(prefix=prefix, config=sde_config)
    records.make_output_dir(output_dir)
    done = len(state["steps"])
    if done:
        logging.info("%s: steps %s done; continuing.", output_dir,
                     [s["size"] for s in state["steps"]])
    features = pool_features(config, teacher_model, pool_ids, output_dir)
    if selection.normalize_features:
        features = farthest.standardize(features)
    features = features.reshape(len(pool_ids), -1)
    index_of = {source_id: i for i, source_id in enumerate(pool_ids)}
    chosen = [index_of[i] for i in state["steps"][-1]["ids"]] if done else []
    seconds = {}
    for k, size in enumerate(selection.steps):
        if k < done:
            continue
        started = time.perf_counter()
        student_entry, difficulties, bias = None, None, None
        if k > 0:
            previous = selection.steps[k - 1]
            steps = k * selection.student_steps
            workdir = os.path.join(output_dir, student_dirname(previous))
            student = train_student(config, workdir, [pool_ids[i] for i in chosen], teacher,
                                    steps)
            results = pool_pass(config, teacher_model, features=False, student=student,
                                num_images=len(pool_ids),
                                desc=f"difficulty (student of {previous})")
            difficulties = np.array([results[i]["difficulty"] for i in pool_ids])
            bias = selection.bias_weight * difficulties
            bias[chosen] = 0.0
            student_entry = {"workdir": student_dirname(previous), "trained_on": previous,
                             "steps": steps}
        picks = farthest.iterative_farthest_point(features, size - len(chosen), chosen, bias,
                                                  seed=selection.seed)
        if len(picks.indices) < size - len(chosen):
            raise errors.BadInputError(
                f"{pattern}: only {len(chosen) + len(picks.indices)} images differ from each "
                f"other in the teacher's features, fewer than the {size} of selection.steps; "
                "choose smaller steps.")
        new = []
        for index, score in zip(picks.indices, picks.scores):
            pick_bias = float(bias[index]) if bias is not None else 0.0
            new.append({"source_id": pool_ids[index], "score": score,
                        "distance": score - pick_bias, "bias": pick_bias,
                        "difficulty": (float(difficulties[index]) if difficulties is not None
                                       else None)})
        chosen = chosen + list(picks.indices)
        entry = {"size": size, "new": len(new), "ids": [pool_ids[i] for i in chosen],
                 "picks": new, "student": student_entry,
                 "difficulty": (None if difficulties is None else
                                {i: float(d) for i, d in zip(pool_ids, difficulties)})}
        all_picks = [p for s in state["steps"] for p in s["picks"]] + new
        write_ids_file(os.path.join(output_dir, ids_filename(size)), entry["ids"], [
            f"{size} source ids chosen for annotation by tools/select_annotations, in the "
            f"order chosen (step {k + 1} of {len(selection.steps)}: {selection.steps})",
            f"records: {pattern}",
            "train on them with --set seg.labeled_ids_file=<this file>"])
        write_contact_sheet(os.path.join(output_dir, sheet_filename(size)), config, entry,
                            all_picks)
        state["steps"].append(entry)
        utils.atomic_write_text(os.path.join(output_dir, SELECTION_FILENAME),
                                json.dumps(state, indent=1) + "\n")
        if student_entry is not None and not selection.keep_students:
            # The step is stored: a resume never needs this student again.
            shutil.rmtree(os.path.join(output_dir, student_entry["workdir"],
                                       checkpoints.CHECKPOINT_SUBDIR), ignore_errors=True)
        seconds[size] = time.perf_counter() - started
        _record_seconds(output_dir, size, seconds[size])
        if on_step is not None:
            on_step(k, entry)
    return Result(steps=state["steps"], resumed_after=done, seconds=seconds)


def _record_seconds(output_dir: str, size: int, value: float) -> None:
    path = os.path.join(output_dir, TIMINGS_FILENAME)
    timings = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                timings = json.load(f)
        except ValueError:
            timings = {}
    timings[str(size)] = round(value, 2)
    utils.atomic_write_text(path, json.dumps(timings, indent=1) + "\n")
