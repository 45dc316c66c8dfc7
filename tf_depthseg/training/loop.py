"""The custom training loop: a `Task` says what to train, the `Trainer` says how.

Task protocol (subclass `Task`; `build`, `make_train_dataset`, `compute_losses` are required)
----------------------------------------------------------------------------------------------

Every hook gets the experiment config as its first argument; a task keeps no config state, so
one instance serves any config.

    config_sections: ClassVar[{section: dataclass}]
        The config sections the task owns (e.g. {"suw": SUWConfig}), registered with
        `config.register_task_sections` when the task joins `training.tasks.TASKS` (then
        `--set suw.num_bins=...` works).
    check_config(config) -> None
        Raises `errors.ConfigError` (naming the key and the fix) for settings the task cannot
        train. The Trainer calls it before it builds anything.
    build(config) -> {"depth": keras.Model, "pose": keras.Model, ...}
        Builds the task's models (Keras functional models returning dicts keyed by
        `tf_depthseg.common` output keys). Called inside `strategy.scope()`.
    frozen_models(config) -> [role, ...]
        Models saved and restored with the run but never updated by the optimizer (an EMA
        teacher, a frozen depth net). Their variables are in no parameter group, so the loss
        may depend on them without gradients being taken for them. The Trainer leaves the
        models' `trainable` flags alone: call a frozen model with training=False to keep its
        batch-norm statistics fixed. Default: none.
    train_streams(config) -> {stream: global batch size}
        The named training input streams (e.g. labelled and unlabelled images), each with its
        own GLOBAL batch size, which must divide by the number of replicas. Every step, each
        replica gets one batch of every stream. Default: {"train": config.data.batch_size}.
    make_train_dataset(config, stream, input_context) -> tf.data.Dataset
        Batches of `stream` for ONE replica: batch size `input_context.
        get_per_replica_batch_size(<the stream's global batch size>)`, `drop_remainder=True`
        (static shapes: the train step is traced once), repeated forever, sharded by
        `input_context.input_pipeline_id` when `num_input_pipelines > 1` (multi-worker). Each
        step the Trainer takes one batch of every stream per local replica, in order, like
        `tf.distribute` does. Randomness must be stateless ops seeded from the element's
        position in the stream, so that the checkpointed iterator reproduces it after a
        resume. Each stream has its own checkpointed iterator: checkpoint key `iterator` for
        the first stream, `iterator_<stream>` for the others.
    compute_losses(config, models, batches, *, training, global_batch_sizes, rng)
            -> {"total": ..., ...}
        `batches`: {stream: this replica's batch}; `global_batch_sizes`: {stream: int}.
        Scalar float32 losses of this replica's batches, each the SUM over this replica's
        examples divided by the global batch size of the stream they come from (e.g.
        `global_mean(per_example, global_batch_sizes["train"])`), so that summing over
        replicas gives the mean over the global batch. "total" is what is minimised; the other
        entries (per-term, already weighted) go to TensorBoard. `rng` is the Trainer's
        checkpointed `tf.random.Generator` (replica-local streams under MirroredStrategy) for
        randomness inside the step (e.g. drawing weak-label pairs). The models' own random
        layers (Dropout, in any model called in training mode) are checkpointed too (their
        SeedGenerators); other stateful draws (`tf.random.uniform`, `keras.random.*` without
        a layer's seed generator) are not, and would break a bitwise resume.
    after_apply(config, models, step) -> None
        Runs inside the compiled train step right after the optimizer update, only when the
        update was applied (not after a non-finite step, nor a step the float16 loss scaler
        skipped); `step` is the int64 number of the step that update completes (1 for the
        first). It runs in cross-replica context: reading a variable gives its value (the same
        on every replica once the update is done) and `variable.assign(...)` writes every
        replica's copy, whatever the variable's aggregation. E.g. an EMA teacher:
        `t.assign(a * t + (1 - a) * s)` over the teacher's and the student's weights.
    param_groups(config, models) -> {group: [variables]}
        What the optimizer updates, by group. `optim.lr_multipliers` scales a group's learning
        rate (groups it does not name train at 1x); `optim.clip_norm` clips the global norm of
        all groups' gradients together. A variable may be in one group only, never in a
        frozen model; trainable variables in no group are not updated (e.g. the pose net when
        the unsupervised loss is off). Default: {"all": every trainable variable of the
        models that are not frozen}.
    make_eval_dataset(config) -> tf.data.Dataset | None
        Finite evaluation batches (None: no evaluation).
    initialize_models(config, models) -> None
        Runs once when a run starts fresh (never on a resume: the checkpoint has the weights),
        after `model.init_checkpoint` was applied, e.g. to start a network from another
        task's run (the segmentation task's `seg.init_from`). Default: nothing.

Optional hooks, with defaults:

    eval_outputs(config, models, batch) -> {name: [batch] tensor}
        Per-example values for the metrics (run as a tf.function). Default: no metrics.
    init_metrics(config) / update_metrics(config, state, outputs_numpy) /
    result_metrics(config, state)
        Metric accumulation on the host. Default: the mean over examples of every
        `eval_outputs` entry (the KITTI protocol averages per-image metrics this way).
    image_summaries(config, models, batch) -> {name: uint8 [B, H, W, 3]}
        Pictures for TensorBoard (see `tf_depthseg.visualize`), for one replica's batch of the
        first training stream every `train.image_summaries_every` steps and for the first
        evaluation batch.
    serving_model(config, models) -> keras.Model
        The network evaluation, export and prediction use. Default: the only model (a task
        with several models must say which).
    num_train_examples(config) -> int | None
        Size of the first stream's training set, to turn epoch-based schedules into steps
        when `train.steps_per_epoch` is 0.

`compute_losses`, `after_apply`, `eval_outputs` and `image_summaries` are traced without
AutoGraph: branch on tensors with tf.cond / tf.where, loop with tf.while_loop; Python `if`
only on Python values such as the config.

The Trainer (`Trainer(config, task, workdir).train()`) adds everything else: the strategy,
mixed precision, the compiled train step, parameter groups and clipping, schedules,
checkpoints and resume, keep-best, TensorBoard, the progress bar, and stopping on a
non-finite loss.
"""

from __future__ import annotations

import abc
import dataclasses
import glob
import json
import math
import os
import re
import shutil
import time
from typing import (Any, Callable, ClassVar, Dict, Iterable, List, Mapping, Optional,
                    Sequence)

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg.utils import atomic_write_bytes
from tf_depthseg.training import checkpoints, distribute, optimizers, schedules, summaries
from tf_depthseg import errors
from tf_depthseg import utils

HISTORY_FILENAME = "history.json"
RESULT_FILENAME = "train_result.json"  # written by tools/train.py
LOGS_SUBDIR = "logs"


class NonFiniteLossError(errors.UserError, RuntimeError):
    """Training produced a NaN/inf loss (or gradient); the update was not applied.

    Attributes:
      step: the step (1-based count of updates) that failed.
      values: the per-term losses and the gradient norm of that step.
      checkpoint: the last good checkpoint prefix, or None if none was written yet.
    """

    def __init__(self, message: str, step: int, values: Mapping[str, float],
                 checkpoint: Optional[str]):
        super().__init__(message)
        self.step, self.values, self.checkpoint = step, dict(values), checkpoint


def global_mean(per_example: tf.Tensor, global_batch_size: int) -> tf.Tensor:
    """Sum of this replica's per-example values `[batch]` divided by the GLOBAL batch size.

    Gradients are SUMMED across replicas, so each replica must contribute its share of the
    global mean; dividing by the per-replica batch would multiply the effective learning rate
    by the number of replicas.
    """
    per_example = tf.cast(per_example, tf.float32)
    return tf.reduce_sum(per_example) / tf.cast(global_batch_size, tf.float32)


class Task(abc.ABC):
    """Base class of training tasks; see the module docstring for the protocol.

    `build`, `make_train_dataset` and `compute_losses` are abstract: a task cannot be
    instantiated without them. Every other hook has a working default.
    """

    config_sections: ClassVar[Dict[str, type]] = {}

    def check_config(self, config) -> None:
        """Raises errors.ConfigError for settings this task cannot train."""

    @abc.abstractmethod
    def build(self, config) -> Dict[str, keras.Model]:
        """The task's models, keyed by role (e.g. {"depth": ..., "pose": ...})."""

    def frozen_models(self, config) -> Sequence[str]:
        """Roles of the models that are saved and restored but never optimised."""
        return ()

    def train_streams(self, config) -> Dict[str, int]:
        """Training stream name -> global batch size."""
        return {"train": config.data.batch_size}

    @abc.abstractmethod
    def make_train_dataset(self, config, stream: str,
                           input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        """Endless per-replica training batches of `stream` (see the module docstring)."""

    def make_eval_dataset(self, config) -> Optional[tf.data.Dataset]:
        return None

    def initialize_models(self, config, models: Mapping[str, keras.Model]) -> None:
        """Initialisation of a fresh run beyond `build` (not called on a resume)."""

    @abc.abstractmethod
    def compute_losses(self, config, models: Mapping[str, keras.Model],
                       batches: Mapping[str, Mapping[str, tf.Tensor]], *, training: bool,
                       global_batch_sizes: Mapping[str, int],
                       rng: tf.random.Generator) -> Dict[str, tf.Tensor]:
        """Scalar losses with a "total" entry, each a sum over examples / global batch of
        the examples' stream."""

    def after_apply(self, config, models: Mapping[str, keras.Model], step: tf.Tensor) -> None:
        """In-step work after an applied update (cross-replica context), e.g. EMA teachers."""

    def param_groups(self, config, models: Mapping[str, keras.Model]) -> Dict[str, list]:
        """Parameter group name -> trainable variables the optimizer updates."""
        frozen = set(self.frozen_models(config))
        return {"all": unique_variables(model.trainable_variables
                                        for role, model in models.items()
                                        if role not in frozen)}

    def eval_outputs(self, config, models: Mapping[str, keras.Model],
                     batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {}

    def init_metrics(self, config) -> Any:
        return {"sums": {}, "count": 0}

    def update_metrics(self, config, state: Any, outputs: Mapping[str, np.ndarray]) -> Any:
        count = None
        for name, values in outputs.items():
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            state["sums"][name] = state["sums"].get(name, 0.0) + float(values.sum())
            count = values.size
        state["count"] += count or 0
        return state

    def result_metrics(self, config, state: Any) -> Dict[str, float]:
        count = max(state["count"], 1)
        return {name: total / count for name, total in state["sums"].items()}

    def image_summaries(self, config, models: Mapping[str, keras.Model],
                        batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {}

    def serving_model(self, config, models: Mapping[str, keras.Model]) -> keras.Model:
        """The network evaluation, export and prediction use."""
        if len(models) != 1:
            raise ValueError(f"{type(self).__name__} has the models {sorted(models)}; it must "
                             "override serving_model to say which one is served")
        return next(iter(models.values()))

    def num_train_examples(self, config) -> Optional[int]:
        return None


def unique_variables(variable_lists: Iterable[Sequence]) -> list:
    """The variables (or other objects, e.g. loss tensors) of all lists, each once, in order
    (models may share layers)."""
    variables, seen = [], set()
    for variable_list in variable_lists:
        for variable in variable_list:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


@dataclasses.dataclass
class TrainResult:
    """What `Trainer.train` did."""

    start_step: int  # step the run resumed from (0 for a fresh run)
    final_step: int
    losses: Dict[str, float]  # mean of each term over the last logging interval
    eval_metrics: Dict[str, float]  # the last evaluation (empty without one)
    best: Optional[dict]  # best/best.json content, None without keep-best
    checkpoint: Optional[str]  # the final checkpoint prefix


StepCallback = Callable[["Trainer", int, Dict[str, float]], None]


def _without_strings(forward):
    """`forward({stream: batch})` called without the batches' string tensors (source ids):
    XLA compiles no string arguments, and losses never read them."""
    def call(batches):
        return forward({stream: {key: value for key, value in batch.items()
                                 if value.dtype != tf.string}
                        for stream, batch in batches.items()})
    return call


class Trainer:
    """Trains a `Task` from a config into a workdir, resuming whatever is there.

    Typical use:

        trainer = Trainer(config, tasks.make_task(config), workdir)
        result = trainer.train()            # resumes from workdir/checkpoints if present
        metrics = trainer.evaluate()

    Attributes:
      models: the task's models (dict), optimizer, strategy, step (int64 tf.Variable: updates
        done), rng (tf.random.Generator), checkpoint / manager (tf.train.Checkpoint[Manager]).
      seed_states: role -> state variables of the models' Keras SeedGenerators (dropout),
        checkpointed under `seed_generators` (empty without dropout).
      frozen: roles of the frozen models; param_groups: group name -> variables (what the
        optimizer updates); global_batch_sizes: training stream -> global batch size.
      train_step_traces: how many times the train step was traced (1 in a healthy run).
      damaged_checkpoints: '<file>: <reason>' of damaged checkpoints newer than the one the
        run resumed from (skipped and, by the chief, renamed to *.damaged).
    """

    def __init__(self, config: config_lib.ExperimentConfig, task: Task, workdir: str,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 callbacks: Sequence[StepCallback] = ()):
        self.config, self.task, self.workdir = config, task, workdir
        self.callbacks = list(callbacks)
        train = config.train
        # First: MultiWorkerMirroredStrategy must be created before any TensorFlow op runs.
        self.strategy = strategy or distribute.get_strategy(train.distribution)
        if train.deterministic:
            checkpoints.enable_determinism(train.seed)
        else:
            keras.utils.set_random_seed(train.seed)  # reproducible initialisation anyway
        # The policy must be set before the models are built: layers read it at creation.
        self.mixed_precision = distribute.resolve_mixed_precision(train.mixed_precision)
        if self.mixed_precision != train.mixed_precision:
            logging.info("train.mixed_precision=%s: %s on this machine", train.mixed_precision,
                         self.mixed_precision)
        keras.mixed_precision.set_global_policy(self.mixed_precision)
        self.worker_index, self.num_workers, self.is_chief = distribute.worker_info(
            self.strategy)
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.local_replicas = self.num_replicas // self.num_workers
        if hasattr(task, "trainable_variables"):  # a task written for the old protocol
            raise TypeError(f"{type(task).__name__}.trainable_variables is no longer called; "
                            "declare param_groups (and frozen_models) instead")
        task.check_config(config)
        self.global_batch_sizes = self._train_streams()
        # Examples of all streams per step, for examples_per_s.
        self.examples_per_step = sum(self.global_batch_sizes.values())
        try:
            os.makedirs(workdir, exist_ok=True)
            if not os.access(workdir, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as error:  # a regular file on the way, a read-only folder
            raise self._workdir_error(error) from error

        steps_per_epoch = train.steps_per_epoch
        if steps_per_epoch <= 0:
            num_examples = task.num_train_examples(config)
            if num_examples:
                # An epoch is one pass over the first stream's training set.
                steps_per_epoch = math.ceil(num_examples /
                                            next(iter(self.global_batch_sizes.values())))
        self.steps_per_epoch = steps_per_epoch
        self.schedule = schedules.build_schedule(config.optim, train.steps, steps_per_epoch)

        with self.strategy.scope():
            self.models = dict(task.build(config))
            for key, model in self.models.items():
                if not isinstance(model, keras.Model):
                    raise TypeError(f"{type(task).__name__}.build must return keras.Models, "
                                    f"got {type(model).__name__} for '{key}'")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.rng = tf.random.Generator.from_seed(train.seed)
            self.frozen = self._frozen_models()
            self.param_groups = self._param_groups()
            # The order the optimizer was built in: gradients are taken and applied in it.
            self._variables = [v for group in self.param_groups.values() for v in group]
            self.optimizer = optimizers.build_optimizer(config.optim, self.schedule,
                                                        self.mixed_precision,
                                                        self.param_groups)

        input_context = tf.distribute.InputContext(
            num_input_pipelines=self.num_workers, input_pipeline_id=self.worker_index,
            num_replicas_in_sync=self.num_replicas)
        # A plain tf.data iterator, not a tf.distribute one: only plain iterators can be
        # checkpointed (TF 2.21), and the input position is part of a bitwise resume (bitwise
        # on one machine: see checkpoints.enable_determinism).
        self._iterators = {}
        for stream in self.global_batch_sizes:
            dataset = task.make_train_dataset(config, stream, input_context)
            if not isinstance(dataset, tf.data.Dataset):
                raise TypeError(f"{type(task).__name__}.make_train_dataset must return a "
                                f"tf.data.Dataset, got {type(dataset).__name__} for stream "
                                f"'{stream}'")
            self._iterators[stream] = iter(dataset)
        # The first stream keeps the key `iterator` of single-stream runs (they resume).
        iterators = {("iterator" if index == 0 else f"iterator_{stream}"): iterator
                     for index, (stream, iterator) in enumerate(self._iterators.items())}
        # Dropout's random state is not among the models' weights (see
        # checkpoints.seed_generator_states): saved beside them, or resumes draw other masks.
        self._checkpointed = dict(models=self.models, optimizer=self.optimizer,
                                  step=self.step, rng=self.rng, **iterators)
        self.seed_states = checkpoints.seed_generator_states(self.models)
        if self.seed_states:
            self._checkpointed[checkpoints.SEED_STATES_KEY] = self.seed_states
        self.checkpoint = tf.train.Checkpoint(**self._checkpointed)
        # Before the manager reads the state file: the chief clears leftovers of a killed save
        # and sets damaged checkpoints aside.
        self._resume_from = self._find_resume_checkpoint()
        # Other workers keep their own input position (the checkpoint holds the chief's).
        self._worker_inputs = None if self.is_chief else distribute.WorkerInputs(
            workdir, self.worker_index, iterators, train.keep_checkpoints)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._write_dir(checkpoints.CHECKPOINT_SUBDIR),
            max_to_keep=train.keep_checkpoints, step_counter=self.step,
            checkpoint_name=checkpoints.CHECKPOINT_NAME)
        self.best_keeper = None
        if train.best_metric:
            self.best_keeper = checkpoints.BestKeeper(
                self._write_dir(checkpoints.BEST_SUBDIR), train.best_metric, train.best_mode,
                tf.train.Checkpoint(models=self.models, step=self.step), write=self.is_chief)

        self.start_step = self._restore_or_initialize()
        distribute.check_same_start(self.strategy, self.start_step,
                                    os.path.join(workdir, checkpoints.CHECKPOINT_SUBDIR))
        if self.is_chief:  # only once the run can start: a failed start changes nothing
            try:
                config_lib.save_json(config, workdir)
            except OSError as error:
                raise self._workdir_error(error) from error
        self.history = self._load_history(self.start_step)
        self._train_writer = self._summary_writer("train")
        self._eval_writer = self._summary_writer("eval")
        self.train_step_traces = 0
        # autograph=False: tasks are written with tf.cond / tf.where, never Python control flow
        # on tensors, and AutoGraph's source transformation of every function the step calls
        # costs time without changing the graph (same op count): tracing takes 11.5 s instead of
        # 18.5 s for S+U at 32x96 and 20.4 s instead of 42.9 s for S+U+W with object motion at
        # 64x208 (bench/bench_train_step.py).
        self._train_step = tf.function(self._distributed_train_step, autograph=False)
        self._forward = self._replica_forward
        if train.jit_compile:
            # XLA compiles the forward and backward pass only: cross-replica sums and the
            # optimizer's distributed update stay outside the cluster.
            self._forward = _without_strings(tf.function(
                self._replica_forward, jit_compile=True, autograph=False))
        self._eval_fn = tf.function(
            lambda batch: self.task.eval_outputs(self.config, self.models, batch),
            reduce_retracing=True, autograph=False)
        self._image_fn = tf.function(
            lambda batch: self.task.image_summaries(self.config, self.models, batch),
            reduce_retracing=True, autograph=False)

    # ------------------------------------------------------------------------------------
    # Setup helpers.
    # ------------------------------------------------------------------------------------

    def _write_dir(self, subdir: str) -> str:
        """Where this worker writes `subdir`: the workdir for the chief, a scratch folder for
        other workers (they must take part in saves, but only the chief's copy is kept)."""
        if self.is_chief:
            return os.path.join(self.workdir, subdir)
        return os.path.join(self.workdir, f".worker{self.worker_index}", subdir)

    def _train_streams(self) -> Dict[str, int]:
        """The task's training streams, checked: name -> global batch size."""
        task = type(self.task).__name__
        streams = dict(self.task.train_streams(self.config))
        if not streams:
            raise ValueError(f"{task}.train_streams returned no stream")
        for name, size in streams.items():
            # The name becomes a checkpoint key (iterator_<name>).
            if not isinstance(name, str) or not re.fullmatch(r"\w+", name):
                raise ValueError(f"{task}.train_streams: stream name {name!r} must be letters, "
                                 "digits and underscores")
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
                raise errors.ConfigError(
                    f"training stream '{name}' of {task} has a global batch size of {size!r}; "
                    "it must be a positive integer: fix the batch size the task reads from the "
                    "config (e.g. data.batch_size).")
            if size % self.num_replicas:
                raise errors.ConfigError(
                    f"the global batch size of training stream '{name}' is {size}, which is not "
                    f"divisible by the {self.num_replicas} replicas; change the config's batch "
                    f"sizes (data.batch_size, or the task's key for this stream) so that it is "
                    f"a multiple of {self.num_replicas}.")
            streams[name] = int(size)
        return streams

    def _frozen_models(self) -> List[str]:
        frozen = list(self.task.frozen_models(self.config))
        unknown = [role for role in frozen if role not in self.models]
        if unknown:
            raise ValueError(f"{type(self.task).__name__}.frozen_models names {unknown}, which "
                             f"build did not return; its models are {sorted(self.models)}")
        return frozen

    def _param_groups(self) -> Dict[str, list]:
        """The task's parameter groups, checked (see the module docstring)."""
        task = type(self.task).__name__
        frozen = {id(v): role for role in self.frozen for v in self.models[role].weights}
        groups, owner = {}, {}
        for name, variables in self.task.param_groups(self.config, self.models).items():
            groups[name] = list(variables)
            for variable in groups[name]:
                where = f"{task}.param_groups: variable {variable.path} of group '{name}'"
                if id(variable) in frozen:
                    raise ValueError(f"{where} belongs to the frozen model "
                                     f"'{frozen[id(variable)]}'; frozen models are never "
                                     "optimised")
                if id(variable) in owner:
                    raise ValueError(f"{where} is in group '{owner[id(variable)]}' too; a "
                                     "variable may be in one group only")
                if not variable.trainable:
                    raise ValueError(f"{where} is not trainable")
                owner[id(variable)] = name
        if not owner:
            raise ValueError(f"{task} has no variables to train: its param_groups "
                             f"{sorted(groups)} are all empty")
        return groups

    def _workdir_error(self, error: OSError) -> errors.UserError:
        return errors.UserError(
            f"{self.workdir}: cannot write the run's folder here ({error.strerror or error}); "
            "choose another --workdir, or fix the path or its permissions.")

    def _summary_writer(self, name: str):
        if not self.is_chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.workdir, LOGS_SUBDIR, name))

    def _find_resume_checkpoint(self) -> Optional[str]:
        """The newest intact checkpoint of the workdir (None: there is no checkpoint at all).

        A damaged newer one (missing, truncated or changed file) is logged and skipped, never
        a reason to start from scratch; if every checkpoint is damaged, CheckpointError.
        """
        folder = os.path.join(self.workdir, checkpoints.CHECKPOINT_SUBDIR)
        fix = (f"restore the file from a backup, or delete {folder} to train this run from "
               "step 0 again.")
        if self.is_chief:
            # Temporary files of the workdir's own atomic writes (config, history) a kill left.
            for name in (config_lib.CONFIG_FILENAME, HISTORY_FILENAME, RESULT_FILENAME):
                for path in glob.glob(os.path.join(glob.escape(self.workdir), f".tmp-*{name}")):
                    logging.warning("Removed %s, left by an interrupted write", path)
                    os.remove(path)
            prefix, damages = checkpoints.prepare_for_writing(folder, fix)
        else:  # other workers only read the chief's folder
            prefix, damages = checkpoints.newest_intact_checkpoint(folder)
            if damages and prefix is None:
                raise checkpoints.no_intact_error(folder, damages, fix)
        if damages:
            logging.warning("Damaged checkpoint: %s. Resuming from %s (step %s), the newest "
                            "intact one.", checkpoints.describe_damage(damages), prefix,
                            checkpoints.checkpoint_number(prefix))
        self.damaged_checkpoints = [str(d) for d in damages]
        return prefix

    def _restore_or_initialize(self) -> int:
        """Resumes from the newest intact checkpoint of the workdir, or initialises selected
        modules from `model.init_checkpoint`; returns the step training starts from."""
        latest = self._resume_from
        if latest:
            checkpoint = self.checkpoint
            if self.seed_states and not checkpoints.has_key(latest, checkpoints.SEED_STATES_KEY):
                logging.warning(
                    "%s has no random state of the models' dropout (written before it was "
                    "checkpointed): resuming with it at its initial value, so the dropout masks "
                    "from here on differ from those of a run never interrupted; everything "
                    "else resumes as saved.", latest)
                checkpoint = tf.train.Checkpoint(**{
                    k: v for k, v in self._checkpointed.items()
                    if k != checkpoints.SEED_STATES_KEY})
            try:
                checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise checkpoints.CheckpointError(
                    f"{latest}: cannot resume from this checkpoint ({error}). The workdir holds "
                    f"a run of a different model, optimizer or input pipeline; use a new "
                    f"--workdir, or delete {os.path.dirname(latest)} to start over.") from error
            step = int(self.step.numpy())
            if self._worker_inputs:
                self._worker_inputs.restore(step, latest)
            logging.info("Resumed from %s at step %d", latest, step)
            return step
        model_config = self.config.model
        if model_config.init_checkpoint:
            def build_donor(config_path):
                donor_config = (config_lib.load_config(config_path) if config_path
                                else self.config)
                return self.task.build(donor_config)
            checkpoints.init_modules_from_checkpoint(
                self.models, model_config.init_checkpoint, model_config.init_modules,
                build_donor)
        self.task.initialize_models(self.config, self.models)
        return 0

    def _load_history(self, step: int) -> dict:
        """history.json without entries after `step` (a killed run may have logged more)."""
        path = os.path.join(self.workdir, HISTORY_FILENAME)
        history = {"train": [], "eval": []}
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                history = json.load(f)
        return {part: [row for row in history.get(part, []) if row["step"] <= step]
                for part in ("train", "eval")}

    def _save_history(self) -> None:
        if self.is_chief:
            atomic_write_bytes(os.path.join(self.workdir, HISTORY_FILENAME),
                               (json.dumps(self.history) + "\n").encode())

    # ------------------------------------------------------------------------------------
    # The compiled train step.
    # ------------------------------------------------------------------------------------

    def _replica_forward(self, batches):
        """Losses and this replica's gradients of its local batches ({stream: batch})."""
        with tf.GradientTape() as tape:
            losses = self.task.compute_losses(
                self.config, self.models, batches, training=True,
                global_batch_sizes=dict(self.global_batch_sizes), rng=self.rng)
            if common.LOSS_TOTAL not in losses:
                raise KeyError(f"{type(self.task).__name__}.compute_losses must return a "
                               f"'{common.LOSS_TOTAL}' entry, got {sorted(losses)}")
            losses = {name: tf.cast(value, tf.float32) for name, value in losses.items()}
            # Each layer's losses once, also of layers several models share (SUW's encoder).
            regularization = [tf.cast(l, tf.float32) for l in unique_variables(
                m.losses for role, m in self.models.items() if role not in self.frozen)]
            if regularization:
                # Layer regularisers are per model, not per example: each replica adds its
                # 1/num_replicas share so that the sum over replicas counts them once.
                losses["regularization"] = tf.add_n(regularization) / self.num_replicas
                losses[common.LOSS_TOTAL] = losses[common.LOSS_TOTAL] + losses["regularization"]
            objective = losses[common.LOSS_TOTAL]
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                objective = self.optimizer.scale_loss(objective)
        grads = tape.gradient(objective, self._variables)
        return losses, grads

    def _replica_step(self, batches):
        losses, grads = self._forward(batches)
        missing = [v.path for v, g in zip(self._variables, grads) if g is None]
        if missing:
            raise ValueError(f"the total loss does not depend on {len(missing)} trainable "
                             f"variables, e.g. {missing[:5]}; leave them out of "
                             f"{type(self.task).__name__}.param_groups (e.g. the pose net "
                             "when the unsupervised loss is off), or declare their model in "
                             "frozen_models")
        # Sum over replicas here, not in the optimizer, so that the clipping norm is the norm
        # of the global gradient (the optimizers of optimizers.py skip their own sum).
        grads = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, grads)
        # Over the gradients of all parameter groups together.
        grads, grad_norm = optimizers.clip_by_global_norm(
            grads, self.config.optim.clip_norm, optimizers.loss_scale(self.optimizer))
        # What the loss-scale optimizer checks to skip an update (all replicas agree: the
        # gradients are summed); True without it.
        grads_finite = tf.constant(True)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        return losses, grads, grad_norm, grads_finite

    def _replica_apply(self, grads):
        self.optimizer.apply(grads, self._variables)

    def _distributed_train_step(self, batches):
        self.train_step_traces += 1  # runs only while tracing
        strategy = self.strategy
        losses, grads, grad_norm, grads_finite = strategy.run(self._replica_step,
                                                              args=(batches,))
        # Every replica's loss is its share of the global mean (see global_mean): sum them.
        losses = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                  for name, value in losses.items()}
        grad_norm = strategy.experimental_local_results(grad_norm)[0]  # equal on all replicas
        grads_finite = strategy.experimental_local_results(grads_finite)[0]
        finite = tf.reduce_all([tf.math.is_finite(v) for v in losses.values()])
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # With float16 loss scaling an overflowing gradient is routine: the loss-scale
            # optimizer skips that update and lowers the scale. Otherwise it is a failure.
            finite = tf.logical_and(finite, tf.math.is_finite(grad_norm))
        learning_rate = tf.cast(self.optimizer.learning_rate, tf.float32)

        def after_apply():
            # Cross-replica context (see the module docstring); reads of the updated
            # variables are ordered after the update by the function's automatic control
            # dependencies.
            self.task.after_apply(self.config, self.models, self.step + 1)
            return tf.constant(True)

        def apply():
            strategy.run(self._replica_apply, args=(grads,))
            # A float16 loss-scale optimizer skips updates with overflowing gradients.
            tf.cond(grads_finite, after_apply, lambda: tf.constant(False))
            return tf.constant(True)

        # A non-finite step is not applied, so the models keep their last good values.
        applied = tf.cond(finite, apply, lambda: tf.constant(False))
        self.step.assign_add(tf.cast(applied, tf.int64))
        outputs = {"losses": losses, "grad_norm": grad_norm, "learning_rate": learning_rate,
                   "applied": applied}
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            outputs["loss_scale"] = tf.cast(self.optimizer.dynamic_scale, tf.float32)
        return outputs

    def _next_batches(self) -> List[Dict[str, Any]]:
        """{stream: batch} per local replica, in order (what tf.distribute itself would do)."""
        batches = []
        for _ in range(self.local_replicas):
            replica_batches = {}
            for stream, iterator in self._iterators.items():
                try:
                    replica_batches[stream] = next(iterator)
                except StopIteration:
                    raise ValueError(
                        f"{type(self.task).__name__}.make_train_dataset ran out of data for "
                        f"stream '{stream}' at step {int(self.step.numpy())}; it must repeat "
                        "forever (dataset.repeat()).") from None
            batches.append(replica_batches)
        return batches

    def _distribute(self, local_batches: List[Any]):
        if self.num_replicas == 1:
            return local_batches[0]
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: local_batches[context.replica_id_in_sync_group %
                                          self.local_replicas])

    # ------------------------------------------------------------------------------------
    # Training.
    # ------------------------------------------------------------------------------------

    def save(self) -> Optional[str]:
        """Saves a resumable checkpoint at the current step; returns its prefix."""
        step = int(self.step.numpy())
        if self.num_workers > 1:
            if self._worker_inputs:
                self._worker_inputs.save(step)
            # Barrier: the chief's checkpoint appears only once every input position is saved.
            distribute.gather_from_workers(self.strategy, step)
        path = self.manager.save(checkpoint_number=step)
        if self.is_chief:
            checkpoints.write_sidecar(path)
            checkpoints.remove_stale_sidecars(os.path.dirname(path))
        else:
            shutil.rmtree(os.path.dirname(self._write_dir(checkpoints.CHECKPOINT_SUBDIR)),
                          ignore_errors=True)
        return path

    def _non_finite(self, step: int, values: Dict[str, float]) -> NonFiniteLossError:
        latest = tf.train.latest_checkpoint(
            os.path.join(self.workdir, checkpoints.CHECKPOINT_SUBDIR))
        terms = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
        what = ("loss" if not all(math.isfinite(v) for k, v in values.items()
                                  if k != "grad_norm") else "gradient norm")
        kept = (f"The last good checkpoint is {latest}; rerunning the same command resumes "
                "from it." if latest else "No checkpoint had been written yet.")
        return NonFiniteLossError(
            f"Non-finite {what} at step {step}: {terms}. The update was not applied and "
            f"nothing was saved. {kept} Likely causes: a learning rate too high for this "
            "model (lower optim.learning_rate or set optim.clip_norm), or invalid inputs "
            "(NaN/inf pixels or depth) in the batch.", step, values, latest)

    def train(self) -> TrainResult:
        """Runs until `train.steps`, checkpointing, logging and evaluating on the way."""
        train = self.config.train
        total_steps = train.steps
        step = self.start_step
        interval: Dict[str, List[float]] = {}
        interval_seconds, interval_steps = 0.0, 0  # timed steps of the logging interval
        last_losses: Dict[str, float] = {}
        eval_metrics: Dict[str, float] = {}
        evaluated_at = saved_at = None
        progress = utils.progress(range(step, total_steps), total=total_steps - step,
                                  desc="train", unit="step")
        try:
            for _ in progress:
                started = time.perf_counter()
                local_batches = self._next_batches()
                outputs = self._train_step(self._distribute(local_batches))
                losses = {k: float(v) for k, v in outputs["losses"].items()}
                values = dict(losses, grad_norm=float(outputs["grad_norm"]))
                if step > self.start_step:  # the first step traces and compiles: not timed
                    interval_seconds += time.perf_counter() - started
                    interval_steps += 1
                if not bool(outputs["applied"]):
                    raise self._non_finite(step + 1, values)
                step += 1
                values["learning_rate"] = float(outputs["learning_rate"])
                if "loss_scale" in outputs:
                    values["loss_scale"] = float(outputs["loss_scale"])
                for name, value in values.items():
                    interval.setdefault(name, []).append(value)

                if (train.log_every and step % train.log_every == 0) or step == total_steps:
                    last_losses = self._log_train(step, interval, interval_steps,
                                                  interval_seconds)
                    progress.set_postfix(loss=f"{last_losses[common.LOSS_TOTAL]:.4g}",
                                         lr=f"{values['learning_rate']:.2g}", refresh=False)
                    interval, interval_seconds, interval_steps = {}, 0.0, 0
                if train.image_summaries_every and step % train.image_summaries_every == 0:
                    first_stream = next(iter(self.global_batch_sizes))
                    self._write_images(self._train_writer, step,
                                       local_batches[0][first_stream])
                if train.checkpoint_every and step % train.checkpoint_every == 0:
                    self.save()
                    saved_at = step
                if train.eval_every and step % train.eval_every == 0:
                    eval_metrics = self.evaluate(step)
                    evaluated_at = step
                for callback in self.callbacks:
                    callback(self, step, values)
            if saved_at != step:  # inside the try: the save is a collective op too
                self.save()
        except tf.errors.OpError as error:  # another worker died: one line, not a traceback
            failure = distribute.worker_failure_error(
                error, self.strategy, step, tf.train.latest_checkpoint(
                    os.path.join(self.workdir, checkpoints.CHECKPOINT_SUBDIR)))
            if failure is None:
                raise
            raise failure from error
        finally:
            progress.close()
            self._train_writer.flush()
        if train.eval_every and evaluated_at != step and step > self.start_step:
            eval_metrics = self.evaluate(step)
        return TrainResult(start_step=self.start_step, final_step=step, losses=last_losses,
                           eval_metrics=eval_metrics,
                           best=self.best_keeper.best if self.best_keeper else None,
                           checkpoint=self.manager.latest_checkpoint)

    def _log_train(self, step: int, interval: Dict[str, List[float]], steps: int,
                   elapsed: float) -> Dict[str, float]:
        """Writes the interval's mean losses, lr, grad norm, and the speed of its `steps`
        timed steps (data + train step, without evaluation and checkpoint time; examples of
        all streams)."""
        means = {name: float(np.mean(v)) for name, v in interval.items()}
        step_time = elapsed / steps if steps else None  # None: only the untimed first step
        row = {"step": step, **means, "step_time_s": step_time,
               "examples_per_s": self.examples_per_step / step_time if steps else None}
        with self._train_writer.as_default():
            for name, value in row.items():
                if name == "step" or value is None:
                    continue
                group = "loss" if name in interval and name not in (
                    "grad_norm", "learning_rate", "loss_scale") else "train"
                summaries.scalar(f"{group}/{name}", value, step)
        self.history["train"].append(row)
        self._save_history()
        return {k: v for k, v in means.items()}

    def _write_images(self, writer, step: int, batch) -> None:
        images = self._image_fn(batch)
        if not images:
            return
        with writer.as_default():
            for name, image in images.items():
                summaries.image(name, image, step, max_outputs=4)

    # ------------------------------------------------------------------------------------
    # Evaluation.
    # ------------------------------------------------------------------------------------

    def evaluate(self, step: Optional[int] = None) -> Dict[str, float]:
        """Runs the task's metrics over its eval dataset; logs them and updates keep-best.

        Returns the metrics ({} when the task has no eval dataset).
        """
        dataset = self.task.make_eval_dataset(self.config)
        if dataset is None:
            return {}
        step = int(self.step.numpy()) if step is None else step
        max_examples = self.config.eval.max_examples
        state = self.task.init_metrics(self.config)
        seen = 0
        first_batch = None
        for batch in dataset:
            if first_batch is None:
                first_batch = batch
            outputs = self._eval_fn(batch)
            state = self.task.update_metrics(
                self.config, state, {k: np.asarray(v) for k, v in outputs.items()})
            seen += int(tf.shape(tf.nest.flatten(batch)[0])[0])
            if max_examples and seen >= max_examples:
                break
        metrics = self.task.result_metrics(self.config, state)
        with self._eval_writer.as_default():
            for name, value in metrics.items():
                summaries.scalar(f"metrics/{name}", value, step)
        if first_batch is not None:
            self._write_images(self._eval_writer, step, first_batch)
        self._eval_writer.flush()
        self.history["eval"] = [r for r in self.history["eval"] if r["step"] != step]
        self.history["eval"].append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        self._save_history()
        if self.best_keeper is not None and metrics:
            if self.best_keeper.update(step, metrics):
                logging.info("New best %s=%.6g at step %d", self.best_keeper.metric,
                             metrics[self.best_keeper.metric], step)
            if not self.is_chief:
                shutil.rmtree(os.path.dirname(self._write_dir(checkpoints.BEST_SUBDIR)),
                              ignore_errors=True)
        logging.info("Eval at step %d: %s", step, metrics)
        return metrics
