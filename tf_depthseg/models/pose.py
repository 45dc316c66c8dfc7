"""Pose and object-motion networks on any backbone (`models.backbones` protocol).

A motion net is a backbone on stacked frames (`3 * (num_sources + 1)` input channels) and a
decoder on its deepest feature (`backbones.deepest_level`), ending in 6 numbers per source
frame, global average pooling and a 0.01 scale (Monodepth2: small initial motions keep early
warps sensible). The backbone's layers are placed into the net (`backbones.apply_backbone`), so
a backbone shared with another network shares its variables.

Backbones:
* SUW-Learn (supplement section 2.1.1): the SUW depth encoder (Table 1) with its own first
  layer (`suw.build_suw_backbone`): the depth net's first convbn sees 3 channels, these see
  3 frames x 3 channels. Every other encoder layer is the *same* layer object (the nested
  encoder body), so one set of variables is trained by the depth, pose and object-motion
  losses alike. Passing a SUW depth model or encoder body builds that backbone (stem layers
  named f"{name}_stem"), which keeps the nets' layers, names and checkpoints as they were.
* Hoyer et al. (section A): "a lightweight ResNet18 encoder followed by four convolutions"
  (Monodepth2): `resnet.build_resnet(18, input_channels=3 * (num_sources + 1))`.

Decoders (`decoder`):
* "suw": four plain 3x3 convolutions with 32 channels (conv + bias + ReLU: "plain", no BN),
  then a 1x1 output convolution to 6 numbers per source frame. The SUW text gives no decoder;
  this is our choice, sized for the 128-channel SUW feature.
* "monodepth2": Monodepth2's PoseDecoder (Hoyer et al.'s too): 1x1 squeeze to 256 + ReLU, 3x3
  256 + ReLU, 3x3 256 + ReLU, 1x1 to 6 numbers per source frame, all with bias and PyTorch's
  default Conv2d initialisation (weights and biases uniform in +-1/sqrt(fan_in)), which
  Monodepth2 trains from. Monodepth2 and Hoyer et al. feed frame *pairs* and keep 6 numbers
  for 2 frames of which they use the first; ours predicts exactly `num_sources` (a pair is
  num_sources=1), so its output conv is 256 * 6 + 6 = 1,542 parameters smaller.

Input convention: channels are the target frame followed by the source frames in the order of
the batch's CONTEXT (`stack_frames`). Output row i (axis-angle rx, ry, rz in radians, then
translation tx, ty, tz) is meant as T_target_to_source_i, the transform `geometry.warp`
takes; which transform it becomes is fixed by the loss that trains it. (Monodepth2 and
Hoyer et al. feed each pair in temporal order and invert the transform for t-1: a task that
wants that stacks and inverts accordingly; the net only sees channels.)

Object motion: the same design, fed object-masked frames (`mask_frames`, every frame
multiplied by that object's aligned mask). Each batch row is one object; the output is that
object's 6-DoF motion for each source frame, `[batch, num_sources, 6]` (an object moves
differently between t-1 -> t and t -> t+1, struct2depth predicts one motion per transition).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.models import backbones, layers, suw

POSE_DECODERS = ("suw", "monodepth2")
POSE_DECODER_CHANNELS = 32  # "suw"
POSE_DECODER_LAYERS = 4  # "suw"
MONODEPTH2_DECODER_CHANNELS = 256
POSE_SCALE = 0.01


def stack_frames(image, context):
    """Pose-net input: target then sources along channels.

    Args:
      image: `[batch, H, W, 3]` target frame.
      context: `[batch, num_sources, H, W, 3]` source frames.
    Returns:
      `[batch, H, W, 3 * (num_sources + 1)]`.
    """
    image = tf.convert_to_tensor(image)
    context = tf.convert_to_tensor(context, image.dtype)
    sources = tf.unstack(context, axis=1) if context.shape[1] is not None else None
    if sources is None:
        raise ValueError("stack_frames needs a static number of source frames (context axis 1).")
    return tf.concat([image] + sources, axis=-1)


def mask_frames(frames, masks):
    """Object-masked frames: each 3-channel frame times its object mask.

    Args:
      frames: `[batch, H, W, 3 * num_frames]` from `stack_frames`.
      masks: `[batch, H, W, num_frames]`, 1 inside the object (bool or float).
    Returns:
      `[batch, H, W, 3 * num_frames]`, zero outside each frame's object mask.
    """
    frames = tf.convert_to_tensor(frames)
    masks = tf.cast(masks, frames.dtype)
    return frames * tf.repeat(masks, 3, axis=-1)


def as_motion_backbone(encoder: keras.Model, input_channels: int,
                       name: str = "pose_net") -> keras.Model:
    """The backbone a motion net runs on.

    Args:
      encoder: a backbone (returned as it is), or a SUW depth model / SUW encoder body, which
        becomes `suw.build_suw_backbone` with its own stem named f"{name}_stem" on
        `input_channels` and the shared body.
    """
    if backbones.is_backbone(encoder):
        return encoder
    try:
        body = suw.find_encoder_body(encoder)
    except ValueError as error:
        raise ValueError(f"{encoder.name!r} is neither a backbone (one image input, a feature "
                         "dict keyed P1..P5: models.backbones) nor a SUW depth model or encoder "
                         "body; pass one of those.") from error
    return suw.build_suw_backbone(input_channels, body=body, stem_name=f"{name}_stem",
                                  name=f"{name}_backbone")


def _apply_motion_decoder(x, num_sources: int, decoder: str, *, name: str):
    """`[batch, h, w, c]` deepest feature -> `[batch, h, w, 6 * num_sources]` (before pooling)."""
    if decoder == "suw":
        for index in range(1, POSE_DECODER_LAYERS + 1):
            x = keras.layers.Conv2D(POSE_DECODER_CHANNELS, 3, padding="same", activation="relu",
                                    name=f"{name}_dec_conv{index}")(x)
        return keras.layers.Conv2D(6 * num_sources, 1, name=f"{name}_dec_out")(x)
    width = MONODEPTH2_DECODER_CHANNELS
    x = layers.torch_default_conv(width, 1, x.shape[-1], activation="relu",
                                  name=f"{name}_dec_squeeze")(x)
    for index in (1, 2):
        x = layers.torch_default_conv(width, 3, width, activation="relu",
                                      name=f"{name}_dec_conv{index}")(x)
    return layers.torch_default_conv(6 * num_sources, 1, width, name=f"{name}_dec_out")(x)


def _build_motion_net(encoder, num_sources: int, output_key: str, decoder: str,
                      name: str) -> keras.Model:
    if int(num_sources) < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}.")
    if decoder not in POSE_DECODERS:
        raise ValueError(f"decoder must be one of {POSE_DECODERS}, got {decoder!r}.")
    channels = 3 * (num_sources + 1)
    backbone = as_motion_backbone(encoder, channels, name)
    frames = keras.Input((None, None, channels), name="frames")
    x = backbones.apply_backbone(backbone, frames)[backbones.deepest_level(backbone)]
    x = _apply_motion_decoder(x, num_sources, decoder, name=name)
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    x = keras.layers.Rescaling(POSE_SCALE, name=f"{name}_scale")(x)
    motion = keras.layers.Reshape((num_sources, 6), name=f"{name}_reshape")(x)
    return keras.Model(frames, {output_key: motion}, name=name)


def build_pose_net(backbone: keras.Model, num_sources: int = 2, decoder: str = "suw",
                   name: str = "pose_net") -> keras.Model:
    """Ego-motion network: a backbone on stacked frames and a pose decoder.

    Args:
      backbone: a backbone taking `3 * (num_sources + 1)` channels (e.g.
        `resnet.build_resnet(18, input_channels=9)`), or a SUW depth model
        (`build_suw_encoder_decoder`) or encoder body, whose body is shared (own stem). The
        backbone's layers are reused, not copied.
      num_sources: source frames per target (2 for t-1, t+1; 1 for a frame pair).
      decoder: "suw" or "monodepth2" (module docstring).
    Returns:
      Model: input "frames" `[batch, H, W, 3 * (num_sources + 1)]` (any size),
      output {OUT_POSE: `[batch, num_sources, 6]`}.
    """
    return _build_motion_net(backbone, num_sources, common.OUT_POSE, decoder, name)


def build_object_motion_net(backbone: keras.Model, num_sources: int = 2, decoder: str = "suw",
                            name: str = "object_motion_net") -> keras.Model:
    """Object-motion network: the pose design on object-masked frames, one row per object.

    Same arguments as `build_pose_net` (with a SUW encoder: shares its body, own first layer
    and decoder). Input "frames" `[batch, H, W, 3 * (num_sources + 1)]` from `mask_frames`;
    output {OUT_OBJECT_MOTION: `[batch, num_sources, 6]`}.
    """
    return _build_motion_net(backbone, num_sources, common.OUT_OBJECT_MOTION, decoder, name)
