"""Pose and object-motion networks of SUW-Learn (supplement section 2.1.1).

Both are encoder-decoders whose encoder is the SUW depth encoder (Table 1) with its own first
layer: the depth net's first convbn sees 3 channels, these see 3 frames x 3 channels. Every
other encoder layer is the *same* layer object (the nested encoder body model), so one set of
variables is trained by the depth, pose and object-motion losses alike.

Decoder: four plain 3x3 convolutions with 32 channels (conv + bias + ReLU: "plain", no BN),
then a 1x1 output convolution to 6 numbers per source frame, global average pooling, and a
0.01 scale (Monodepth2: small initial motions keep early warps sensible).

Input convention: channels are the target frame followed by the source frames in the order of
the batch's CONTEXT (`stack_frames`). Output row i (axis-angle rx, ry, rz in radians, then
translation tx, ty, tz) is meant as T_target_to_source_i, the transform `geometry.warp`
takes; which transform it becomes is fixed by the loss that trains it.

Object motion: the same design, fed object-masked frames (`mask_frames`, every frame
multiplied by that object's aligned mask). Each batch row is one object; the output is that
object's 6-DoF motion for each source frame, `[batch, num_sources, 6]` (an object moves
differently between t-1 -> t and t -> t+1, struct2depth predicts one motion per transition).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.models import suw

POSE_DECODER_CHANNELS = 32
POSE_DECODER_LAYERS = 4
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


def _build_motion_net(encoder, num_sources: int, output_key: str, name: str) -> keras.Model:
    if int(num_sources) < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}.")
    body = suw.find_encoder_body(encoder)
    frames = keras.Input((None, None, 3 * (num_sources + 1)), name="frames")
    x = suw.apply_suw_stem(frames, name=f"{name}_stem")
    x = body(x)["block5"]
    for index in range(1, POSE_DECODER_LAYERS + 1):
        x = keras.layers.Conv2D(POSE_DECODER_CHANNELS, 3, padding="same", activation="relu",
                                name=f"{name}_dec_conv{index}")(x)
    x = keras.layers.Conv2D(6 * num_sources, 1, name=f"{name}_dec_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    x = keras.layers.Rescaling(POSE_SCALE, name=f"{name}_scale")(x)
    motion = keras.layers.Reshape((num_sources, 6), name=f"{name}_reshape")(x)
    return keras.Model(frames, {output_key: motion}, name=name)


def build_pose_net(encoder: keras.Model, num_sources: int = 2,
                   name: str = "pose_net") -> keras.Model:
    """Ego-motion network sharing the SUW encoder.

    Args:
      encoder: a SUW depth model (`build_suw_encoder_decoder`) or its encoder body; its layers
        are reused, not copied.
      num_sources: source frames per target (2 for t-1, t+1).
    Returns:
      Model: input "frames" `[batch, H, W, 3 * (num_sources + 1)]` (any size),
      output {OUT_POSE: `[batch, num_sources, 6]`}.
    """
    return _build_motion_net(encoder, num_sources, common.OUT_POSE, name)


def build_object_motion_net(encoder: keras.Model, num_sources: int = 2,
                            name: str = "object_motion_net") -> keras.Model:
    """Object-motion network: the pose design on object-masked frames, one row per object.

    Shares the SUW encoder body like `build_pose_net` (own first layer and decoder).
    Input "frames" `[batch, H, W, 3 * (num_sources + 1)]` from `mask_frames`;
    output {OUT_OBJECT_MOTION: `[batch, num_sources, 6]`}.
    """
    return _build_motion_net(encoder, num_sources, common.OUT_OBJECT_MOTION, name)
