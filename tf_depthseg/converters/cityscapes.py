"""Cityscapes -> TFRecords: annotated frames with neighbours and train ids, or raw sequences.

Layout read (see `tf_depthseg.synthetic.layouts` for formats and sources):

    leftImg8bit/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    leftImg8bit_sequence/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png
    camera/{split}/<city>/<city>_<seq>_<frame>_camera.json

Modes:

* "labelled" (default): one record per `gtFine/*_labelIds.png`: the frame, its neighbours
  (frame -/+ gap from `leftImg8bit_sequence`), label ids mapped to the 19 train ids (255 =
  ignore; ids outside the Cityscapes table are an error), K from the camera file. Cityscapes
  annotates the target frame only, so instance maps (`segmentation/instance/encoded` needs
  one per frame) are stored only when neighbours are off (`frame_gap=0`): object ids >= 1000
  kept, stuff pixels 0.
* "sequence": every `leftImg8bit_sequence` frame with both neighbours present (SDE training on
  video, Hoyer et al.), no labels; K from the sequence's camera file.

Images 2048x1024 are stored at 1024x512 by default (Hoyer et al.); K is rescaled
(`camera.json` gives fx, fy, u0, v0 in pixels of the native image).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import List

import numpy as np

from tf_depthseg.data import datasets, image_io, schema
from tf_depthseg.converters import base

SPLITS = ("train", "val")
DEFAULT_SIZE_HW = (512, 1024)
MODES = ("labelled", "sequence")
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_")


@dataclasses.dataclass(frozen=True)
class Options:
    """Attributes: height, width (0 = native); mode (MODES); frame_gap (0 = no neighbours);
    sequence_stride: in "sequence" mode use every n-th frame as a target."""
    height: int = DEFAULT_SIZE_HW[0]
    width: int = DEFAULT_SIZE_HW[1]
    mode: str = "labelled"
    frame_gap: int = 1
    sequence_stride: int = 1


@dataclasses.dataclass(frozen=True)
class Spec:
    source_id: str
    root: str
    split: str
    city: str
    seq: str
    frame: int
    labelled: bool


def _parse_name(path: str):
    match = _NAME.match(os.path.basename(path))
    if not match:
        raise base.BadInputError(f"{path}: not a Cityscapes file name "
                                 "(<city>_<seq:6 digits>_<frame:6 digits>_...).")
    return match["city"], match["seq"], int(match["frame"])


def list_samples(input_dir: str, split: str, options: Options = Options()) -> List[Spec]:
    if options.mode not in MODES:
        raise ValueError(f"mode {options.mode!r} not in {MODES}.")
    specs = []
    if options.mode == "labelled":
        pattern = os.path.join(input_dir, "gtFine", split, "*", "*_gtFine_labelIds.png")
        for path in sorted(glob.glob(pattern)):
            city, seq, frame = _parse_name(path)
            specs.append(Spec(f"cityscapes/{split}/{city}_{seq}_{frame:06d}", input_dir, split,
                              city, seq, frame, True))
        return specs
    gap = max(1, options.frame_gap)
    pattern = os.path.join(input_dir, "leftImg8bit_sequence", split, "*", "*_leftImg8bit.png")
    frames = {}
    for path in sorted(glob.glob(pattern)):
        city, seq, frame = _parse_name(path)
        frames.setdefault((city, seq), set()).add(frame)
    for (city, seq), numbers in sorted(frames.items()):
        usable = sorted(f for f in numbers if f - gap in numbers and f + gap in numbers)
        for frame in usable[::max(1, options.sequence_stride)]:
            specs.append(Spec(f"cityscapes_sequence/{split}/{city}_{seq}_{frame:06d}",
                              input_dir, split, city, seq, frame, False))
    return specs


def _path(spec: Spec, folder: str, frame: int, suffix: str) -> str:
    return os.path.join(spec.root, folder, spec.split, spec.city,
                        f"{spec.city}_{spec.seq}_{frame:06d}_{suffix}")


def camera_file(spec: Spec) -> str:
    """The frame's camera file, else the first one of its sequence (sequence frames have
    none of their own), else the frame's (missing) path."""
    path = _path(spec, "camera", spec.frame, "camera.json")
    if not os.path.isfile(path):
        candidates = sorted(glob.glob(os.path.join(
            spec.root, "camera", spec.split, spec.city,
            f"{spec.city}_{spec.seq}_*_camera.json")))
        if candidates:
            return candidates[0]
    return path


def _neighbour_frames(spec: Spec, options: Options) -> tuple:
    gap = options.frame_gap if spec.labelled else max(1, options.frame_gap)
    return (spec.frame - gap, spec.frame + gap) if gap else ()


def input_files(spec: Spec, options: Options) -> List[str]:
    """Files `load_sample` reads, optional ones included (for the resume fingerprint)."""
    folder = "leftImg8bit" if spec.labelled else "leftImg8bit_sequence"
    files = [_path(spec, folder, spec.frame, "leftImg8bit.png"), camera_file(spec)]
    files += [_path(spec, "leftImg8bit_sequence", frame, "leftImg8bit.png")
              for frame in _neighbour_frames(spec, options)]
    if spec.labelled:
        files += [_path(spec, "gtFine", spec.frame, "gtFine_labelIds.png"),
                  _path(spec, "gtFine", spec.frame, "gtFine_instanceIds.png")]
    return files


def read_camera(spec: Spec) -> np.ndarray:
    """K `[3, 3]` (native pixels) from the frame's camera file, or any of its sequence."""
    path = camera_file(spec)
    if not os.path.isfile(path):
        raise base.BadInputError(f"{path}: camera file not found (none for sequence "
                                 f"{spec.city}_{spec.seq} either); Cityscapes' camera/ "
                                 "folder is needed for intrinsics.")
    try:
        with open(path) as f:
            intrinsic = json.load(f)["intrinsic"]
        values = [float(intrinsic[k]) for k in ("fx", "fy", "u0", "v0")]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise base.BadInputError(f"{path}: not a Cityscapes camera file with intrinsic fx, fy, "
                                 f"u0, v0 ({error!r}).") from error
    if not all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise base.BadInputError(f"{path}: invalid intrinsics {values}.")
    return np.array([[values[0], 0, values[2]], [0, values[1], values[3]], [0, 0, 1]])


def load_sample(spec: Spec, options: Options) -> schema.Sample:
    folder = "leftImg8bit" if spec.labelled else "leftImg8bit_sequence"
    image_file = base.require_file(_path(spec, folder, spec.frame, "leftImg8bit.png"),
                                   "Cityscapes image")
    image = image_io.read_image(image_file)
    native = image.shape[:2]
    size = base.target_size(native, options.height, options.width)
    context = []
    for frame in _neighbour_frames(spec, options):
        path = _path(spec, "leftImg8bit_sequence", frame, "leftImg8bit.png")
        if not os.path.isfile(path):
            raise base.BadInputError(f"{path}: missing neighbour frame of {spec.source_id}; "
                                     "extract leftImg8bit_sequence, set --frame_gap=0, or use "
                                     "--skip_bad.")
        neighbour = image_io.read_image(path)
        base.same_size_or_error(image, neighbour, path, "this neighbour frame")
        context.append(base.resize_image(neighbour, size))
    sample = schema.Sample(image=base.resize_image(image, size), source_id=spec.source_id,
                           context=context,
                           intrinsics=base.scaled_intrinsics(read_camera(spec), native,
                                                             size).astype(np.float32))
    if spec.labelled:
        label_file = base.require_file(_path(spec, "gtFine", spec.frame, "gtFine_labelIds.png"),
                                       "Cityscapes label ids")
        label_ids = image_io.read_label_png(label_file)
        base.same_size_or_error(image, label_ids, label_file, "the label map")
        sample.semantic = base.resize_nearest(
            datasets.label_ids_to_train_ids(label_ids, label_file), size)
        if not context:
            instance_file = _path(spec, "gtFine", spec.frame, "gtFine_instanceIds.png")
            if os.path.isfile(instance_file):
                raw = image_io.read_image(instance_file).astype(np.int64)
                base.same_size_or_error(image, raw, instance_file, "the instance map")
                objects = np.where(raw >= datasets.INSTANCE_ID_DIVISOR, raw, 0)
                sample.instances = [base.resize_nearest(objects.astype(np.uint16), size)]
    return sample
