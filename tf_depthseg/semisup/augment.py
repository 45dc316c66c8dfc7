"""Strong augmentation of mixed images: colour jitter and Gaussian blur, per image, stateless.

Facts from the reference (`loader/transformsgpu.py`, applied in `train.py`
`train_step_segmentation_unlabeled` after the mix, to the images only - the teacher's
probabilities have more than 3 channels, which its jitter and blur leave alone):

* colour jitter with probability 0.8 (`jitter > 0.2`, jitter ~ U(0, 1)), strength s = 0.25
  for brightness, contrast, saturation and hue (kornia `ColorJitter(s, s, s, s)`);
* Gaussian blur with probability 0.5 (`blur > 0.5`), sigma ~ U(0.15, 1.15), the same in both
  axes, kernel size per axis = the largest odd number <= ceil(0.1 * side) (the reference's
  `floor(ceil(0.1 n) - 0.5 + ceil(0.1 n) % 2)`; 51 for 512 pixels), reflected borders
  (kornia's default).

Differences, on purpose: the reference draws the two coin flips and sigma once per *batch*
(Python `random.uniform`); here every image gets its own draws from a stateless seed, so the
augmentation of an image does not depend on its batch neighbours and a resumed run repeats the
uninterrupted one exactly. The jitter has the parameterisation of
`tf_depthseg.data.augment.color_jitter` (fixed order: brightness (multiplicative), contrast
around each channel's mean, saturation, hue as a fraction of the circle like kornia's; then
clipped to [0, 1]; kornia also shuffles the order), but with one set of factors *per image* of
a batch, applied in one vectorised pass (data.augment's version gives one set to a whole
example with its neighbour frames, for view synthesis). The blur of an image in [0, 1] stays
in [0, 1] (a normalised non-negative kernel).

Random numbers come from `semisup.rng`: the same with and without jit_compile.

Cost (2 x 512 x 512 x 3, this project's 2-core CPU): blur 63-75 ms and jitter 56 ms in graph
mode; under XLA on CPU the jitter takes 17 ms but the blur 2.2 s (XLA:CPU's convolutions; a
banded-matrix blur measured 119 ms there but 183 ms in graph mode and grows with the square of
the side), so keep jit_compile off on CPU, as for the networks.
"""

from __future__ import annotations

import math
from typing import Tuple

import tensorflow as tf

from tf_depthseg.semisup import rng


JITTER_PROB = 0.8
JITTER_STRENGTH = 0.25
BLUR_PROB = 0.5
BLUR_SIGMA = (0.15, 1.15)
BLUR_KERNEL_FRACTION = 0.1


def blur_kernel_size(side: int) -> int:
    """The reference's kernel size for an image side: largest odd number <= ceil(0.1 side)."""
    size = math.ceil(BLUR_KERNEL_FRACTION * side)
    return max(1, size if size % 2 else size - 1)


def gaussian_kernels(sigma: tf.Tensor, size: int) -> tf.Tensor:
    """Normalised 1-D Gaussian kernels: sigma float `[B]` -> float32 `[B, size]`."""
    offsets = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    sigma = tf.cast(sigma, tf.float32)[:, None]
    weights = tf.exp(-0.5 * tf.square(offsets[None, :] / sigma))
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def _blur_axis(images: tf.Tensor, kernels: tf.Tensor, axis: int) -> tf.Tensor:
    """Convolves `[B, H, W, C]` along H (axis 1) or W (axis 2) with each image's kernel
    `[B, k]`, reflecting at the borders."""
    batch, channels = tf.shape(images)[0], images.shape[-1]
    size = kernels.shape[1]
    half = size // 2
    pad = [[0, 0], [0, 0], [0, 0], [0, 0]]
    pad[axis] = [half, half]
    padded = tf.pad(images, pad, mode="REFLECT")
    # One depthwise convolution for the whole batch: images side by side as channels, each
    # channel with its own image's kernel.
    stacked = tf.transpose(padded, [1, 2, 0, 3])  # [H, W, B, C]
    shape = tf.shape(stacked)
    stacked = tf.reshape(stacked, [1, shape[0], shape[1], batch * channels])
    per_channel = tf.repeat(kernels, channels, axis=0)  # [B * C, k]
    if axis == 1:
        filters = tf.transpose(per_channel)[:, None, :, None]  # [k, 1, B*C, 1]
    else:
        filters = tf.transpose(per_channel)[None, :, :, None]  # [1, k, B*C, 1]
    out = tf.nn.depthwise_conv2d(stacked, filters, [1, 1, 1, 1], "VALID")
    out_shape = tf.shape(out)
    out = tf.reshape(out, [out_shape[1], out_shape[2], batch, channels])
    return tf.transpose(out, [2, 0, 1, 3])


def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor,
                  kernel_size: Tuple[int, int] = None) -> tf.Tensor:
    """Separable Gaussian blur with one sigma per image (both axes), reflected borders.

    Args:
      images: float `[B, H, W, C]` with static H and W.
      sigma: float `[B]` (> 0).
      kernel_size: (kernel height, kernel width), odd; default `blur_kernel_size` of each side.
    Returns:
      float32 `[B, H, W, C]`.
    """
    images = tf.cast(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(f"gaussian_blur needs static image sizes, got {images.shape}")
    if kernel_size is None:
        kernel_size = (blur_kernel_size(height), blur_kernel_size(width))
    for size, side in zip(kernel_size, (height, width)):
        if size % 2 != 1 or size // 2 >= side:
            raise ValueError(f"blur kernel {kernel_size} must be odd and under twice the "
                             f"image size {height}x{width}")
    if kernel_size[0] > 1:
        images = _blur_axis(images, gaussian_kernels(sigma, kernel_size[0]), axis=1)
    if kernel_size[1] > 1:
        images = _blur_axis(images, gaussian_kernels(sigma, kernel_size[1]), axis=2)
    return images


def jitter_factors(seed, batch, strength: float = JITTER_STRENGTH,
                   prob: float = JITTER_PROB) -> dict:
    """Per-image colour jitter draws: "apply" bool `[B]` (probability `prob`), "brightness",
    "contrast", "saturation" float32 `[B]` ~ U[1 - strength, 1 + strength] and "hue" float32
    `[B]` ~ U[-min(strength, 0.5), min(strength, 0.5)]."""
    seeds = rng.split_seed(seed, 5)
    hue = min(strength, 0.5)
    return {"apply": rng.uniform([batch], seeds[0]) < prob,
            "brightness": rng.uniform([batch], seeds[1], 1.0 - strength, 1.0 + strength),
            "contrast": rng.uniform([batch], seeds[2], 1.0 - strength, 1.0 + strength),
            "saturation": rng.uniform([batch], seeds[3], 1.0 - strength, 1.0 + strength),
            "hue": rng.uniform([batch], seeds[4], -hue, hue)}


def apply_color_jitter(images: tf.Tensor, factors: dict) -> tf.Tensor:
    """Colour jitter with per-image factors (`jitter_factors`), in the order brightness,
    contrast, saturation, hue, then clipped to [0, 1]; images whose "apply" is False pass
    unchanged.

    Per image b this equals `tf.image.adjust_hue(adjust_saturation(adjust_contrast(x *
    brightness[b], contrast[b]), saturation[b]), hue[b])` clipped (the ops of
    `data.augment.color_jitter`), for the whole batch in one pass.

    Args:
      images: float `[B, H, W, 3]` in [0, 1].
    Returns:
      float32 `[B, H, W, 3]`.
    """
    images = tf.cast(images, tf.float32)

    def per_image(name):
        return factors[name][:, None, None, None]

    out = images * per_image("brightness")
    mean = tf.reduce_mean(out, axis=[1, 2], keepdims=True)
    out = (out - mean) * per_image("contrast") + mean
    hsv = tf.image.rgb_to_hsv(out)
    hue, saturation, value = tf.unstack(hsv, axis=-1)
    saturation = tf.clip_by_value(saturation * per_image("saturation")[..., 0], 0.0, 1.0)
    hue = hue + per_image("hue")[..., 0]
    hue = hue - tf.floor(hue)  # wrap into [0, 1)
    out = tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))
    out = tf.clip_by_value(out, 0.0, 1.0)
    return tf.where(factors["apply"][:, None, None, None], out, images)


def strong_augment(images: tf.Tensor, seed, jitter_prob: float = JITTER_PROB,
                   jitter_strength: float = JITTER_STRENGTH, blur_prob: float = BLUR_PROB,
                   blur_sigma: Tuple[float, float] = BLUR_SIGMA) -> tf.Tensor:
    """Colour jitter then Gaussian blur, each with its own coin flip per image.

    Args:
      images: float `[B, H, W, 3]` in [0, 1], static H and W.
      seed: int32/int64 `[2]` stateless seed (e.g. derived from the step): the same seed and
        images give the same output, eagerly, in a graph and under XLA.
      jitter_prob, jitter_strength: probability and strength (brightness, contrast,
        saturation and hue) of the colour jitter; 0 turns it off.
      blur_prob, blur_sigma: probability of the blur and the range of its sigma.
    Returns:
      float32 `[B, H, W, 3]` in [0, 1].
    """
    for name, value in (("jitter_prob", jitter_prob), ("blur_prob", blur_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if jitter_strength < 0:
        raise ValueError(f"jitter_strength must be >= 0, got {jitter_strength}")
    if not 0.0 < blur_sigma[0] <= blur_sigma[1]:
        raise ValueError(f"blur_sigma must be 0 < low <= high, got {blur_sigma}")
    images = tf.cast(images, tf.float32)
    batch = tf.shape(images)[0]
    seeds = rng.split_seed(seed, 3)
    if jitter_prob > 0 and jitter_strength > 0:
        images = apply_color_jitter(
            images, jitter_factors(seeds[0], batch, jitter_strength, jitter_prob))
    if blur_prob > 0:
        apply = rng.uniform([batch], seeds[1]) < blur_prob
        sigma = rng.uniform([batch], seeds[2], blur_sigma[0], blur_sigma[1])
        blurred = gaussian_blur(images, sigma)
        images = tf.where(apply[:, None, None, None], blurred, images)
    return images
