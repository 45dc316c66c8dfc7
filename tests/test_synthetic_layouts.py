"""Tests for tf_depthseg.synthetic.layouts and tools/make_synthetic.py with the real generator."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg import synthetic
from tf_depthseg.converters import base, kitti
from tf_depthseg.data import datasets, image_io, records, schema
from tf_depthseg.synthetic import layouts
from tf_depthseg import errors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = synthetic.SceneConfig(height=32, width=104, frames_per_drive=3, num_parked_cars=3,
                               num_moving_cars=1, num_pedestrians=2, num_cyclists=1)


@pytest.fixture(scope="module")
def drive():
    return synthetic.generate_drive(CONFIG, seed=5)


def test_drive_split_and_targets():
    assert [layouts.drive_split(i, 1) for i in range(1)] == ["train"]
    assert [layouts.drive_split(i, 2) for i in range(2)] == ["train", "val"]
    assert [layouts.drive_split(i, 4) for i in range(4)] == ["train", "train", "val", "test"]
    assert layouts.target_frames(7, 2) == [1, 3, 5]
    with pytest.raises(ValueError, match="unknown layout"):
        layouts.write_drive("nyu", "/nonexistent", None, 0, "train")


def test_kitti_files_calibration_and_lidar_projection(tmp_path, drive):
    lines = layouts.write_drive("kitti", str(tmp_path), drive, 0, "train")
    assert lines == [f"2011_09_26/2011_09_26_drive_0001_sync {1:010d} l"]
    date_dir = tmp_path / layouts.KITTI_DATE
    calib = kitti.read_calib_file(str(date_dir / "calib_cam_to_cam.txt"),
                                  {"P_rect_02": 12, "R_rect_00": 9, "S_rect_02": 2})
    projection = calib["P_rect_02"].reshape(3, 4)
    np.testing.assert_allclose(projection[:, :3], drive.intrinsics, rtol=1e-9)
    np.testing.assert_allclose(calib["S_rect_02"], [CONFIG.width, CONFIG.height])
    # The .bin holds float32 x, y, z, reflectance in the velodyne frame (x forward, z up).
    bin_file = date_dir / layouts.kitti_drive_name(0) / "velodyne_points" / "data" / (
        f"{1:010d}.bin")
    points = np.fromfile(bin_file, np.float32).reshape(-1, 4)
    assert points[:, 0].min() > 0 and np.all((points[:, 3] >= 0) & (points[:, 3] <= 1))
    # Projecting with the written calibration gives back the generator's depth on its pixels.
    velo = kitti.read_calib_file(str(date_dir / "calib_velo_to_cam.txt"), {"R": 9, "T": 3})
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3], velo_to_cam[:3, 3] = velo["R"].reshape(3, 3), velo["T"]
    depth = kitti.velodyne_depth(points, velo_to_cam, calib["R_rect_00"].reshape(3, 3),
                                 projection, (CONFIG.height, CONFIG.width),
                                 (CONFIG.height, CONFIG.width))
    truth = drive.frames[1].depth
    hit = depth > 0
    assert hit.sum() == len(points)  # one point per pixel of the scan rows
    np.testing.assert_allclose(depth[hit], truth[hit], rtol=1e-4)
    # Sparse depth-benchmark PNG: the scan rows, metres * 256.
    png = image_io.read_image(str(
        tmp_path / "data_depth_annotated" / "train" / layouts.kitti_drive_name(0) /
        "proj_depth" / "groundtruth" / "image_02" / f"{1:010d}.png"))
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png > 0, hit)
    np.testing.assert_allclose(png[hit] / 256.0, truth[hit], atol=0.5 / 256 + 1e-6)


def test_cityscapes_label_ids_instances_camera(tmp_path, drive):
    layouts.write_drive("cityscapes", str(tmp_path), drive, 2, "val")
    stem = tmp_path / "gtFine" / "val" / "synth002" / "synth002_000002_000001_gtFine_"
    label_ids = image_io.read_label_png(str(stem) + "labelIds.png")
    np.testing.assert_array_equal(label_ids, drive.frames[1].label_ids)
    np.testing.assert_array_equal(datasets.label_ids_to_train_ids(label_ids),
                                  drive.frames[1].train_ids)
    instance_ids = image_io.read_image(str(stem) + "instanceIds.png")
    assert instance_ids.dtype == np.uint16
    objects = drive.frames[1].instance_ids > 0
    np.testing.assert_array_equal(instance_ids[objects], drive.frames[1].instance_ids[objects])
    np.testing.assert_array_equal(instance_ids[~objects], label_ids[~objects])
    camera = json.loads((tmp_path / "camera" / "val" / "synth002" /
                         "synth002_000002_000001_camera.json").read_text())
    assert set(camera["extrinsic"]) == {"baseline", "pitch", "roll", "x", "y", "yaw", "z"}
    assert camera["intrinsic"]["u0"] == pytest.approx(drive.intrinsics[0, 2])
    sequence = sorted(os.listdir(tmp_path / "leftImg8bit_sequence" / "val" / "synth002"))
    assert len(sequence) == 3 and sequence[0] == "synth002_000002_000000_leftImg8bit.png"


def test_mannequin_text_format(tmp_path, drive):
    layouts.write_drive("mannequin", str(tmp_path), drive, 0, "val")
    seq = layouts.mannequin_sequence_id(0)
    lines = (tmp_path / "validation" / f"{seq}.txt").read_text().splitlines()
    assert lines[0].startswith("https://www.youtube.com/watch?v=") and len(lines) == 4
    fields = lines[2].split()
    assert len(fields) == 19 and fields[5:7] == ["0", "0"]
    values = np.array(fields[1:], np.float64)
    np.testing.assert_allclose(values[:4], [drive.intrinsics[0, 0] / CONFIG.width,
                                            drive.intrinsics[1, 1] / CONFIG.height,
                                            drive.intrinsics[0, 2] / CONFIG.width,
                                            drive.intrinsics[1, 2] / CONFIG.height])
    camera_from_world = np.vstack([values[6:].reshape(3, 4), [0, 0, 0, 1]])
    np.testing.assert_allclose(camera_from_world @ drive.frames[1].world_from_camera,
                               np.eye(4), atol=1e-8)
    config = layouts.mannequin_scene_config(CONFIG)
    assert config.num_moving_cars == 0 and config.moving_pedestrian_fraction == 0


def _run(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_DEPTHSEG_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_make_synthetic_then_convert_tools_end_to_end(tmp_path):
    root, out = tmp_path / "kitti", tmp_path / "tfr"
    made = _run("tools.make_synthetic", "--layout=kitti", f"--output_dir={root}",
                "--num_drives=2", "--frames_per_drive=4", "--height=32", "--width=104",
                "--num_workers=2", "--num_moving_cars=1", "--num_pedestrians=1")
    assert made.returncode == 0, made.stderr[-2000:]
    assert (root / "splits" / "eigen_val_files.txt").read_text().count("\n") == 2
    # A missing input fails with the file named; --skip_bad quarantines it instead.
    missing = (root / layouts.KITTI_DATE / layouts.kitti_drive_name(0) / "image_02" / "data" /
               f"{3:010d}.png")
    missing.unlink()
    options = kitti.Options()
    with pytest.raises(errors.BadInputError, match=f"{3:010d}.png: missing neighbour frame"):
        base.convert_split(kitti.load_sample, kitti.list_samples(str(root), "train", options),
                           options, str(out), "train", num_shards=2)
    converted = _run("tools.convert_kitti", f"--input_dir={root}", f"--output_dir={out}",
                     "--splits=train,val", "--num_shards=2", "--num_workers=2", "--skip_bad")
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert "train: 1 examples" in converted.stdout and "1 quarantined" in converted.stdout
    manifest = records.read_manifest(str(out))
    assert manifest["splits"]["train"]["skipped"][0]["source_id"].endswith(f"{2:010d}")
    assert records.verify_split(str(out), "val") == 2
    # The tf.data parser reads the records with every feature the converter wrote.
    serialized = next(records.iterate_records(records.split_pattern(str(out), "val")))
    parsed = schema.parse_example(serialized, [common.CONTEXT, common.INTRINSICS,
                                               common.DEPTH])
    assert parsed[common.CONTEXT].shape == (2, 32, 104, 3)
    assert parsed[common.DEPTH].shape == (32, 104, 1)
    sample = schema.decode_example(serialized)
    np.testing.assert_allclose(sample.intrinsics, parsed[common.INTRINSICS].numpy())
    np.testing.assert_array_equal(base.resize_nearest(sample.depth, (32, 104)),
                                  parsed[common.DEPTH].numpy()[..., 0])
