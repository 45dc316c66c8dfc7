r"""Latency, size and accuracy of the SUW encoder-decoder's exports: SavedModel and TFLite
float32, dynamic-range, float16 and int8 (issue 18).

Latency (--height x --width, default 240x320 = the mobile 320x240 frame; random weights:
latency does not depend on training): the network is exported once per variant and every
variant is called --calls times on one image, the variants interleaved call by call so that
the load of the shared machine hits them alike; p50 / p90 per variant, TFLite on --threads
threads (1 = the phone budget of issue 18: int8 <= 16 ms, float32 ~32 ms = real time). The
int8 file calibrates on --calibration images of the training records of --workdir's run
(resized to the latency size), or on synthetic images when there are none. The load average
is printed before and after.

Accuracy (--workdir, a trained SUW run; skipped with --noaccuracy or without checkpoints):
the run's network exported at its own data.image_size with each TFLite variant, evaluated on
--test_pattern (the synthetic test drive) with the run's eval settings (Eigen protocol):
AbsRel, RMSE, d1 per variant and AbsRel relative to float32 (issue 18: int8 within 3 %).
The TFLite inputs are the test images resized to the run's size and rounded to uint8, as
tools/predict feeds them; the Keras row runs the same uint8 images in float.

Example:
  python bench/bench_export.py                         # 240x320, 100 calls, 1 thread
  python bench/bench_export.py --workdir=/tmp/suw_run --calls=200 --noaccuracy
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

flags.DEFINE_integer("height", 240, "Latency image height.")
flags.DEFINE_integer("width", 320, "Latency image width.")
flags.DEFINE_integer("calls", 100, "Timed calls per variant (after 3 warm-up calls).")
flags.DEFINE_integer("threads", 1, "TFLite interpreter threads.")
flags.DEFINE_integer("calibration", 100, "int8: representative images.")
flags.DEFINE_string("workdir", "workdir/suw", "A trained SUW run: its training records "
                    "calibrate int8, its network is evaluated for the accuracy table.")
flags.DEFINE_string("test_pattern", "workdir/data/kitti_records/test-*.tfrecord",
                    "Records of the accuracy table.")
flags.DEFINE_bool("accuracy", True, "Also the accuracy table of the trained run.")
flags.DEFINE_string("out", "bench/results/bench_export.json", "JSON output path.")
FLAGS = flags.FLAGS

VARIANTS = ("none", "dynamic", "float16", "int8")


def load_text() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def percentiles(times) -> dict:
    import numpy as np
    times_ms = 1e3 * np.asarray(times)
    return {"p50_ms": float(np.percentile(times_ms, 50)),
            "p90_ms": float(np.percentile(times_ms, 90)), "calls": len(times)}


def interleaved_latency(functions: dict, calls: int) -> dict:
    """{name: percentiles} of `calls` timed calls of each function, interleaved call by call
    (3 warm-up calls each first)."""
    for function in functions.values():
        for _ in range(3):
            function()
    times = {name: [] for name in functions}
    for _ in range(calls):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: percentiles(values) for name, values in times.items()}


def run_config(workdir: str):
    """The trained run's config, or None (no run there)."""
    from tf_depthseg import config as config_lib
    path = os.path.join(workdir, config_lib.CONFIG_FILENAME)
    return config_lib.load_config(path) if os.path.isfile(path) else None


def calibration_images(config, size, count):
    """(uint8 images, where from): the run's training records resized to `size`, else
    synthetic scenes."""
    from tf_depthseg import errors
    from tf_depthseg.export import exporter
    if config is not None:
        try:
            return (exporter.representative_images(config.data.train_pattern, size, count),
                    config.data.train_pattern)
        except errors.UserError as error:
            print(f"no training records for calibration ({error}); synthetic images instead")
    return exporter.verification_images(size, count=count, seed=1), "verification_images"


def latency(config) -> dict:
    import numpy as np
    import tensorflow as tf

    from tf_depthseg import common
    from tf_depthseg.export import exporter, saved_model, tflite
    from tf_depthseg.models import suw
    from tf_depthseg.training.tasks.suw_config import SUWConfig

    size = (FLAGS.height, FLAGS.width)
    suw_config = SUWConfig()
    model = suw.build_suw_encoder_decoder(
        num_bins=suw_config.num_bins, min_depth=suw_config.min_depth,
        max_depth=suw_config.max_depth, sam_dilations=suw_config.sam_dilations)
    images = exporter.verification_images(size, count=1, seed=0)
    inputs = tf.constant(images.astype(np.float32) / 255.0)
    # Random weights give huge logits (a one-hot bin distribution), which would hide every
    # export difference; scale the output batch norm so the logits have unit std.
    logits = model(inputs, training=False)[common.OUT_DEPTH_BIN_LOGITS].numpy()
    out_bn = model.get_layer(f"{model.name}_out_bn")
    scale = 1.0 / max(float(logits.std()), 1e-6)
    out_bn.gamma.assign(out_bn.gamma.numpy() * scale)
    out_bn.beta.assign(out_bn.beta.numpy() * scale)
    reference = exporter.keras_reference(model, images, size)
    calibration, calibration_source = calibration_images(config, size, FLAGS.calibration)
    results = {"image_size": list(size), "num_params": int(model.count_params()),
               "threads": FLAGS.threads, "calibration_source": calibration_source,
               "calibration_images": len(calibration), "variants": {}}
    keras_fn = tf.function(lambda x: model(x, training=False))
    functions = {"keras_tf_function": lambda: keras_fn(inputs)}
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = os.path.join(tmp, "export")
        exporter.export_model(model, export_dir, image_size=size, tflite_export=False,
                              verify=False)
        _, serve = saved_model.load_serving_function(export_dir)
        batch = tf.constant(images)
        functions["saved_model"] = lambda: serve(images=batch)
        results["variants"]["saved_model"] = {
            "bytes": saved_model.directory_size(export_dir),
            "max_abs_diff": exporter.output_differences(
                {k: v.numpy() for k, v in serve(images=batch).items()}, reference)}
        module = saved_model.ServingModule(model, size)
        for quantize in VARIANTS:
            start = time.perf_counter()
            content = tflite.convert_to_tflite(
                model, size, quantize, module=module,
                representative_images=calibration if quantize == "int8" else None)
            convert_seconds = time.perf_counter() - start
            runner = tflite.TFLiteModel(model_content=content, num_threads=FLAGS.threads)
            functions[f"tflite_{quantize}"] = lambda run=runner: run(images)
            results["variants"][f"tflite_{quantize}"] = {
                "bytes": len(content), "convert_seconds": convert_seconds,
                "max_abs_diff": exporter.output_differences(runner(images), reference)}
        results["load_before"] = os.getloadavg()
        timed = interleaved_latency(functions, FLAGS.calls)
        results["load_after"] = os.getloadavg()
    for name, row in timed.items():
        results["variants"].setdefault(name, {}).update(row)
    return results


def print_latency(results) -> None:
    size = results["image_size"]
    variants = results["variants"]
    base = variants["tflite_none"]["p50_ms"]
    print(f"\nSUW encoder-decoder {size[0]}x{size[1]} (h x w), {results['num_params']} "
          f"parameters, batch 1, TFLite on {results['threads']} thread(s), {FLAGS.calls} "
          f"interleaved calls per variant (Keras / SavedModel: TensorFlow's own threads); "
          f"int8 calibrated on {results['calibration_images']} images of "
          f"{results['calibration_source']}")
    print("load average before " + " ".join(f"{v:.2f}" for v in results["load_before"])
          + ", after " + " ".join(f"{v:.2f}" for v in results["load_after"]))
    print(f"{'variant':<20}{'p50 ms':>9}{'p90 ms':>9}{'/ float32':>11}{'size MB':>9}"
          f"{'max|d depth| m':>16}{'max|d unc|':>12}")
    for name, row in variants.items():
        diff = row.get("max_abs_diff", {})
        print(f"{name:<20}{row['p50_ms']:>9.2f}{row['p90_ms']:>9.2f}"
              f"{row['p50_ms'] / base:>10.2f}x{row.get('bytes', 0) / 1e6:>9.2f}"
              f"{diff.get('depth', 0.0):>16.3g}{diff.get('uncertainty', 0.0):>12.3g}")


def accuracy(config, workdir: str) -> dict:
    """Eigen metrics of the run's network per TFLite variant on FLAGS.test_pattern."""
    import numpy as np
    import tensorflow as tf

    from tf_depthseg import common
    from tf_depthseg.data import pipeline
    from tf_depthseg.evaluation import depth as depth_eval
    from tf_depthseg.export import exporter, restore, saved_model, tflite
    from tf_depthseg.metrics import depth as depth_metrics

    restored = restore.restore_serving_model(workdir, "latest")
    config = restored.config
    size = tuple(config.data.image_size)
    dataset = pipeline.make_dataset(FLAGS.test_pattern, [common.IMAGE, common.DEPTH], 1,
                                    training=False, image_size=None, num_context=0,
                                    deterministic=True)
    samples = []
    for batch in dataset:  # uint8 at the run's size (what a deployed model is fed)
        resized = tf.image.resize(batch[common.IMAGE], size).numpy()
        samples.append((np.clip(np.round(resized * 255.0), 0, 255).astype(np.uint8),
                        batch[common.DEPTH]))
    calibration = exporter.representative_images(config.data.train_pattern, size,
                                                 config.export.tflite_representative_examples)
    module = saved_model.ServingModule(restored.model, size)
    predictors = {"keras_float32": lambda u8: exporter.keras_reference(
        restored.model, u8, size)["depth"]}
    sizes = {}
    for quantize in VARIANTS:
        content = tflite.convert_to_tflite(
            restored.model, size, quantize, module=module,
            representative_images=calibration if quantize == "int8" else None)
        sizes[f"tflite_{quantize}"] = len(content)
        runner = tflite.TFLiteModel(model_content=content)
        predictors[f"tflite_{quantize}"] = lambda u8, run=runner: run(u8)["depth"]
    rows = {}
    for name, predict_fn in predictors.items():
        accumulator = depth_metrics.DepthMetricAccumulator()
        for images, ground_truth in samples:
            outputs = depth_eval.depth_eval_outputs(tf.constant(predict_fn(images)),
                                                    ground_truth, config.eval)
            depth_eval.update_depth_accumulator(
                accumulator, {k: v.numpy() for k, v in outputs.items()})
        rows[name] = {k: float(v) for k, v in accumulator.result().items()}
        rows[name]["num_images"] = int(accumulator.count)
        if name in sizes:
            rows[name]["bytes"] = sizes[name]
    return {"workdir": os.path.abspath(workdir), "checkpoint": restored.checkpoint,
            "step": restored.step, "image_size": list(size), "test_pattern": FLAGS.test_pattern,
            "train_pattern": config.data.train_pattern, "calibration_images": len(calibration),
            "rows": rows}


def print_accuracy(result) -> None:
    rows = result["rows"]
    base = rows["tflite_none"]["abs_rel"]
    print(f"\naccuracy of {result['workdir']} (step {result['step']}) at "
          f"{result['image_size'][0]}x{result['image_size'][1]} on {result['test_pattern']} "
          f"({rows['tflite_none']['num_images']} images; int8 calibrated on "
          f"{result['calibration_images']} training images)")
    print(f"{'variant':<16}{'AbsRel':>8}{'vs float32':>12}{'RMSE':>8}{'d1':>8}{'size MB':>9}")
    for name, row in rows.items():
        print(f"{name:<16}{row['abs_rel']:>8.4f}{100 * (row['abs_rel'] / base - 1):>+11.2f}%"
              f"{row['rmse']:>8.3f}{row['a1']:>8.4f}{row.get('bytes', 0) / 1e6:>9.2f}")


def main(argv):
    del argv
    from absl import logging

    from tf_depthseg.utils import atomic_write_bytes
    logging.set_verbosity(logging.WARNING)  # not the SavedModel writer's INFO lines

    print(load_text())
    config = run_config(FLAGS.workdir)
    report = {"latency": latency(config)}
    print_latency(report["latency"])
    has_checkpoint = os.path.isdir(os.path.join(FLAGS.workdir, "checkpoints"))
    if FLAGS.accuracy and config is not None and has_checkpoint:
        report["accuracy"] = accuracy(config, FLAGS.workdir)
        print_accuracy(report["accuracy"])
    elif FLAGS.accuracy:
        print(f"\nno trained run in {FLAGS.workdir}: accuracy table skipped")
    print(load_text())
    atomic_write_bytes(FLAGS.out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
