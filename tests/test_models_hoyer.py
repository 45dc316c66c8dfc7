"""Hoyer et al. networks (models/hoyer.py): output shapes for several input sizes and output
strides, the decoder following the backbone's real strides, ASPP and the PAD message against
numpy, names that let a segmentation net start from a depth net, the ImageNet weights policy.
Parameter counts: the paper's network against the reference's 64.6 M and the selection
student are in test_models_param_counts.py; the segmentation and multi-task nets are counted
here on the ResNet-18 nets the shape tests build (formulas from test_models_param_counts)."""

import logging
import math

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common, errors
from tf_depthseg.models import hoyer, layers, resnet, suw
from tests.test_models_param_counts import (PAPER_NUM_CH_DEC, RESNET_LEVEL_CHANNELS, conv,
                                            disparity_heads, resnet_body, unet_decoder)

DISPARITY_KEYS = [common.disparity_key(s) for s in range(4)]


def _expected(height, width, stride, channels):
    return (1, math.ceil(height / stride), math.ceil(width / stride), channels)


@pytest.fixture(scope="module")
def nets():
    """Builds each (builder, args) once per module: building costs more than the tests."""
    cache = {}

    def get(builder, *args, **kwargs):
        key = (builder.__name__, args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = builder(*args, **kwargs)
        return cache[key]
    return get


@pytest.mark.parametrize("backbone,upsampled_blocks", [
    ("resnet18", (4, 3, 2, 1, 0)),  # output stride 32: every block upsamples x2
    ("resnet18_dilated", (3, 2, 1, 0)),  # 16: the ASPP block meets P4 at its own size
    ("resnet18_os8", (2, 1, 0)),
])
def test_depth_net_shapes_follow_the_real_strides(nets, backbone, upsampled_blocks):
    net = nets(hoyer.build_depth_net, backbone, dilate_last=False)
    upsampling = {block for block in range(5)
                  if f"depth_dec_b{block}_upsample" in [layer.name for layer in net.layers]}
    assert upsampling == set(upsampled_blocks)
    rng = np.random.default_rng(0)
    sizes = [(37, 50), (64, 96)] if backbone == "resnet18" else [(37, 50)]
    for height, width in sizes:  # odd sizes: ceil at every level, cropped
        out = net(rng.uniform(size=(1, height, width, 3)).astype(np.float32))
        assert sorted(out) == sorted(DISPARITY_KEYS + [common.OUT_FEATURES])
        for scale in range(4):
            disparity = out[common.disparity_key(scale)]
            assert tuple(disparity.shape) == _expected(height, width, 2 ** scale, 1)
            assert disparity.dtype == tf.float32
            assert 0 < float(tf.reduce_min(disparity)) <= float(tf.reduce_max(disparity)) < 1
        assert tuple(out[common.OUT_FEATURES].shape) == (1, height, width, 64)


def test_segmentation_and_multitask_shapes_and_float32_heads(nets):
    classes = 5
    image = np.random.default_rng(1).uniform(size=(2, 45, 70, 3)).astype(np.float32)
    seg = nets(hoyer.build_segmentation_net, classes, "resnet18")  # dilated last: stride 16
    assert seg.get_layer("seg_dec_b4_aspp_1x1_conv").input.shape[-1] == 512  # ASPP on P5
    assert "seg_dec_b4_upsample" not in [layer.name for layer in seg.layers]
    out = seg(image)
    assert sorted(out) == [common.OUT_FEATURES, common.OUT_SEMANTIC_LOGITS]
    assert tuple(out[common.OUT_SEMANTIC_LOGITS].shape) == (2, 45, 70, classes)

    # Mixed precision: the heads stay float32 (losses and sigmoid outputs need the range).
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        net = hoyer.build_multitask_net(classes, "resnet18", dilate_last=False,
                                        upsampling="bilinear")
        out = net(image)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert out[common.OUT_FEATURES].dtype == tf.bfloat16
    for key in DISPARITY_KEYS + [common.OUT_SEMANTIC_LOGITS, common.OUT_SEMANTIC_SIDE_LOGITS]:
        assert out[key].dtype == tf.float32, key
    assert tuple(out[common.OUT_SEMANTIC_LOGITS].shape) == (2, 45, 70, classes)
    assert tuple(out[common.OUT_SEMANTIC_SIDE_LOGITS].shape) == (2, 12, 18, classes)  # 1/4
    for scale in range(4):
        assert tuple(out[common.disparity_key(scale)].shape)[1:3] == (
            math.ceil(45 / 2 ** scale), math.ceil(70 / 2 ** scale))
    # The exchange sits after block 2: block 1 of each decoder reads the merged features.
    for decoder, merged in [("depth_dec", "pad_merge_depth"), ("seg_dec", "pad_merge_seg")]:
        block1_input = net.get_layer(f"{decoder}_b1_conv0_pad").input
        assert block1_input._keras_history[0].name == merged

    # Parameters, by hand. Segmentation net: encoder + decoder + the reference head
    # Conv2d(64, 64, 1, bias=False), Conv2d(64, C, 1); no disparity heads.
    encoder, _ = resnet_body(18)
    decoder, _ = unet_decoder(RESNET_LEVEL_CHANNELS[18], PAPER_NUM_CH_DEC)
    head = conv(1, 64, 64) + conv(1, 64, classes, bias=True)
    assert _trainable(seg) == encoder + decoder + head
    # PAD (reference joint_segmentation_depth_decoder.PAD): two decoders, two SelfAttention
    # modules (two 3x3 convs without bias at block 2's 128 channels each), a side 1x1 head on
    # 128 channels, a final 1x1 head on 64 channels, four disparity heads.
    attention = 2 * 2 * conv(3, 128, 128)
    side, final = conv(1, 128, classes, bias=True), conv(1, 64, classes, bias=True)
    assert _trainable(net) == (encoder + 2 * decoder + disparity_heads(PAPER_NUM_CH_DEC)
                               + attention + side + final)
    # head_inter (reference experiments id 211): 3x3 conv without bias + BN + ReLU + dropout
    # between the convs. On block 1 it leaves block 0 unused; a functional model drops it.
    inter = hoyer.build_segmentation_net(classes, "resnet18", head_inter=True, head_block=1)
    assert tuple(inter(image)[common.OUT_SEMANTIC_LOGITS].shape) == (2, 45, 70, classes)
    head = conv(1, 128, 64) + conv(3, 64, 64) + 2 * 64 + conv(1, 64, classes, bias=True)
    block0 = conv(3, 128, 64, bias=True) + conv(3, 64, 64, bias=True)
    assert _trainable(inter) == encoder + decoder - block0 + head


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _np_conv(x, kernel, dilation=1):
    """'same' zero-padded stride-1 convolution, x [h, w, c], kernel [k, k, c, f]."""
    k = kernel.shape[0]
    pad = dilation * (k - 1) // 2
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:2] + (kernel.shape[-1],))
    for i in range(k):
        for j in range(k):
            window = padded[i * dilation:i * dilation + x.shape[0],
                            j * dilation:j * dilation + x.shape[1]]
            out += window @ kernel[i, j]
    return out


def test_aspp_against_numpy():
    rng = np.random.default_rng(2)
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, layers.apply_aspp(inputs, 3, (1, 2), name="aspp"))
    for layer in model.layers:  # random BN statistics so that BN is not the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, 3), rng.normal(0, 0.1, 3),
                               rng.normal(0, 0.1, 3), rng.uniform(0.5, 1.5, 3)])
    x = rng.normal(size=(1, 5, 6, 4)).astype(np.float32)

    def conv_bn_relu(value, prefix, dilation=1):
        kernel = model.get_layer(f"{prefix}_conv").get_weights()[0]
        gamma, beta, mean, var = model.get_layer(f"{prefix}_bn").get_weights()
        y = _np_conv(value, kernel, dilation)
        return np.maximum((y - mean) / np.sqrt(var + 1e-5) * gamma + beta, 0)

    pooled = conv_bn_relu(x[0].mean(axis=(0, 1), keepdims=True), "aspp_pool")
    branches = [conv_bn_relu(x[0], "aspp_1x1"), conv_bn_relu(x[0], "aspp_rate1", 1),
                conv_bn_relu(x[0], "aspp_rate2", 2), np.broadcast_to(pooled, (5, 6, 3))]
    expected = conv_bn_relu(np.concatenate(branches, axis=-1), "aspp_project")
    got = model(x, training=False).numpy()[0]  # dropout is off at inference
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("height, width, rate, kept", [(4, 20, 6, (1, 3)), (5, 5, 6, (1, 1)),
                                                        (7, 9, 3, (3, 3)), (9, 4, 4, (3, 1))])
def test_dilated_conv_skips_only_taps_that_see_padding(height, width, rate, kept):
    """`layers.DilatedConv2D` (the ASPP's dilated convs): outputs against numpy's full 3x3
    dilated convolution, input and kernel gradients against Keras' Conv2D with the same
    kernel (zero on the skipped taps), and the traced convolution runs the `kept` kernel."""
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(2, height, width, 4)).astype(np.float32))
    kernel = rng.normal(size=(3, 3, 4, 3)).astype(np.float32)
    ours = layers.torch_default_conv(3, 3, 4, use_bias=False, dilation_rate=rate, name="ours")
    plain = keras.layers.Conv2D(3, 3, padding="same", dilation_rate=rate, use_bias=False)
    assert isinstance(ours, layers.DilatedConv2D)
    for layer in (ours, plain):
        layer.build(x.shape)
        layer.kernel.assign(kernel)
    for b in range(2):
        np.testing.assert_allclose(ours(x).numpy()[b], _np_conv(x.numpy()[b], kernel, rate),
                                   rtol=1e-5, atol=1e-5)

    def gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, [x, layer.kernel])

    for got, expected in zip(gradients(ours), gradients(plain)):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    graph = tf.function(ours).get_concrete_function(x).graph
    filters = [op.inputs[1].shape for op in graph.get_operations() if op.type == "Conv2D"]
    assert [tuple(shape[:2]) for shape in filters] == [kept]
    # Unknown height and width: the whole kernel runs, with the same result.
    dynamic = tf.function(ours, input_signature=[tf.TensorSpec([None, None, None, 4])])
    np.testing.assert_allclose(dynamic(x).numpy(), ours(x).numpy(), rtol=1e-5, atol=1e-5)


def test_pad_message_against_numpy():
    rng = np.random.default_rng(3)
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, layers.apply_pad_message(inputs, name="msg"))
    x = rng.normal(size=(1, 5, 7, 4)).astype(np.float32)
    features = _np_conv(x[0], model.get_layer("msg_conv").get_weights()[0])
    # The attention kernel starts at zero (reference): the gate is 0.5 everywhere.
    np.testing.assert_allclose(model(x).numpy()[0], 0.5 * features, rtol=1e-5, atol=1e-6)
    attention = rng.normal(size=(3, 3, 4, 4)).astype(np.float32)
    model.get_layer("msg_attention").set_weights([attention])
    gate = 1 / (1 + np.exp(-_np_conv(x[0], attention)))
    np.testing.assert_allclose(model(x).numpy()[0], features * gate, rtol=1e-4, atol=1e-5)


def test_segmentation_net_takes_the_depth_nets_weights_by_renamed_layer(nets):
    depth = nets(hoyer.build_depth_net, "resnet18_dilated", dilate_last=False)
    seg = nets(hoyer.build_segmentation_net, 5, "resnet18")
    depth_layers = {layer.name: [tuple(w.shape) for w in layer.weights]
                    for layer in depth.layers if layer.weights}
    seg_layers = {layer.name.replace("seg_dec_", "depth_dec_"): [tuple(w.shape)
                                                                 for w in layer.weights]
                  for layer in seg.layers if layer.weights}
    heads = {name for name in depth_layers if "_disp" in name}
    assert len(heads) == 4
    shared = set(depth_layers) - heads
    assert shared <= set(seg_layers)
    assert all(depth_layers[name] == seg_layers[name] for name in shared)
    assert set(seg_layers) - shared == {"seg_head_project", "seg_head_logits"}
    groups = hoyer.parameter_groups(seg)
    assert sum(int(np.prod(w.shape)) for w in groups["backbone"]) == 11_176_512  # ResNet-18
    assert len(groups["backbone"]) + len(groups["decoder"]) == len(seg.trainable_weights)


def _write_legacy_h5(model, path):
    """Writes `model`'s weights in keras.applications' legacy .h5 layout."""
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_imagenet_policy_cache_copy_or_one_warning_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # Nothing cached: random init and exactly one warning line naming the file to put there.
    with caplog.at_level(logging.WARNING):
        empty = resnet.build_backbone("resnet50_dilated", weights="imagenet", name="a")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "random init" in lines[0]
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in lines[0]
    # The graph the weights belong to (v1: stride on the 1x1 conv; caffe input scaling),
    # whether or not the file was there, so a run's checkpoints do not depend on the cache.
    assert empty.get_layer("a_conv3_block1_1_conv").strides == (2, 2)
    assert empty.get_layer("a_normalize").scale == 255.0

    # A keras.applications file in the cache (random weights: nothing is downloaded) is copied
    # (test_models_backbones shows the copy reproduces the Keras model's outputs).
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    rng = np.random.default_rng(6)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    _write_legacy_h5(reference, str(cache / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))
    assert resnet.cached_imagenet_weights(50) is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        copied = resnet.build_backbone("resnet50", weights="imagenet", name="b")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    kernel, bias = reference.get_layer("conv4_block2_2_conv").get_weights()
    np.testing.assert_array_equal(copied.get_layer("b_conv4_block2_2_conv").kernel.numpy(), kernel)
    _, _, mean, _ = reference.get_layer("conv4_block2_2_bn").get_weights()
    np.testing.assert_allclose(copied.get_layer("b_conv4_block2_2_bn").moving_mean.numpy(),
                               mean - bias, rtol=1e-6)
    assert not np.array_equal(empty.get_layer("a_conv4_block2_2_conv").kernel.numpy(), kernel)


def test_backbone_names_and_weights_errors(tmp_path, caplog):
    assert "resnet101_dilated" in resnet.backbone_names()
    with pytest.raises(errors.ConfigError, match="resnet101_dilated"):
        resnet.build_backbone("resnet102")
    with pytest.raises(errors.BadInputError, match="does not exist"):
        resnet.build_backbone("resnet18", weights=str(tmp_path / "missing.weights.h5"))
    # ResNet-18 has no keras.applications weights: random init, one line.
    with caplog.at_level(logging.WARNING):
        r18 = resnet.build_backbone("resnet18", weights="imagenet")
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    # A .weights.h5 file of the same backbone loads.
    path = str(tmp_path / "r18.weights.h5")
    r18.save_weights(path)
    again = resnet.build_backbone("resnet18", weights=path)
    for a, b in zip(r18.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not an HDF5 file")
    with pytest.raises(errors.BadInputError, match="cannot load weights"):
        resnet.build_backbone("resnet18", weights=str(broken))
    with pytest.raises(ValueError, match="levels"):  # the SUW backbone stops at P2
        hoyer.build_depth_net(suw.build_suw_backbone(3))
