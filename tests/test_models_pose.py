"""Pose and object-motion nets: shapes on two backbones, the SUW encoder really is shared with
the depth net, and the SUW nets keep the layer layout their checkpoints name."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.losses import depth as depth_losses
from tf_depthseg.models import backbones, pose, resnet, suw


@pytest.fixture(scope="module")
def nets():
    depth_model = suw.build_suw_encoder_decoder(num_bins=8, name="depth")
    return (depth_model, pose.build_pose_net(depth_model, num_sources=2),
            pose.build_object_motion_net(depth_model, num_sources=2))


def test_output_shapes_and_frame_helpers(nets):
    _, pose_net, motion_net = nets
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(2, 19, 30, 3)).astype(np.float32)
    context = rng.uniform(size=(2, 2, 19, 30, 3)).astype(np.float32)
    frames = pose.stack_frames(image, context)
    assert tuple(frames.shape) == (2, 19, 30, 9)
    np.testing.assert_array_equal(frames[..., 3:6].numpy(), context[:, 0])
    masks = np.zeros((2, 19, 30, 3), np.float32)
    masks[:, 5:9, 3:12] = 1.0
    masked = pose.mask_frames(frames, masks).numpy()
    assert np.all(masked[:, :5] == 0) and np.all(masked[:, 5:9, 3:12] == frames[:, 5:9, 3:12])

    poses = pose_net(frames)[common.OUT_POSE]
    motions = motion_net(masked)[common.OUT_OBJECT_MOTION]
    assert tuple(poses.shape) == (2, 2, 6) == tuple(motions.shape)
    # The 0.01 scale keeps the initial motions small.
    assert np.abs(poses.numpy()).max() < 0.05
    assert pose_net.get_layer("pose_net_dec_conv4").filters == 32
    assert pose_net.get_layer("pose_net_stem_conv").kernel.shape[2] == 9


def test_one_variable_set_shared_with_the_depth_encoder(nets):
    depth_model, pose_net, motion_net = nets
    body = suw.find_encoder_body(depth_model)
    assert pose_net.get_layer(body.name) is body and motion_net.get_layer(body.name) is body
    body_ids = {id(v) for v in body.weights}
    depth_ids = {id(v) for v in depth_model.weights}
    for net in (pose_net, motion_net):
        shared = {id(v) for v in net.weights} & depth_ids
        assert shared == body_ids
        # Everything else is the net's own first convbn and decoder.
        own = [v for v in net.weights if id(v) not in depth_ids]
        assert all(v.path.startswith(net.name) for v in own)
        assert len(own) == 5 + 2 * 5  # stem conv + BN (4), four decoder convs + output (w, b)


def test_pose_loss_alone_updates_the_depth_encoder_and_so_does_the_depth_loss(nets):
    depth_model, pose_net, _ = nets
    body = suw.find_encoder_body(depth_model)
    rng = np.random.default_rng(1)
    frames = rng.uniform(size=(2, 16, 24, 9)).astype(np.float32)
    target_pose = tf.constant(rng.normal(size=(2, 2, 6)).astype(np.float32))
    depth_stem = depth_model.get_layer("depth_b1_conv1_conv").kernel

    def sgd_step(model, loss_fn, inputs):
        """One SGD step on `model`; returns the paths of the depth model's changed weights."""
        before = {v.path: v.numpy().copy() for v in depth_model.trainable_weights}
        with tf.GradientTape() as tape:
            loss = loss_fn(model(inputs, training=True))
        variables = model.trainable_weights
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            variable.assign_sub(0.1 * grad)
        return {v.path for v in depth_model.trainable_weights
                if not np.array_equal(before[v.path], v.numpy())}

    def _pose_loss(outputs):
        return tf.reduce_mean(tf.square(outputs[common.OUT_POSE] * 100.0 - target_pose))

    changed = sgd_step(pose_net, _pose_loss, frames)
    body_paths = {v.path for v in body.trainable_weights}
    assert changed == body_paths  # the whole shared encoder moved, nothing else of the depth net
    assert depth_stem.path not in changed

    gt = rng.uniform(2.0, 50.0, size=(2, 4, 6, 1)).astype(np.float32)
    changed = sgd_step(depth_model, lambda out: depth_losses.soft_classification_loss(
        out[common.OUT_DEPTH_BIN_LOGITS], gt, 8, suw.DEFAULT_MIN_DEPTH, suw.DEFAULT_MAX_DEPTH),
        frames[..., :3])
    assert body_paths <= changed and depth_stem.path in changed


def _conv_params(k, c_in, c_out):
    return k * k * c_in * c_out + c_out  # the decoders' convs all have a bias


@pytest.mark.parametrize("backbone_name,decoder", [("suw", "suw"), ("resnet18", "monodepth2")])
def test_pose_net_on_two_backbones(backbone_name, decoder):
    """Output `[B, N, 6]` for N = 1, 2; the net holds the backbone's variables (the SUW ones
    are the depth net's encoder body's) plus exactly the decoder's."""
    for num_sources in (1, 2):
        channels = 3 * (num_sources + 1)
        if backbone_name == "suw":
            depth_model = suw.build_suw_encoder_decoder(num_bins=8, name="depth")
            backbone = pose.as_motion_backbone(depth_model, channels, "pose_net")
            body_ids = {id(v) for v in suw.find_encoder_body(depth_model).weights}
            assert body_ids <= {id(v) for v in backbone.weights}
        else:
            backbone = resnet.build_resnet(18, input_channels=channels)
        net = pose.build_pose_net(backbone, num_sources, decoder=decoder)
        assert {id(v) for v in backbone.weights} <= {id(v) for v in net.weights}
        if backbone_name == "suw":
            shared = {id(v) for v in net.weights} & {id(v) for v in depth_model.weights}
            assert shared == body_ids

        deepest = backbones.feature_channels(backbone)[backbones.deepest_level(backbone)]
        assert deepest == (128 if backbone_name == "suw" else 512)
        if decoder == "suw":
            expected = (_conv_params(3, deepest, 32) + 3 * _conv_params(3, 32, 32)
                        + _conv_params(1, 32, 6 * num_sources))
        else:
            expected = (_conv_params(1, deepest, 256) + 2 * _conv_params(3, 256, 256)
                        + _conv_params(1, 256, 6 * num_sources))
        assert net.count_params() - backbone.count_params() == expected

        if decoder == "monodepth2":  # PyTorch's default init: U(+-1/sqrt(fan_in))
            kernel = net.get_layer("pose_net_dec_conv1").kernel.numpy()
            limit = 1.0 / np.sqrt(9 * 256)
            assert np.abs(kernel).max() <= limit
            np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3), rtol=0.02)
        frames = np.random.default_rng(num_sources).uniform(
            size=(2, 35, 42, channels)).astype(np.float32)
        poses = net(frames)[common.OUT_POSE].numpy()
        assert poses.shape == (2, num_sources, 6)
        assert np.all(np.isfinite(poses)) and np.abs(poses).max() < 0.05  # the 0.01 scale


def test_suw_pose_net_keeps_the_layer_layout_its_checkpoints_name(nets):
    """tf.train.Checkpoint names a functional model's variables by layer position
    (`models/pose/_operations/<i>/...`): the SUW pose net must keep the pre-backbone layout
    (stem layers, then the shared body, then the decoder) so older runs restore."""
    depth_model, pose_net, _ = nets
    assert [layer.name for layer in pose_net.layers] == [
        "frames", "pose_net_stem_conv", "pose_net_stem_bn", "pose_net_stem_relu",
        "depth_encoder_body", "pose_net_dec_conv1", "pose_net_dec_conv2", "pose_net_dec_conv3",
        "pose_net_dec_conv4", "pose_net_dec_out", "pose_net_pool", "pose_net_scale",
        "pose_net_reshape"]
    assert pose_net.get_layer("depth_encoder_body") is suw.find_encoder_body(depth_model)


def test_rejects_bad_arguments(nets):
    depth_model, _, _ = nets
    with pytest.raises(ValueError):
        pose.build_pose_net(depth_model, num_sources=0)
    with pytest.raises(ValueError, match="decoder"):
        pose.build_pose_net(depth_model, num_sources=2, decoder="posenet")
    with pytest.raises(ValueError, match="neither a backbone"):
        pose.build_pose_net(keras.Sequential([keras.layers.Dense(1)], name="other"))
    with pytest.raises(ValueError, match="input_channels=9"):
        pose.build_pose_net(resnet.build_resnet(18, input_channels=6), num_sources=2)
