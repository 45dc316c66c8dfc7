r"""Latency, file size and accuracy of the SUW encoder-decoder's SavedModel vs TFLite exports.

Builds the encoder-decoder with the config's model settings (random weights: latency and the
export-vs-Keras differences do not depend on training), exports it once per TFLite
quantisation at --height x --width, and measures on the same images:

* single-image latency (median of --repeats calls after warm-up) of the Keras model
  (tf.function), the SavedModel `serving_default` signature, and each .tflite file
  (tf.lite.Interpreter, --threads threads),
* file sizes, and the max abs difference of depth (metres) and uncertainty to Keras.

Example:
  python bench/bench_export.py --height=128 --width=416 --repeats=20
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

flags.DEFINE_integer("height", 128, "Image height.")
flags.DEFINE_integer("width", 416, "Image width.")
flags.DEFINE_integer("repeats", 20, "Timed calls per variant.")
flags.DEFINE_integer("threads", 2, "TFLite interpreter threads.")
flags.DEFINE_string("out", "bench/results/bench_export.json", "JSON output path.")
FLAGS = flags.FLAGS


def median_latency(function, repeats):
    function()  # warm-up (tracing, delegate setup)
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from tf_depthseg import common
    from tf_depthseg.training.tasks.suw_config import SUWConfig
    from tf_depthseg.utils import atomic_write_bytes
    from tf_depthseg.export import exporter, saved_model, tflite
    from tf_depthseg.models import suw

    size = (FLAGS.height, FLAGS.width)
    model_config = SUWConfig()
    model = suw.build_suw_encoder_decoder(
        num_bins=model_config.num_bins, min_depth=model_config.min_depth,
        max_depth=model_config.max_depth, sam_dilations=model_config.sam_dilations)
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
    keras_fn = tf.function(lambda x: model(x, training=False))
    results = {"image_size": list(size), "num_params": int(model.count_params()),
               "depth_range_m": [float(reference["depth"].min()),
                                 float(reference["depth"].max())],
               "threads": FLAGS.threads, "repeats": FLAGS.repeats, "variants": {}}
    results["variants"]["keras_tf_function"] = {
        "latency_ms": 1e3 * median_latency(lambda: keras_fn(inputs), FLAGS.repeats)}

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_dir = os.path.join(tmp, "export")
        exporter.export_model(model, export_dir, image_size=size, tflite_export=False,
                              verify=False)
        export_seconds = time.perf_counter() - start
        _, serve = saved_model.load_serving_function(export_dir)
        batch = tf.constant(images)
        served = {k: v.numpy() for k, v in serve(images=batch).items()}
        results["variants"]["saved_model"] = {
            "latency_ms": 1e3 * median_latency(lambda: serve(images=batch), FLAGS.repeats),
            "bytes": saved_model.directory_size(export_dir),
            "export_seconds": export_seconds,
            "max_abs_diff": exporter.output_differences(served, reference)}
        module = saved_model.ServingModule(model, size)
        for quantize in tflite.QUANTIZE_CHOICES:
            start = time.perf_counter()
            content = tflite.convert_to_tflite(model, size, quantize, module=module)
            convert_seconds = time.perf_counter() - start
            runner = tflite.TFLiteModel(model_content=content, num_threads=FLAGS.threads)
            outputs = runner(images)
            results["variants"][f"tflite_{quantize}"] = {
                "latency_ms": 1e3 * median_latency(lambda run=runner: run(images),
                                                   FLAGS.repeats),
                "bytes": len(content),
                "convert_seconds": convert_seconds,
                "max_abs_diff": exporter.output_differences(outputs, reference)}

    base = results["variants"]["saved_model"]["latency_ms"]
    print(f"SUW encoder-decoder {size[0]}x{size[1]}, {results['num_params']} parameters, "
          f"batch 1, median of {FLAGS.repeats} calls")
    print(f"{'variant':<20}{'latency ms':>12}{'vs SavedModel':>15}{'size MB':>10}"
          f"{'max|d depth|':>14}{'max|d unc|':>12}")
    for name, row in results["variants"].items():
        diff = row.get("max_abs_diff", {})
        print(f"{name:<20}{row['latency_ms']:>12.2f}{row['latency_ms'] / base:>14.2f}x"
              f"{row.get('bytes', 0) / 1e6:>10.2f}{diff.get('depth', 0.0):>14.2e}"
              f"{diff.get('uncertainty', 0.0):>12.2e}")
    out = FLAGS.out
    atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
