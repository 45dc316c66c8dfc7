"""Parameter counts of every network against counts derived by hand from Tables 1 and 2.

Written independently of the model code: each row of the tables becomes a sum of
  conv:      k * k * c_in * c_out (+ c_out if it has a bias)
  depthwise: k * k * c
  BN:        4 * c (gamma, beta, moving mean, moving variance; the last two not trainable)
"""

import pytest

from tf_depthseg.models import hourglass, pose, suw


def conv(k, c_in, c_out, bias=False):
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c):
    return 4 * c


def convbn(k, c_in, c_out):
    return conv(k, c_in, c_out) + bn(c_out)


def dw(c_in, c_out, k=3):
    """Table 1 'dw' row: depthwise kxk + BN, pointwise 1x1 to c_out + BN."""
    return k * k * c_in + bn(c_in) + conv(1, c_in, c_out) + bn(c_out)


# Table 1, encoding blocks after the first layer ("encoder body").
TABLE1_BODY = (
    convbn(3, 32, 64)                                             # block 1, second row
    + 3 * dw(64, 64) + dw(64, 128)                                # block 2
    + 3 * dw(128, 128) + dw(128, 256)                             # block 3
    + dw(256, 32) + 11 * dw(32, 32) + dw(32, 256)                 # block 4 (12 rows of 32)
    + dw(256, 256) + convbn(1, 256, 128)                          # block 5
)
TABLE1_BN_CHANNELS_BODY = (64 + 3 * (64 + 64) + 64 + 128 + 3 * (128 + 128) + 128 + 256
                           + 256 + 32 + 11 * (32 + 32) + 32 + 256 + 256 + 256 + 128)


def table1_total(num_bins, num_sam_layers):
    stem = convbn(3, 3, 32)
    decoder = (convbn(3, 128 + 256, 32) + convbn(3, 32, 32)        # dec 1: block5 ++ block4
               + convbn(3, 32 + 256, 32) + convbn(3, 32, 32)       # dec 2: dec1 ++ block3
               + convbn(3, 32 + 128, 32)                           # SAM, first atrous conv
               + (num_sam_layers - 1) * convbn(3, 32, 32)
               + 2 * convbn(1, 32, 32))                            # SAM 1x1 pair
    output = convbn(3, 32, num_bins)
    return stem + TABLE1_BODY + decoder + output


def test_suw_encoder_body_matches_table1():
    body = suw.build_suw_encoder_body()
    assert body.count_params() == TABLE1_BODY
    non_trainable = sum(int(w.numpy().size) for w in body.non_trainable_weights)
    assert non_trainable == 2 * TABLE1_BN_CHANNELS_BODY


@pytest.mark.parametrize("num_bins,dilations", [(80, (1, 2, 2, 4, 4, 8)), (64, (1, 2, 4))])
def test_suw_encoder_decoder_matches_table1(num_bins, dilations):
    model = suw.build_suw_encoder_decoder(num_bins=num_bins, sam_dilations=dilations)
    assert model.count_params() == table1_total(num_bins, len(dilations))


def test_pose_and_object_motion_nets_add_only_their_stem_and_decoder():
    depth_model = suw.build_suw_encoder_decoder()
    for builder in (pose.build_pose_net, pose.build_object_motion_net):
        for num_sources in (1, 2):
            net = builder(depth_model, num_sources=num_sources)
            own = (convbn(3, 3 * (num_sources + 1), 32)           # own first layer
                   + conv(3, 128, 32, bias=True) + 3 * conv(3, 32, 32, bias=True)
                   + conv(1, 32, 6 * num_sources, bias=True))    # output layer
            assert net.count_params() == TABLE1_BODY + own


# Table 2: block -> (#in, #out, inter dim, Conv2..Conv4 kernels); Conv1 is 1x1 to #out/4.
TABLE2 = {
    "A": (128, 64, 64, (3, 7, 11)), "B": (128, 128, 32, (3, 5, 7)),
    "C": (128, 128, 64, (3, 7, 11)), "D": (128, 256, 32, (3, 5, 7)),
    "E": (256, 256, 32, (3, 5, 7)), "F": (256, 256, 64, (3, 7, 11)),
    "G": (256, 128, 32, (3, 5, 7)),
}
# How often each block occurs in the nested hourglass (Fig. 2 as inferred from Chen et al.):
# (skip | before inner . after inner)  level 4: A | B B . B A;  level 3: B C | B D . E G;
# level 2: E F | E E . E F;  level 1: E E | E E E
BLOCK_USES = {"A": 2, "B": 5, "C": 1, "D": 1, "E": 10, "F": 2, "G": 1}


def inception(c_in, c_out, inter, kernels):
    branch = c_out // 4
    return convbn(1, c_in, branch) + sum(convbn(1, c_in, inter) + convbn(k, inter, branch)
                                         for k in kernels)


def test_hourglass_matches_table2():
    model = hourglass.build_hourglass(head="log_depth")
    stem = convbn(7, 3, 128)
    blocks = sum(uses * inception(*TABLE2[block]) for block, uses in BLOCK_USES.items())
    block_h = conv(3, 64, 1, bias=True)  # the "bins" head: see test_models_hourglass
    assert model.count_params() == stem + blocks + block_h
