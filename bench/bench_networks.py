"""Benchmark the networks and backbones: parameters, FLOPs, forward and forward+backward time.

For each network (SUW encoder-decoder, inception hourglass, SUW pose net, SUW object-motion
net; the ResNet backbones alone: ResNet-18, ResNet-50, ResNet-101 with a dilated last stage
(Hoyer et al.'s encoder, output stride 16); Hoyer et al.'s pose net: ResNet-18 on a frame pair
+ Monodepth2's decoder; Hoyer et al.'s networks (models/hoyer.py): "hoyer_seg" = the paper's
network, ResNet-101-dilated + ASPP U-Net decoder + segmentation head, the network the
reference's 64.6 M parameters and ~3.0 s/step refer to; "hoyer_depth" the SDE net,
"hoyer_multitask" the PAD-Net multi-task net, "hoyer_student" the data-selection student) and
each input size (default 128x416, 240x320, 192x640) at batch 4, measures on this machine:

* parameters (`model.count_params()`),
* FLOPs of one forward pass, counted analytically from the traced graph: every Conv2D /
  DepthwiseConv2dNative / MatMul op contributes 2 * multiply-accumulates (from its static
  output and filter shapes); element-wise ops (BN, ReLU, softmax, resize) are not counted;
  the forward+backward FLOPs count the gradient graph's convolutions too (Conv2DBackpropInput
  and Conv2DBackpropFilter: as many multiply-accumulates as the forward conv each; the traced
  graph still holds the first conv's input gradient, which Grappler prunes: ~3x forward),
* forward time (inference mode) and forward+backward time (training mode, gradient of the mean
  depth / pose / deepest backbone feature / disparity_s0 / logits w.r.t. all trainable
  variables, no optimizer update), median over --repeats runs after one warm-up call, in
  compiled tf.function graph mode (`--jit`: XLA),
* achieved GFLOP/s of the forward+backward pass and, with `--conv_peak`, its fraction of this
  machine's 3x3-convolution peak (measured first: a 256 -> 256 channel 3x3 conv on a
  2 x 64 x 128 map, forward only, the best of --repeats). Rows of "hoyer_seg" also print the
  ratio of the forward+backward time to the PyTorch reference's train step on a 2-core
  AVX-512 machine of this kind (issue 14: ~3.0 s/step at batch 2, 256x512; the step adds an
  SGD update, a few per cent of the time). The machine is shared, so compare ratios, not
  absolute times.

Example:
    python bench/bench_networks.py --repeats 3 --out bench/results/bench_networks.json
    python bench/bench_networks.py --networks suw,pose,pose_resnet18 --sizes 128x416
    python bench/bench_networks.py --networks hoyer_seg --sizes 256x512 --batch 2 \
        --repeats 2 --conv_peak --out bench/results/bench_networks_hoyer.json
    python bench/bench_networks.py --networks hoyer_seg --sizes 256x512 --batch 2 \
        --policy mixed_bfloat16      # bf16 convolutions (AVX512_BF16 / AMX CPUs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_depthseg import common  # noqa: E402
from tf_depthseg.models import backbones, hourglass, hoyer, pose, resnet, suw  # noqa: E402

NETWORKS = ("suw", "hourglass", "pose", "object_motion", "resnet18", "resnet50",
            "resnet101_dilated", "pose_resnet18", "hoyer_depth", "hoyer_seg", "hoyer_multitask",
            "hoyer_student")
# Issue 14: the PyTorch reference's paper network (R101-dilated + ASPP U-Net + seg head), train
# step at batch 2, 256x512, on a 2-core AVX-512 machine of this kind.
REFERENCE_STEP_S = {("hoyer_seg", 2, 256, 512): 3.0}
CITYSCAPES_CLASSES = 19
DEFAULT_SIZES = "128x416,240x320,192x640"
# Backbones benchmarked alone: name -> build_resnet arguments.
RESNETS = {
    "resnet18": dict(depth=18),
    "resnet50": dict(depth=50),
    "resnet101_dilated": dict(depth=101, replace_stride_with_dilation=(False, False, True)),
}


def build(network: str):
    """(model, input channels, output key or keys) of a network with its paper defaults; the
    benchmark's loss is the sum of the keys' means (every head a training run uses)."""
    if network == "suw":
        return suw.build_suw_encoder_decoder(), 3, common.OUT_DEPTH
    if network == "hourglass":
        return hourglass.build_hourglass(), 3, common.OUT_DEPTH
    if network in RESNETS:
        model = resnet.build_resnet(**RESNETS[network])
        return model, 3, backbones.deepest_level(model)
    disparities = tuple(common.disparity_key(scale) for scale in hoyer.DISPARITY_SCALES)
    if network == "hoyer_depth":
        return hoyer.build_depth_net("resnet101"), 3, disparities
    if network == "hoyer_seg":
        return (hoyer.build_segmentation_net(CITYSCAPES_CLASSES, "resnet101"), 3,
                common.OUT_SEMANTIC_LOGITS)
    if network == "hoyer_multitask":
        return (hoyer.build_multitask_net(CITYSCAPES_CLASSES, "resnet101"), 3,
                disparities + (common.OUT_SEMANTIC_LOGITS, common.OUT_SEMANTIC_SIDE_LOGITS))
    if network == "hoyer_student":
        return hoyer.build_selection_student(), 3, disparities
    if network == "pose_resnet18":
        backbone = resnet.build_resnet(18, input_channels=6)
        return (pose.build_pose_net(backbone, num_sources=1, decoder="monodepth2"), 6,
                common.OUT_POSE)
    depth_model = suw.build_suw_encoder_decoder()
    if network == "pose":
        return pose.build_pose_net(depth_model, num_sources=2), 9, common.OUT_POSE
    return (pose.build_object_motion_net(depth_model, num_sources=2), 9,
            common.OUT_OBJECT_MOTION)


def _graphs(graph: tf.Graph):
    """The graph and the bodies of the functions it calls (gradients of nested functions)."""
    yield graph
    for function in getattr(graph, "_functions", {}).values():
        body = getattr(function, "graph", None)
        if body is not None:
            yield from _graphs(body)


def count_flops(graph: tf.Graph) -> int:
    """2 * multiply-accumulates of the convolutions and matmuls in a traced graph."""
    total = 0
    for op in (op for g in _graphs(graph) for op in g.get_operations()):
        if op.type in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):
            # Each costs what the forward conv costs: out_backprop x kernel window x c_in.
            out_backprop = op.inputs[2].shape.as_list()
            kernel = (op.inputs[1] if op.type == "Conv2DBackpropInput"
                      else op.outputs[0]).shape.as_list()
            if None in out_backprop or None in kernel:
                raise ValueError(f"{op.name}: shapes must be static to count FLOPs.")
            total += 2 * int(np.prod(out_backprop)) * kernel[0] * kernel[1] * kernel[2]
            continue
        if op.type not in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            continue
        output = op.outputs[0].shape.as_list()
        kernel = op.inputs[1].shape.as_list()
        if None in output or None in kernel:
            raise ValueError(f"{op.name}: shapes must be static to count FLOPs.")
        if op.type == "Conv2D":  # kernel [kh, kw, c_in, c_out]
            macs = int(np.prod(output)) * kernel[0] * kernel[1] * kernel[2]
        elif op.type == "DepthwiseConv2dNative":  # kernel [kh, kw, c_in, multiplier]
            macs = int(np.prod(output)) * kernel[0] * kernel[1]
        else:  # MatMul [m, k] x [k, n]
            macs = int(np.prod(output)) * op.inputs[0].shape.as_list()[-1]
        total += 2 * macs
    return total


def time_call(function, inputs, repeats: int):
    """(first-call seconds incl. tracing, median seconds of `repeats` further calls)."""
    start = time.perf_counter()
    function(inputs)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(inputs)
        tf.nest.map_structure(lambda t: t.numpy(), result)
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def conv_peak_gflops(repeats: int, dtype: str = "float32") -> float:
    """GFLOP/s of one large 3x3 convolution (256 -> 256 channels, 2 x 64 x 128) in `dtype`
    ("float32", or "bfloat16": the convolutions of mixed_bfloat16), the best of `repeats`
    timed calls: the most this machine's convolution kernels deliver."""
    x = tf.cast(tf.random.uniform([2, 64, 128, 256], seed=1), dtype)
    kernel = tf.cast(tf.random.uniform([3, 3, 256, 256], seed=2), dtype)
    conv = tf.function(lambda a: tf.nn.conv2d(a, kernel, 1, "SAME"))
    conv(x).numpy()
    best = min(_timed(lambda: conv(x).numpy()) for _ in range(max(repeats, 3)))
    return 2 * 2 * 64 * 128 * 9 * 256 * 256 / best / 1e9


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_one(network: str, height: int, width: int, batch: int, repeats: int,
              jit: bool = False) -> dict:
    model, channels, key = build(network)
    spec = tf.TensorSpec([batch, height, width, channels], tf.float32)
    inputs = tf.random.uniform(spec.shape, seed=0)

    keys = (key,) if isinstance(key, str) else tuple(key)

    @tf.function(input_signature=[spec], jit_compile=jit)
    def forward(x):
        outputs = model(x, training=False)
        return [outputs[k] for k in keys]

    @tf.function(input_signature=[spec], jit_compile=jit)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = tf.add_n([tf.reduce_mean(tf.cast(outputs[k], tf.float32)) for k in keys])
        return tape.gradient(loss, model.trainable_variables)

    flops = count_flops(forward.get_concrete_function().graph)
    train_flops = count_flops(forward_backward.get_concrete_function().graph)
    forward_first, forward_time = time_call(forward, inputs, repeats)
    train_first, train_time = time_call(forward_backward, inputs, repeats)
    row = {
        "network": network, "height": height, "width": width, "batch": batch, "jit": jit,
        "params": int(model.count_params()), "gflops_forward": flops / 1e9,
        "gflops_forward_backward": train_flops / 1e9,
        "forward_s": forward_time, "forward_backward_s": train_time,
        "forward_first_call_s": forward_first, "forward_backward_first_call_s": train_first,
        "forward_images_per_s": batch / forward_time,
        "forward_backward_gflops_per_s": train_flops / 1e9 / train_time,
    }
    reference = REFERENCE_STEP_S.get((network, batch, height, width))
    if reference:
        row["reference_step_s"] = reference
        row["forward_backward_over_reference_step"] = train_time / reference
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=",".join(NETWORKS),
                        help=f"comma-separated subset of {NETWORKS}")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated HxW")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("bench", "results", "bench_networks.json"))
    parser.add_argument("--jit", action="store_true", help="compile with XLA (jit_compile)")
    parser.add_argument("--policy", default="float32",
                        help="Keras dtype policy, e.g. mixed_bfloat16 (bf16 convs on CPUs with "
                             "AVX512_BF16/AMX)")
    parser.add_argument("--conv_peak", action="store_true",
                        help="measure the 3x3 conv peak first and print each row's fraction")
    args = parser.parse_args(argv)

    networks = [name.strip() for name in args.networks.split(",") if name.strip()]
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown networks {unknown}; choose from {NETWORKS}")
    try:
        sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must look like 128x416,240x320; got {args.sizes!r}")

    keras.mixed_precision.set_global_policy(args.policy)
    peak = conv_peak_gflops(args.repeats) if args.conv_peak else None
    if peak:
        print(f"3x3 conv peak on this machine: {peak:.0f} GFLOP/s")
    results = []
    print(f"{'network':<18}{'size':>9}{'params':>11}{'GFLOPs':>9}{'fwd ms':>9}"
          f"{'fwd+bwd ms':>12}{'img/s':>8}{'GFLOP/s':>9}{'of peak':>9}{'/ ref':>7}")
    for network in networks:
        for height, width in sizes:
            row = bench_one(network, height, width, args.batch, args.repeats, args.jit)
            if peak:
                row["forward_backward_fraction_of_conv_peak"] = (
                    row["forward_backward_gflops_per_s"] / peak)
            results.append(row)
            of_peak = row.get("forward_backward_fraction_of_conv_peak")
            ratio = row.get("forward_backward_over_reference_step")
            print(f"{network:<18}{f'{height}x{width}':>9}{row['params']:>11,}"
                  f"{row['gflops_forward']:>9.2f}{1e3 * row['forward_s']:>9.0f}"
                  f"{1e3 * row['forward_backward_s']:>12.0f}"
                  f"{row['forward_images_per_s']:>8.1f}"
                  f"{row['forward_backward_gflops_per_s']:>9.0f}"
                  f"{'' if of_peak is None else f'{of_peak:.2f}':>9}"
                  f"{'' if ratio is None else f'{ratio:.2f}':>7}", flush=True)

    report = {"batch": args.batch, "repeats": args.repeats, "tensorflow": tf.__version__,
              "cpu_count": os.cpu_count(), "jit": args.jit, "policy": args.policy,
              "conv_peak_gflops_per_s": peak,
              "results": results}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    temporary = args.out + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(report, handle, indent=2)
    os.replace(temporary, args.out)  # atomic: never a half-written result file
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
