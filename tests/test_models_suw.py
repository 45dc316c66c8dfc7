"""SUW encoder-decoder: output shapes of every block at several input sizes, config round trip."""

import math

import keras
import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg.models import suw

NAME = "suw_depth"
NUM_BINS = 16


@pytest.fixture(scope="module")
def model():
    return suw.build_suw_encoder_decoder(num_bins=NUM_BINS, min_depth=1.0, max_depth=80.0,
                                         name=NAME)


def _probe(model):
    """The model, also exposing each Table 1 block's output (as wired in the outer graph)."""
    def layer_input(name, index):
        return model.get_layer(f"{NAME}_{name}").input[index]
    probs, depth_low, depth, uncertainty = model.get_layer(f"{NAME}_bins_head").output
    return keras.Model(model.input, {
        common.OUT_DEPTH_BIN_PROBS: probs, common.OUT_DEPTH_LOW: depth_low,
        common.OUT_DEPTH: depth, common.OUT_UNCERTAINTY: uncertainty,
        "encoding block 1 (stem)": model.get_layer(f"{NAME}_b1_conv1_relu").output,
        "encoding block 2": layer_input("dec3_concat", 1),
        "encoding block 3": layer_input("dec2_concat", 1),
        "encoding block 4": layer_input("dec1_concat", 1),
        "encoding block 5": layer_input("dec1_concat", 0),
        "decoding block 1": model.get_layer(f"{NAME}_dec1_conv2_relu").output,
        "decoding block 2": model.get_layer(f"{NAME}_dec2_conv2_relu").output,
        "decoding block 3 (SAM)": model.get_layer(f"{NAME}_dec3_sam_proj2_relu").output,
        "output logits": model.get_layer(f"{NAME}_out_bn").output,
    })


@pytest.mark.parametrize("height,width", [(32, 64), (37, 50), (375, 1242)])
def test_block_and_output_shapes_follow_table1(model, height, width):
    half = (math.ceil(height / 4) * 2, math.ceil(width / 4) * 2)  # padded to a multiple of 4
    quarter = (math.ceil(height / 4), math.ceil(width / 4))
    expected = {
        "encoding block 1 (stem)": half + (32,),
        "encoding block 2": quarter + (128,),
        "encoding block 3": quarter + (256,),
        "encoding block 4": quarter + (256,),
        "encoding block 5": quarter + (128,),
        "decoding block 1": quarter + (32,),
        "decoding block 2": quarter + (32,),
        "decoding block 3 (SAM)": quarter + (32,),
        "output logits": quarter + (NUM_BINS,),
    }
    image = np.random.default_rng(0).uniform(size=(1, height, width, 3)).astype(np.float32)
    outputs = _probe(model)(image)  # one forward pass for blocks and outputs
    blocks = {key: value for key, value in outputs.items() if key in expected}
    assert {key: tuple(value.shape[1:]) for key, value in blocks.items()} == expected

    body = suw.find_encoder_body(model)
    features = body(blocks["encoding block 1 (stem)"])
    assert tuple(features["block1"].shape[1:]) == half + (64,)
    assert set(features) == set(suw.ENCODER_BLOCKS)

    assert tuple(outputs[common.OUT_DEPTH].shape) == (1, height, width, 1)
    assert tuple(outputs[common.OUT_UNCERTAINTY].shape) == (1, height, width, 1)
    assert tuple(outputs[common.OUT_DEPTH_LOW].shape) == (1,) + quarter + (1,)
    assert tuple(outputs[common.OUT_DEPTH_BIN_PROBS].shape) == (1,) + quarter + (NUM_BINS,)
    depth = outputs[common.OUT_DEPTH].numpy()
    assert depth.min() >= 1.0 - 1e-4 and depth.max() <= 80.0
    np.testing.assert_allclose(outputs[common.OUT_DEPTH_BIN_PROBS].numpy().sum(-1), 1.0,
                               atol=1e-5)


def test_layer_hyperparameters_follow_table1(model):
    body = suw.find_encoder_body(model)
    assert model.get_layer(f"{NAME}_b1_conv1_conv").strides == (2, 2)
    assert body.get_layer(f"{body.name}_b2_dw4_dwconv").strides == (2, 2)
    for row in range(1, 13):
        layer = body.get_layer(f"{body.name}_b4_dw{row}_dwconv")
        assert layer.dilation_rate == (2, 2) and layer.strides == (1, 1)
        assert body.get_layer(f"{body.name}_b4_dw{row}_pwconv").filters == 32
    assert body.get_layer(f"{body.name}_b5_conv2_conv").kernel_size == (1, 1)
    dilations = [model.get_layer(f"{NAME}_dec3_sam_atrous{i}_d{d}_conv").dilation_rate[0]
                 for i, d in enumerate(suw.DEFAULT_SAM_DILATIONS, start=1)]
    assert dilations == list(suw.DEFAULT_SAM_DILATIONS)


def test_get_config_round_trip_rebuilds_identical_model(model):
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    image = np.random.default_rng(1).uniform(size=(2, 13, 22, 3)).astype(np.float32)
    expected, got = model(image), clone(image)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-5, atol=1e-6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        suw.build_suw_encoder_decoder(min_depth=10.0, max_depth=5.0)
    with pytest.raises(ValueError):
        suw.build_suw_encoder_decoder(sam_dilations=())
    with pytest.raises(ValueError, match="encoder body"):
        suw.find_encoder_body(keras.Sequential([keras.layers.Dense(1)], name="other"))
