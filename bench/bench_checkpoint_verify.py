r"""What verifying checkpoints costs: save, sha256 sidecar, verify with and without it, restore.

Builds the models of a config (default: the full-size KITTI S+U+W encoder-decoder with its pose
net) with a built Adam optimizer, saves them as the Trainer does (`tf.train.CheckpointManager`),
and times, as the median of --repeats:

  save            manager.save (TensorFlow's own write, incl. the state file)
  write sidecar   checkpoints.write_sidecar: size + sha256 of every file, atomic JSON write
  verify sidecar  checkpoints.find_damage with the sidecar (sizes, then sha256 of every file)
  verify by read  checkpoints.find_damage without it (parse the index, RestoreV2 of every
                  tensor: TensorFlow checks each tensor's CRC32C)
  restore         tf.train.Checkpoint.restore of models + optimizer (what a resume does)

    .venv/bin/python bench/bench_checkpoint_verify.py
    .venv/bin/python bench/bench_checkpoint_verify.py --config=suw/synthetic_s --smoke
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def timed(fn, repeats: int):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="suw/kitti_suw")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    from tf_depthseg import config as config_lib
    from tf_depthseg.export import restore
    from tf_depthseg.training import checkpoints

    config = config_lib.load_config(args.config, smoke=args.smoke)
    models = restore.build_task_models(config)
    variables = [v for m in models.values() for v in m.trainable_variables]
    variables = list({id(v): v for v in variables}.values())
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(variables)
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(models=models, optimizer=optimizer, step=step)
    folder = tempfile.mkdtemp(prefix="bench_ckpt_")
    try:
        manager = tf.train.CheckpointManager(checkpoint, folder, max_to_keep=args.repeats + 1,
                                             checkpoint_name=checkpoints.CHECKPOINT_NAME)
        manager.save(checkpoint_number=0)  # the first save traces the saver: not timed
        counter = iter(range(1, 1000))
        save_s, _ = timed(lambda: manager.save(checkpoint_number=next(counter)), args.repeats)
        prefix = manager.latest_checkpoint
        size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
                   if n.startswith(os.path.basename(prefix) + "."))
        sidecar_s, _ = timed(lambda: checkpoints.write_sidecar(prefix), args.repeats)
        verify_sidecar_s, damage = timed(lambda: checkpoints.find_damage(prefix), args.repeats)
        assert damage is None, damage
        os.rename(prefix + checkpoints.SIDECAR_SUFFIX, prefix + ".aside")
        verify_read_s, damage = timed(lambda: checkpoints.find_damage(prefix), args.repeats)
        assert damage is None, damage
        restore_s, _ = timed(lambda: checkpoint.restore(prefix).assert_existing_objects_matched(),
                             args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    params = sum(int(tf.size(v)) for v in variables)
    print(f"{args.config}{' --smoke' if args.smoke else ''}: {params / 1e6:.2f} M trainable "
          f"parameters, checkpoint {size / 1e6:.1f} MB (models + Adam slots), median of "
          f"{args.repeats}")
    rows = [("save (TensorFlow)", save_s), ("write sidecar (sha256)", sidecar_s),
            ("verify with sidecar", verify_sidecar_s), ("verify by reading every tensor",
                                                        verify_read_s),
            ("restore models + optimizer", restore_s)]
    for name, seconds in rows:
        print(f"  {name:32s} {1000 * seconds:8.1f} ms   ({seconds / save_s:5.2f} x save)")


if __name__ == "__main__":
    main()
