"""`tf.distribute` strategy from `train.distribution`, logical CPU devices for tests, and what
a multi-worker run needs besides the strategy (start-up agreement, failures, input positions).

* `auto`: `MirroredStrategy` over the local GPUs when there are at least two, else the default
  (single-device) strategy.
* `default`: the default strategy (one device, no replication).
* `mirrored`: `MirroredStrategy` over all local GPUs; without GPUs, over all logical CPU
  devices (so two logical CPUs exercise the distributed code path, see
  `configure_logical_cpus`).
* `multi_worker`: `MultiWorkerMirroredStrategy` configured from the `TF_CONFIG` environment
  variable (checked first, so a missing or malformed one gives a clear message instead of a
  hang or a gRPC error).

`resolve_mixed_precision` picks the dtype policy of `train.mixed_precision="auto"` for the
devices at hand (bfloat16 where the hardware computes it, float16 on Volta/Turing GPUs,
float32 elsewhere).

Failures of a multi-worker run (TensorFlow 2.21, `MultiWorkerMirroredStrategy` on gRPC): the
strategy starts TensorFlow's coordination service on worker 0, and every worker sends it
heartbeats. When a worker dies, the others learn it at their next collective op: at once when
the dead worker's port refuses the connection, or, for a collective already waiting on it,
when the service reports its missing heartbeats (~10 s, TensorFlow's default). The collective
fails with `UnavailableError` naming the task or its address; `worker_failure_error` turns that
into one line saying which worker failed and how to resume (docs/multi_worker.md has the
measurements). A worker that never starts is not detected: the others wait for it at start-up.

Resuming needs every worker's input position, not only the chief's: the chief's checkpoint
holds the chief's input iterators, and another worker restoring those would read the chief's
examples again. So each other worker saves its own iterators (`WorkerInputs`, a few files in
`<workdir>/worker_inputs/worker<i>/`, written before the chief's checkpoint of the same step
appears) and restores them over the chief's.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

import tensorflow as tf

from tf_depthseg import errors
from tf_depthseg.training import checkpoints


WORKER_INPUTS_SUBDIR = "worker_inputs"
# CPU flags (Linux /proc/cpuinfo names) of native bfloat16 arithmetic: AMX tiles (Sapphire
# Rapids and later) or AVX512_BF16 dot products (Cooper Lake, Zen 4). Without them TensorFlow
# emulates bfloat16 and the step is slower than in float32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


class DistributionError(errors.UserError, ValueError):
    """The requested distribution cannot be set up; the message says why and what to do."""


class WorkerFailureError(DistributionError, RuntimeError):
    """Another worker of a multi-worker run died or became unreachable, so this one stopped.

    Attributes:
      failed: the failed workers as named in the message (e.g. ["worker 1 (10.0.0.2:2222)"]).
      step: the last step this worker completed.
      checkpoint: the checkpoint a rerun resumes from, or None if none was written yet.
    """

    def __init__(self, message: str, failed: List[str], step: int,
                 checkpoint: Optional[str]):
        super().__init__(message)
        self.failed, self.step, self.checkpoint = list(failed), step, checkpoint


def configure_logical_cpus(count: int) -> None:
    """Splits the first physical CPU into `count` logical devices (`/cpu:0` .. `/cpu:N-1`).

    Must run before TensorFlow initialises its devices (before any op or strategy is created),
    so tests call it first thing in a fresh subprocess.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) == count:
            return  # already configured this way
        raise DistributionError(
            f"cannot create {count} logical CPU devices: TensorFlow is already initialised "
            f"({error}). Call configure_logical_cpus() before any TensorFlow op runs, e.g. "
            "first thing in a fresh process.") from error


def parse_tf_config(text: Optional[str]) -> dict:
    """Parses and checks a `TF_CONFIG` value; raises DistributionError naming the problem."""
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise DistributionError(
            "train.distribution=multi_worker needs the TF_CONFIG environment variable, which is "
            f"not set. Set it on every worker, e.g. {example} (index differs per worker), or use "
            "train.distribution=auto on a single machine.")
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributionError(f"TF_CONFIG is not valid JSON ({error}): {text!r}. Expected "
                                f"e.g. {example}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise DistributionError(f"TF_CONFIG has no 'cluster' mapping of job name -> addresses: "
                                f"{text!r}. Expected e.g. {example}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and ":" in a for a in addresses):
            raise DistributionError(f"TF_CONFIG cluster job '{job}' must be a non-empty list of "
                                    f"'host:port' strings, got {addresses!r}")
    if "worker" not in cluster and "chief" not in cluster:
        raise DistributionError(f"TF_CONFIG cluster needs a 'worker' (or 'chief') job, got jobs "
                                f"{sorted(cluster)}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise DistributionError(f"TF_CONFIG needs 'task': {{'type': ..., 'index': ...}} saying "
                                f"which worker this process is, got {task!r}")
    if task["type"] not in cluster:
        raise DistributionError(f"TF_CONFIG task type '{task['type']}' is not a job of the "
                                f"cluster {sorted(cluster)}")
    index = task["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not (
            0 <= index < len(cluster[task["type"]])):
        raise DistributionError(f"TF_CONFIG task index {index!r} is out of range for job "
                                f"'{task['type']}' with {len(cluster[task['type']])} addresses")
    return tf_config


def get_strategy(distribution: str = "auto") -> tf.distribute.Strategy:
    """The strategy `train.distribution` names (see the module docstring).

    Call it before any other TensorFlow op runs when using `multi_worker`: collective ops must
    be configured at program start-up.
    """
    if distribution == "multi_worker":
        parse_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if distribution not in ("auto", "default", "mirrored"):
        raise DistributionError(f"unknown train.distribution {distribution!r}; use auto, "
                                "default, mirrored or multi_worker")
    gpus = tf.config.list_logical_devices("GPU")  # initialises the runtime
    if distribution == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        return tf.distribute.get_strategy()
    if distribution == "default":
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")  # "mirrored"
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _cluster_jobs(strategy: tf.distribute.Strategy) -> Dict[str, List[str]]:
    """{job: [address, ...]} of a multi-worker strategy; {} for a single machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return {}
    return resolver.cluster_spec().as_dict()


def _worker_index(jobs: Mapping[str, List[str]], task_type: str, task_id: int) -> int:
    """Index of a task among the training workers: the chief (if any) is 0, then `worker`s."""
    return task_id + (1 if "chief" in jobs and task_type == "worker" else 0)


def worker_info(strategy: tf.distribute.Strategy) -> tuple:
    """(worker index, number of workers, is_chief) of this process."""
    jobs = _cluster_jobs(strategy)
    if not jobs:
        return 0, 1, True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    num_workers = sum(len(jobs.get(job, [])) for job in ("chief", "worker"))
    index = _worker_index(jobs, task_type, task_id)
    is_chief = (task_type == "chief") or ("chief" not in jobs and task_type == "worker"
                                          and task_id == 0)
    return index, num_workers, is_chief


def local_replica_count(strategy: tf.distribute.Strategy) -> int:
    """Replicas on this worker (all replicas on a single machine)."""
    _, num_workers, _ = worker_info(strategy)
    return strategy.num_replicas_in_sync // num_workers


# ---------------------------------------------------------------------------------------------
# Several workers: agreement at start-up, failures, input positions.
# ---------------------------------------------------------------------------------------------


_GATHER_FUNCTIONS: Dict[int, Tuple[tf.distribute.Strategy, tf.types.experimental.Function]] = {}


def gather_from_workers(strategy: tf.distribute.Strategy, value: int) -> List[int]:
    """Every worker's `value`, by worker index (a collective: all workers must call it; also
    a barrier)."""
    _, num_workers, _ = worker_info(strategy)
    if num_workers == 1:
        return [value]
    if id(strategy) not in _GATHER_FUNCTIONS:
        # Traced once per strategy: run eagerly, the collective costs ~0.5 s and a warning.
        def gather(value):
            per_replica = strategy.run(lambda: tf.reshape(value, [1]))
            return strategy.gather(per_replica, axis=0)
        _GATHER_FUNCTIONS[id(strategy)] = (strategy, tf.function(gather, autograph=False))
    gathered = _GATHER_FUNCTIONS[id(strategy)][1](tf.constant(value, tf.int64))
    gathered = gathered.numpy().tolist()
    # One entry per replica, a worker's replicas next to each other.
    return gathered[::len(gathered) // num_workers]


def check_same_start(strategy: tf.distribute.Strategy, step: int, checkpoint_folder: str
                     ) -> None:
    """Raises DistributionError unless every worker starts training at `step`.

    Workers that start from different checkpoints would train different weights in lockstep
    without any error, so this is checked (one small collective) before the first step.
    """
    steps = gather_from_workers(strategy, step)
    if len(set(steps)) > 1:
        found = ", ".join(f"worker {index} at step {value}" for index, value in enumerate(steps))
        raise DistributionError(
            f"the workers would start from different checkpoints ({found}): every worker "
            "resumes from the checkpoints the chief writes to <--workdir>/checkpoints (here "
            f"{checkpoint_folder}), so give all workers the same --workdir on a shared "
            "filesystem (NFS, a bucket, ...).")


# TensorFlow names tasks "/job:worker/replica:0/task:1" or "/job:worker/task:1" in its errors.
_TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")
# What a collective op raises when a peer is gone: unreachable or reported dead by the
# coordination service (Unavailable), aborted, or timed out.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError, tf.errors.CancelledError)
# Short causes for the one-line message (TensorFlow's own text spans many lines).
_CAUSES = (("stopped sending heartbeats", "it stopped sending heartbeats"),
           ("connection refused", "its address refuses connections"),
           ("failed to connect", "its address cannot be reached"),
           ("deadline exceeded", "a collective op timed out"))


def failed_workers(message: str, jobs: Mapping[str, List[str]], own_index: int) -> List[str]:
    """The workers other than `own_index` that a TensorFlow error `message` names (by task
    name or address), as "worker <index> (<address>)"."""
    found = {}
    for job, task in _TASK_NAME.findall(message):
        task = int(task)
        if job in ("chief", "worker") and task < len(jobs.get(job, [])):
            found[_worker_index(jobs, job, task)] = jobs[job][task]
    for job in ("chief", "worker"):
        for task, address in enumerate(jobs.get(job, [])):
            if re.search(re.escape(address) + r"(?!\d)", message):
                found[_worker_index(jobs, job, task)] = address
    found.pop(own_index, None)
    return [f"worker {index} ({address})" for index, address in sorted(found.items())]


def worker_failure_error(error: Exception, strategy: tf.distribute.Strategy, step: int,
                         checkpoint: Optional[str]) -> Optional[WorkerFailureError]:
    """The one-line error to raise for `error` if it says another worker failed, else None.

    Args:
      error: what a collective op (the train step) raised.
      step: the last step this worker completed.
      checkpoint: the newest checkpoint of the run (what rerunning resumes from), or None.
    """
    if not isinstance(error, _PEER_ERRORS):
        return None
    own_index, num_workers, _ = worker_info(strategy)
    if num_workers == 1:
        return None
    text = getattr(error, "message", str(error))
    failed = failed_workers(text, _cluster_jobs(strategy), own_index)
    cause = next((short for phrase, short in _CAUSES if phrase in text.lower()),
                 type(error).__name__)
    resume = (f"training continues from {checkpoint}" if checkpoint else
              "no checkpoint was written yet, so training starts again from step 0")
    message = (f"{' and '.join(failed) or 'another worker'} of this {num_workers}-worker run "
               f"failed ({cause}) after step {step}, so worker {own_index} stopped too. To "
               f"resume, start all {num_workers} workers again with the same command, TF_CONFIG "
               f"and --workdir: {resume}.")
    return WorkerFailureError(message, failed, step, checkpoint)


class WorkerInputs:
    """The input iterators of one non-chief worker, checkpointed by step number.

    The chief's checkpoint holds the chief's iterators only; each other worker keeps its own in
    `<workdir>/worker_inputs/worker<index>/ckpt-<step>` and restores them over the chief's
    (see the module docstring). `save` must be followed by a barrier before the chief's
    checkpoint of the same step is written (`Trainer.save`), so that a resumable chief
    checkpoint always has every worker's input position.
    """

    def __init__(self, workdir: str, worker_index: int, iterators: Mapping[str, object],
                 max_to_keep: int):
        self.folder = os.path.join(workdir, WORKER_INPUTS_SUBDIR, f"worker{worker_index}")
        self.worker_index = worker_index
        checkpoints.clean_partial_writes(self.folder)  # a kill during a save
        self._checkpoint = tf.train.Checkpoint(**iterators)
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, self.folder, max_to_keep=max_to_keep,
            checkpoint_name=checkpoints.CHECKPOINT_NAME)

    def save(self, step: int) -> str:
        return self._manager.save(checkpoint_number=step)

    def restore(self, step: int, chief_checkpoint: str) -> None:
        """Restores the iterators saved at `step`, the step of `chief_checkpoint`."""
        prefix = os.path.join(self.folder, f"{checkpoints.CHECKPOINT_NAME}-{step}")
        if not tf.io.gfile.exists(prefix + ".index"):
            raise DistributionError(
                f"worker {self.worker_index} has no input position for step {step} "
                f"({prefix}.index is missing), so it cannot resume {chief_checkpoint}: that "
                "checkpoint was written by a run with other workers. Resume it with the same "
                "workers (same TF_CONFIG cluster), or train into a new --workdir with "
                f"model.init_checkpoint={chief_checkpoint} to start from its weights.")
        try:
            self._checkpoint.restore(prefix).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise DistributionError(
                f"{prefix}: cannot restore worker {self.worker_index}'s input position "
                f"({error}); the input pipeline changed since it was saved. Train into a new "
                "--workdir.") from error


def _cpu_flags() -> frozenset:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _gpu_capabilities() -> List[Tuple[int, int]]:
    """(major, minor) CUDA compute capability of every visible GPU ((0, 0) when unknown)."""
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def resolve_mixed_precision(policy: str, gpu_capabilities: Optional[List[Tuple[int, int]]] = None,
                            cpu_flags: Optional[frozenset] = None) -> str:
    """The Keras dtype policy `train.mixed_precision` names; "auto" chooses by the devices.

    "auto":
      * GPUs (the oldest one decides): compute capability >= 8.0 (Ampere and later: bf16
        tensor cores) -> "mixed_bfloat16" (float32's range, no loss scaling); 7.x (Volta,
        Turing: fp16 tensor cores) -> "mixed_float16" (the optimizer adds dynamic loss
        scaling); older -> "float32".
      * no GPU: a CPU with one of BF16_CPU_FLAGS -> "mixed_bfloat16" (measured on a 2-core
        Sapphire Rapids guest: the SUW S step 0.72x and the Hoyer et al. paper network 0.51x
        of their float32 time, docs/suw_speed.md and docs/hoyer_speed.md); else "float32".
    Variables, losses and the output heads stay float32 under every mixed policy. Other
    values are returned unchanged. A run resumed on other hardware may resolve differently:
    the weights carry over (float32 either way), but float16's loss-scaling optimizer has
    other checkpoint objects, so name the policy explicitly to move a run between a
    Volta/Turing GPU and other hardware.

    Args:
      policy: "auto", "float32", "mixed_float16" or "mixed_bfloat16".
      gpu_capabilities, cpu_flags: the devices (default: this machine's; for tests).
    """
    if policy != "auto":
        return policy
    gpus = _gpu_capabilities() if gpu_capabilities is None else list(gpu_capabilities)
    if gpus:
        oldest = min(gpus)
        if oldest >= (8, 0):
            return "mixed_bfloat16"
        return "mixed_float16" if oldest >= (7, 0) else "float32"
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    return "mixed_bfloat16" if any(f in flags for f in BF16_CPU_FLAGS) else "float32"
