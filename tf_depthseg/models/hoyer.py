"""Hoyer et al. (2021) networks: depth (SDE), segmentation, multi-task with PAD-Net
distillation, and the slim data-selection student.

Paper: "Three ways to improve semantic segmentation with self-supervised depth estimation",
supplement section A. Facts and constants from the authors' reference code
(`lhoyer/improving_segmentation_with_selfsupervised_depth`: models/depth_decoder.py,
models/joint_segmentation_depth_decoder.py, models/model_parts.py, experiments.py), which
builds on Monodepth2's decoder (`nianticlabs/monodepth2`, networks/depth_decoder.py).

API. Every builder returns a functional Keras model with one input "image" `[B, H, W, 3]`, RGB
in [0, 1], any H, W >= 32 with ASPP (the decoder's reflection padding needs >= 2 pixels at its
coarsest level: stride 16 when the last stage is dilated; without ASPP and dilation, as in
the Monodepth2 setup, P5 at stride 32 needs H, W >= 64), and a dict output:

    build_depth_net(backbone="resnet101", dilate_last=True, weights=None, ...)
        -> {"disparity_s0" .. "disparity_s3", "features"}
    build_segmentation_net(num_classes, backbone="resnet101", dilate_last=True, weights=None,
                           ...)
        -> {"semantic_logits", "features"}
    build_multitask_net(num_classes, backbone=..., ...)      # PAD-Net distillation
        -> {"disparity_s0" .. "disparity_s3", "semantic_logits", "semantic_side_logits",
            "features"}
    build_selection_student(backbone="resnet50", ...)         # data selection (BN decoder)
        -> as build_depth_net

    disparity_s<s>        [B, ceil(H / 2^s), ceil(W / 2^s), 1] float32, sigmoid in (0, 1);
                          s0 at the full input resolution (Monodepth2's scale 0 is the full
                          resolution; the reference decoder's last block upsamples to it)
    semantic_logits       [B, H, W, num_classes] float32
    semantic_side_logits  [B, ceil(H / 4), ceil(W / 4), num_classes] float32 (the reference
                          leaves it at the decoder's 1/4 resolution; a loss resizes it)
    features              [B, H, W, 64]: the last decoder block's output (the input of the
                          segmentation head); `feature_block=k` gives block k's instead, e.g.
                          k = 3 (256 channels, 1/8) for data selection, whose diversity the
                          reference measures on the SDE teacher's ("upconv", 3) output
                          average-pooled to 4 x 8 (label_selection.py, ifp_args m="u3")

`backbone` is a name (`resnet.build_backbone`: "resnet18/34/50/101"; `dilate_last=True` adds
"_dilated", output stride 16, the paper's setting; "..._os8" names work too) or a built
backbone with levels P1..P5 (`models.backbones`), whose layers become the network's (shared
variables). `weights` initialises a named backbone: None / "" random (offline default),
"imagenet" (keras.applications' ResNet-50/101 weights when Keras' cache has them, else random
init and one warning line), or a file (`resnet.build_backbone`).

The decoder (`apply_decoder`). Five blocks numbered as in the reference, i = 4 (coarsest) .. 0,
channels (`decoder_channels`, coarsest first) 256, 256, 128, 128, 64:
    block i:  conv0: ASPP for i = 4 (rates 6, 12, 18 + image pooling, 1x1 projection, BN +
                     ReLU, dropout 0.5: torchvision's DeepLabv3 ASPP, as the reference uses it),
                     else reflect-padded 3x3 conv + ELU (Monodepth2's ConvBlock);
              upsample to the skip feature P<i> when that has a smaller real stride (x2 for an
                     undilated stage; none after a dilated one: the sizes follow the backbone's
                     real strides, `backbones.feature_strides`), crop to P<i>'s size (odd sizes);
                     block 0 upsamples to the input size and has no skip;
              concat with P<i> (i >= 1), conv1: reflect-padded 3x3 conv + ELU.
    heads:    disparity_s<i> on blocks 3..0: reflect-padded 3x3 conv + sigmoid.
So with a dilated last stage, block 4 (ASPP on P5, stride 16) concatenates P4 without
upsampling, exactly as the reference's `x.shape[-1] < skip.shape[-1]` test decides.

Choices where the sources are silent or disagree:
* Upsampling is **nearest** (default; `upsampling="bilinear"` available): the paper's text
  says bilinear, the reference code (and Monodepth2) use nearest, and the reference's
  published numbers and pretrained SDE come from that code; nearest is also cheaper.
* Decoder convolutions keep PyTorch's default initialisation and reflection padding
  (`layers.apply_reflect_conv3x3`); BN layers (ASPP, student, head) use epsilon 1e-5.
* Segmentation head: the reference's main experiments (experiments.py, id 210:
  `layers=[9]`, `head_inter=False`, `output_stride=1`) read the last decoder block and apply
  `Conv2d(64, 64, 1, bias=False)` then `Conv2d(64, num_classes, 1)`: our default. With
  `head_inter=True` a 3x3 conv (no bias) + BN + ReLU + dropout (`head_dropout`, 0.1 in
  `set_segmentation_args`) sits between them (id 211 uses it with dropout 0). The reference's
  segmentation decoder is a full depth decoder whose four disparity heads are never used;
  ours has none (5,188 parameters fewer at the paper's channels).
* Multi-task (reference `PAD`, experiments id 212): two decoders on the shared encoder; after
  block `distillation_block` (2: the third block, 1/4 resolution; reference distillation
  layer 7) each decoder receives `conv3x3(other) * sigmoid(conv3x3_att(other))` added to its
  own features (`layers.apply_pad_message`; attention kernel zero-initialised as in the
  reference); the side output is a 1x1 conv on the segmentation features *before* the
  exchange; the final head is one 1x1 conv on the last segmentation block (no projection,
  as in the reference). Disparity heads at or above the distillation block read the depth
  features before the exchange, below it after (the reference's order).
* Selection student (paper: "ResNet50 backbone, 256, 128, 128, 64, and 64 decoder channels,
  and BatchNorm in the decoder"; reference `decoder_variant(dec=9)`): ASPP decoder with BN
  after every decoder conv (conv bias kept, as the reference's ConvBlock has it), last stage
  dilated like every reference variant.
* `aspp_rates=()` replaces the ASPP with a plain ConvBlock: with `decoder_channels=
  MONODEPTH2_DECODER_CHANNELS` and an undilated ResNet-18 that is Monodepth2's depth network.

Layer names: decoder layers are "<decoder>_b<i>_<part>" with decoder "depth_dec" in the depth
net, student and multi-task net and "seg_dec" in the segmentation and multi-task nets, so a
segmentation net starts from an SDE by copying layers with "depth_dec" renamed to "seg_dec"
(the backbone's layers keep the backbone's names). Heads are "depth_dec_disp<i>",
"seg_head_*", "pad_*". `parameter_groups` splits a network's variables into backbone and rest.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import keras

from tf_depthseg import common
from tf_depthseg.models import backbones, batch_norm, layers, resnet

NUM_BLOCKS = 5
ASPP_BLOCK = NUM_BLOCKS - 1
# Paper section A / reference `num_ch_dec: [64, 128, 128, 256, 256]` (finest first there).
DECODER_CHANNELS = (256, 256, 128, 128, 64)
# Paper ("256, 128, 128, 64, and 64"); reference dec 9 `num_ch_dec: [64, 64, 128, 128, 256]`.
STUDENT_DECODER_CHANNELS = (256, 128, 128, 64, 64)
MONODEPTH2_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # Monodepth2 num_ch_dec, reversed
ASPP_RATES = (6, 12, 18)
DISPARITY_SCALES = (0, 1, 2, 3)  # heads on blocks 3..0
DISTILLATION_BLOCK = 2  # reference distillation_layer 7 = decoder block 9 - 7 = 2
HEAD_CHANNELS = 64  # reference layer_out_channels / head_inter_channels
HEAD_DROPOUT = 0.1  # reference set_segmentation_args(head_dropout=0.1), with head_inter only
UPSAMPLING = ("nearest", "bilinear")
DEPTH_DECODER, SEG_DECODER = "depth_dec", "seg_dec"
# Prefixes of every layer this module creates (the rest of a network is its backbone).
_OWN_PREFIXES = (f"{DEPTH_DECODER}_", f"{SEG_DECODER}_", "seg_head_", "pad_")


# ----------------------------------------------------------------------------------------------
# Backbone and decoder
# ----------------------------------------------------------------------------------------------
def resolve_backbone(backbone: Union[str, keras.Model], dilate_last: bool = True,
                     weights: Optional[str] = None) -> keras.Model:
    """The backbone a network runs on: built by name (`resnet.build_backbone`; `dilate_last`
    adds "_dilated" to a plain ResNet name), or a given backbone with levels P1..P5."""
    if isinstance(backbone, keras.Model):
        levels = backbones.backbone_levels(backbone)
        if tuple(levels) != backbones.LEVELS:
            raise ValueError(f"The Hoyer et al. decoder needs backbone levels {backbones.LEVELS}"
                             f"; {backbone.name!r} has {tuple(levels)}.")
        if weights:
            raise ValueError("weights initialise a backbone built by name; load them into the "
                             f"given backbone {backbone.name!r} instead.")
        if backbones.input_channels(backbone) != 3:
            raise ValueError(f"Backbone {backbone.name!r} must take 3 channels (one RGB image).")
        return backbone
    name = str(backbone)
    if dilate_last and name in [f"resnet{depth}" for depth in resnet.RESNET_DEPTHS]:
        name += "_dilated"
    return resnet.build_backbone(name, input_channels=3, weights=weights)


def _check_channels(channels: Sequence[int]) -> Tuple[int, ...]:
    channels = tuple(int(c) for c in channels)
    if len(channels) != NUM_BLOCKS or min(channels) < 1:
        raise ValueError(f"decoder_channels needs {NUM_BLOCKS} positive widths (block 4 first), "
                         f"got {channels}.")
    return channels


def apply_decoder(x, features: Mapping[str, keras.KerasTensor], strides: Mapping[str, int],
                  image, *, blocks: Sequence[int], stride: int,
                  channels: Sequence[int] = DECODER_CHANNELS,
                  aspp_rates: Sequence[int] = ASPP_RATES, batch_norm: bool = False,
                  upsampling: str = "nearest", name: str = DEPTH_DECODER):
    """Runs decoder blocks `blocks` (a descending run of 4..0; module docstring).

    Args:
      x: the input of the first block: P5 for block 4, else the previous block's output (or
        features merged into it), at real stride `stride`.
      features: the backbone's {"P1".."P5"}; strides: their real strides.
      image: the network input (block 0 upsamples to its size).
      channels: output channels of blocks 4..0.
    Returns:
      ({block: output `[B, h_i, w_i, channels_i]`}, real stride of the last output).
    """
    channels = _check_channels(channels)
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}, got {upsampling!r}.")
    outputs = {}
    for block in blocks:
        filters = channels[ASPP_BLOCK - block]
        prefix = f"{name}_b{block}"
        if block == ASPP_BLOCK and aspp_rates:
            y = layers.apply_aspp(x, filters, aspp_rates, name=f"{prefix}_aspp")
        else:
            y = layers.apply_elu_block(x, filters, batch_norm=batch_norm, name=f"{prefix}_conv0")
        reference, target_stride = image, 1
        if block > 0:
            key = backbones.level_key(block)
            reference, target_stride = features[key], strides[key]
        if stride % target_stride:
            raise ValueError(f"Decoder block {block}: stride {stride} is not a multiple of the "
                             f"skip feature's stride {target_stride}.")
        if stride > target_stride:
            y = layers.UpsampleCropToReference(stride // target_stride, upsampling,
                                               name=f"{prefix}_upsample")([y, reference])
        stride = target_stride
        if block > 0:
            y = keras.layers.Concatenate(name=f"{prefix}_concat")([y, reference])
        y = layers.apply_elu_block(y, filters, batch_norm=batch_norm, name=f"{prefix}_conv1")
        outputs[block] = x = y
    return outputs, stride


def _disparity_head(x, scale: int, *, name: str = DEPTH_DECODER):
    """Reflect-padded 3x3 conv to 1 channel + sigmoid, in float32 (mixed precision safe)."""
    x = layers.apply_reflect_conv3x3(x, 1, name=f"{name}_disp{scale}", dtype="float32")
    return keras.layers.Activation("sigmoid", dtype="float32",
                                   name=f"{name}_disp{scale}_sigmoid")(x)


def _logits_conv(x, num_classes: int, *, name: str):
    """1x1 conv with bias (PyTorch init) to class logits, float32."""
    return layers.torch_default_conv(num_classes, 1, int(x.shape[-1]), name=name,
                                     dtype="float32")(x)


def _encoder(backbone, dilate_last, weights):
    backbone = resolve_backbone(backbone, dilate_last, weights)
    image = keras.Input((None, None, 3), name=common.IMAGE)
    features = backbones.apply_backbone(backbone, image)
    return image, features, backbones.feature_strides(backbone)


def _check_block(value: int, what: str, low: int = 0, high: int = ASPP_BLOCK) -> int:
    if not low <= int(value) <= high:
        raise ValueError(f"{what} must be a decoder block {low}..{high}, got {value}.")
    return int(value)


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
def _encoder_and_decoder(backbone, dilate_last, weights, name, **decoder):
    """The backbone on a new image input and all five decoder blocks on it.

    Returns (image input, the backbone's features by level, the decoder blocks' outputs by
    block index); `decoder`: `apply_decoder`'s channels, aspp_rates, batch_norm, upsampling.
    """
    image, features, strides = _encoder(backbone, dilate_last, weights)
    top = backbones.LEVELS[-1]
    blocks, _ = apply_decoder(features[top], features, strides, image,
                              blocks=range(ASPP_BLOCK, -1, -1), stride=strides[top], name=name,
                              **decoder)
    return image, features, blocks


def build_depth_net(backbone: Union[str, keras.Model] = "resnet101", dilate_last: bool = True,
                    weights: Optional[str] = None, *,
                    decoder_channels: Sequence[int] = DECODER_CHANNELS,
                    aspp_rates: Sequence[int] = ASPP_RATES, batch_norm: bool = False,
                    upsampling: str = "nearest", feature_block: int = 0,
                    encoder_features: bool = False,
                    name: str = "depth_net") -> keras.Model:
    """The SDE network: backbone + ASPP U-Net decoder + four disparity heads.

    Args:
      backbone, dilate_last, weights: see the module docstring ("resnet101" + dilated last
        stage: the paper's encoder).
      decoder_channels: widths of blocks 4..0; aspp_rates: () for no ASPP.
      batch_norm: BN after every decoder conv (the selection student).
      upsampling: "nearest" (reference code) or "bilinear" (paper text).
      feature_block: the decoder block whose output is "features" (0: the last).
      encoder_features: also output the backbone's deepest feature map as
        "encoder_features" (e.g. for a feature distance to a frozen encoder).
    Returns:
      "image" `[B, H, W, 3]` -> {"disparity_s0".."disparity_s3", "features"
      [, "encoder_features"]} (module docstring).
    """
    feature_block = _check_block(feature_block, "feature_block")
    image, features, blocks = _encoder_and_decoder(
        backbone, dilate_last, weights, DEPTH_DECODER, channels=decoder_channels,
        aspp_rates=aspp_rates, batch_norm=batch_norm, upsampling=upsampling)
    outputs = {common.disparity_key(s): _disparity_head(blocks[s], s) for s in DISPARITY_SCALES}
    outputs[common.OUT_FEATURES] = blocks[feature_block]
    if encoder_features:
        outputs[common.OUT_ENCODER_FEATURES] = features[backbones.LEVELS[-1]]
    return keras.Model(image, outputs, name=name)


def build_selection_student(backbone: Union[str, keras.Model] = "resnet50",
                            dilate_last: bool = True, weights: Optional[str] = None, *,
                            name: str = "selection_student", **kwargs) -> keras.Model:
    """The slim data-selection student: ResNet-50, BN decoder 256/128/128/64/64 (module
    docstring). Same outputs as `build_depth_net`; `kwargs` go to it."""
    kwargs.setdefault("decoder_channels", STUDENT_DECODER_CHANNELS)
    kwargs.setdefault("batch_norm", True)
    return build_depth_net(backbone, dilate_last, weights, name=name, **kwargs)


def _apply_segmentation_head(x, num_classes: int, image, *, head_inter: bool,
                             head_dropout: float, resize: bool):
    """Reference JointSegDepthDecoder head on one decoder block's output -> logits, resized
    bilinearly to the input size when `resize` (a block coarser than the input)."""
    y = layers.torch_default_conv(HEAD_CHANNELS, 1, int(x.shape[-1]), use_bias=False,
                                  name="seg_head_project")(x)
    if head_inter:
        y = layers.torch_default_conv(HEAD_CHANNELS, 3, HEAD_CHANNELS, use_bias=False,
                                      name="seg_head_inter_conv")(y)
        y = batch_norm.FusedBatchNormalization(epsilon=layers.TORCH_BN_EPSILON,
                                               name="seg_head_inter_bn")(y)
        y = keras.layers.Activation("relu", name="seg_head_inter_relu")(y)
        if head_dropout > 0:
            y = keras.layers.Dropout(head_dropout, name="seg_head_inter_dropout")(y)
    logits = _logits_conv(y, num_classes, name="seg_head_logits")
    if resize:
        logits = layers.ResizeToReference("bilinear", dtype="float32",
                                          name="seg_head_resize")([logits, image])
    return logits


def _check_classes(num_classes: int) -> int:
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    return int(num_classes)


def build_segmentation_net(num_classes: int, backbone: Union[str, keras.Model] = "resnet101",
                           dilate_last: bool = True, weights: Optional[str] = None, *,
                           decoder_channels: Sequence[int] = DECODER_CHANNELS,
                           aspp_rates: Sequence[int] = ASPP_RATES, batch_norm: bool = False,
                           upsampling: str = "nearest", head_block: int = 0,
                           head_inter: bool = False, head_dropout: float = HEAD_DROPOUT,
                           name: str = "segmentation_net") -> keras.Model:
    """The segmentation network: the depth net's encoder and decoder, a classification head.

    Args:
      num_classes: logits per pixel (19 Cityscapes, 11 CamVid).
      head_block: the decoder block the head reads (0 = last, the reference's layer 9).
      head_inter, head_dropout: the reference's optional 3x3-BN-ReLU-dropout head stage.
      Others: as `build_depth_net`.
    Returns:
      "image" `[B, H, W, 3]` -> {"semantic_logits" `[B, H, W, num_classes]`, "features"
      (block `head_block`'s output)}.
    """
    num_classes = _check_classes(num_classes)
    head_block = _check_block(head_block, "head_block")
    image, features, blocks = _encoder_and_decoder(
        backbone, dilate_last, weights, SEG_DECODER, channels=decoder_channels,
        aspp_rates=aspp_rates, batch_norm=batch_norm, upsampling=upsampling)
    logits = _apply_segmentation_head(blocks[head_block], num_classes, image,
                                      head_inter=head_inter, head_dropout=head_dropout,
                                      resize=head_block > 0)
    return keras.Model(image, {common.OUT_SEMANTIC_LOGITS: logits,
                               common.OUT_FEATURES: blocks[head_block]}, name=name)


def build_multitask_net(num_classes: int, backbone: Union[str, keras.Model] = "resnet101",
                        dilate_last: bool = True, weights: Optional[str] = None, *,
                        decoder_channels: Sequence[int] = DECODER_CHANNELS,
                        aspp_rates: Sequence[int] = ASPP_RATES, batch_norm: bool = False,
                        upsampling: str = "nearest",
                        distillation_block: int = DISTILLATION_BLOCK,
                        side_output: bool = True, name: str = "multitask_net") -> keras.Model:
    """Depth and segmentation decoders on one encoder with PAD-Net distillation.

    Args:
      distillation_block: the block after which the decoders exchange messages (2: 1/4
        resolution, the paper's "after the third decoder block").
      side_output: add "semantic_side_logits" (a 1x1 conv on the segmentation features
        before the exchange, at that block's resolution).
      Others: as `build_segmentation_net`.
    Returns:
      "image" -> {"disparity_s0".."disparity_s3", "semantic_logits" `[B, H, W, C]`,
      "semantic_side_logits" `[B, ceil(H/2^k), ceil(W/2^k), C]` (k = distillation_block),
      "features" (the last segmentation block)}.
    """
    num_classes = _check_classes(num_classes)
    cut = _check_block(distillation_block, "distillation_block", low=1)
    image, features, strides = _encoder(backbone, dilate_last, weights)
    top = backbones.LEVELS[-1]
    args = dict(channels=decoder_channels, aspp_rates=aspp_rates, batch_norm=batch_norm,
                upsampling=upsampling)
    first, second = range(ASPP_BLOCK, cut - 1, -1), range(cut - 1, -1, -1)
    depth, stride = apply_decoder(features[top], features, strides, image, blocks=first,
                                  stride=strides[top], name=DEPTH_DECODER, **args)
    seg, _ = apply_decoder(features[top], features, strides, image, blocks=first,
                           stride=strides[top], name=SEG_DECODER, **args)
    outputs = {}
    if side_output:
        outputs[common.OUT_SEMANTIC_SIDE_LOGITS] = _logits_conv(seg[cut], num_classes,
                                                                name="pad_side_logits")
    # Reference: merged_for_seg = seg + sa_depth(depth); merged_for_depth = depth + sa_seg(seg).
    to_seg = layers.apply_pad_message(depth[cut], name="pad_depth_to_seg")
    to_depth = layers.apply_pad_message(seg[cut], name="pad_seg_to_depth")
    merged_seg = keras.layers.Add(name="pad_merge_seg")([seg[cut], to_seg])
    merged_depth = keras.layers.Add(name="pad_merge_depth")([depth[cut], to_depth])
    depth_rest, _ = apply_decoder(merged_depth, features, strides, image, blocks=second,
                                  stride=stride, name=DEPTH_DECODER, **args)
    seg_rest, _ = apply_decoder(merged_seg, features, strides, image, blocks=second,
                                stride=stride, name=SEG_DECODER, **args)
    depth.update(depth_rest)
    seg.update(seg_rest)
    for scale in DISPARITY_SCALES:
        outputs[common.disparity_key(scale)] = _disparity_head(depth[scale], scale)
    logits = _logits_conv(seg[0], num_classes, name="seg_head_logits")
    outputs[common.OUT_SEMANTIC_LOGITS] = logits
    outputs[common.OUT_FEATURES] = seg[0]
    return keras.Model(image, outputs, name=name)


def parameter_groups(model: keras.Model) -> Dict[str, list]:
    """{"backbone": trainable variables of the backbone's layers, "decoder": the rest (decoders
    and heads)} of a network built here (e.g. for the reference's backbone lr 1e-3 vs 1e-2)."""
    groups = {"backbone": [], "decoder": []}
    for layer in model.layers:
        group = "decoder" if layer.name.startswith(_OWN_PREFIXES) else "backbone"
        groups[group].extend(layer.trainable_weights)
    return groups
