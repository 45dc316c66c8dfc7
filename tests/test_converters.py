"""Tests for the dataset converters (tf_depthseg.converters and tools/convert_*.py)."""

import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg.converters import base, camvid, cityscapes, kitti, mannequin, megadepth
from tf_depthseg.data import datasets, image_io, records, schema
from tf_depthseg.synthetic import layouts
from tf_depthseg.geometry import intrinsics as intrinsics_lib
from tf_depthseg import errors

from shared_data import CAMVID_SAMPLE, KITTI_EIGEN_SPLIT

needs_camvid_sample = pytest.mark.skipif(
    not os.path.isdir(CAMVID_SAMPLE),
    reason=f"real CamVid sample not found at {CAMVID_SAMPLE} (shared datasets folder absent)")


def _decoded(out_dir, split):
    return {s.source_id: s for s in map(schema.decode_example, records.iterate_records(
        records.split_pattern(str(out_dir), split)))}


# ---------------------------------------------------------------------------------------------
# CamVid: the real sample.
# ---------------------------------------------------------------------------------------------
@needs_camvid_sample
def test_camvid_real_sample_native_size_labels_exact(tmp_path):
    options = camvid.Options(height=0, width=0)
    specs = camvid.list_samples(CAMVID_SAMPLE, "val", options)
    assert len(specs) == 4
    result = base.convert_split(camvid.load_sample, specs, options, str(tmp_path), "val",
                                num_shards=2)
    assert result.num_examples == 4 and not result.skipped
    decoded = _decoded(tmp_path, "val")
    for spec in specs:
        sample = decoded[spec.source_id]
        np.testing.assert_array_equal(sample.image, image_io.read_image(spec.image_path))
        annot = image_io.read_label_png(spec.label_path)
        assert sample.image.shape == (360, 480, 3)
        np.testing.assert_array_equal(sample.semantic, np.where(annot == 11, 255, annot))
        assert sample.intrinsics is None and not sample.context
    assert records.verify_split(str(tmp_path), "val") == 4


@needs_camvid_sample
def test_camvid_tool_resizes_to_672x512_with_workers(tmp_path):
    options = camvid.Options()  # 672x512, Hoyer et al.
    specs = camvid.list_samples(CAMVID_SAMPLE, "train", options)
    assert [s.source_id for s in specs][0] == "camvid/train/0001TP_006690"
    result = base.convert_split(camvid.load_sample, specs, options, str(tmp_path), "train",
                                num_shards=3, num_workers=2)
    assert result.num_examples == 8
    decoded = _decoded(tmp_path, "train")
    sample = decoded["camvid/train/0016E5_00750"]
    assert sample.image.shape == (512, 672, 3) and sample.semantic.shape == (512, 672)
    values = set(np.unique(sample.semantic).tolist())
    assert values <= set(range(11)) | {255} and len(values) > 4
    # The parsing pipeline reads what the converter wrote.
    parsed = schema.parse_example(next(records.iterate_records(
        records.split_pattern(str(tmp_path), "train"))), [common.SEMANTIC])
    assert parsed[common.SEMANTIC].shape == (512, 672, 1)


def _copy_camvid(tmp_path, split="train", count=3):
    """A small copy of the real sample (bad-input tests modify files)."""
    root = tmp_path / "CamVid"
    for folder in (split, split + "annot"):
        (root / folder).mkdir(parents=True)
    lines = open(os.path.join(CAMVID_SAMPLE, f"{split}.txt")).read().splitlines()[:count]
    for line in lines:
        for path in line.split():
            rel = os.path.join(*path.split("/")[-2:])
            shutil.copy(os.path.join(CAMVID_SAMPLE, rel), root / rel)
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root, lines


@needs_camvid_sample
def test_camvid_bad_inputs_and_skip_bad(tmp_path):
    root, lines = _copy_camvid(tmp_path)
    options = camvid.Options(height=36, width=48)
    names = [line.split()[0].split("/")[-1] for line in lines]
    # Truncated image.
    image_file = root / "train" / names[0]
    image_file.write_bytes(image_file.read_bytes()[:500])
    # Label id outside the table.
    label_file = root / "trainannot" / names[1]
    labels = image_io.read_label_png(str(label_file)).copy()
    labels[0, 0] = 40
    image_io.write_png(str(label_file), labels)
    specs = camvid.list_samples(str(root), "train", options)
    with pytest.raises(errors.BadInputError, match=names[0]):
        base.convert_split(camvid.load_sample, specs, options, str(tmp_path / "a"), "train")
    with pytest.raises(errors.BadInputError, match=r"label values \[40\]"):
        camvid.load_sample(specs[1], options)
    result = base.convert_split(camvid.load_sample, specs, options, str(tmp_path / "b"),
                                "train", num_shards=2, skip_bad=True)
    assert result.num_examples == 1 and len(result.skipped) == 2
    manifest = records.read_manifest(str(tmp_path / "b"))
    assert sorted(s["source_id"] for s in manifest["splits"]["train"]["skipped"]) == sorted(
        f"camvid/train/{n[:-4]}" for n in names[:2])
    # Empty split and missing split file.
    (root / "val.txt").write_text("")
    with pytest.raises(errors.BadInputError, match="no samples"):
        base.convert_split(camvid.load_sample, camvid.list_samples(str(root), "val", options),
                           options, str(tmp_path / "c"), "val")
    with pytest.raises(errors.BadInputError, match="test.txt"):
        camvid.list_samples(str(root), "test", options)


# ---------------------------------------------------------------------------------------------
# Framework: resume after a kill.
# ---------------------------------------------------------------------------------------------
class _Killed(Exception):
    pass


_FAIL_ON = set()


class _Spec:
    def __init__(self, i):
        self.source_id = f"s{i}"
        self.i = i


def _load_counter(spec, options):
    if spec.source_id in _FAIL_ON:
        raise _Killed(spec.source_id)
    options.append(spec.source_id)
    return schema.Sample(image=np.full((2, 3, 3), spec.i, np.uint8), source_id=spec.source_id)


def test_resume_after_kill_rewrites_only_unfinished_shards(tmp_path):
    specs = [_Spec(i) for i in range(6)]
    loaded = []
    _FAIL_ON.add("s5")  # shard 1 of 2 holds s1, s3, s5: it dies, shard 0 is done
    try:
        with pytest.raises(_Killed):
            base.convert_split(_load_counter, specs, loaded, str(tmp_path), "train",
                               num_shards=2)
    finally:
        _FAIL_ON.clear()
    files = sorted(f for f in os.listdir(tmp_path) if not f.startswith("manifest"))
    assert files == ["train-00000-of-00002.tfrecord"]
    loaded.clear()
    result = base.convert_split(_load_counter, specs, loaded, str(tmp_path), "train",
                                num_shards=2)
    assert sorted(loaded) == ["s1", "s3", "s5"] and result.num_shards_reused == 1
    assert sorted(_decoded(tmp_path, "train")) == [f"s{i}" for i in range(6)]
    # Changed inputs of a finished shard: that shard is rebuilt.
    loaded.clear()
    base.convert_split(_load_counter, specs[:5], loaded, str(tmp_path), "train", num_shards=2)
    assert sorted(loaded) == ["s1", "s3"]
    assert sorted(_decoded(tmp_path, "train")) == [f"s{i}" for i in range(5)]


def test_resize_helpers():
    labels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.testing.assert_array_equal(base.resize_nearest(labels, (6, 8))[::2, ::2], labels)
    depth = np.zeros((4, 8), np.float32)
    depth[1, 2], depth[1, 3], depth[3, 7] = 5.0, 4.0, 9.0
    small = base.resize_sparse_depth(depth, (2, 4))
    expected = np.zeros((2, 4), np.float32)
    expected[0, 1], expected[1, 3] = 4.0, 9.0  # both points of pixel (0, 1): closest wins
    np.testing.assert_array_equal(small, expected)


# ---------------------------------------------------------------------------------------------
# Every layout: a small hand-made drive written by `layouts`, read back by its converter.
# ---------------------------------------------------------------------------------------------
H, W, T = 24, 40, 5


def toy_drive(seed=0, num_frames=T):
    """Road below the horizon (flat-ground depth), a wall above, sky on top, and a car."""
    rng = np.random.default_rng(seed)
    k = intrinsics_lib.make_intrinsics(30.0, 29.0, 19.3, 9.6)
    rows = np.arange(H, dtype=np.float64)[:, None] * np.ones((1, W))
    frames = []
    for t in range(num_frames):
        ground = rows > k[1, 2] + 1
        depth = np.where(ground, 29.0 * 1.5 / np.maximum(rows - k[1, 2], 1e-3), 20.0 + t)
        label_ids = np.where(ground, datasets.cityscapes_label_id("road"),
                             datasets.cityscapes_label_id("building")).astype(np.uint8)
        label_ids[:3] = datasets.cityscapes_label_id("sky")
        depth[:3] = 0.0
        instance_ids = np.zeros((H, W), np.int32)
        car = (slice(8, 14), slice(10 + t, 18 + t))
        label_ids[car] = datasets.cityscapes_label_id("car")
        instance_ids[car] = 26001
        depth[car] = 8.0
        pose = np.eye(4)
        pose[:3, 3] = [0.1 * t, 0.0, 0.8 * t]
        frames.append(SimpleNamespace(
            rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            depth=depth.astype(np.float32), label_ids=label_ids,
            train_ids=datasets.label_ids_to_train_ids(label_ids), instance_ids=instance_ids,
            world_from_camera=pose))
    return SimpleNamespace(intrinsics=k, frames=frames, objects=[])


def _write(layout, root, num_drives=3, options=layouts.LayoutOptions()):
    drives = [toy_drive(seed=i) for i in range(num_drives)]
    entries = {}
    for i, drive in enumerate(drives):
        split = layouts.drive_split(i, num_drives)
        entries.setdefault(split, []).extend(
            layouts.write_drive(layout, str(root), drive, i, split, options))
    layouts.finish_layout(layout, str(root), entries, options)
    return drives


def _convert(module, root, split, options, out, **kwargs):
    specs = module.list_samples(str(root), split, options)
    base.convert_split(module.load_sample, specs, options, str(out), split, **kwargs)
    return _decoded(out, split)


def test_kitti_annotated_dense_native(tmp_path):
    drives = _write("kitti", tmp_path / "kitti", options=layouts.LayoutOptions(dense_depth=True))
    decoded = _convert(kitti, tmp_path / "kitti", "train", kitti.Options(), tmp_path / "out",
                       num_shards=2, num_workers=2)
    assert len(decoded) == T - 2
    for t in range(1, T - 1):
        sample = decoded[f"{layouts.kitti_drive_name(0)}/image_02/{t:010d}"]
        frames = drives[0].frames
        np.testing.assert_array_equal(sample.image, frames[t].rgb)
        np.testing.assert_array_equal(sample.context[0], frames[t - 1].rgb)
        np.testing.assert_array_equal(sample.context[1], frames[t + 1].rgb)
        np.testing.assert_allclose(sample.intrinsics, drives[0].intrinsics, atol=1e-5)
        np.testing.assert_allclose(sample.depth, np.round(frames[t].depth * 256) / 256,
                                   atol=1e-6)


def test_kitti_velodyne_matches_ground_truth_and_resize(tmp_path):
    drives = _write("kitti", tmp_path / "kitti", num_drives=1,
                    options=layouts.LayoutOptions(lidar_rows=8))
    annotated = _convert(kitti, tmp_path / "kitti", "train", kitti.Options(), tmp_path / "a")
    velodyne = _convert(kitti, tmp_path / "kitti", "train",
                        kitti.Options(depth_source="velodyne"), tmp_path / "v")
    sid = f"{layouts.kitti_drive_name(0)}/image_02/{2:010d}"
    sparse, lidar = annotated[sid].depth, velodyne[sid].depth
    assert 0 < (sparse > 0).sum() < sparse.size // 2  # sparse ground truth
    np.testing.assert_array_equal(lidar > 0, sparse > 0)
    np.testing.assert_allclose(lidar, sparse, atol=1.0 / 256)
    # Half size: K follows the half-pixel rule; every LiDAR point still lands on its pixel.
    half = _convert(kitti, tmp_path / "kitti", "train",
                    kitti.Options(height=H // 2, width=W // 2, depth_source="velodyne"),
                    tmp_path / "h")[sid]
    assert half.image.shape == (H // 2, W // 2, 3) and len(half.context) == 2
    np.testing.assert_allclose(half.intrinsics, intrinsics_lib.scale_intrinsics(
        drives[0].intrinsics, 0.5, 0.5), atol=1e-5)
    np.testing.assert_allclose(half.depth, base.resize_sparse_depth(
        drives[0].frames[2].depth * (sparse > 0), (H // 2, W // 2)), atol=1.0 / 256)


def test_kitti_split_format_and_bad_inputs(tmp_path):
    root = tmp_path / "kitti"
    _write("kitti", root, num_drives=2)
    lines = (root / "splits" / "eigen_train_files.txt").read_text().splitlines()
    assert lines[0] == f"{layouts.KITTI_DATE}/{layouts.kitti_drive_name(0)} 0000000001 l"
    # The converter reads the real Eigen lists (padded and unpadded frame numbers).
    real = KITTI_EIGEN_SPLIT
    if os.path.isdir(real):
        for name, count in (("eigen_test_files.txt", 697), ("eigen_benchmark_test_files.txt", 652)):
            specs = kitti.list_samples(str(root), "test",
                                       kitti.Options(split_file=os.path.join(real, name)))
            assert len(specs) == count and specs[0].drive == "2011_09_26_drive_0002_sync"
    options = kitti.Options()
    specs = kitti.list_samples(str(root), "train", options)
    # Missing neighbour frame.
    drive_dir = root / layouts.KITTI_DATE / layouts.kitti_drive_name(0)
    (drive_dir / "image_02" / "data" / f"{0:010d}.png").unlink()
    with pytest.raises(errors.BadInputError, match="missing neighbour frame"):
        kitti.load_sample(specs[0], options)
    # Wrong calibration file: velo_to_cam contents where cam_to_cam belongs.
    calib = root / layouts.KITTI_DATE / "calib_cam_to_cam.txt"
    good = calib.read_text()
    calib.write_text((root / layouts.KITTI_DATE / "calib_velo_to_cam.txt").read_text())
    with pytest.raises(errors.BadInputError, match="P_rect_02.*calib_cam_to_cam"):
        kitti.load_sample(specs[1], options)
    calib.write_text(good)
    # Truncated velodyne file, malformed and empty split files.
    velo = drive_dir / "velodyne_points" / "data" / f"{2:010d}.bin"
    velo.write_bytes(velo.read_bytes()[:-3])
    with pytest.raises(errors.BadInputError, match="truncated"):
        kitti.load_sample(specs[1], kitti.Options(depth_source="velodyne"))
    bad_split = tmp_path / "bad.txt"
    bad_split.write_text("2011_09_26_drive_0001_sync 5\n")
    with pytest.raises(errors.BadInputError, match="bad.txt:1"):
        kitti.list_samples(str(root), "x", kitti.Options(split_file=str(bad_split)))
    bad_split.write_text("")
    with pytest.raises(errors.BadInputError, match="no samples"):
        _convert(kitti, root, "x", kitti.Options(split_file=str(bad_split)), tmp_path / "e")
    # --skip_bad quarantines the sample without a previous frame and converts the rest.
    specs = kitti.list_samples(str(root), "train", options)
    result = base.convert_split(kitti.load_sample, specs, options, str(tmp_path / "s"),
                                "train", skip_bad=True)
    assert result.num_examples == len(specs) - 1
    assert result.skipped[0][0] == specs[0].source_id


def test_cityscapes_labelled_sequence_and_instances(tmp_path):
    root = tmp_path / "cs"
    drives = _write("cityscapes", root, num_drives=2,
                    options=layouts.LayoutOptions(label_stride=2))
    options = cityscapes.Options(height=H // 2, width=W // 2)
    decoded = _convert(cityscapes, root, "train", options, tmp_path / "a")
    assert sorted(decoded) == [f"cityscapes/train/synth000_000000_{t:06d}" for t in (1, 3)]
    sample = decoded["cityscapes/train/synth000_000000_000003"]
    frame = drives[0].frames[3]
    np.testing.assert_array_equal(sample.semantic,
                                  base.resize_nearest(frame.train_ids, (H // 2, W // 2)))
    np.testing.assert_allclose(sample.intrinsics, intrinsics_lib.scale_intrinsics(
        drives[0].intrinsics, 0.5, 0.5), atol=1e-4)
    np.testing.assert_array_equal(sample.context[1], base.resize_image(
        drives[0].frames[4].rgb, (H // 2, W // 2)))
    assert sample.instances is None
    native = _convert(cityscapes, root, "train",
                      cityscapes.Options(height=0, width=0, frame_gap=0), tmp_path / "b")
    sample = native["cityscapes/train/synth000_000000_000001"]
    np.testing.assert_array_equal(sample.instances[0], drives[0].frames[1].instance_ids)
    np.testing.assert_array_equal(sample.image, drives[0].frames[1].rgb)
    sequence = _convert(cityscapes, root, "val", cityscapes.Options(mode="sequence"),
                        tmp_path / "c")
    assert len(sequence) == T - 2 and all(s.semantic is None for s in sequence.values())
    # Label id outside the Cityscapes table; truncated neighbour frame.
    label_file = next((root / "gtFine" / "train" / "synth000").glob("*_000001_*labelIds.png"))
    labels = image_io.read_label_png(str(label_file)).copy()
    labels[0, 0] = 77
    image_io.write_png(str(label_file), labels)
    specs = cityscapes.list_samples(str(root), "train", options)
    with pytest.raises(errors.BadInputError, match=r"labelIds.png.*\[77\]"):
        cityscapes.load_sample(specs[0], options)
    neighbour = next((root / "leftImg8bit_sequence" / "train" / "synth000").glob("*_000004_*"))
    neighbour.write_bytes(neighbour.read_bytes()[:100])
    with pytest.raises(errors.BadInputError, match="000004_leftImg8bit.png"):
        cityscapes.load_sample(specs[1], options)


def test_camvid_synthetic_layout(tmp_path):
    drives = _write("camvid", tmp_path / "camvid")
    lines = (tmp_path / "camvid" / "val.txt").read_text().splitlines()
    assert lines[0] == ("/SegNet/CamVid/val/0002SY_000001.png "
                        "/SegNet/CamVid/valannot/0002SY_000001.png")
    decoded = _convert(camvid, tmp_path / "camvid", "val", camvid.Options(height=0, width=0),
                       tmp_path / "out")
    sample = decoded["camvid/val/0002SY_000001"]
    expected = datasets.train_ids_to_camvid(drives[1].frames[1].train_ids)
    np.testing.assert_array_equal(sample.semantic, np.where(expected == 11, 255, expected))


def test_mannequin_poses_intrinsics_depth(tmp_path):
    root = tmp_path / "mc"
    drives = _write("mannequin", root)
    assert sorted(os.listdir(root)) == ["depth", "frames", "test", "train", "validation"]
    options = mannequin.Options(height=H // 2, width=W // 2)
    decoded = _convert(mannequin, root, "validation", options, tmp_path / "out")
    assert len(decoded) == T - 2
    seq = layouts.mannequin_sequence_id(1)
    sample = decoded[f"mannequin/validation/{seq}/{layouts.mannequin_timestamp(2)}"]
    frames = drives[1].frames
    np.testing.assert_allclose(sample.poses, np.stack(
        [frames[2].world_from_camera, frames[1].world_from_camera,
         frames[3].world_from_camera]), atol=1e-5)
    np.testing.assert_allclose(sample.intrinsics, intrinsics_lib.scale_intrinsics(
        drives[1].intrinsics, 0.5, 0.5), atol=1e-4)
    np.testing.assert_allclose(sample.depth, base.resize_nearest(
        np.round(frames[2].depth * 256) / 256, (H // 2, W // 2)), atol=1e-6)
    # Missing neighbour frame; malformed camera line.
    (root / "frames" / "validation" / seq / f"{layouts.mannequin_timestamp(3)}.png").unlink()
    with pytest.raises(errors.BadInputError, match="missing neighbour frame"):
        mannequin.load_sample(mannequin.list_samples(str(root), "validation", options)[1],
                              options)
    txt = root / "validation" / f"{seq}.txt"
    txt.write_text(txt.read_text().replace(" 0 0 ", " 0 ", 1))
    with pytest.raises(errors.BadInputError, match=f"{seq}.txt:2"):
        mannequin.list_samples(str(root), "validation", options)


def test_megadepth_depth_and_ordinal_pairs(tmp_path):
    root = tmp_path / "md"
    drives = _write("megadepth", root)
    native = _convert(megadepth, root, "train", megadepth.Options(height=0, width=0),
                      tmp_path / "a")
    assert len(native) == T - 2
    sid = sorted(native)[0]
    sample = native[sid]
    assert sample.image_format == "jpeg"
    frame = drives[0].frames[1]
    foreground = frame.instance_ids > 0
    pairs = sample.weak_pairs.astype(int)
    assert len(pairs) == 128 and np.all(sample.weak_pairs[:, 5] == common.RELATION_CLOSER)
    assert foreground[pairs[:, 0], pairs[:, 1]].all()
    assert (frame.train_ids[pairs[:, 2], pairs[:, 3]] == datasets.cityscapes_train_id(
        "building")).any()
    assert not (sample.depth[foreground] > 0).any()  # like MegaDepth: no depth on objects
    # NaN and negative depth.
    spec = megadepth.list_samples(str(root), "train")[0]
    depth_file = os.path.join(spec.dense_dir, "depths", spec.name + ".npy")
    depth = np.load(depth_file)
    for bad, message in ((np.nan, "NaN"), (-1.0, "negative")):
        broken = depth.copy()
        broken[0, 0] = bad
        np.save(depth_file, broken)
        with pytest.raises(errors.BadInputError, match=message):
            megadepth.load_sample(spec, megadepth.Options())


def test_kitti_segmenter_outputs_become_labels_and_instances(tmp_path):
    root = tmp_path / "kitti"
    drives = _write("kitti", root, num_drives=1)
    predictions = root / "predictions"
    options = kitti.Options(semantic_dir=str(predictions / "semantic"),
                            instance_dir=str(predictions / "instances"))
    decoded = _convert(kitti, root, "train", options, tmp_path / "out")
    frames = drives[0].frames
    for t in range(1, T - 1):
        sample = decoded[f"{layouts.kitti_drive_name(0)}/image_02/{t:010d}"]
        np.testing.assert_array_equal(sample.semantic, frames[t].train_ids)
        for k, frame in enumerate((t, t - 1, t + 1)):  # target first, then the neighbours
            np.testing.assert_array_equal(sample.instances[k], frames[frame].instance_ids)
    # A mask in label ids (values > 18) handed over as train ids is refused, naming the file.
    bad = predictions / "semantic" / layouts.KITTI_DATE / layouts.kitti_drive_name(0) / \
        "image_02" / "data" / f"{1:010d}.png"
    image_io.write_png(str(bad), np.full((H, W), 26, np.uint8))
    specs = kitti.list_samples(str(root), "train", options)
    with pytest.raises(errors.BadInputError, match=f"{bad.name}.*not Cityscapes train ids"):
        kitti.load_sample(specs[0], options)


# ---------------------------------------------------------------------------------------------
# Integrity: byte-reproducible shards, resume checks, input fingerprints, messages.
# ---------------------------------------------------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shard_digests(out_dir):
    names = sorted(n for n in os.listdir(out_dir) if n.endswith(".tfrecord"))
    return {n: records.file_sha256(os.path.join(out_dir, n)) for n in names}


def _run_converter(module, args, env=()):
    environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
                       TF_DEPTHSEG_PROGRESS="0", **dict(env))
    return subprocess.run([sys.executable, "-m", module] + list(args), env=environment,
                          capture_output=True, text=True, timeout=600)


def test_clean_and_killed_then_resumed_conversions_are_byte_identical(tmp_path):
    """Two clean conversions (in separate processes, one with worker processes) and one
    killed with SIGKILL after its first finished shard, then resumed, give the same sha256 for
    every shard (protobuf's per-process map order used to make them differ)."""
    _write("camvid", tmp_path / "camvid", num_drives=3)
    common_args = [f"--input_dir={tmp_path / 'camvid'}", "--splits=train,val", "--num_shards=3",
                   "--height=12", "--width=20"]
    runs = {}
    for name, workers in (("clean_a", 1), ("clean_b", 2)):
        out = tmp_path / name
        result = _run_converter("tools.convert_camvid", common_args + [
            f"--output_dir={out}", f"--num_workers={workers}"])
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = _shard_digests(out)
    out = tmp_path / "killed"
    killed = _run_converter("tools.convert_camvid", common_args + [
        f"--output_dir={out}", "--num_workers=1"], env={records.KILL_AFTER_SHARDS_ENV: "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list(_shard_digests(out)) == ["train-00000-of-00003.tfrecord"]  # only shard 0
    assert not records.read_manifest(str(out))["splits"]["train"]["complete"]
    resumed = _run_converter("tools.convert_camvid", common_args + [
        f"--output_dir={out}", "--num_workers=1"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "1 shards kept from an earlier run" in resumed.stdout
    runs["resumed"] = _shard_digests(out)
    assert len(runs["clean_a"]) == 6
    assert runs["clean_a"] == runs["clean_b"] == runs["resumed"]
    for name in runs:
        manifest = records.read_manifest(str(tmp_path / name if name != "resumed" else out))
        assert {manifest["splits"][s]["shards"][str(i)]["sha256"] for s in ("train", "val")
                for i in range(3)} == set(runs["clean_a"].values())


def test_resume_redoes_shards_whose_inputs_changed(tmp_path):
    """A changed input file (size or mtime) invalidates its shard; a quarantined sample whose
    file was fixed is picked up; a changed option redoes everything."""
    root = tmp_path / "camvid"
    _write("camvid", root, num_drives=3)
    options = camvid.Options(height=0, width=0)
    specs = camvid.list_samples(str(root), "train", options)
    assert len(specs) == 3  # shard 0: samples 0 and 2; shard 1: sample 1
    out = str(tmp_path / "out")

    def convert(opts=options, **kwargs):
        return base.convert_split(camvid.load_sample, specs, opts, out, "train", num_shards=2,
                                  skip_bad=True, source="test", files_fn=camvid.input_files,
                                  **kwargs)

    label = specs[1].label_path  # sample 1 -> shard 1
    good_label = open(label, "rb").read()
    os.remove(label)
    first = convert()
    assert [s[0] for s in first.skipped] == [specs[1].source_id]
    assert first.num_examples == len(specs) - 1
    again = convert()
    assert again.num_shards_reused == 2 and again.num_written == 0
    # The missing label is restored: shard 1 is redone and the sample is in.
    with open(label, "wb") as f:
        f.write(good_label)
    fixed = convert()
    assert (fixed.num_shards_reused, fixed.num_examples, fixed.skipped) == (1, len(specs), ())
    assert sorted(_decoded(out, "train")) == sorted(s.source_id for s in specs)
    # An image rewritten with other pixels (same size on disk is possible): mtime differs.
    image_file = specs[0].image_path  # shard 0
    image = image_io.read_image(image_file)
    image_io.write_png(image_file, 255 - image)
    stat = os.stat(image_file)
    os.utime(image_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = convert()
    assert (changed.num_shards_reused, changed.num_written) == (1, len(specs[0::2]))
    np.testing.assert_array_equal(_decoded(out, "train")[specs[0].source_id].image, 255 - image)
    # Other options (here the size) change the source text: nothing is kept.
    other = camvid.Options(height=12, width=20)
    resized = base.convert_split(camvid.load_sample, specs, other, out, "train", num_shards=2,
                                 source=f"test {other}", files_fn=camvid.input_files)
    assert resized.num_shards_reused == 0


def test_skip_bad_with_every_sample_bad_is_an_error(tmp_path):
    root = tmp_path / "camvid"
    _write("camvid", root, num_drives=3)
    for name in os.listdir(root / "trainannot"):
        os.remove(root / "trainannot" / name)
    options = camvid.Options(height=0, width=0)
    specs = camvid.list_samples(str(root), "train", options)
    for attempt in range(2):  # the rerun reuses the (empty) shards and still refuses
        with pytest.raises(errors.BadInputError,
                           match=rf"split 'train': all {len(specs)} samples are bad.*0 examples; "
                                 r"fix the input files and rerun\. First: camvid/train/"):
            base.convert_split(camvid.load_sample, specs, options, str(tmp_path / "out"),
                               "train", num_shards=2, skip_bad=True,
                               files_fn=camvid.input_files)
    entry = records.read_manifest(str(tmp_path / "out"))["splits"]["train"]
    assert not entry["complete"] and entry["num_examples"] == 0
    assert len(entry["skipped"]) == len(specs)


class _FileAccessLog:
    """Paths under `root` that were opened or stat-ed (what a loader reads or probes)."""

    def __init__(self, monkeypatch, root):
        import builtins
        self.root, self.paths = os.path.realpath(root), set()
        real_open, real_stat = builtins.open, os.stat

        def logged_open(file, *args, **kwargs):
            self._log(file)
            return real_open(file, *args, **kwargs)

        def logged_stat(path, *args, **kwargs):
            self._log(path)
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", logged_open)
        monkeypatch.setattr(os, "stat", logged_stat)

    def _log(self, path):
        if isinstance(path, (str, os.PathLike)):
            path = os.path.realpath(os.fspath(path))
            if path.startswith(self.root + os.sep):
                self.paths.add(path)


@pytest.mark.parametrize("layout,module,options", [
    ("camvid", camvid, camvid.Options(height=0, width=0)),
    ("kitti", kitti, kitti.Options()),
    ("kitti", kitti, kitti.Options(depth_source="velodyne")),
    ("cityscapes", cityscapes, cityscapes.Options(height=0, width=0)),
    ("cityscapes", cityscapes, cityscapes.Options(height=0, width=0, frame_gap=0)),
    ("mannequin", mannequin, mannequin.Options(height=0, width=0)),
    ("megadepth", megadepth, megadepth.Options(height=0, width=0)),
], ids=["camvid", "kitti", "kitti_velodyne", "cityscapes", "cityscapes_no_context",
        "mannequin", "megadepth"])
def test_input_files_lists_every_file_a_sample_reads(tmp_path, monkeypatch, layout, module,
                                                     options):
    """The resume fingerprint sees a change of any file `load_sample` opens or probes."""
    root = tmp_path / layout
    _write(layout, root, num_drives=1, options=layouts.LayoutOptions(label_stride=2))
    split = "train"
    spec = module.list_samples(str(root), split, options)[0]
    listed = {os.path.realpath(p) for p in module.input_files(spec, options)}
    log = _FileAccessLog(monkeypatch, root)
    module.load_sample(spec, options)
    monkeypatch.undo()
    read = {p for p in log.paths if not os.path.isdir(p)}
    assert read and read <= listed, sorted(read - listed)


def test_kitti_frame_zero_has_no_previous_frame(tmp_path):
    root = tmp_path / "kitti"
    _write("kitti", root, num_drives=1)
    split_file = tmp_path / "zero.txt"
    split_file.write_text(f"{layouts.KITTI_DATE}/{layouts.kitti_drive_name(0)} 0 l\n")
    options = kitti.Options(split_file=str(split_file))
    spec, = kitti.list_samples(str(root), "x", options)
    with pytest.raises(errors.BadInputError) as caught:
        kitti.load_sample(spec, options)
    message = str(caught.value)
    assert f"frame 0 of {layouts.kitti_drive_name(0)} has no previous frame" in message
    assert "-000000001" not in message and "--skip_bad" in message
    assert message.startswith(kitti.image_path(spec, 0))


def test_mannequin_nan_pose_is_named(tmp_path):
    root = tmp_path / "mc"
    _write("mannequin", root, num_drives=3)
    seq = layouts.mannequin_sequence_id(1)
    txt = root / "validation" / f"{seq}.txt"
    lines = txt.read_text().splitlines()
    fields = lines[2].split()
    fields[14] = "nan"  # camera_from_world[1][3]: far past the 80 characters once shown
    lines[2] = " ".join(fields)
    txt.write_text("\n".join(lines) + "\n")
    with pytest.raises(errors.BadInputError,
                       match=rf"{seq}.txt:3: field 15 \(camera_from_world\[1\]\[3\]\) is "
                             r"'nan', not a finite number"):
        mannequin.list_samples(str(root), "validation", mannequin.Options())
