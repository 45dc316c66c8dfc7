"""Parameter counts of every network against counts derived by hand from Tables 1 and 2, from
the ResNet paper's layer tables, and from keras.applications.

Written independently of the model code: each row of the tables becomes a sum of
  conv:      k * k * c_in * c_out (+ c_out if it has a bias)
  depthwise: k * k * c
  BN:        4 * c (gamma, beta, moving mean, moving variance; the last two not trainable)
"""

import keras
import numpy as np
import pytest

from tf_depthseg.models import hourglass, hoyer, pose, resnet, suw


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


# ResNets (He et al. 2016, Table 1): blocks per stage conv2..conv5, 3x3 widths 64..512.
RESNET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Without the classifier, as torchvision's parameters() counts them (conv + BN gamma/beta):
# resnet18 11,689,512 - fc 513,000; resnet34 21,797,672 - 513,000; resnet50 25,557,032 -
# fc 2,049,000; resnet101 44,549,160 - 2,049,000.
TORCHVISION_BODY = {18: 11_176_512, 34: 21_284_672, 50: 23_508_032, 101: 42_500_160}


def resnet_body(depth, in_channels=3):
    """(trainable parameters, BN channels) of a ResNet body without classifier, by hand."""
    def conv_bn(k, c_in, c_out):
        return conv(k, c_in, c_out) + 2 * c_out, c_out

    parts = [conv_bn(7, in_channels, 64)]
    c_in = 64
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), RESNET_STAGES[depth])):
        for block in range(blocks):
            if depth < 50:  # basic: 3x3, 3x3; projection when the shape changes
                parts += [conv_bn(3, c_in, width), conv_bn(3, width, width)]
                c_out = width
            else:  # bottleneck: 1x1, 3x3, 1x1 x4; projection in every stage's first block
                c_out = 4 * width
                parts += [conv_bn(1, c_in, width), conv_bn(3, width, width),
                          conv_bn(1, width, c_out)]
            if block == 0 and (stage > 0 or c_in != c_out):
                parts.append(conv_bn(1, c_in, c_out))
            c_in = c_out
    return sum(p for p, _ in parts), sum(c for _, c in parts)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth", [18, 34])
def test_resnet_bodies_match_the_hand_count_and_torchvision(depth):
    """50/101 are built in the keras.applications test below (one build each keeps it fast)."""
    for other in (50, 101):
        assert resnet_body(other)[0] == TORCHVISION_BODY[other]
    trainable, bn_channels = resnet_body(depth)
    assert trainable == TORCHVISION_BODY[depth]
    # Dilation does not change any kernel shape.
    model = resnet.build_resnet(depth, replace_stride_with_dilation=(False, True, True))
    assert _trainable(model) == trainable
    assert model.count_params() == trainable + 2 * bn_channels


@pytest.mark.parametrize("depth", [50, 101])
def test_resnet_matches_keras_applications_layer_by_layer(depth):
    """keras.applications (weights=None: nothing downloaded) has the same convolutions and BN
    layers under the same names; its convs also carry a bias each, which ours fold into BN."""
    reference = getattr(keras.applications, f"ResNet{depth}")(weights=None, include_top=False)
    # Neither the stride placement nor dilation changes a kernel shape.
    ours = resnet.build_resnet(depth, version="v1" if depth == 50 else "v1.5",
                               replace_stride_with_dilation=(False, False, True), name="ours")
    weighted = (keras.layers.Conv2D, keras.layers.BatchNormalization)
    reference_shapes = {layer.name: [tuple(w.shape) for w in layer.weights]
                        for layer in reference.layers if isinstance(layer, weighted)}
    our_shapes = {layer.name[len("ours_"):]: [tuple(w.shape) for w in layer.weights]
                  for layer in ours.layers if isinstance(layer, weighted)}
    assert set(our_shapes) == set(reference_shapes)
    for name, shapes in our_shapes.items():
        expected = reference_shapes[name][:1] if name.endswith("_conv") else reference_shapes[name]
        assert shapes == expected, name
    conv_biases = sum(layer.filters for layer in reference.layers
                      if isinstance(layer, keras.layers.Conv2D))
    reference_trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert reference_trainable - conv_biases == TORCHVISION_BODY[depth]
    trainable, bn_channels = resnet_body(depth)
    assert _trainable(ours) == trainable == TORCHVISION_BODY[depth]
    assert ours.count_params() == reference.count_params() - conv_biases
    assert ours.count_params() == trainable + 2 * bn_channels


def monodepth2_pose_decoder(c_in, num_sources):
    """squeeze 1x1 -> 256, 3x3 256, 3x3 256, 1x1 -> 6 N, all with bias."""
    return (conv(1, c_in, 256, bias=True) + 2 * conv(3, 256, 256, bias=True)
            + conv(1, 256, 6 * num_sources, bias=True))


@pytest.mark.parametrize("num_sources", [1, 2])
def test_pose_net_on_resnet18_adds_only_the_monodepth2_decoder(num_sources):
    backbone = resnet.build_resnet(18, input_channels=3 * (num_sources + 1))
    net = pose.build_pose_net(backbone, num_sources, decoder="monodepth2")
    trainable, bn_channels = resnet_body(18, in_channels=3 * (num_sources + 1))
    decoder = monodepth2_pose_decoder(512, num_sources)
    # Monodepth2's own decoder (6 numbers for 2 frames, of which a pair uses the first):
    assert monodepth2_pose_decoder(512, 2) == 1_314_572
    assert net.count_params() == trainable + 2 * bn_channels + decoder


# ----------------------------------------------------------------------------------------------
# Hoyer et al. networks (models/hoyer.py), counted from the reference code's modules:
# torchvision ASPP (1x1, three 3x3 atrous, image pooling 1x1: each conv without bias + BN, then
# a 1x1 projection of the concatenation + BN), Monodepth2 ConvBlock / Conv3x3 (3x3 with bias),
# U-Net blocks i = 4..0 with skips P4..P1, disparity heads 3x3 -> 1 with bias on blocks 3..0.
# Trainable counts (PyTorch's parameters(): BN gamma/beta); BN moving stats are 2 per channel.
# ----------------------------------------------------------------------------------------------
RESNET_LEVEL_CHANNELS = {18: (64, 64, 128, 256, 512), 50: (64, 256, 512, 1024, 2048),
                         101: (64, 256, 512, 1024, 2048)}
# Reference depth_args of the paper's network: num_ch_dec [64, 128, 128, 256, 256] (finest first).
PAPER_NUM_CH_DEC = (64, 128, 128, 256, 256)
STUDENT_NUM_CH_DEC = (64, 64, 128, 128, 256)  # reference decoder_variant dec 9


def aspp(c_in, c):
    """(trainable, BN channels) of torchvision's ASPP with 3 rates and image pooling."""
    convs = conv(1, c_in, c) + 3 * conv(3, c_in, c) + conv(1, c_in, c) + conv(1, 5 * c, c)
    bn_channels = 6 * c
    return convs + 2 * bn_channels, bn_channels


def unet_decoder(enc, num_ch_dec, batch_norm=False, aspp_block=True):
    """(trainable, BN channels) of the reference DepthDecoder without disparity heads.

    enc: channels of P1..P5; num_ch_dec: finest first, as the reference lists them."""
    trainable, bn_channels = 0, 0
    c_in = enc[4]
    for i in range(4, -1, -1):
        c = num_ch_dec[i]
        if i == 4 and aspp_block:
            p, b = aspp(c_in, c)
            trainable, bn_channels = trainable + p, bn_channels + b
        else:
            trainable += conv(3, c_in, c, bias=True) + (2 * c if batch_norm else 0)
            bn_channels += c if batch_norm else 0
        skip = enc[i - 1] if i > 0 else 0
        trainable += conv(3, c + skip, c, bias=True) + (2 * c if batch_norm else 0)
        bn_channels += c if batch_norm else 0
        c_in = c
    return trainable, bn_channels


def disparity_heads(num_ch_dec):
    return sum(conv(3, num_ch_dec[s], 1, bias=True) for s in range(4))


def _non_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def test_paper_network_matches_the_reference_64_6_million():
    """Reference: R101-dilated + ASPP U-Net decoder with four disparity heads + the segmentation
    head Conv2d(64, 64, 1, bias=False), Conv2d(64, 19, 1) = 64.6 M parameters (PyTorch).

    Ours: the depth net is that without the head; the segmentation net is that without the
    four disparity heads (the reference's segmentation decoder carries them but never uses
    them: 5,188 parameters). Both sums are derived here by hand and together reproduce the
    reference figure exactly; no v1/v1.5 difference arises (same kernel shapes)."""
    enc = RESNET_LEVEL_CHANNELS[101]
    decoder, decoder_bn = unet_decoder(enc, PAPER_NUM_CH_DEC)
    heads = disparity_heads(PAPER_NUM_CH_DEC)
    seg_head = conv(1, 64, 64) + conv(1, 64, 19, bias=True)
    encoder, encoder_bn = resnet_body(101)
    reference = encoder + decoder + heads + seg_head
    assert (heads, seg_head) == (5_188, 5_331)
    assert reference == 64_572_119 and round(reference / 1e5) == 646  # "64.6 M"

    depth_net = hoyer.build_depth_net("resnet101", dilate_last=True)
    assert _trainable(depth_net) == encoder + decoder + heads == 64_566_788
    assert _non_trainable(depth_net) == 2 * (encoder_bn + decoder_bn)
    # The segmentation net's count, encoder + decoder + seg_head, is checked on ResNet-18 in
    # test_models_hoyer.py (building a second ResNet-101 would double this test's time).


def test_selection_student_resnet50_bn_decoder():
    """Reference dec 9: ASPP, num_ch_dec [64, 64, 128, 128, 256], batch_norm=True (conv bias
    kept, BN after every decoder conv), four disparity heads; ResNet-50 dilated."""
    encoder, encoder_bn = resnet_body(50)
    decoder, decoder_bn = unet_decoder(RESNET_LEVEL_CHANNELS[50], STUDENT_NUM_CH_DEC,
                                       batch_norm=True)
    student = hoyer.build_selection_student()
    assert _trainable(student) == encoder + decoder + disparity_heads(STUDENT_NUM_CH_DEC)
    assert _non_trainable(student) == 2 * (encoder_bn + decoder_bn)
