"""Mannequin Challenge -> TFRecords with neighbours, K, camera poses and (MVS) depth.

Layout read (see `tf_depthseg.synthetic.layouts`):

    {split}/<sequence id>.txt     line 1 the YouTube URL, then per frame "timestamp_us fx fy cx
                                  cy 0 0 <camera_from_world 3x4 row-major>", intrinsics
                                  normalised by image width (fx, cx) and height (fy, cy)
    frames/{split}/<sequence id>/<timestamp_us>.png   frames extracted from the video
    depth/{split}/<sequence id>/<timestamp_us>.png    optional uint16 depth, metres * 256

Each frame with a previous and next line in its sequence file (frame -/+ gap) becomes a
record: the three frames resized to 320x240 (SUW-Learn's M&M size), K = normalised
intrinsics times the native frame size (pixel units; no half-pixel shift, the usual reading of
this format), rescaled to the stored size, `camera/poses` = world_from_camera (the inverse of
the file's camera_from_world) of target, t-gap, t+gap, and the depth when a depth file exists.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import List, Tuple

import numpy as np

from tf_depthseg import common
from tf_depthseg.data import image_io, schema
from tf_depthseg.converters import base

SPLITS = ("train", "validation", "test")
DEFAULT_SIZE_HW = (240, 320)
_FIELDS = 19  # timestamp, 4 intrinsics, 2 distortion, 12 pose values
_FIELD_NAMES = (("timestamp", "fx", "fy", "cx", "cy", "distortion k1", "distortion k2")
                + tuple(f"camera_from_world[{r}][{c}]" for r in range(3) for c in range(4)))


@dataclasses.dataclass(frozen=True)
class Options:
    """Attributes: height, width (0 = native); frame_gap between target and neighbours;
    stride: use every n-th usable frame; require_depth: missing depth files are an error
    instead of a record without depth."""
    height: int = DEFAULT_SIZE_HW[0]
    width: int = DEFAULT_SIZE_HW[1]
    frame_gap: int = 1
    stride: int = 1
    require_depth: bool = False


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    timestamp: int
    normalized_intrinsics: Tuple[float, float, float, float]
    camera_from_world: Tuple[float, ...]  # 12 values, 3x4 row-major


@dataclasses.dataclass(frozen=True)
class Spec:
    source_id: str
    root: str
    split: str
    sequence: str
    frames: Tuple[FrameInfo, FrameInfo, FrameInfo]  # target, previous, next


def read_sequence_file(path: str) -> List[FrameInfo]:
    """Parses a Mannequin Challenge / RealEstate10K camera file (see module doc)."""
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if not lines or not lines[0].startswith("http"):
        raise base.BadInputError(f"{path}: the first line must be the video URL; not a "
                                 "Mannequin Challenge camera file.")
    frames = []
    for number, line in enumerate(lines[1:], 2):
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != _FIELDS:
            raise base.BadInputError(
                f"{where}: expected {_FIELDS} numbers 'timestamp fx fy cx cy 0 0 <3x4 "
                f"camera_from_world>', got {len(fields)} fields: {_shorten(line)!r}.")
        if not fields[0].isdigit():
            raise base.BadInputError(f"{where}: the timestamp {fields[0]!r} is not a "
                                     "non-negative integer (microseconds).")
        values = []
        for index, text in enumerate(fields[1:], 1):
            try:
                value = float(text)
            except ValueError:
                value = None
            if value is None or not np.isfinite(value):
                # Name the field and its value: a NaN pose is the common failure of camera
                # trackers, and a cut-off copy of the line would hide it.
                raise base.BadInputError(
                    f"{where}: field {index + 1} ({_FIELD_NAMES[index]}) is {text!r}, not a "
                    "finite number; the camera line must be fixed or dropped (the frames "
                    "around it then lose this neighbour).")
            values.append(value)
        frames.append(FrameInfo(int(fields[0]), tuple(values[:4]), tuple(values[6:18])))
    return frames


def _shorten(line: str, limit: int = 120) -> str:
    line = line.strip()
    return line if len(line) <= limit else line[:limit] + "..."


def list_samples(input_dir: str, split: str, options: Options = Options()) -> List[Spec]:
    files = sorted(glob.glob(os.path.join(input_dir, split, "*.txt")))
    gap = max(1, options.frame_gap)
    specs = []
    for path in files:
        sequence = os.path.splitext(os.path.basename(path))[0]
        frames = sorted(read_sequence_file(path), key=lambda f: f.timestamp)
        for i in range(gap, len(frames) - gap, max(1, options.stride)):
            specs.append(Spec(f"mannequin/{split}/{sequence}/{frames[i].timestamp}", input_dir,
                              split, sequence, (frames[i], frames[i - gap], frames[i + gap])))
    return specs


def _frame_path(spec: Spec, folder: str, frame: FrameInfo) -> str:
    return os.path.join(spec.root, folder, spec.split, spec.sequence, f"{frame.timestamp}.png")


def world_from_camera(frame: FrameInfo) -> np.ndarray:
    camera_from_world = np.eye(4)
    camera_from_world[:3] = np.reshape(frame.camera_from_world, (3, 4))
    return np.linalg.inv(camera_from_world)


def input_files(spec: Spec, options: Options) -> List[str]:
    """Files a sample depends on: its camera file (poses and intrinsics come from it), the
    three frames and the optional depth (for the resume fingerprint)."""
    return ([os.path.join(spec.root, spec.split, spec.sequence + ".txt")]
            + [_frame_path(spec, "frames", frame) for frame in spec.frames]
            + [_frame_path(spec, "depth", spec.frames[0])])


def load_sample(spec: Spec, options: Options) -> schema.Sample:
    target = spec.frames[0]
    images = []
    for i, frame in enumerate(spec.frames):
        path = _frame_path(spec, "frames", frame)
        if not os.path.isfile(path):
            what = "frame" if i == 0 else "neighbour frame"
            raise base.BadInputError(f"{path}: missing {what} of {spec.source_id}; extract it "
                                     "from the video or use --skip_bad.")
        images.append(image_io.read_image(path))
        base.same_size_or_error(images[0], images[-1], path, "this frame")
    native = images[0].shape[:2]
    size = base.target_size(native, options.height, options.width)
    fx, fy, cx, cy = target.normalized_intrinsics
    native_k = np.array([[fx * native[1], 0, cx * native[1]], [0, fy * native[0], cy * native[0]],
                         [0, 0, 1]])
    sample = schema.Sample(
        image=base.resize_image(images[0], size), source_id=spec.source_id,
        context=[base.resize_image(image, size) for image in images[1:]],
        intrinsics=base.scaled_intrinsics(native_k, native, size).astype(np.float32),
        poses=np.stack([world_from_camera(f) for f in spec.frames]).astype(np.float32))
    depth_file = _frame_path(spec, "depth", target)
    if os.path.isfile(depth_file):
        depth = base.check_depth(base.read_png16_depth(depth_file, common.DEPTH_PNG_SCALE),
                                 depth_file)
        base.same_size_or_error(images[0], depth, depth_file, "the depth map")
        sample.depth = base.resize_nearest(depth, size)
    elif options.require_depth:
        base.require_file(depth_file, "depth map")
    return sample
