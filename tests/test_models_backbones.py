"""Backbone protocol and the ResNet family: feature keys, sizes, real strides, dilation placement,
torchvision padding, and a weight copy from keras.applications that reproduces its outputs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.models import backbones, resnet, suw

DILATED_LAST = (False, False, True)


@pytest.fixture(scope="module")
def resnet18_dilated():
    return resnet.build_resnet(18, input_channels=6, replace_stride_with_dilation=DILATED_LAST)


@pytest.mark.parametrize("height,width", [(64, 96), (37, 50)])
def test_resnet_features_have_protocol_keys_sizes_and_real_strides(resnet18_dilated, height,
                                                                    width):
    real_strides = {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 16}
    assert backbones.feature_strides(resnet18_dilated) == real_strides
    assert backbones.backbone_levels(resnet18_dilated) == backbones.LEVELS
    assert backbones.deepest_level(resnet18_dilated) == "P5"
    assert backbones.input_channels(resnet18_dilated) == 6
    channels = {"P1": 64, "P2": 64, "P3": 128, "P4": 256, "P5": 512}
    assert backbones.feature_channels(resnet18_dilated) == channels

    image = np.random.default_rng(0).uniform(size=(2, height, width, 6)).astype(np.float32)
    features = resnet18_dilated(image)
    for key, stride in real_strides.items():
        expected = (2, math.ceil(height / stride), math.ceil(width / stride), channels[key])
        assert tuple(features[key].shape) == expected, key


@pytest.mark.parametrize("flags,strides", [
    ((False, False, False), {"P3": 8, "P4": 16, "P5": 32}),
    ((False, True, True), {"P3": 8, "P4": 8, "P5": 8}),
])
def test_output_stride_follows_the_dilation_flags(flags, strides):
    model = resnet.build_resnet(18, replace_stride_with_dilation=flags)
    measured = backbones.feature_strides(model)
    assert {key: measured[key] for key in strides} == strides
    assert measured["P2"] == 4


def _conv(model, name):
    return model.get_layer(f"{model.name}_{name}_conv")


def test_dilation_and_stride_placement_follow_torchvision():
    v15 = resnet.build_resnet(50, replace_stride_with_dilation=DILATED_LAST)
    # Dilated last stage: no stride; its first block keeps the previous dilation (1).
    assert _conv(v15, "conv5_block1_2").dilation_rate == (1, 1)
    assert _conv(v15, "conv5_block1_0").strides == (1, 1)
    for block in (2, 3):
        assert _conv(v15, f"conv5_block{block}_2").dilation_rate == (2, 2)
    assert all(_conv(v15, f"conv5_block{b}_{i}").strides == (1, 1)
               for b in (1, 2, 3) for i in (1, 2, 3))
    # v1.5 strides the bottleneck's 3x3, v1 its first 1x1; the shortcut is strided in both.
    assert _conv(v15, "conv4_block1_2").strides == (2, 2)
    assert _conv(v15, "conv4_block1_1").strides == (1, 1)
    v1 = resnet.build_resnet(50, version="v1")
    assert _conv(v1, "conv4_block1_1").strides == (2, 2)
    assert _conv(v1, "conv4_block1_2").strides == (1, 1)
    assert _conv(v1, "conv4_block1_0").strides == (2, 2)
    # Two dilated stages on basic blocks: conv5 starts at conv4's dilation 2, then 4.
    r18 = resnet.build_resnet(18, replace_stride_with_dilation=(False, True, True))
    assert _conv(r18, "conv4_block1_1").dilation_rate == (1, 1)
    assert _conv(r18, "conv4_block2_1").dilation_rate == (2, 2)
    assert _conv(r18, "conv5_block1_1").dilation_rate == (2, 2)
    assert _conv(r18, "conv5_block2_2").dilation_rate == (4, 4)
    # ResNet-18's first stage keeps 64 channels at stride 1: identity shortcut, no "_0" conv.
    with pytest.raises(ValueError):
        _conv(r18, "conv2_block1_0")


@pytest.mark.parametrize("size", [9, 10])
def test_strided_conv_pads_symmetrically_like_torchvision(size):
    """A 3x3/2 conv samples centred on input pixel 2i (pad 1 each side), as the 1x1/2 shortcut
    does; Keras' 'same' would pad bottom/right only and shift by one pixel."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, size, size + 3, 4)).astype(np.float32)
    inputs = keras.Input((None, None, 4))
    outputs = resnet.apply_resnet_conv_bn(inputs, 5, 3, strides=2, activation=None, name="t")
    model = keras.Model(inputs, outputs)
    kernel = model.get_layer("t_conv").kernel.numpy()
    expected = tf.nn.conv2d(x, kernel, strides=2, padding=[[0, 0], [1, 1], [1, 1], [0, 0]])
    epsilon = model.get_layer("t_bn").epsilon
    np.testing.assert_allclose(model(x).numpy(), expected.numpy() / np.sqrt(1.0 + epsilon),
                               rtol=1e-5, atol=1e-5)


def test_input_normalisations():
    x = np.full((1, 4, 4, 6), 0.45, np.float32)
    x[..., 3:] = 1.0
    def normalized(mode):
        model = resnet.build_resnet(18, input_channels=6, input_normalization=mode, name="r")
        return model.get_layer("r_normalize")(x).numpy()

    md2 = normalized("monodepth2")
    np.testing.assert_allclose(md2[..., :3], 0.0, atol=1e-6)
    np.testing.assert_allclose(md2[..., 3:], 0.55 / 0.225, rtol=1e-6)
    caffe = normalized("caffe")[0, 0, 0]
    np.testing.assert_allclose(caffe[:3], 0.45 * 255 - np.array([123.68, 116.779, 103.939]),
                               rtol=1e-6)
    np.testing.assert_allclose(caffe[3:], 255 - np.array([123.68, 116.779, 103.939]), rtol=1e-6)


def test_keras_applications_weights_copy_reproduces_the_keras_model():
    """Random-init keras.applications ResNet50 (no download), with non-trivial BN statistics
    and conv biases so that the bias folding shows; our v1/caffe graph after the copy gives
    its output at stride 32, on the [0, 1] RGB image Keras sees caffe-preprocessed."""
    keras.utils.set_random_seed(3)
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    rng = np.random.default_rng(3)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape),
                               rng.normal(0, 0.1, beta.shape), rng.normal(0, 0.1, mean.shape),
                               rng.uniform(0.5, 1.5, variance.shape)])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    image = rng.uniform(size=(1, 35, 67, 3)).astype(np.float32)
    expected = reference(keras.applications.resnet.preprocess_input(image * 255.0)).numpy()

    ours = resnet.build_resnet(50, version="v1", input_normalization="caffe", name="r50")
    resnet.copy_keras_applications_weights(ours, reference)
    got = ours(image)["P5"].numpy()
    assert got.shape == expected.shape == (1, 2, 3, 2048)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())

    # Two stacked frames: conv1's kernel is tiled and halved, so equal frames give the same.
    pair = resnet.build_resnet(50, input_channels=6, version="v1", input_normalization="caffe",
                               name="r50_pair")
    resnet.copy_keras_applications_weights(pair, reference)
    got = pair(np.concatenate([image, image], axis=-1))["P5"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_suw_backbone_exposes_levels_and_shares_the_body():
    depth_model = suw.build_suw_encoder_decoder(num_bins=8, name="depth")
    body = suw.find_encoder_body(depth_model)
    backbone = suw.build_suw_backbone(9, body=body, name="suw9")
    assert backbones.feature_strides(backbone) == {"P1": 2, "P2": 4}
    assert backbones.feature_channels(backbone) == {"P1": 64, "P2": 128}
    assert backbone.get_layer(body.name) is body
    frames = np.random.default_rng(4).uniform(size=(1, 13, 22, 9)).astype(np.float32)
    features = backbone(frames)
    stem = backbone.get_layer("suw9_stem_relu").output
    blocks = keras.Model(backbone.input, body(stem))(frames)
    np.testing.assert_array_equal(features["P2"].numpy(), blocks["block5"].numpy())
    np.testing.assert_array_equal(features["P1"].numpy(), blocks["block1"].numpy())


def test_protocol_checks_and_argument_errors():
    not_a_backbone = suw.build_suw_encoder_body()  # block keys, stem-sized input
    assert not backbones.is_backbone(not_a_backbone)
    with pytest.raises(ValueError, match="P1"):
        backbones.backbone_levels(not_a_backbone)
    backbone = suw.build_suw_backbone(3)
    with pytest.raises(ValueError, match="input_channels=6"):
        backbones.apply_backbone(backbone, keras.Input((None, None, 6)))
    with pytest.raises(ValueError, match="keras.Input"):  # would be silently disconnected
        backbones.apply_backbone(backbone, keras.layers.Identity()(keras.Input((None, None, 3))))
    for kwargs in [dict(depth=20), dict(depth=18, version="v2"),
                   dict(depth=18, replace_stride_with_dilation=(False, True)),
                   dict(depth=18, input_normalization="imagenet"),
                   dict(depth=18, input_channels=4, input_normalization="caffe"),
                   dict(depth=50, weights="imagenet"),  # v1.5 graph: refused before download
                   dict(depth=18, version="v1", input_normalization="caffe", weights="imagenet")]:
        with pytest.raises(ValueError):
            resnet.build_resnet(**kwargs)


@pytest.mark.parametrize("policy,jit", [("float32", False), ("float32", True),
                                        ("mixed_bfloat16", False)])
def test_fused_batch_norm_trains_like_keras_batch_norm(policy, jit):
    """resnet.FusedBatchNormalization (TF's fused kernel in training) against Keras' layer and
    numpy: outputs, gradients, the moving averages (biased variance, Keras' momentum rule),
    a momentum of 1 that leaves them bitwise alone, and the unchanged inference path."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(1.0, 3.0, (2, 5, 7, 4)), tf.float32)
    weights = tf.constant(rng.normal(size=(2, 5, 7, 4)), tf.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.uniform(-0.5, 0.5, 4)
    layers = [cls(epsilon=resnet.BN_EPSILON, momentum=0.9, dtype=policy)
              for cls in (keras.layers.BatchNormalization, resnet.FusedBatchNormalization)]
    results = []
    for layer in layers:
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)

        @tf.function(jit_compile=jit)
        def train(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
            return (tf.cast(y, tf.float32),
                    *tape.gradient(loss, [x, layer.gamma, layer.beta]))
        results.append([t.numpy() for t in train(x)])
        assert layer(x, training=True).dtype == layer.compute_dtype
        op_types = {op.type for op in train.get_concrete_function(x).graph.get_operations()}
        fused_kernel = isinstance(layer, resnet.FusedBatchNormalization)
        assert ("FusedBatchNormV3" in op_types) == fused_kernel  # the point of the class
    # The layers normalise x in their compute dtype (bfloat16 rounds it first).
    seen = tf.cast(tf.cast(x, layers[0].compute_dtype), tf.float32).numpy().astype(np.float64)
    mean, variance = seen.mean((0, 1, 2)), seen.var((0, 1, 2))
    expected = gamma * (seen - mean) / np.sqrt(variance + resnet.BN_EPSILON) + beta
    tolerance = 1e-5 if policy == "float32" else 2e-2  # bfloat16: 8 mantissa bits
    np.testing.assert_allclose(results[1][0], expected, rtol=tolerance, atol=tolerance)
    for keras_value, fused_value in zip(*results):
        scale = np.abs(keras_value).max()
        np.testing.assert_allclose(fused_value, keras_value, atol=tolerance * scale)
    keras_bn, fused = layers
    # After two training calls each (the train function and the dtype check).
    for layer in layers:
        np.testing.assert_allclose(layer.moving_mean.numpy(), 0.19 * mean, rtol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), 0.81 + 0.19 * variance,
                                   rtol=1e-4)
    before = [v.numpy() for v in (fused.moving_mean, fused.moving_variance)]
    fused.momentum = 1.0  # models.batch_norm.frozen_bn_statistics
    fused(x, training=True)
    for value, variable in zip(before, (fused.moving_mean, fused.moving_variance)):
        np.testing.assert_array_equal(variable.numpy(), value)
    keras_bn.set_weights(fused.get_weights())
    np.testing.assert_array_equal(fused(x, training=False).numpy(),
                                  keras_bn(x, training=False).numpy())


def test_resnet_batch_norm_layers_are_fused():
    model = resnet.build_resnet(18)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bn) == 20 and all(isinstance(layer, resnet.FusedBatchNormalization)
                                 for layer in bn)
