"""MegaDepth -> TFRecords with depth and ordinal (foreground closer than background) pairs.

Layout read (see `tf_depthseg.synthetic.layouts`; the depth is `.npy` instead of the release's
`.h5`, which would need h5py):

    MegaDepth_v1/<scene>/dense*/imgs/<name>.jpg
    MegaDepth_v1/<scene>/dense*/depths/<name>.npy            float32 [H, W], 0 = invalid
    MegaDepth_v1/<scene>/dense*/ordinal/<name>_{fg,bg}.png   optional 0/255 masks
    splits/{split}_scenes.txt                                one scene id per line

Records: image (JPEG bytes kept as they are at the native size, else resized PNG; SUW-Learn
uses 320x240), depth when present (up to scale, like MegaDepth's SfM depth; nearest-neighbour
resize), and `weak/pairs`: pixel pairs drawn from the ordinal masks
(`weak_labels.ordinal_pairs_from_masks`: foreground pixel A closer than background pixel B),
deterministic per image. An image with neither depth nor ordinal masks is an error.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import List

import numpy as np

from tf_depthseg.converters import base
from tf_depthseg.data import image_io, schema
from tf_depthseg.labels import weak_labels

SPLITS = ("train", "val", "test")
DEFAULT_SIZE_HW = (240, 320)


@dataclasses.dataclass(frozen=True)
class Options:
    """Attributes: height, width (0 = native); num_pairs ordinal pairs per image; seed of
    the pair sampling."""
    height: int = DEFAULT_SIZE_HW[0]
    width: int = DEFAULT_SIZE_HW[1]
    num_pairs: int = 128
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Spec:
    source_id: str
    image_path: str
    dense_dir: str
    name: str


def list_samples(input_dir: str, split: str, options: Options = Options()) -> List[Spec]:
    list_file = os.path.join(input_dir, "splits", f"{split}_scenes.txt")
    base.require_file(list_file, "MegaDepth scene list")
    with open(list_file) as f:
        scenes = [line.strip() for line in f if line.strip()]
    specs = []
    for scene in scenes:
        scene_dir = os.path.join(input_dir, "MegaDepth_v1", scene)
        if not os.path.isdir(scene_dir):
            raise base.BadInputError(f"{scene_dir}: scene listed in {list_file} not found.")
        for image_path in sorted(glob.glob(os.path.join(scene_dir, "dense*", "imgs", "*"))):
            name = os.path.splitext(os.path.basename(image_path))[0]
            dense_dir = os.path.dirname(os.path.dirname(image_path))
            specs.append(Spec(f"megadepth/{scene}/{os.path.basename(dense_dir)}/{name}",
                              image_path, dense_dir, name))
    return specs


def _depth_file(spec: Spec) -> str:
    return os.path.join(spec.dense_dir, "depths", spec.name + ".npy")


def _mask_files(spec: Spec) -> List[str]:
    return [os.path.join(spec.dense_dir, "ordinal", f"{spec.name}_{side}.png")
            for side in ("fg", "bg")]


def input_files(spec: Spec, options: Options) -> List[str]:
    """Files `load_sample` reads, optional ones included (for the resume fingerprint)."""
    return [spec.image_path, _depth_file(spec)] + _mask_files(spec)


def load_sample(spec: Spec, options: Options) -> schema.Sample:
    with open(base.require_file(spec.image_path, "MegaDepth image"), "rb") as f:
        encoded = f.read()
    image = image_io.decode_image_bytes(encoded, spec.image_path)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise base.BadInputError(f"{spec.image_path}: expected an 8-bit RGB image.")
    native = image.shape[:2]
    size = base.target_size(native, options.height, options.width)
    sample = schema.Sample(image=base.resize_image(image, size), source_id=spec.source_id)
    if size == native and encoded[:3] == b"\xff\xd8\xff":
        sample.image_format, sample.encoded_image = "jpeg", encoded  # no re-encoding loss
    depth_file = _depth_file(spec)
    if os.path.isfile(depth_file):
        try:
            depth = np.load(depth_file, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise base.BadInputError(f"{depth_file}: unreadable depth array ({error}).") from error
        depth = base.check_depth(depth, depth_file)
        base.same_size_or_error(image, depth, depth_file, "the depth map")
        sample.depth = base.resize_nearest(depth, size)
    masks = _mask_files(spec)
    if all(os.path.isfile(m) for m in masks):
        foreground, background = (image_io.read_label_png(m) for m in masks)
        for mask, path in zip((foreground, background), masks):
            base.same_size_or_error(image, mask, path, "the ordinal mask")
        sample.weak_pairs = weak_labels.ordinal_pairs_from_masks(
            base.resize_nearest(foreground, size), base.resize_nearest(background, size),
            options.num_pairs, weak_labels.image_rng(options.seed, spec.source_id),
            name=masks[0])
    elif any(os.path.isfile(m) for m in masks):
        raise base.BadInputError(f"{masks[0]} / {masks[1]}: only one of the two ordinal masks "
                                 "exists; both are needed.")
    if sample.depth is None and sample.weak_pairs is None:
        raise base.BadInputError(f"{spec.image_path}: no depth ({depth_file}) and no ordinal "
                                 "masks; the image carries no supervision.")
    return sample
