"""KITTI raw (+ depth benchmark ground truth) -> TFRecords with neighbours, K and depth.

Layout read (see `tf_depthseg.synthetic.layouts` for the file formats and their sources):

    <root>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <root>/<date>/<drive>/image_0{2,3}/data/<frame:010d>.png
    <root>/<date>/<drive>/velodyne_points/data/<frame:010d>.bin
    <root>/data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_0{2,3}/<frame>.png
    split files: lines "<date>/<drive> <frame> <l|r>" (the Eigen split format; the frame may
    be zero-padded or not), by default `<root>/splits/eigen_{split}_files.txt`.

Each split-file line becomes one record: the target frame, its neighbours (frame - gap,
frame + gap) of the same camera, K = the left 3x3 of `P_rect_0{2,3}` rescaled to the stored
size, and depth from one of

* "annotated": the depth benchmark's uint16 PNG (metres * 256, sparse), moved to the stored
  size by `base.resize_sparse_depth`;
* "velodyne": the Eigen raw protocol: LiDAR points with x >= 0 projected with
  `P_rect @ R_rect_00 @ [R|T]_velo_to_cam`, depth = the third homogeneous coordinate (z in the
  rectified camera frame), the closest point kept per pixel. The reference implementations
  round pixel coordinates and then subtract 1 (a MATLAB 1-based leftover that shifts the map
  by a pixel); we round to the nearest pixel centre of our half-pixel convention instead, so
  the map registers with the image. Monodepth2 stores the LiDAR x as depth; z differs from it
  by the small velodyne-camera rotation only.
* "none".

KITTI raw has no semantic or instance labels. SUW-Learn ran PSPNet (semantics, for the weak
labels) and Mask R-CNN (instances, for object motion) over the raw frames; pass such outputs
with `semantic_dir` / `instance_dir`, saved in a tree that mirrors the images:

    <semantic_dir>/<date>/<drive>/image_0{2,3}/data/<frame:010d>.png   uint8 Cityscapes train ids
    <instance_dir>/<date>/<drive>/image_0{2,3}/data/<frame:010d>.png   uint16 Cityscapes
        instanceIds (label_id * 1000 + k on objects, anything < 1000 elsewhere)

Semantics are stored for the target frame, instances for the target and its neighbours (what
`align_object_masks` needs). oxts poses are not read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from tf_depthseg import common
from tf_depthseg.data import datasets, image_io, schema
from tf_depthseg.converters import base

SPLITS = ("train", "val", "test")
DEPTH_SOURCES = ("annotated", "velodyne", "none")


@dataclasses.dataclass(frozen=True)
class Options:
    """Attributes:
      height, width: stored size, 0 = native (KITTI's default keeps the native size).
      depth_source: one of DEPTH_SOURCES.
      frame_gap: neighbours are frame -/+ frame_gap; 0 stores no neighbours.
      split_dir: folder with `eigen_{split}_files.txt` (default `<root>/splits`).
      split_file: explicit split file (overrides split_dir; for one split at a time).
      semantic_dir: root of segmenter outputs in train ids mirroring the image tree (or None).
      instance_dir: root of instance-segmenter outputs (instanceIds) mirroring it (or None).
    """
    height: int = 0
    width: int = 0
    depth_source: str = "annotated"
    frame_gap: int = 1
    split_dir: Optional[str] = None
    split_file: Optional[str] = None
    semantic_dir: Optional[str] = None
    instance_dir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Spec:
    source_id: str
    root: str
    date: str
    drive: str
    frame: int
    camera: int  # 2 = left colour camera, 3 = right


def split_file_path(input_dir: str, split: str, options: Options) -> str:
    if options.split_file:
        return options.split_file
    return os.path.join(options.split_dir or os.path.join(input_dir, "splits"),
                        f"eigen_{split}_files.txt")


def parse_split_line(line: str, where: str) -> Tuple[str, str, int, int]:
    """`"<date>/<drive> <frame> <l|r>"` -> (date, drive, frame, camera)."""
    fields = line.split()
    if (len(fields) != 3 or fields[2] not in ("l", "r") or not fields[1].isdigit()
            or fields[0].count("/") != 1):
        raise base.BadInputError(f"{where}: expected '<date>/<date>_drive_<nnnn>_sync <frame "
                                 f"index> <l|r>', got {line.strip()!r}.")
    date, drive = fields[0].split("/")
    return date, drive, int(fields[1]), 2 if fields[2] == "l" else 3


def list_samples(input_dir: str, split: str, options: Options = Options()) -> List[Spec]:
    """One Spec per line of the split file (files are checked when loaded)."""
    if options.depth_source not in DEPTH_SOURCES:
        raise ValueError(f"depth_source {options.depth_source!r} not in {DEPTH_SOURCES}.")
    path = split_file_path(input_dir, split, options)
    if not os.path.isfile(path):
        raise base.BadInputError(f"{path}: split file not found; pass --split_dir or "
                                 "--split_file (format of eigen_test_files.txt).")
    specs = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                date, drive, frame, camera = parse_split_line(line, f"{path}:{number}")
                specs.append(Spec(f"{drive}/image_0{camera}/{frame:010d}", input_dir, date,
                                  drive, frame, camera))
    return specs


def image_path(spec: Spec, frame: int, root: Optional[str] = None) -> str:
    """Path of a frame's image, or of a file mirroring it under another `root`."""
    return os.path.join(root or spec.root, spec.date, spec.drive, f"image_0{spec.camera}",
                        "data", f"{frame:010d}.png")


def _read_semantic(spec: Spec, options: Options, image: np.ndarray, size) -> np.ndarray:
    path = base.require_file(image_path(spec, spec.frame, options.semantic_dir),
                             "semantic segmentation (train ids) of this frame")
    semantic = datasets.check_train_ids(image_io.read_label_png(path), path)
    base.same_size_or_error(image, semantic, path, "the semantic mask")
    return base.resize_nearest(semantic, size)


def _read_instances(spec: Spec, frames, options: Options, image: np.ndarray, size) -> list:
    maps = []
    for frame in frames:
        path = base.require_file(image_path(spec, frame, options.instance_dir),
                                 "instance segmentation (instanceIds) of this frame")
        ids = image_io.read_image(path)
        if ids.ndim != 2:
            raise base.BadInputError(f"{path}: instance masks must be single-channel uint16 "
                                     f"instanceIds, got shape {ids.shape}.")
        base.same_size_or_error(image, ids, path, "the instance mask")
        # Stuff pixels (< 1000) carry no instance: store 0 there.
        ids = np.where(ids >= datasets.INSTANCE_ID_DIVISOR, ids, 0).astype(np.uint16)
        maps.append(base.resize_nearest(ids, size))
    return maps


def read_calib_file(path: str, required: Dict[str, int]) -> Dict[str, np.ndarray]:
    """Parses a KITTI "key: numbers" calibration file.

    Args:
      path: the file.
      required: key -> number of values it must have.
    Returns:
      key -> float64 array of every numeric entry.
    Raises:
      BadInputError naming the file when it is missing or lacks a required key/value count.
    """
    base.require_file(path, "KITTI calibration file")
    values = {}
    with open(path) as f:
        for line in f:
            key, sep, rest = line.partition(":")
            if not sep:
                continue
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()], np.float64)
            except ValueError:
                continue  # calib_time and other non-numeric entries
    for key, count in required.items():
        if key not in values or values[key].size != count:
            found = "missing" if key not in values else f"{values[key].size} values"
            raise base.BadInputError(
                f"{path}: '{key}' must have {count} values ({found}); this is not the expected "
                f"KITTI calibration file ({os.path.basename(path)} of the raw data devkit).")
    return values


def _camera_calib(spec: Spec) -> Dict[str, np.ndarray]:
    key = f"P_rect_0{spec.camera}"
    calib = read_calib_file(os.path.join(spec.root, spec.date, "calib_cam_to_cam.txt"),
                            {key: 12, "R_rect_00": 9})
    projection = calib[key].reshape(3, 4)
    if projection[0, 0] <= 0 or projection[1, 1] <= 0 or projection[2, 2] != 1:
        raise base.BadInputError(f"{spec.root}/{spec.date}/calib_cam_to_cam.txt: {key} is not "
                                 f"a rectified projection matrix: {projection.tolist()}.")
    return {"P_rect": projection, "R_rect_00": calib["R_rect_00"].reshape(3, 3)}


def _annotated_depth_candidates(spec: Spec) -> List[str]:
    return [os.path.join(spec.root, "data_depth_annotated", folder, spec.drive, "proj_depth",
                         "groundtruth", f"image_0{spec.camera}", f"{spec.frame:010d}.png")
            for folder in ("train", "val")]


def annotated_depth_path(spec: Spec) -> str:
    """The depth benchmark's ground-truth PNG for `spec` (train or val folder)."""
    for path in _annotated_depth_candidates(spec):
        if os.path.isfile(path):
            return path
    return os.path.join(spec.root, "data_depth_annotated", "{train,val}", spec.drive,
                        "proj_depth", "groundtruth", f"image_0{spec.camera}",
                        f"{spec.frame:010d}.png")


def _velodyne_path(spec: Spec) -> str:
    return os.path.join(spec.root, spec.date, spec.drive, "velodyne_points", "data",
                        f"{spec.frame:010d}.bin")


def _context_frames(spec: Spec, options: Options) -> List[int]:
    return ([spec.frame - options.frame_gap, spec.frame + options.frame_gap]
            if options.frame_gap else [])


def input_files(spec: Spec, options: Options) -> List[str]:
    """Files `load_sample` reads, optional ones included (for the resume fingerprint)."""
    frames = [spec.frame] + [f for f in _context_frames(spec, options) if f >= 0]
    files = [image_path(spec, frame) for frame in frames]
    files.append(os.path.join(spec.root, spec.date, "calib_cam_to_cam.txt"))
    if options.depth_source == "annotated":
        files += _annotated_depth_candidates(spec)
    elif options.depth_source == "velodyne":
        files += [_velodyne_path(spec), os.path.join(spec.root, spec.date,
                                                     "calib_velo_to_cam.txt")]
    if options.semantic_dir:
        files.append(image_path(spec, spec.frame, options.semantic_dir))
    if options.instance_dir:
        files += [image_path(spec, frame, options.instance_dir) for frame in frames]
    return files


def read_velodyne(path: str) -> np.ndarray:
    """float32 `[N, 4]` (x, y, z, reflectance) of a KITTI `.bin` file."""
    base.require_file(path, "velodyne point cloud")
    data = np.fromfile(path, dtype=np.float32)
    if data.size % 4:
        raise base.BadInputError(f"{path}: {os.path.getsize(path)} bytes is not a whole number "
                                 "of float32 (x, y, z, reflectance) points; truncated file?")
    points = data.reshape(-1, 4)
    if not np.all(np.isfinite(points[:, :3])):
        raise base.BadInputError(f"{path}: point cloud contains NaN or infinite coordinates.")
    return points


def velodyne_depth(points: np.ndarray, velo_to_cam: np.ndarray, rect: np.ndarray,
                   projection: np.ndarray, native_hw: Tuple[int, int],
                   size_hw: Tuple[int, int]) -> np.ndarray:
    """Eigen raw-protocol depth map (see module doc) at `size_hw`.

    Args:
      points: `[N, 4]` velodyne points.
      velo_to_cam: `[4, 4]` velodyne -> unrectified camera 0.
      rect: `[3, 3]` R_rect_00.
      projection: `[3, 4]` P_rect_0c for the native image size.
      native_hw: native (height, width); size_hw: stored (height, width).
    Returns:
      float32 `[height, width]` metres, 0 = no point.
    """
    forward = points[points[:, 0] >= 0, :3].astype(np.float64)
    rect4 = np.eye(4)
    rect4[:3, :3] = rect
    projected = projection @ rect4 @ velo_to_cam @ np.concatenate(
        [forward.T, np.ones((1, forward.shape[0]))], axis=0)  # [3, N]
    depth = projected[2]
    in_front = depth > 0
    depth, projected = depth[in_front], projected[:, in_front]
    u, v = projected[0] / depth, projected[1] / depth
    # Native pixel coordinates -> stored ones (half-pixel convention), then nearest centre.
    sx, sy = size_hw[1] / native_hw[1], size_hw[0] / native_hw[0]
    cols = np.round(sx * (u + 0.5) - 0.5).astype(np.int64)
    rows = np.round(sy * (v + 0.5) - 0.5).astype(np.int64)
    inside = (cols >= 0) & (rows >= 0) & (cols < size_hw[1]) & (rows < size_hw[0])
    return base.scatter_min_depth(rows[inside], cols[inside], depth[inside], size_hw)


def _velodyne_to_cam(spec: Spec) -> np.ndarray:
    calib = read_calib_file(os.path.join(spec.root, spec.date, "calib_velo_to_cam.txt"),
                            {"R": 9, "T": 3})
    transform = np.eye(4)
    transform[:3, :3] = calib["R"].reshape(3, 3)
    transform[:3, 3] = calib["T"]
    return transform


def load_sample(spec: Spec, options: Options) -> schema.Sample:
    """Reads one KITTI target frame with neighbours, calibration and depth."""
    image = image_io.read_image(base.require_file(image_path(spec, spec.frame), "KITTI image"))
    native = image.shape[:2]
    size = base.target_size(native, options.height, options.width)
    context = []
    if options.frame_gap:
        for frame in _context_frames(spec, options):
            if frame < 0:
                raise base.BadInputError(
                    f"{image_path(spec, spec.frame)}: frame {spec.frame} of {spec.drive} has "
                    f"no previous frame (targets need frames -/+{options.frame_gap}); drop the "
                    "line from the split file or use --skip_bad.")
            path = image_path(spec, frame)
            if not os.path.isfile(path):
                raise base.BadInputError(
                    f"{path}: missing neighbour frame of {spec.source_id}; targets need frames "
                    f"-/+{options.frame_gap} (drop the line from the split file or use "
                    "--skip_bad).")
            neighbour = image_io.read_image(path)
            base.same_size_or_error(image, neighbour, path, "this neighbour frame")
            context.append(base.resize_image(neighbour, size))
    calib = _camera_calib(spec)
    intrinsics = base.scaled_intrinsics(calib["P_rect"][:, :3], native, size)
    depth = None
    if options.depth_source == "annotated":
        path = base.require_file(annotated_depth_path(spec), "depth benchmark ground truth")
        raw = base.check_depth(base.read_png16_depth(path, common.DEPTH_PNG_SCALE), path)
        base.same_size_or_error(image, raw, path, "the depth map")
        depth = base.resize_sparse_depth(raw, size)
    elif options.depth_source == "velodyne":
        path = _velodyne_path(spec)
        depth = velodyne_depth(read_velodyne(path), _velodyne_to_cam(spec), calib["R_rect_00"],
                               calib["P_rect"], native, size)
    semantic = _read_semantic(spec, options, image, size) if options.semantic_dir else None
    instances = None
    if options.instance_dir:
        frames = [spec.frame] + _context_frames(spec, options)
        instances = _read_instances(spec, frames, options, image, size)
    return schema.Sample(image=base.resize_image(image, size), source_id=spec.source_id,
                         context=context, intrinsics=intrinsics.astype(np.float32), depth=depth,
                         semantic=semantic, instances=instances)
