"""Two worker processes on 127.0.0.1 (`train.distribution=multi_worker`, TF_CONFIG) train like
one process with two replicas, only the chief writes the run, and a killed worker ends the run
with one error line; rerunning resumes from the last checkpoint.

Each process is tests/multiworker_worker.py (the toy task of test_training_toy.py with a
second input stream and an EMA teacher, the same data order in both set-ups). Every wait has
a deadline, and the test kills what it started, so a hang fails the test instead of blocking.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
WORKER = os.path.join(TESTS, "multiworker_worker.py")
DEADLINE_S = 120  # per phase; the whole test takes ~20 s on 2 cores
STEPS, CHECKPOINT_EVERY = 12, 4


def _free_ports(count: int) -> list:
    """Ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Processes:
    """Worker processes started by the test; `kill_all` ends those still running."""

    def __init__(self, root):
        self.root, self.started = root, []

    def start(self, name: str, args, tf_config=None) -> subprocess.Popen:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0",
                   PYTHONPATH=REPO)
        env.pop("TF_CONFIG", None)
        if tf_config is not None:
            env["TF_CONFIG"] = json.dumps(tf_config)
        # Output to files, not pipes: a full pipe would block a worker.
        with open(self.root / f"{name}.stdout", "w") as out, \
                open(self.root / f"{name}.stderr", "w") as err:
            process = subprocess.Popen(
                [sys.executable, WORKER, f"--out={self.root / name}", *args], cwd=REPO,
                env=env, stdout=out, stderr=err)
        process.name = name
        self.started.append(process)
        return process

    def start_cluster(self, name: str, args, ports, own_args=None) -> list:
        """Worker i gets `args` + `own_args[i]` and a TF_CONFIG naming `ports`."""
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        own_args = own_args or [[] for _ in ports]
        return [self.start(f"{name}{index}", list(args) + own_args[index],
                           {"cluster": cluster, "task": {"type": "worker", "index": index}})
                for index in range(len(ports))]

    def stderr(self, process) -> str:
        return (self.root / f"{process.name}.stderr").read_text()

    def wait(self, processes, deadline: float) -> list:
        """Return codes; kills everything and fails if the deadline passes first."""
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.kill_all()
                raise AssertionError(f"{process.name} hung (killed after the deadline); "
                                     f"stderr:\n{self.stderr(process)[-3000:]}") from None
        return [process.returncode for process in processes]

    def wait_for_file(self, path, processes, deadline: float) -> None:
        while not os.path.exists(path):
            dead = [p for p in processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.kill_all()
                tails = "\n".join(f"{p.name}: {self.stderr(p)[-2000:]}" for p in processes)
                raise AssertionError(f"{path} did not appear; {tails}")
            time.sleep(0.05)

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


def _result(root, name: str):
    with open(root / name / "result.json") as f:
        result = json.load(f)
    weights = np.load(root / name / "weights.npz")
    return result, [weights[key] for key in weights.files]


def _max_rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.slow
def test_two_workers_equal_two_replicas_and_resume_after_a_kill(tmp_path, learning_seed,
                                                                 record_measure):
    processes = Processes(tmp_path)
    workdir = tmp_path / "run"
    common = [f"--steps={STEPS}", f"--checkpoint_every={CHECKPOINT_EVERY}",
              f"--seed={learning_seed}"]
    try:
        # The reference (one process, two logical CPUs) runs while the first cluster does.
        reference = processes.start("reference", common + [
            "--distribution=mirrored", "--logical_cpus=2", f"--workdir={tmp_path / 'ref'}"])
        # First run: worker 1 is killed once the chief has written a checkpoint; the steps
        # sleep so that the run is still going then.
        ports = _free_ports(2)
        first = processes.start_cluster("first", common + [
            f"--workdir={workdir}", "--step_sleep=0.25"], ports)
        deadline = time.monotonic() + DEADLINE_S
        processes.wait_for_file(workdir / "checkpoints" / "ckpt-4.sha256.json", first,
                                deadline)
        first[1].kill()
        killed_at = time.monotonic()
        chief_code, reference_code = processes.wait([first[0], reference], deadline)
        stopped_after_s = time.monotonic() - killed_at
        first[1].wait()
        assert reference_code == 0, processes.stderr(reference)[-3000:]

        # The surviving chief ends with one line naming worker 1 and how to resume.
        assert chief_code == 2, processes.stderr(first[0])[-3000:]
        last_line = processes.stderr(first[0]).strip().splitlines()[-1]
        match = re.fullmatch(
            rf"error: worker 1 \(127\.0\.0\.1:{ports[1]}\) of this 2-worker run failed "
            r"\(.+\) after step (\d+), so worker 0 stopped too\. To resume, start all 2 "
            r"workers again with the same command, TF_CONFIG and --workdir: training "
            r"continues from (\S+/ckpt-(\d+))\.", last_line)
        assert match, last_line
        stopped_step, named, resume_step = match[1], match[2], int(match[3])
        newest = max(int(re.search(r"ckpt-(\d+)\.index$", path)[1]) for path in
                     glob.glob(str(workdir / "checkpoints" / "ckpt-*.index")))
        assert named == str(workdir / "checkpoints" / f"ckpt-{newest}")
        assert resume_step == newest and CHECKPOINT_EVERY <= newest <= int(stopped_step)
        assert int(stopped_step) < STEPS

        # Rerunning both workers (the same command) resumes from that checkpoint.
        second = processes.start_cluster("second", common + [f"--workdir={workdir}"],
                                          _free_ports(2))
        codes = processes.wait(second, time.monotonic() + DEADLINE_S)
        assert codes == [0, 0], [processes.stderr(p)[-3000:] for p in second]
    finally:
        processes.kill_all()

    expected, expected_weights = _result(tmp_path, "reference")
    assert expected["replicas"] == 2 and expected["final_step"] == STEPS
    expected_losses = [total for _, total in expected["losses"]]
    weight_diffs, loss_diffs = [], []
    for index in (0, 1):
        result, weights = _result(tmp_path, f"second{index}")
        assert (result["worker_index"], result["is_chief"]) == (index, index == 0)
        assert result["replicas"] == 2
        assert (result["start_step"], result["final_step"]) == (resume_step, STEPS)
        assert [step for step, _ in result["losses"]] == list(range(resume_step + 1, STEPS + 1))
        weight_diffs.append(max(float(np.abs(a - b).max())
                                for a, b in zip(weights, expected_weights)))
        loss_diffs.append(_max_rel_diff([total for _, total in result["losses"]],
                                        expected_losses[resume_step:]))
    # The chief's history: steps up to the checkpoint from the first run, the rest from the
    # second; each the loss of the same global batch as in the reference.
    with open(workdir / "history.json") as f:
        history = json.load(f)["train"]
    assert [row["step"] for row in history] == list(range(1, STEPS + 1))
    history_diff = _max_rel_diff([row["total"] for row in history], expected_losses)
    record_measure("max weight diff (teacher included) vs 2 replicas", max(weight_diffs),
                   below=1e-5)
    record_measure("max loss rel diff, both workers after resume", max(loss_diffs), below=1e-5)
    record_measure("max loss rel diff, chief history (both runs)", history_diff, below=1e-5)
    # Same global batches and updates; only where the replicas' gradients are summed differs.
    assert max(weight_diffs) < 1e-5, weight_diffs
    assert max(loss_diffs) < 1e-5, loss_diffs
    assert history_diff < 1e-5, history_diff
    # Training moved the weights, so equal weights mean equal training (0 without updates).
    initial = np.load(tmp_path / "reference" / "initial_weights.npz")
    moved = max(float(np.abs(initial[key] - w).max())
                for key, w in zip(initial.files, expected_weights))
    record_measure("weights moved by training", moved, above=1e-3)
    assert moved > 1e-3, moved

    # Only the chief wrote the run: its files, TensorBoard events from the chief's processes
    # only; the other worker left only its input positions (no scratch copy of checkpoints).
    assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json", "history.json", "logs",
                                           "worker_inputs"]
    assert os.listdir(workdir / "worker_inputs") == ["worker1"]
    # An input position for every checkpoint the chief keeps, of the same step.
    assert sorted(os.listdir(workdir / "worker_inputs" / "worker1")) == sorted(
        name for name in os.listdir(workdir / "checkpoints") if not name.endswith(".json"))
    # events.out.tfevents.<time>.<host>.<pid>.<n>.v2 (the host may hold dots)
    writers = {int(os.path.basename(path).split(".")[-3])
               for path in glob.glob(str(workdir / "logs" / "*" / "events.out.tfevents.*"))}
    assert writers == {first[0].pid, second[0].pid}, writers
    assert stopped_after_s < 60, stopped_after_s


@pytest.mark.slow
def test_killing_the_chief_stops_the_other_worker_and_workers_must_share_the_workdir(
        tmp_path):
    processes = Processes(tmp_path)
    workdir = tmp_path / "run"
    common = ["--steps=40", f"--checkpoint_every={CHECKPOINT_EVERY}"]
    try:
        ports = _free_ports(2)
        first = processes.start_cluster("first", common + [
            f"--workdir={workdir}", "--step_sleep=0.25"], ports)
        deadline = time.monotonic() + DEADLINE_S
        processes.wait_for_file(workdir / "checkpoints" / "ckpt-4.sha256.json", first,
                                deadline)
        first[0].kill()
        assert processes.wait([first[1]], deadline) == [2], processes.stderr(first[1])[-3000:]
        first[0].wait()
        last_line = processes.stderr(first[1]).strip().splitlines()[-1]
        assert re.fullmatch(
            rf"error: worker 0 \(127\.0\.0\.1:{ports[0]}\) of this 2-worker run failed "
            r"\(.+\) after step \d+, so worker 1 stopped too\. To resume, start all 2 workers "
            r"again with the same command, TF_CONFIG and --workdir: training continues from "
            rf"{re.escape(str(workdir))}/checkpoints/ckpt-\d+\.", last_line), last_line

        # Worker 1 given a folder of its own would train from scratch next to a resumed chief:
        # both stop before the first step, naming the steps and the fix.
        own = tmp_path / "not_shared"
        second = processes.start_cluster("second", common, _free_ports(2), [
            [f"--workdir={workdir}"], [f"--workdir={own}"]])
        codes = processes.wait(second, time.monotonic() + DEADLINE_S)
    finally:
        processes.kill_all()
    assert codes == [2, 2], [processes.stderr(p)[-3000:] for p in second]
    for process, folder in zip(second, (workdir, own)):
        last_line = processes.stderr(process).strip().splitlines()[-1]
        assert re.fullmatch(
            r"error: the workers would start from different checkpoints \(worker 0 at step "
            r"([1-9]\d*), worker 1 at step 0\): every worker resumes from the checkpoints the "
            r"chief writes to <--workdir>/checkpoints \(here "
            rf"{re.escape(str(folder / 'checkpoints'))}\), so give all workers the same "
            r"--workdir on a shared filesystem \(NFS, a bucket, \.\.\.\)\.", last_line), last_line
    assert not (own / "checkpoints").exists()


# TensorFlow 2.21's errors at the survivor's next collective (abridged from the runs above):
# worker 1 killed, seen by worker 0 after the heartbeat timeout, and worker 0 killed, seen
# by worker 1 at once.
HEARTBEAT_ERROR = (
    "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks "
    "are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have "
    "crashed. Check the task logs for an earlier error, or scheduler events (e.g. preemption, "
    "eviction) to debug further.\nThe error could be from a previous operation. Restart your "
    "program to reset.\n\t [[{{node CollectiveReduceV2}}]] [Op:__inference_step_36]")
REFUSED_ERROR = (
    "Collective ops is aborted by: failed to connect to all addresses; last error: UNKNOWN: "
    "ipv4:127.0.0.1:23461: Failed to connect to remote host: Connection refused\nAdditional "
    "GRPC error information from remote target /job:worker/replica:0/task:0 while calling "
    "/tensorflow.WorkerService/CompleteInstance:\n:UNKNOWN:Error received from peer "
    "{grpc_status:14, grpc_message:\"failed to connect to all addresses\"}")


def _fake_strategy(cluster: dict, task_type: str, task_id: int):
    """An object with the `cluster_resolver` of a multi-worker strategy (no cluster start)."""
    import types

    import tensorflow as tf
    return types.SimpleNamespace(cluster_resolver=tf.distribute.cluster_resolver.
                                 SimpleClusterResolver(tf.train.ClusterSpec(cluster),
                                                       task_type=task_type, task_id=task_id))


def test_worker_failure_messages_name_the_failed_worker_and_the_checkpoint():
    import tensorflow as tf

    from tf_depthseg.training import distribute
    cluster = {"worker": ["127.0.0.1:23461", "127.0.0.1:23462"]}
    chief = _fake_strategy(cluster, "worker", 0)
    error = distribute.worker_failure_error(
        tf.errors.UnavailableError(None, None, HEARTBEAT_ERROR), chief, 7, "/w/checkpoints/ckpt-4")
    assert str(error) == (
        "worker 1 (127.0.0.1:23462) of this 2-worker run failed (it stopped sending heartbeats) "
        "after step 7, so worker 0 stopped too. To resume, start all 2 workers again with the "
        "same command, TF_CONFIG and --workdir: training continues from /w/checkpoints/ckpt-4.")
    assert (error.failed, error.step, error.checkpoint) == (
        ["worker 1 (127.0.0.1:23462)"], 7, "/w/checkpoints/ckpt-4")
    error = distribute.worker_failure_error(
        tf.errors.UnavailableError(None, None, REFUSED_ERROR), _fake_strategy(cluster, "worker", 1),
        2, None)
    assert error.failed == ["worker 0 (127.0.0.1:23461)"]  # by task name and by address
    assert "(its address refuses connections) after step 2, so worker 1 stopped" in str(error)
    assert "no checkpoint was written yet, so training starts again from step 0" in str(error)
    assert "\n" not in str(error)
    # With a chief job: the chief is worker 0, worker task i is worker i + 1; an address that
    # only starts like a worker's ("b:2" in "b:23") names nobody.
    jobs = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    assert distribute.failed_workers("from /job:worker/replica:0/task:1 and b:23", jobs, 0) == [
        "worker 2 (c:3)"]
    assert distribute.failed_workers("peer /job:chief/task:0 is down", jobs, 1) == [
        "worker 0 (a:1)"]
    assert distribute.failed_workers("nothing known", jobs, 1) == []
    # Errors that are not a lost peer, and single-machine runs, keep their own error.
    assert distribute.worker_failure_error(
        tf.errors.InvalidArgumentError(None, None, "bad shape"), chief, 7, None) is None
    assert distribute.worker_failure_error(
        tf.errors.UnavailableError(None, None, HEARTBEAT_ERROR), tf.distribute.get_strategy(),
        7, None) is None
