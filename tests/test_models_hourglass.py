"""Inception hourglass: block widths from Table 2, level shapes at several sizes, both heads."""

import keras
import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg.models import hourglass

NAME = "hourglass"
NUM_BINS = 8


@pytest.fixture(scope="module")
def model():
    return hourglass.build_hourglass(head="bins", num_bins=NUM_BINS, name=NAME)


def test_inception_blocks_follow_table2(model):
    # Level 4's skip branch is block A; level 3's down branch starts with B then D.
    for prefix, block in [("l4_skip1", "A"), ("l3_pre2", "D"), ("l2_skip2", "F"),
                          ("l3_post2", "G"), ("l3_skip2", "C")]:
        c_in, c_out, inter, kernels = hourglass.INCEPTION_BLOCKS[block]
        base = f"{NAME}_{prefix}_{block}"
        assert model.get_layer(f"{base}_conv1_conv").kernel_size == (1, 1)
        assert model.get_layer(f"{base}_conv1_conv").filters == c_out // 4
        for index, k in enumerate(kernels, start=2):
            assert model.get_layer(f"{base}_conv{index}_reduce_conv").filters == inter
            layer = model.get_layer(f"{base}_conv{index}_{k}x{k}_conv")
            assert layer.kernel_size == (k, k) and layer.filters == c_out // 4
        assert model.get_layer(f"{base}_concat").output.shape[-1] == c_out
        assert model.get_layer(f"{base}_conv1_conv").input.shape[-1] == c_in
    assert model.get_layer(f"{NAME}_H").kernel_size == (3, 3)


@pytest.mark.parametrize("height,width", [(16, 32), (21, 35)])
def test_level_and_output_shapes(model, height, width):
    padded = (-(-height // 16) * 16, -(-width // 16) * 16)
    levels = {level: model.get_layer(f"{NAME}_l{level}_add").output for level in range(1, 5)}
    probe = keras.Model(model.input, {"levels": levels, "outputs": model.output})
    image = np.random.default_rng(0).uniform(size=(2, height, width, 3)).astype(np.float32)
    result = probe(image)
    channels = {4: 64, 3: 128, 2: 256, 1: 256}
    for level, tensor in result["levels"].items():
        scale = 2 ** (4 - level)
        assert tuple(tensor.shape) == (2, padded[0] // scale, padded[1] // scale,
                                       channels[level])
    outputs = result["outputs"]
    assert tuple(outputs[common.OUT_DEPTH].shape) == (2, height, width, 1)
    assert tuple(outputs[common.OUT_UNCERTAINTY].shape) == (2, height, width, 1)
    assert tuple(outputs[common.OUT_DEPTH_BIN_LOGITS].shape) == (2, height, width, NUM_BINS)


def test_log_depth_head_outputs_exp_of_block_h(model):
    bins_model = model
    model = hourglass.build_hourglass(head="log_depth", name="hg_log")
    # The heads differ only in block H's output channels (3x3 conv with bias).
    assert (bins_model.count_params() - model.count_params()
            == (9 * 64 * NUM_BINS + NUM_BINS) - (9 * 64 + 1))
    image = np.random.default_rng(1).uniform(size=(1, 17, 20, 3)).astype(np.float32)
    probe = keras.Model(model.input, [model.get_layer("hg_log_crop").output,
                                      model.output[common.OUT_DEPTH]])
    log_depth, depth = probe(image)
    assert tuple(depth.shape) == (1, 17, 20, 1)
    np.testing.assert_allclose(depth.numpy(), np.exp(log_depth.numpy()), rtol=1e-5)
    assert set(model.output) == {common.OUT_DEPTH}
    with pytest.raises(ValueError, match="head"):
        hourglass.build_hourglass(head="softmax")
