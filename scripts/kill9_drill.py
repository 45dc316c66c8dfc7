r"""Kill -9 drill: SIGKILL a training run N times (half of them inside a checkpoint save),
resume it each time, and compare its final weights bit for bit with a run never interrupted.

The trainee is the toy task of tests/test_training_toy.py in deterministic mode (op
determinism, position-seeded augmentation, checkpointed data iterator and RNG), plus a
"ballast" model of `--ballast` floats that takes part in the loss: it makes each checkpoint
tens of MB (with Adam's two slots), so that a save lasts long enough for a kill to land inside
it. Kills alternate between

  random       a uniform random moment while training (steps, logging, saves alike);
  during_save  the first moment a save's temporary files appear in checkpoints/
               (`ckpt-N_temp/`, `checkpoint.tmp*`, `.tmp-*` sidecar), polled every ms.

After each kill the table records the newest complete checkpoint and the leftovers on disk;
the restarted worker reports the step it resumed from and the checkpoint folder is checked for
leftovers right after start-up (they must be gone). Exit code 0 only if every restart
resumed, no leftover survived a restart, and the final weights equal the reference bitwise.

    .venv/bin/python scripts/kill9_drill.py --kills=10
    .venv/bin/python scripts/kill9_drill.py --kills=10 --markdown=docs/kill9_drill.md
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
END_MARKER = "<!-- end of the part scripts/kill9_drill.py writes -->"
TEMP_PATTERNS = ("ckpt-*_temp", "checkpoint.tmp*", ".tmp-*", "*.tempstate*")


# --------------------------------------------------------------------------------------------
# The worker: one training process (killed, restarted, or the reference).
# --------------------------------------------------------------------------------------------


def run_worker(args) -> None:
    sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
    import keras
    import numpy as np
    import tensorflow as tf
    from test_training_toy import ToyTask, toy_config
    from tf_depthseg.training import loop

    class BallastToyTask(ToyTask):
        """The toy plus a [1, ballast] kernel pulled gently towards 0 (real gradients, so
        Adam keeps slots for it and every checkpoint carries 3 x ballast floats)."""

        def build(self, config):
            models = super().build(config)
            inputs = keras.Input((1,), name="one")
            outputs = keras.layers.Dense(args.ballast, use_bias=False, name="ballast")(inputs)
            models["ballast"] = keras.Model(inputs, outputs, name="ballast")
            return models

        def compute_losses(self, config, models, batches, **kwargs):
            losses = super().compute_losses(config, models, batches, **kwargs)
            penalty = 1e-6 * tf.reduce_mean(tf.square(models["ballast"](tf.ones([1, 1]))))
            return dict(losses, total=losses["total"] + penalty, ballast=penalty)

    config = toy_config(steps=args.steps, checkpoint_every=args.checkpoint_every,
                        deterministic=True, eval_every=0, best_metric="",
                        image_summaries_every=0, keep_checkpoints=3)
    trainer = loop.Trainer(config, BallastToyTask(), args.workdir)
    print(json.dumps({"event": "started", "start_step": trainer.start_step,
                      "damaged": trainer.damaged_checkpoints}), flush=True)
    result = trainer.train()
    weights = [np.asarray(v.numpy()) for key in sorted(trainer.models)
               for v in trainer.models[key].weights]
    np.savez(os.path.join(args.workdir, "final_weights.npz"), *weights)
    print(json.dumps({"event": "finished", "start_step": result.start_step,
                      "final_step": result.final_step}), flush=True)


# --------------------------------------------------------------------------------------------
# The drill.
# --------------------------------------------------------------------------------------------


def launch(args, workdir: str) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DEPTHSEG_PROGRESS="0",
               PYTHONPATH=REPO)
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", f"--workdir={workdir}",
         f"--steps={args.steps}", f"--checkpoint_every={args.checkpoint_every}",
         f"--ballast={args.ballast}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def read_event(process: subprocess.Popen, timeout: float = 300) -> dict:
    """The next JSON line the worker prints (its TensorFlow chatter goes to stderr)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("worker exited early:\n" + process.stderr.read()[-3000:])
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise TimeoutError("no event from the worker")


def leftovers(folder: str) -> list:
    """Names in a checkpoint folder that only an unfinished save leaves."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if any(fnmatch.fnmatch(name, p) for p in TEMP_PATTERNS))


def newest_listed_step(folder: str):
    """The step of the newest checkpoint the state file lists (None: none yet)."""
    path = os.path.join(folder, "checkpoint")
    if not os.path.exists(path):
        return None
    for line in open(path):
        if line.startswith("model_checkpoint_path:"):
            return int(line.split('"')[1].rsplit("-", 1)[1])
    return None


def wait_for_save(folder: str, process: subprocess.Popen, timeout: float) -> bool:
    """Polls every ms until a save's temporary files appear; False on timeout or exit."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        if any(fnmatch.fnmatch(n, p) for n in names for p in TEMP_PATTERNS):
            return True
        time.sleep(0.001)
    return False


def load_weights(workdir: str) -> list:
    import numpy as np
    with np.load(os.path.join(workdir, "final_weights.npz")) as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import importlib.metadata
    version = "?"
    for package in ("tensorflow", "tensorflow-cpu"):
        try:
            version = importlib.metadata.version(package)
            break
        except importlib.metadata.PackageNotFoundError:
            pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, TensorFlow {version}")


def drill(args) -> int:
    rng = random.Random(args.seed)
    root = args.root or tempfile.mkdtemp(prefix="kill9_drill_")
    reference_dir, drill_dir = os.path.join(root, "reference"), os.path.join(root, "drill")
    for folder in (reference_dir, drill_dir):
        shutil.rmtree(folder, ignore_errors=True)
    folder = os.path.join(drill_dir, "checkpoints")
    started = time.time()

    print(f"reference: {args.steps} steps uninterrupted ...", flush=True)
    reference = launch(args, reference_dir)
    read_event(reference)
    t0 = time.time()
    finished = read_event(reference)
    reference.wait()
    reference_seconds = time.time() - t0
    assert finished["final_step"] == args.steps, finished
    print(f"reference: done, {reference_seconds:.1f} s of training", flush=True)

    rows, problems = [], []
    process = launch(args, drill_dir)
    event = read_event(process)
    for kill in range(1, args.kills + 1):
        mode = "random" if kill % 2 else "during_save"
        if leftovers(folder):
            problems.append(f"kill {kill}: leftovers after start-up: {leftovers(folder)}")
        since = time.time()
        if mode == "random":
            # Anywhere in the stretch of training that a restart gets through (start-up
            # tracing included), so kills land in steps, logging and saves alike.
            time.sleep(rng.uniform(0.2, args.max_delay))
        elif not wait_for_save(folder, process, timeout=60):
            mode = "during_save (missed)"
        if process.poll() is not None:
            problems.append(f"kill {kill}: the run finished before the kill; raise --steps")
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = leftovers(folder)
        row = {"kill": kill, "mode": mode, "after_s": round(time.time() - since, 3),
               "resumed_from": event["start_step"], "damaged_skipped": len(event["damaged"]),
               "newest_checkpoint": newest_listed_step(folder), "leftovers": left}
        process = launch(args, drill_dir)
        event = read_event(process)
        row["restart_resumed_from"] = event["start_step"]
        row["cleaned"] = not leftovers(folder)
        if row["restart_resumed_from"] != (row["newest_checkpoint"] or 0):
            problems.append(f"kill {kill}: resumed from {row['restart_resumed_from']}, the "
                            f"newest complete checkpoint was {row['newest_checkpoint']}")
        if not row["cleaned"]:
            problems.append(f"kill {kill}: leftovers survived the restart: {leftovers(folder)}")
        rows.append(row)
        print(f"kill {kill:2d}: {mode:20s} after {row['after_s']:6.3f} s, newest checkpoint "
              f"{row['newest_checkpoint']}, leftovers {left or '-'}, restart resumed from "
              f"{row['restart_resumed_from']}", flush=True)
    finished = read_event(process)
    process.wait()
    if finished.get("final_step") != args.steps:
        problems.append(f"the drill run ended at {finished}")

    pairs = list(zip(load_weights(drill_dir), load_weights(reference_dir), strict=True))
    identical = all(a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
                    for a, b in pairs)
    max_diff = max(float(abs(a.astype("float64") - b.astype("float64")).max())
                   for a, b in pairs)
    if not identical:
        problems.append(f"final weights differ from the reference (max |diff| {max_diff:g})")
    total = time.time() - started
    during = sum(1 for r in rows if r["mode"] == "during_save")
    with_leftovers = sum(1 for r in rows if r["leftovers"])
    summary = (f"{len(rows)}/{args.kills} kills ({during} inside a save, {with_leftovers} "
               f"left temporary files), every restart resumed from the newest complete "
               f"checkpoint: {'yes' if not any('resumed from' in p for p in problems) else 'NO'}"
               f", leftovers cleaned: "
               f"{'yes' if not any('survived' in p for p in problems) else 'NO'}, final "
               f"weights bitwise identical to the uninterrupted run: "
               f"{'yes' if identical else 'NO'} ({len(pairs)} tensors, max |diff| "
               f"{max_diff:g}). Wall time {total:.0f} s.")
    table = format_table(rows)
    print("\n" + table + "\n\n" + summary)
    for problem in problems:
        print("PROBLEM:", problem)
    if args.markdown:
        write_markdown(args, rows, table, summary, problems, total, reference_seconds)
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if not problems and identical else 1


def format_table(rows) -> str:
    header = ("| kill | mode | killed after (s) | newest complete checkpoint | leftovers at the "
              "kill | restart resumed from | leftovers gone after restart |")
    lines = [header, "|" + "---|" * 7]
    for r in rows:
        lines.append(f"| {r['kill']} | {r['mode']} | {r['after_s']:.3f} | "
                     f"ckpt-{r['newest_checkpoint']} | "
                     f"{', '.join(f'`{n}`' for n in r['leftovers']) or '-'} | "
                     f"step {r['restart_resumed_from']} | {'yes' if r['cleaned'] else 'NO'} |")
    return "\n".join(lines)


def write_markdown(args, rows, table, summary, problems, total, reference_seconds) -> None:
    command = ("TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python scripts/kill9_drill.py "
               f"--kills={args.kills} --steps={args.steps} "
               f"--checkpoint_every={args.checkpoint_every} --ballast={args.ballast} "
               f"--seed={args.seed} --markdown={args.markdown}")
    size_mb = 3 * 4 * args.ballast / 1e6
    text = f"""# Kill -9 drill

`scripts/kill9_drill.py` trains the toy task of `tests/test_training_toy.py` in deterministic
mode for {args.steps} steps (checkpoint every {args.checkpoint_every} steps, 3 kept), with a
ballast model of {args.ballast:,} floats in the loss so that each checkpoint holds
~{size_mb:.0f} MB (weights + Adam's two slots) and a save lasts long enough to be hit. It kills
the process with SIGKILL {args.kills} times, alternating a random moment while training with
the first moment a save's temporary files appear in `checkpoints/` (polled every ms), restarts
it each time (the Trainer resumes by itself), and at the end compares every final weight with
a run that was never interrupted, byte for byte.

Command (from the repository root):

    {command}

Machine: {machine()}.
Time: {total:.0f} s in all (the uninterrupted reference trains in {reference_seconds:.0f} s;
each restart pays a TensorFlow start-up and one trace).

## Result

{summary}

{table}

"Newest complete checkpoint" is what the state file listed at the kill; "leftovers" are the
temporary names an unfinished save leaves (`ckpt-N_temp/` holding the shard being written,
`checkpoint.tmp*` from the state-file write, `.tmp-*` from the sha256 sidecar or history
writes). The restart removes them (`checkpoints.clean_partial_writes`, one log line), resumes
from the newest complete checkpoint and replays the steps after it; since the input iterator,
the RNG and the optimizer state are in the checkpoint and the run is deterministic, the replay
is bitwise the same computation.
Bitwise equality holds **per machine**: another CPU (other oneDNN kernels) or
`TF_ENABLE_ONEDNN_OPTS=0` follows another trajectory, again bitwise equal between its own
interrupted and uninterrupted runs (`docs/testing.md`).
"""
    if problems:
        text += "\n## Problems\n\n" + "\n".join(f"* {p}" for p in problems) + "\n"
    path = os.path.join(REPO, args.markdown) if not os.path.isabs(args.markdown) else \
        args.markdown
    kept = ""  # hand-written sections after the marker survive a rerun
    if os.path.exists(path):
        old = open(path).read()
        if END_MARKER in old:
            kept = old[old.index(END_MARKER) + len(END_MARKER):]
    with open(path, "w") as f:
        f.write(text + "\n" + END_MARKER + kept)
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--checkpoint_every", type=int, default=10)
    parser.add_argument("--ballast", type=int, default=2_000_000,
                        help="floats in the ballast model (checkpoint ~ 12 bytes each)")
    parser.add_argument("--max_delay", type=float, default=6.0,
                        help="random kills land 0.2 .. this many seconds after a restart")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--root", default="", help="keep the runs here (default: a temporary "
                        "folder, removed at the end)")
    parser.add_argument("--markdown", default="", help="also write the report here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0
    return drill(args)


if __name__ == "__main__":
    sys.exit(main())
