"""Benchmark the networks and backbones: parameters, FLOPs, forward and forward+backward time.

For each network (SUW encoder-decoder, inception hourglass, SUW pose net, SUW object-motion
net; the ResNet backbones alone: ResNet-18, ResNet-50, ResNet-101 with a dilated last stage
(Hoyer et al.'s encoder, output stride 16); Hoyer et al.'s pose net: ResNet-18 on a frame pair
+ Monodepth2's decoder) and each input size (default 128x416, 240x320, 192x640) at batch 4,
measures on this machine:

* parameters (`model.count_params()`),
* FLOPs of one forward pass, counted analytically from the traced graph: every Conv2D /
  DepthwiseConv2dNative / MatMul op contributes 2 * multiply-accumulates (from its static
  output and filter shapes); element-wise ops (BN, ReLU, softmax, resize) are not counted,
* forward time (inference mode) and forward+backward time (training mode, gradient of the mean
  depth / pose / deepest backbone feature w.r.t. all trainable variables, no optimizer
  update), median over --repeats runs after one warm-up call, in compiled tf.function graph
  mode.

Example:
    python bench/bench_networks.py --repeats 3 --out bench/results/bench_networks.json
    python bench/bench_networks.py --networks suw,pose,pose_resnet18 --sizes 128x416
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_depthseg import common  # noqa: E402
from tf_depthseg.models import backbones, hourglass, pose, resnet, suw  # noqa: E402

NETWORKS = ("suw", "hourglass", "pose", "object_motion", "resnet18", "resnet50",
            "resnet101_dilated", "pose_resnet18")
DEFAULT_SIZES = "128x416,240x320,192x640"
# Backbones benchmarked alone: name -> build_resnet arguments.
RESNETS = {
    "resnet18": dict(depth=18),
    "resnet50": dict(depth=50),
    "resnet101_dilated": dict(depth=101, replace_stride_with_dilation=(False, False, True)),
}


def build(network: str):
    """(model, input channels, output key) of a network with its paper defaults."""
    if network == "suw":
        return suw.build_suw_encoder_decoder(), 3, common.OUT_DEPTH
    if network == "hourglass":
        return hourglass.build_hourglass(), 3, common.OUT_DEPTH
    if network in RESNETS:
        model = resnet.build_resnet(**RESNETS[network])
        return model, 3, backbones.deepest_level(model)
    if network == "pose_resnet18":
        backbone = resnet.build_resnet(18, input_channels=6)
        return (pose.build_pose_net(backbone, num_sources=1, decoder="monodepth2"), 6,
                common.OUT_POSE)
    depth_model = suw.build_suw_encoder_decoder()
    if network == "pose":
        return pose.build_pose_net(depth_model, num_sources=2), 9, common.OUT_POSE
    return (pose.build_object_motion_net(depth_model, num_sources=2), 9,
            common.OUT_OBJECT_MOTION)


def count_flops(graph: tf.Graph) -> int:
    """2 * multiply-accumulates of the convolutions and matmuls in a traced graph."""
    total = 0
    for op in graph.get_operations():
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


def bench_one(network: str, height: int, width: int, batch: int, repeats: int) -> dict:
    model, channels, key = build(network)
    spec = tf.TensorSpec([batch, height, width, channels], tf.float32)
    inputs = tf.random.uniform(spec.shape, seed=0)

    @tf.function(input_signature=[spec])
    def forward(x):
        return model(x, training=False)[key]

    @tf.function(input_signature=[spec])
    def forward_backward(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x, training=True)[key])
        return tape.gradient(loss, model.trainable_variables)

    flops = count_flops(forward.get_concrete_function().graph)
    forward_first, forward_time = time_call(forward, inputs, repeats)
    train_first, train_time = time_call(forward_backward, inputs, repeats)
    return {
        "network": network, "height": height, "width": width, "batch": batch,
        "params": int(model.count_params()), "gflops_forward": flops / 1e9,
        "forward_s": forward_time, "forward_backward_s": train_time,
        "forward_first_call_s": forward_first, "forward_backward_first_call_s": train_first,
        "forward_images_per_s": batch / forward_time,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=",".join(NETWORKS),
                        help=f"comma-separated subset of {NETWORKS}")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated HxW")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("bench", "results", "bench_networks.json"))
    args = parser.parse_args(argv)

    networks = [name.strip() for name in args.networks.split(",") if name.strip()]
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        parser.error(f"unknown networks {unknown}; choose from {NETWORKS}")
    try:
        sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must look like 128x416,240x320; got {args.sizes!r}")

    results = []
    print(f"{'network':<18}{'size':>9}{'params':>11}{'GFLOPs':>9}{'fwd ms':>9}"
          f"{'fwd+bwd ms':>12}{'img/s':>8}")
    for network in networks:
        for height, width in sizes:
            row = bench_one(network, height, width, args.batch, args.repeats)
            results.append(row)
            print(f"{network:<18}{f'{height}x{width}':>9}{row['params']:>11,}"
                  f"{row['gflops_forward']:>9.2f}{1e3 * row['forward_s']:>9.0f}"
                  f"{1e3 * row['forward_backward_s']:>12.0f}"
                  f"{row['forward_images_per_s']:>8.1f}", flush=True)

    report = {"batch": args.batch, "repeats": args.repeats, "tensorflow": tf.__version__,
              "cpu_count": os.cpu_count(), "results": results}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    temporary = args.out + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(report, handle, indent=2)
    os.replace(temporary, args.out)  # atomic: never a half-written result file
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
