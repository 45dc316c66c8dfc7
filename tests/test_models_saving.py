"""Every network saves and reloads (Keras `.keras` and TF SavedModel) with identical outputs."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg.models import hourglass, hoyer, pose, resnet, suw


def _suw():
    return suw.build_suw_encoder_decoder(num_bins=8), 3


def _hourglass():
    return hourglass.build_hourglass(head="log_depth"), 3


def _pose():
    return pose.build_pose_net(suw.build_suw_encoder_decoder(num_bins=8)), 9


def _object_motion():
    return pose.build_object_motion_net(suw.build_suw_encoder_decoder(num_bins=8),
                                        num_sources=1), 6


def _pose_resnet():
    """Hoyer et al.'s pose net: ResNet-18 on a frame pair (caffe normalisation: per-channel
    offsets must round-trip too) + Monodepth2's decoder."""
    backbone = resnet.build_resnet(18, input_channels=6, input_normalization="caffe")
    return pose.build_pose_net(backbone, num_sources=1, decoder="monodepth2"), 6


def _hoyer_depth():
    """Hoyer et al.'s depth net (dilated ResNet-18 here): reflection padding, the ASPP's
    broadcast pooling branch, nearest upsampling with crops to odd skip sizes."""
    return hoyer.build_depth_net("resnet18"), 3


def _save_saved_model(model, channels, path):
    """A SavedModel with one dynamic-size serving signature.

    The module tracks only the variables: walking the Keras layer tree (as `model.export`
    does) costs several extra traces and makes this test 3x slower without testing more.
    """
    module = tf.Module()
    module.variables_to_save = list(model.weights)
    module.serve = tf.function(lambda image: model(image, training=False),
                               input_signature=[tf.TensorSpec([None, None, None, channels])])
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


@pytest.mark.parametrize("build", [_suw, _hourglass, _pose, _object_motion, _pose_resnet,
                                   _hoyer_depth],
                         ids=["suw", "hourglass", "pose", "object_motion", "pose_resnet18",
                              "hoyer_depth"])
def test_keras_and_saved_model_round_trips(build, tmp_path):
    model, channels = build()
    # Non-trivial BN statistics, so a reload that dropped them would show.
    for variable in model.non_trainable_weights:
        variable.assign(np.random.default_rng(0).uniform(0.5, 1.5, variable.shape))
    inputs = np.random.default_rng(1).uniform(size=(2, 18, 35, channels)).astype(np.float32)
    expected = {key: value.numpy() for key, value in model(inputs).items()}

    keras_path = os.path.join(tmp_path, "model.keras")
    model.save(keras_path)
    reloaded = keras.models.load_model(keras_path)
    got = reloaded(inputs)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key])

    saved_path = os.path.join(tmp_path, "saved_model")
    _save_saved_model(model, channels, saved_path)
    restored = tf.saved_model.load(saved_path)
    got = restored.signatures["serving_default"](image=tf.constant(inputs))
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key], rtol=1e-5, atol=1e-6)
