"""`tf.distribute` strategy from `train.distribution`, and logical CPU devices for tests.

* `auto`: `MirroredStrategy` over the local GPUs when there are at least two, else the default
  (single-device) strategy.
* `default`: the default strategy (one device, no replication).
* `mirrored`: `MirroredStrategy` over all local GPUs; without GPUs, over all logical CPU
  devices (so two logical CPUs exercise the distributed code path, see
  `configure_logical_cpus`).
* `multi_worker`: `MultiWorkerMirroredStrategy` configured from the `TF_CONFIG` environment
  variable (checked first, so a missing or malformed one gives a clear message instead of a
  hang or a gRPC error).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

from tf_depthseg import errors


class DistributionError(errors.UserError, ValueError):
    """The requested distribution cannot be set up; the message says why and what to do."""


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


def worker_info(strategy: tf.distribute.Strategy) -> tuple:
    """(worker index, number of workers, is_chief) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0, 1, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    jobs = resolver.cluster_spec().as_dict()
    num_workers = sum(len(jobs.get(job, [])) for job in ("chief", "worker"))
    has_chief = "chief" in jobs
    index = task_id + (1 if has_chief and task_type == "worker" else 0)
    is_chief = (task_type == "chief") or (not has_chief and task_type == "worker"
                                          and task_id == 0)
    return index, num_workers, is_chief


def local_replica_count(strategy: tf.distribute.Strategy) -> int:
    """Replicas on this worker (all replicas on a single machine)."""
    _, num_workers, _ = worker_info(strategy)
    return strategy.num_replicas_in_sync // num_workers
