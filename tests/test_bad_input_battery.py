"""Bad-input battery: every tool, given bad input, exits with a code and one clear line.

Each `Case` runs one tool in a subprocess the way a user does and checks:

* the exit code (2 for bad input) and that stderr has no Python traceback;
* exactly one `error:` line, containing every expected fragment (the file or key and the fix);
* nothing half-written: no temporary files are left behind, files that existed before the run
  are byte-for-byte unchanged (unless the case lists them in `may_change`), and new files
  appear only where the case allows (`may_create`).

Inputs are built in the case's own temporary folder by its `prepare(root, res)` function, which
returns the tool's arguments; `res` gives shared, lazily built resources (synthetic layouts,
converted records, a tiny trained run) that are copied, never modified, by cases.

Sections: data (converters, labelling tools, readers), training (train / evaluate / export /
checkpoints / config), cli (flags, paths). Add a case to the list of its section.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")

# Names a writer gives its temporary files (atomic writes, checkpoint writers, shard writers).
TEMP_PATTERNS = (".tmp-*", "*.tmp", "*_temp*", "*.partial", "*.incomplete")


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad-input run. `prepare(root, res) -> argv` builds the input under `root`."""
    name: str
    tool: str                                   # module, e.g. "tools.convert_camvid"
    prepare: Callable[[str, "Resources"], Sequence[str]]
    fragments: Tuple[str, ...]                  # each must appear in the `error:` line
    code: int = 2
    may_change: Tuple[str, ...] = ()            # globs (relative to root) allowed to change
    may_create: Tuple[str, ...] = ()            # globs (relative to root) allowed to appear
    env: Tuple[Tuple[str, str], ...] = ()
    check: Callable[[str], None] = None         # extra assertions on root after the run


class Resources:
    """Shared inputs built once per test session on first use; cases copy them."""

    def __init__(self, base: str):
        self.base = base
        self._built: Dict[str, str] = {}

    def get(self, name: str) -> str:
        """Path of resource `name` (built by `build_<name>` the first time)."""
        if name not in self._built:
            path = os.path.join(self.base, name)
            if not os.path.exists(os.path.join(path, ".done")):
                shutil.rmtree(path, ignore_errors=True)
                os.makedirs(path)
                getattr(self, f"build_{name}")(path)
                open(os.path.join(path, ".done"), "w").close()
            self._built[name] = path
        return self._built[name]

    def copy(self, name: str, dest: str) -> str:
        """Copies resource `name` to `dest` (created) and returns `dest`."""
        shutil.copytree(self.get(name), dest, ignore=shutil.ignore_patterns(".done"))
        return dest

    # -- builders: one per resource ------------------------------------------------------------

    def build_camvid(self, path: str) -> None:
        """A tiny synthetic CamVid dataset root (SegNet layout: train/, trainannot/, train.txt)."""
        check(run_tool("tools.make_synthetic", [
            "--layout=camvid", f"--output_dir={path}", "--num_drives=2",
            "--frames_per_drive=3", "--height=48", "--width=64"], path))

    # Data section: one tiny synthetic root per layout, converted records, a trained run.
    def _synthetic(self, path: str, layout: str, num_drives: int) -> None:
        check(run_tool("tools.make_synthetic", [
            f"--layout={layout}", f"--output_dir={path}", f"--num_drives={num_drives}",
            "--frames_per_drive=4", "--height=32", "--width=48", "--num_workers=1"], path))

    def build_kitti(self, path: str) -> None:
        """KITTI raw layout, 2 drives (train, val) x 4 frames, with segmenter outputs."""
        self._synthetic(path, "kitti", 2)

    def build_cityscapes(self, path: str) -> None:
        self._synthetic(path, "cityscapes", 1)

    def build_mannequin(self, path: str) -> None:
        self._synthetic(path, "mannequin", 1)

    def build_megadepth(self, path: str) -> None:
        self._synthetic(path, "megadepth", 1)

    def build_kitti_records(self, path: str) -> None:
        """KITTI records (one shard per split; 2 train, 2 val records) with depth, neighbours,
        K, semantics and instances: what train, evaluate and both labelling tools read."""
        kitti = self.get("kitti")
        check(run_tool("tools.convert_kitti", [
            f"--input_dir={kitti}", f"--output_dir={path}", "--splits=train,val",
            "--num_shards=1", "--num_workers=1", f"--semantic_dir={kitti}/predictions/semantic",
            f"--instance_dir={kitti}/predictions/instances"], path))

    def build_camvid_converted(self, path: str) -> None:
        """in/ (the CamVid root) and out/ (its train split in 2 shards): a finished conversion
        to resume."""
        shutil.copytree(self.get("camvid"), os.path.join(path, "in"),
                        ignore=shutil.ignore_patterns(".done"))
        check(run_tool("tools.convert_camvid", [
            "--input_dir=in", "--output_dir=out", "--splits=train", "--num_shards=2",
            "--num_workers=1", "--height=24", "--width=32"], path))

    def build_camvid_all_bad(self, path: str) -> None:
        """out/: a CamVid conversion with --skip_bad where every label is missing (an error:
        the split stays incomplete with 0 examples)."""
        data = shutil.copytree(self.get("camvid"), os.path.join(path, "in"),
                               ignore=shutil.ignore_patterns(".done"))
        shutil.rmtree(os.path.join(data, "trainannot"))
        result = run_tool("tools.convert_camvid", [
            "--input_dir=in", "--output_dir=out", "--splits=train", "--num_shards=2",
            "--num_workers=1", "--skip_bad"], path)
        assert result.returncode == 2 and "samples are bad" in result.stderr, result.stderr

    def build_trained(self, path: str) -> None:
        """A 1-step S run on kitti_records (what evaluate restores)."""
        check(run_tool("tools.train", _train_args(self.get("kitti_records"), "w") + [
            "--set=train.steps=1"], path))


    def build_tiny_records(self, path: str) -> None:
        """Tiny SUW train/val records at 32x96 (test_tasks_suw.write_tiny_records)."""
        script = ("import sys; from test_tasks_suw import write_tiny_records; "
                  "write_tiny_records(sys.argv[1])")
        check(subprocess.run([sys.executable, "-c", script, path], cwd=path,
                             capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                      PYTHONPATH=os.pathsep.join([REPO, TESTS]))))

    def build_trained_run(self, path: str) -> None:
        """A SUW run trained 2 steps by tools/train on the tiny records: checkpoints/ckpt-1,
        ckpt-2 (+ sha256 sidecars), best/ckpt-2, config.json."""
        records = self.get("tiny_records")
        check(run_tool("tools.train", [
            "--config=suw/synthetic_s", "--smoke", f"--workdir={path}",
            f"--set=data.train_pattern={records}/train-*.tfrecord",
            f"--set=data.eval_pattern={records}/val-*.tfrecord",
            "--set=data.image_size=[32,96]",
            "--set=train.steps=2", "--set=train.checkpoint_every=1", "--set=train.eval_every=2",
            "--set=train.log_every=1"], path))

    def build_export(self, path: str) -> None:
        """tools/export.py of the trained run (SavedModel only): export/."""
        check(run_tool("tools.export", [f"--workdir={self.get('trained_run')}",
                                        f"--output_dir={path}/export", "--notflite",
                                        "--noverify"], path))


def run_tool(module: str, args: Sequence[str], cwd: str, env=()) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
                       TF_DEPTHSEG_PROGRESS="0", **dict(env))
    return subprocess.run([sys.executable, "-m", module] + list(args), cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=600)


def check(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _snapshot(root: str) -> Dict[str, str]:
    """Relative path -> sha256 of every file below `root`."""
    digests = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digests[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(os.path.basename(path), p)
               for p in patterns)


# -- data: converters, labelling tools, readers of records ----------------------------------------

def _camvid_missing_label(root: str, res: Resources) -> List[str]:
    data = res.copy("camvid", os.path.join(root, "in"))
    annot = os.path.join(data, "trainannot")
    os.remove(os.path.join(annot, sorted(os.listdir(annot))[0]))
    return [f"--input_dir={data}", f"--output_dir={root}/out", "--splits=train"]


def _shards_match_manifest(folder: str) -> Callable[[str], None]:
    """A `check`: every shard under its final name in `root/folder` is listed in its manifest
    with its size and sha256 (a failed conversion leaves only finished, recorded shards)."""
    def check_folder(root: str) -> None:
        out = os.path.join(root, folder)
        if not os.path.isdir(out):
            return
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        listed = {shard["file"]: shard for entry in manifest["splits"].values()
                  for shard in entry["shards"].values()}
        for name in os.listdir(out):
            if name.endswith(".tfrecord"):
                with open(os.path.join(out, name), "rb") as f:
                    data = f.read()
                assert name in listed, (name, sorted(listed))
                assert (len(data), hashlib.sha256(data).hexdigest()) == (
                    listed[name]["size"], listed[name]["sha256"]), name
    return check_folder


def _flip_byte(path: str, offset: int) -> None:
    """Flips one bit at `offset` (negative: from the end); the size stays the same."""
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))


def _edit_manifest(folder: str, edit: Callable[[dict], None]) -> None:
    path = os.path.join(folder, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    edit(manifest)
    with open(path, "w") as f:
        json.dump(manifest, f)


def _write_label(path: str, value: int) -> None:
    """Replaces a label PNG by one of the same size filled with `value`."""
    import numpy as np
    from tf_depthseg.data import image_io
    labels = image_io.read_label_png(path)
    image_io.write_png(path, np.full(labels.shape, value, np.uint8))


def _convert(data: str, root: str, *extra: str) -> List[str]:
    """Converter arguments: `data` -> root/out, train split, in-process."""
    return [f"--input_dir={data}", f"--output_dir={root}/out", "--num_workers=1",
            "--splits=train", *extra]


def _camvid_corrupt_image(root, res):
    data = res.copy("camvid", os.path.join(root, "in"))
    image = os.path.join(data, "train", sorted(os.listdir(os.path.join(data, "train")))[0])
    with open(image, "r+b") as f:
        f.truncate(200)
    return _convert(data, root)


def _camvid_label_value(value):
    def prepare(root, res):
        data = res.copy("camvid", os.path.join(root, "in"))
        annot = os.path.join(data, "trainannot")
        _write_label(os.path.join(annot, sorted(os.listdir(annot))[0]), value)
        return _convert(data, root)
    return prepare


def _camvid_all_bad(root, res):
    data = res.copy("camvid", os.path.join(root, "in"))
    shutil.rmtree(os.path.join(data, "trainannot"))
    return _convert(data, root, "--skip_bad")


def _camvid_resume_other_num_shards(root, res):
    res.copy("camvid_converted", os.path.join(root, "c"))
    return [f"--input_dir={root}/c/in", f"--output_dir={root}/c/out", "--splits=train",
            "--num_shards=3", "--num_workers=1", "--height=24", "--width=32"]


def _camvid_output_under_file(root, res):
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("a regular file\n")
    return [f"--input_dir={res.get('camvid')}", f"--output_dir={root}/notes.txt/out",
            "--splits=train", "--num_workers=1"]


def _camvid_output_read_only(root, res):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; camvid_output_under_file covers the "
                    "error path")
    os.makedirs(os.path.join(root, "ro"))
    os.chmod(os.path.join(root, "ro"), 0o500)
    return [f"--input_dir={res.get('camvid')}", f"--output_dir={root}/ro/out",
            "--splits=train", "--num_workers=1"]


def _kitti_split_line(frame: int):
    def prepare(root, res):
        data = res.get("kitti")
        line = open(os.path.join(data, "splits", "eigen_train_files.txt")).readline().split()
        with open(os.path.join(root, "split.txt"), "w") as f:
            f.write(f"{line[0]} {frame} l\n")
        return _convert(data, root, f"--split_file={root}/split.txt")
    return prepare


def _kitti_missing_neighbour(root, res):
    data = res.copy("kitti", os.path.join(root, "in"))
    images = sorted(glob.glob(os.path.join(data, "*", "*drive*", "image_02", "data")))[0]
    os.remove(os.path.join(images, f"{2:010d}.png"))  # neighbour of target frame 1
    return _convert(data, root)


def _kitti_truncated_velodyne(root, res):
    data = res.copy("kitti", os.path.join(root, "in"))
    velodyne = sorted(glob.glob(os.path.join(data, "*", "*drive*", "velodyne_points", "data",
                                             f"{1:010d}.bin")))[0]
    with open(velodyne, "r+b") as f:
        f.truncate(os.path.getsize(velodyne) - 3)
    return _convert(data, root, "--depth_source=velodyne")


def _cityscapes_label_value(root, res):
    data = res.copy("cityscapes", os.path.join(root, "in"))
    label = sorted(glob.glob(os.path.join(data, "gtFine", "train", "*", "*labelIds.png")))[0]
    _write_label(label, 77)
    return _convert(data, root)


def _cityscapes_missing_camera(root, res):
    data = res.copy("cityscapes", os.path.join(root, "in"))
    shutil.rmtree(os.path.join(data, "camera"))
    return _convert(data, root)


def _mannequin_nan_pose(root, res):
    data = res.copy("mannequin", os.path.join(root, "in"))
    camera_file = sorted(glob.glob(os.path.join(data, "train", "*.txt")))[0]
    lines = open(camera_file).read().splitlines()
    fields = lines[2].split()
    fields[14] = "nan"
    lines[2] = " ".join(fields)
    with open(camera_file, "w") as f:
        f.write("\n".join(lines) + "\n")
    return _convert(data, root)


def _mannequin_missing_frame(root, res):
    data = res.copy("mannequin", os.path.join(root, "in"))
    frames = sorted(glob.glob(os.path.join(data, "frames", "train", "*", "*.png")))
    os.remove(frames[0])  # the previous frame of the first target
    return _convert(data, root)


def _megadepth_depth(make_bad):
    def prepare(root, res):
        import numpy as np
        data = res.copy("megadepth", os.path.join(root, "in"))
        depth_file = sorted(glob.glob(os.path.join(data, "MegaDepth_v1", "*", "*", "depths",
                                                   "*.npy")))[0]
        np.save(depth_file, make_bad(np.load(depth_file)))
        return _convert(data, root)
    return prepare


def _with_nan(depth):
    depth = depth.copy()
    depth[1, 2] = float("nan")
    return depth


def _records(root: str, res: Resources, edit: Callable[[str], None] = None) -> str:
    """A copy of kitti_records in root/rec, edited by `edit(folder)`; returns the folder."""
    folder = res.copy("kitti_records", os.path.join(root, "rec"))
    if edit is not None:
        edit(folder)
    return folder


def _flip_last_record(folder: str) -> None:
    _flip_byte(os.path.join(folder, "train-00000-of-00001.tfrecord"), -3)


def _flip_first_record(folder: str) -> None:
    _flip_byte(os.path.join(folder, "train-00000-of-00001.tfrecord"), 40)


def _mark_incomplete(folder: str) -> None:
    _edit_manifest(folder, lambda m: m["splits"]["train"].update(complete=False))


def _grow_shard(folder: str) -> None:
    with open(os.path.join(folder, "train-00000-of-00001.tfrecord"), "ab") as f:
        f.write(b"\0")


def _delete_shard(folder: str) -> None:
    os.remove(os.path.join(folder, "train-00000-of-00001.tfrecord"))


def _labelling(edit, *extra: str):
    def prepare(root, res):
        folder = _records(root, res, edit)
        return [f"--input={folder}/train-*.tfrecord", f"--output_dir={root}/out", *extra]
    return prepare


def _weak_labels_output_under_file(root, res):
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("a regular file\n")
    return [f"--input={res.get('kitti_records')}/train-*.tfrecord",
            f"--output_dir={root}/notes.txt/out"]


def _align_without_context(root, res):
    folder = res.copy("camvid_converted", os.path.join(root, "c"))
    return [f"--input={folder}/out/train-*.tfrecord", f"--output_dir={root}/out"]


def _verify(edit):
    def prepare(root, res):
        return [f"--input={_records(root, res, edit)}"]
    return prepare


def _train_args(records_dir: str, workdir: str, eval_split: str = "val") -> List[str]:
    """A tiny S run (smoke config) on `records_dir`."""
    return ["--config=suw/synthetic_s", "--smoke", f"--workdir={workdir}",
            f"--set=data.train_pattern={records_dir}/train-*.tfrecord",
            f"--set=data.eval_pattern={records_dir}/{eval_split}-*.tfrecord",
            "--set=data.image_size=[32,48]"]


def _train_on(edit=None, resource=None):
    """prepare(): train on a copy of kitti_records edited by `edit`, or on the records in
    `resource` = (name, subfolder) (read with data.allow_incomplete)."""
    def prepare(root, res):
        if resource is None:
            return _train_args(_records(root, res, edit), f"{root}/w")
        folder = os.path.join(res.copy(resource[0], os.path.join(root, "c")), resource[1])
        return _train_args(folder, f"{root}/w", "train") + ["--set=data.allow_incomplete=true"]
    return prepare


def _evaluate_on(edit=None, camvid=False):
    def prepare(root, res):
        run = res.copy("trained", os.path.join(root, "run"))
        if camvid:
            split = os.path.join(res.copy("camvid_converted", os.path.join(root, "c")), "out")
        else:
            split = _records(root, res, edit)
        return [f"--workdir={run}/w", f"--split={split}/train-*.tfrecord"]
    return prepare


def _train_on_unprepared_tfds(root, res):
    """train on a TFDS split (data.train_pattern=tfds:...) of an empty TFDS data_dir."""
    os.makedirs(os.path.join(root, "tfds"))
    return _train_args(_records(root, res), f"{root}/w") + [
        "--set=data.train_pattern=tfds:kitti_depthseg:train[:4]",
        "--set=data.tfds_data_dir=tfds"]


_CONVERTER_OUT = dict(may_create=("out/*",), check=_shards_match_manifest("out"))

DATA_CASES: List[Case] = [
    # Converters: missing, corrupt and inconsistent input files.
    Case("camvid_missing_label", "tools.convert_camvid", _camvid_missing_label,
         ("trainannot", "label PNG not found", "--skip_bad"), **_CONVERTER_OUT),
    Case("camvid_truncated_image", "tools.convert_camvid", _camvid_corrupt_image,
         ("/train/", "cannot decode image", "re-extract it", "--skip_bad"), **_CONVERTER_OUT),
    Case("camvid_label_out_of_range", "tools.convert_camvid", _camvid_label_value(40),
         ("trainannot", "label values [40] outside 0..11", "colour-coded"), **_CONVERTER_OUT),
    Case("camvid_skip_bad_every_sample_bad", "tools.convert_camvid", _camvid_all_bad,
         ("split 'train': all 1 samples are bad", "0 examples", "fix the input files"),
         **_CONVERTER_OUT),
    Case("camvid_resume_with_other_num_shards", "tools.convert_camvid",
         _camvid_resume_other_num_shards,
         ("c/out", "--num_shards=2", "now 3", "--noresume")),
    Case("camvid_output_under_a_file", "tools.convert_camvid", _camvid_output_under_file,
         ("notes.txt/out", "is a file, not a folder", "--output_dir")),
    Case("camvid_output_read_only", "tools.convert_camvid", _camvid_output_read_only,
         ("ro/out", "not writable", "--output_dir")),
    Case("kitti_frame_zero", "tools.convert_kitti", _kitti_split_line(0),
         ("0000000000.png", "frame 0 of", "has no previous frame", "--skip_bad"),
         **_CONVERTER_OUT),
    Case("kitti_missing_neighbour_frame", "tools.convert_kitti", _kitti_missing_neighbour,
         ("0000000002.png", "missing neighbour frame", "--skip_bad"), **_CONVERTER_OUT),
    Case("kitti_truncated_velodyne", "tools.convert_kitti", _kitti_truncated_velodyne,
         ("0000000001.bin", "truncated"), **_CONVERTER_OUT),
    Case("cityscapes_label_id_out_of_range", "tools.convert_cityscapes",
         _cityscapes_label_value, ("labelIds.png", "77"), **_CONVERTER_OUT),
    Case("cityscapes_missing_camera_file", "tools.convert_cityscapes",
         _cityscapes_missing_camera, ("camera.json", "camera file not found"),
         **_CONVERTER_OUT),
    Case("mannequin_nan_pose", "tools.convert_mannequin", _mannequin_nan_pose,
         (".txt:3", "field 15 (camera_from_world[1][3]) is 'nan'", "fixed or dropped")),
    Case("mannequin_missing_frame", "tools.convert_mannequin", _mannequin_missing_frame,
         (".png", "missing neighbour frame", "--skip_bad"), **_CONVERTER_OUT),
    Case("megadepth_nan_depth", "tools.convert_megadepth", _megadepth_depth(_with_nan),
         (".npy", "depth contains NaN"), **_CONVERTER_OUT),
    Case("megadepth_depth_wrong_size", "tools.convert_megadepth",
         _megadepth_depth(lambda d: d[:-2]), (".npy", "the depth map is", "do not belong"),
         **_CONVERTER_OUT),
    # Labelling tools reading bad records, writing to a bad place.
    Case("weak_labels_corrupt_input", "tools.generate_weak_labels",
         _labelling(_flip_last_record),
         ("train-00000-of-00001.tfrecord", "corrupt TFRecord file after 1 good records",
          "--skip_bad"), may_create=("out/*",)),
    Case("weak_labels_incomplete_input", "tools.generate_weak_labels",
         _labelling(_mark_incomplete),
         ("split 'train' is incomplete", "rerun the converter", "--allow_incomplete")),
    Case("weak_labels_output_under_a_file", "tools.generate_weak_labels",
         _weak_labels_output_under_file, ("notes.txt/out", "is a file, not a folder")),
    Case("align_corrupt_input", "tools.align_object_masks",
         _labelling(_flip_last_record, "--match=paper"),
         ("train-00000-of-00001.tfrecord", "corrupt TFRecord file", "--skip_bad"),
         may_create=("out/*",)),
    Case("align_shard_changed_after_conversion", "tools.align_object_masks",
         _labelling(_grow_shard), ("train-00000-of-00001.tfrecord", "bytes",
                                            "manifest.json says", "verify_records")),
    Case("align_records_without_context", "tools.align_object_masks", _align_without_context,
         ("record camvid/train/", "no context frames"), may_create=("out/*",)),
    # verify_records.
    Case("verify_byte_flip", "tools.verify_records", _verify(_flip_last_record),
         ("rec/train-00000-of-00001.tfrecord", "corrupt TFRecord file", "rerun the converter")),
    Case("verify_missing_shard", "tools.verify_records", _verify(_delete_shard),
         ("rec/train-00000-of-00001.tfrecord", "missing, though manifest.json lists it")),
    # train / evaluate reading bad records (checked before the model is built, except the
    # corrupt record in the middle of a shard, found while training).
    Case("train_incomplete_split", "tools.train", _train_on(_mark_incomplete),
         ("rec: split 'train' is incomplete", "--set data.allow_incomplete=true")),
    Case("train_split_with_zero_examples", "tools.train",
         _train_on(resource=("camvid_all_bad", "out")), ("split 'train' has 0 examples",
                                                       "fix the input files")),
    Case("train_shard_changed_after_conversion", "tools.train", _train_on(_grow_shard),
         ("train-00000-of-00001.tfrecord", "manifest.json says", "verify_records")),
    Case("train_records_without_depth", "tools.train",
         _train_on(resource=("camvid_converted", "out")),
         ("train-00000-of-00002.tfrecord: record camvid/train/", "no depth/encoded feature",
          "asks for depth")),
    Case("train_corrupt_record_mid_shard", "tools.train", _train_on(_flip_last_record),
         ("rec/train-00000-of-00001.tfrecord", "corrupt TFRecord file after 1 good records"),
         may_create=("w/*",)),
    Case("train_tfds_split_not_prepared", "tools.train", _train_on_unprepared_tfds,
         ("tfds:kitti_depthseg:train[:4]", "kitti_depthseg", "/tfds", "download_and_prepare",
          "manual_dir", "data.tfds_data_dir")),
    Case("evaluate_corrupt_split", "tools.evaluate", _evaluate_on(_flip_first_record),
         ("rec/train-00000-of-00001.tfrecord", "corrupt TFRecord file", "verify_records")),
    Case("evaluate_records_without_depth", "tools.evaluate", _evaluate_on(camvid=True),
         ("record camvid/train/", "no depth/encoded feature")),
    Case("evaluate_incomplete_split", "tools.evaluate", _evaluate_on(_mark_incomplete),
         ("split 'train' is incomplete", "--set data.allow_incomplete=true")),
]

# -- training: train / evaluate / export / predict, checkpoints, config values --------------------

def _run_copy(root: str, res: Resources) -> str:
    """A copy of the trained run at <root>/run (its config reads the shared records)."""
    return res.copy("trained_run", os.path.join(root, "run"))


def _damage(folder: str, suffix: str, how: str) -> None:
    """Truncates ("truncate") or empties ("empty") every checkpoint file ending in `suffix`."""
    for name in os.listdir(folder):
        if name.startswith("ckpt-") and suffix in name:
            path = os.path.join(folder, name)
            data = open(path, "rb").read()
            open(path, "wb").write(data[:len(data) // 2] if how == "truncate" else b"")


def _a_file(root: str) -> str:
    path = os.path.join(root, "notes.txt")
    with open(path, "w") as f:
        f.write("a regular file, not a folder\n")
    return path


def _not_as_root() -> None:
    if os.geteuid() == 0:
        pytest.skip("runs as root: permissions do not stop root's writes")


def _read_only_folder(root: str) -> str:
    _not_as_root()
    path = os.path.join(root, "read_only")
    os.makedirs(path)
    os.chmod(path, 0o555)
    return path


def _train_set(*overrides: str):
    """tools/train on the smoke config with `--set` overrides (that must be refused)."""
    return lambda root, res: (["--config=suw/synthetic_s", "--smoke", f"--workdir={root}/w"]
                              + [f"--set={item}" for item in overrides])


def _train_no_intact_checkpoint(root: str, res: Resources) -> List[str]:
    run = _run_copy(root, res)
    _damage(os.path.join(run, "checkpoints"), ".data-", "truncate")
    return [f"--workdir={run}", "--set=train.steps=3"]


def _train_workdir_under_file(root: str, res: Resources) -> List[str]:
    return ["--config=suw/synthetic_s", "--smoke", f"--workdir={_a_file(root)}/run"]


def _train_read_only_workdir(root: str, res: Resources) -> List[str]:
    return ["--config=suw/synthetic_s", "--smoke", f"--workdir={_read_only_folder(root)}"]


def _evaluate_no_intact_checkpoint(root: str, res: Resources) -> List[str]:
    run = _run_copy(root, res)
    _damage(os.path.join(run, "checkpoints"), ".index", "empty")
    return [f"--workdir={run}", "--checkpoint=latest"]


def _evaluate_negative_max_examples(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "run"))
    return [f"--workdir={root}/run", "--max_examples=-1"]


def _evaluate_out_under_file(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "run"))
    return [f"--workdir={root}/run", f"--out={_a_file(root)}/results.json"]


def _export_no_checkpoint(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "run", "checkpoints"))
    return [f"--workdir={root}/run", f"--output_dir={root}/export"]


def _export_damaged_checkpoint(root: str, res: Resources) -> List[str]:
    run = _run_copy(root, res)
    _damage(os.path.join(run, "checkpoints"), "ckpt-2.data-", "truncate")
    return [f"--workdir={run}", f"--checkpoint={run}/checkpoints/ckpt-2",
            f"--output_dir={root}/export"]


def _export_overwrite_non_export(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "photos"))
    with open(os.path.join(root, "photos", "keep.txt"), "w") as f:
        f.write("not an export\n")
    return [f"--workdir={root}/run", f"--output_dir={root}/photos", "--overwrite"]


def _export_output_under_file(root: str, res: Resources) -> List[str]:
    return [f"--workdir={root}/run", f"--output_dir={_a_file(root)}/export"]


def _export_read_only_output(root: str, res: Resources) -> List[str]:
    return [f"--workdir={root}/run", f"--output_dir={_read_only_folder(root)}/export"]


def _export_unknown_dataset(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "run", "checkpoints"))
    return [f"--workdir={root}/run", f"--output_dir={root}/export", "--dataset=pascal"]


def _evaluate_unknown_dataset(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "run"))
    return [f"--workdir={root}/run", "--dataset=pascal"]


def _image_folder(root: str, name: str = "frames", dtype=None) -> str:
    """A folder with one 8x8 PNG (8-bit RGB, or a single-channel `dtype` image)."""
    import numpy as np
    from PIL import Image
    folder = os.path.join(root, name)
    os.makedirs(folder)
    if dtype is None:
        image = Image.fromarray(np.full((8, 8, 3), 128, np.uint8))
    else:
        image = Image.fromarray(np.full((8, 8), 3000, dtype))
    image.save(os.path.join(folder, "a.png"))
    return folder


def _predict_missing_model(root: str, res: Resources) -> List[str]:
    return [f"--input={_image_folder(root)}", f"--model={root}/no_export",
            f"--output_dir={root}/out"]


def _predict_non_image_input(root: str, res: Resources) -> List[str]:
    return [f"--input={_a_file(root)}", f"--model={root}/export", f"--output_dir={root}/out"]


def _predict_empty_folder(root: str, res: Resources) -> List[str]:
    os.makedirs(os.path.join(root, "frames"))
    return [f"--input={root}/frames", f"--model={root}/export", f"--output_dir={root}/out"]


def _predict_16bit_png(root: str, res: Resources) -> List[str]:
    import numpy as np
    return [f"--input={_image_folder(root, dtype=np.uint16)}",
            f"--model={res.get('export')}/export", f"--output_dir={root}/out"]


def _predict_output_under_file(root: str, res: Resources) -> List[str]:
    return [f"--input={_image_folder(root)}", f"--model={res.get('export')}/export",
            f"--output_dir={_a_file(root)}/out"]


def _predict_unreadable_metadata(root: str, res: Resources) -> List[str]:
    export = os.path.join(res.copy("export", os.path.join(root, "e")), "export")
    with open(os.path.join(export, "metadata.json"), "w") as f:
        f.write("{not json")
    return [f"--input={_image_folder(root)}", f"--model={export}", f"--output_dir={root}/out"]


def _sde_train_set(*overrides: str):
    """tools/train on the synthetic SDE smoke config with `--set` overrides (refused)."""
    return lambda root, res: (["--config=hoyer/synthetic_kitti_sde", "--smoke",
                               f"--workdir={root}/w"] + [f"--set={item}" for item in overrides])


def _seg_train(*overrides: str, ids_file: str = None, init_from: str = None):
    """tools/train on the synthetic CamVid segmentation smoke config, on the converted CamVid
    records (24x32, read at 32x48), with `--set` overrides, a labelled-ids file with the text
    `ids_file`, or seg.init_from = a resource run (e.g. "trained_run")."""
    def prepare(root, res):
        folder = os.path.join(res.copy("camvid_converted", os.path.join(root, "c")), "out")
        args = ["--config=hoyer/synthetic_camvid_seg", "--smoke", f"--workdir={root}/w",
                f"--set=data.train_pattern={folder}/train-*.tfrecord",
                f"--set=data.eval_pattern={folder}/train-*.tfrecord",
                "--set=data.image_size=[32,48]", "--set=data.crop_size=none",
                "--set=seg.labeled_count=0"]
        if ids_file is not None:
            with open(os.path.join(root, "ids.txt"), "w") as f:
                f.write(ids_file)
            args.append(f"--set=seg.labeled_ids_file={root}/ids.txt")
        if init_from is not None:
            args.append(f"--set=seg.init_from={res.get(init_from)}")
        return args + [f"--set={item}" for item in overrides]
    return prepare


def _semisup_train(*overrides: str):
    """tools/train on the synthetic CamVid DepthMix smoke config (task=semisup), on the
    converted CamVid records (no pseudo disparity), with `--set` overrides."""
    def prepare(root, res):
        folder = os.path.join(res.copy("camvid_converted", os.path.join(root, "c")), "out")
        return ["--config=hoyer/synthetic_camvid_depthmix", "--smoke", f"--workdir={root}/w",
                f"--set=data.train_pattern={folder}/train-*.tfrecord",
                f"--set=data.eval_pattern={folder}/train-*.tfrecord",
                "--set=data.image_size=[32,48]", "--set=data.crop_size=none",
                "--set=seg.labeled_count=0"] + [f"--set={item}" for item in overrides]
    return prepare


def _pseudo_depth(*args: str):
    """tools/predict_pseudo_depth on the converted CamVid records with `args` ({root} filled
    in)."""
    def prepare(root, res):
        folder = os.path.join(res.copy("camvid_converted", os.path.join(root, "c")), "out")
        return [f"--input={folder}/train-*.tfrecord"] + [
            a.format(root=root) for a in args]
    return prepare


TRAINING_CASES: List[Case] = [
    # Segmentation (configs/hoyer/*seg*): labelled subsets and the SDE to transfer from.
    Case("train_seg_unknown_labelled_id", "tools.train",
         _seg_train(ids_file="# chosen by hand\nnot/a/record\n"),
         ("ids.txt:2", "source id 'not/a/record' is not in", "data.train_pattern")),
    Case("train_seg_labelled_count_above_records", "tools.train",
         _seg_train("seg.labeled_count=500"),
         ("seg.labeled_count=500", "distinct source ids", "at most")),
    Case("train_seg_two_subset_choices", "tools.train",
         _seg_train("seg.labeled_count=2", ids_file="x\n"),
         ("seg.labeled_count=2", "seg.labeled_ids_file", "set one")),
    Case("train_seg_init_from_missing", "tools.train", _seg_train("seg.init_from=/no/sde_run"),
         ("seg.init_from=/no/sde_run", "no such folder", "task=sde")),
    Case("train_seg_init_from_not_an_sde_run", "tools.train",
         _seg_train(init_from="trained_run"), ("trained task 'suw'", "task=sde")),
    # Semi-supervised (configs/hoyer/*mix*): DepthMix's disparity source, the section's keys.
    Case("train_semisup_depthmix_without_sde", "tools.train",
         _semisup_train("semisup.depth_source=network"),
         ("semisup.sde_from", "tools/predict_pseudo_depth", "semisup.depth_source=records")),
    Case("train_semisup_records_without_pseudo_depth", "tools.train", _semisup_train(),
         ("has no depth/pseudo/encoded", "predict_pseudo_depth", "semisup.depth_source=network")),
    Case("train_semisup_sde_from_not_an_sde_run", "tools.train",
         lambda root, res: _semisup_train("semisup.depth_source=network")(root, res) + [
             f"--set=semisup.sde_from={res.get('trained_run')}"],
         ("semisup.sde_from=", "trained task 'suw'", "task=sde")),
    Case("train_semisup_unknown_key", "tools.train", _semisup_train("semisup.margin=0.1"),
         ("semisup.margin",)),
    Case("pseudo_depth_sde_missing", "tools.predict_pseudo_depth",
         _pseudo_depth("--sde={root}/no_sde", "--output_dir={root}/out"),
         ("--sde=", "no_sde", "no such folder")),
    Case("pseudo_depth_figure_without_depth", "tools.predict_pseudo_depth",
         _pseudo_depth("--figure={root}/fig.png"),
         ("has no depth/pseudo/encoded", "--sde")),
    Case("train_unknown_config_key", "tools.train",
         lambda root, res: ["--config=suw/synthetic_s", f"--workdir={root}/w",
                            "--set=train.stepz=3"],
         ("train.stepz", "Did you mean train.steps")),
    # Config values: every numeric field has a range; choices are checked.
    Case("train_negative_steps", "tools.train", _train_set("train.steps=-5"),
         ("train.steps=-5", "must be >= 1")),
    Case("train_zero_batch_size", "tools.train", _train_set("data.batch_size=0"),
         ("data.batch_size=0", "must be >= 1")),
    Case("train_flip_prob_above_one", "tools.train", _train_set("data.flip_prob=1.5"),
         ("data.flip_prob=1.5", "in [0, 1]")),
    Case("train_zero_image_height", "tools.train", _train_set("data.image_size=[0,96]"),
         ("data.image_size=[0, 96]", "every element must be >= 1")),
    Case("train_min_depth_above_max_depth", "tools.train", _train_set("suw.min_depth=100"),
         ("suw.min_depth=100.0", "must be below suw.max_depth=80.0")),
    Case("train_zero_learning_rate", "tools.train", _train_set("optim.learning_rate=0"),
         ("optim.learning_rate=0.0", "must be > 0")),
    Case("train_unknown_model", "tools.train", _train_set("suw.network=resnet50"),
         ("suw.network='resnet50'", "suw_encoder_decoder", "hourglass")),
    Case("train_moved_config_key", "tools.train", _train_set("model.num_bins=8"),
         ("model.num_bins", "moved to 'suw.num_bins'")),
    Case("train_unknown_task", "tools.train", _train_set("task=segmentation"),
         ("task='segmentation'", "'sde'", "'suw'")),
    Case("train_u_loss_without_pose_net", "tools.train",
         _train_set("suw.unsupervised=ego", "suw.pose_net=false"),
         ("suw.unsupervised=ego needs the pose net", "suw.pose_net=true")),
    # SDE (configs/hoyer): settings the task cannot train stop before anything is built.
    Case("train_sde_without_neighbour_frames", "tools.train",
         _sde_train_set("data.num_context=1"),
         ("task=sde", "data.num_context is 1", "data.num_context=2")),
    Case("train_sde_images_too_small", "tools.train", _sde_train_set("data.image_size=[16,48]"),
         ("at least 32 pixels", "[16, 48]", "data.image_size")),
    Case("train_sde_unknown_backbone", "tools.train", _sde_train_set("sde.backbone=resnet152"),
         ("sde.backbone='resnet152'", "resnet101")),
    # Checked against the task's parameter groups once its models are built.
    Case("train_unknown_lr_multiplier_group", "tools.train",
         lambda root, res: _train_args(res.get("kitti_records"), f"{root}/w") + [
             "--set=optim.lr_multipliers=[['backbone',0.1]]"],
         ("optim.lr_multipliers", "group 'backbone'", "its groups are")),
    # Workdirs and checkpoints (a damaged newest checkpoint with an intact older one is not
    # bad input: the run resumes, see test_training_checkpoints.py).
    Case("train_no_intact_checkpoint", "tools.train", _train_no_intact_checkpoint,
         ("ckpt-2.data-00000-of-00001: truncated", "ckpt-1.data-00000-of-00001: truncated",
          "No intact checkpoint", "backup", "delete")),
    Case("train_workdir_under_a_file", "tools.train", _train_workdir_under_file,
         ("notes.txt/run", "--workdir")),
    Case("train_read_only_workdir", "tools.train", _train_read_only_workdir,
         ("read_only", "--workdir", "permissions")),
    Case("evaluate_missing_run", "tools.evaluate",
         lambda root, res: [f"--workdir={root}/no_such_run"], ("no_such_run", "no such folder")),
    Case("evaluate_no_intact_checkpoint", "tools.evaluate", _evaluate_no_intact_checkpoint,
         ("ckpt-2.index: empty (0 bytes)", "ckpt-1.index: empty (0 bytes)",
          "No intact checkpoint", "backup")),
    Case("evaluate_negative_max_examples", "tools.evaluate", _evaluate_negative_max_examples,
         ("--max_examples=-1", ">= 0")),
    Case("evaluate_out_under_a_file", "tools.evaluate", _evaluate_out_under_file,
         ("notes.txt", "--out")),
    Case("export_no_checkpoint", "tools.export", _export_no_checkpoint,
         ("no checkpoint found", "tools/train.py")),
    Case("export_damaged_checkpoint", "tools.export", _export_damaged_checkpoint,
         ("ckpt-2.data-00000-of-00001: truncated", "newest intact checkpoint there is",
          "ckpt-1")),
    Case("export_overwrite_a_non_export", "tools.export", _export_overwrite_non_export,
         ("photos", "not an export", "--overwrite")),
    Case("export_output_under_a_file", "tools.export", _export_output_under_file,
         ("notes.txt", "--output_dir")),
    Case("export_read_only_output", "tools.export", _export_read_only_output,
         ("read_only", "--output_dir")),
    Case("export_unknown_dataset", "tools.export", _export_unknown_dataset,
         ("'pascal'", "known: cityscapes, camvid")),
    Case("evaluate_unknown_dataset", "tools.evaluate", _evaluate_unknown_dataset,
         ("'pascal'", "known: cityscapes, camvid")),
    Case("predict_missing_model", "tools.predict", _predict_missing_model,
         ("no_export", "not found", "tools/export.py")),
    Case("predict_non_image_input", "tools.predict", _predict_non_image_input,
         ("notes.txt", "not a folder and not a video")),
    Case("predict_empty_folder", "tools.predict", _predict_empty_folder,
         ("frames", "no .png/.jpg/.jpeg images")),
    Case("predict_16bit_png", "tools.predict", _predict_16bit_png,
         ("a.png", "uint16", "--skip_bad")),
    Case("predict_output_under_a_file", "tools.predict", _predict_output_under_file,
         ("notes.txt", "--output_dir")),
    Case("predict_unreadable_metadata", "tools.predict", _predict_unreadable_metadata,
         ("e/export/metadata.json", "unreadable", "tools/export.py")),
]

# Not bad input: a damaged newest checkpoint with an intact older one. The tools go on with the
# older one and say so in one warning line (exit 0); here because they use the same resources.

def test_readers_fall_back_past_a_damaged_checkpoint(resources, tmp_path):
    run = _run_copy(str(tmp_path), resources)
    _damage(os.path.join(run, "checkpoints"), "ckpt-2.data-", "truncate")
    damaged = os.path.join(run, "checkpoints", "ckpt-2.data-00000-of-00001")
    intact = os.path.join(run, "checkpoints", "ckpt-1")
    val_examples = json.load(open(os.path.join(resources.get("tiny_records"),
                                               "manifest.json")))["splits"]["val"]["num_examples"]
    assert val_examples > 2
    # evaluate: also --max_examples=0 means every image, even where eval.max_examples is set.
    result = run_tool("tools.evaluate", [f"--workdir={run}", "--checkpoint=latest",
                                         "--set=eval.max_examples=2", "--max_examples=0",
                                         f"--out={tmp_path}/eval.json"], str(tmp_path))
    check(result)
    warnings = [line for line in result.stderr.splitlines() if "Damaged checkpoint" in line]
    assert len(warnings) == 1 and damaged in warnings[0] and intact in warnings[0], result.stderr
    entry = json.load(open(tmp_path / "eval.json"))["results"]["synthetic_s"]
    assert (entry["checkpoint"], entry["step"]) == (intact, 1)
    assert entry["num_images"] == val_examples
    # export
    result = run_tool("tools.export", [f"--workdir={run}", f"--output_dir={tmp_path}/export",
                                       "--notflite", "--noverify"], str(tmp_path))
    check(result)
    warnings = [line for line in result.stderr.splitlines() if "Damaged checkpoint" in line]
    assert len(warnings) == 1 and damaged in warnings[0] and intact in warnings[0], result.stderr
    source = json.load(open(tmp_path / "export" / "metadata.json"))["source"]
    assert (source["checkpoint"], source["step"]) == (intact, 1)
    assert os.path.getsize(damaged) > 0  # readers leave the damaged file as it is


# -- cli: flags, paths ----------------------------------------------------------------------------

def _no_workdir(root: str) -> None:
    """A failed start leaves no workdir behind (issue 11)."""
    assert not os.path.lexists(os.path.join(root, "w")), os.listdir(os.path.join(root, "w"))


def _export_int8_without_records(root: str, res: Resources) -> List[str]:
    """int8 calibrates on the run's training records; here they are gone."""
    run = _run_copy(root, res)
    return [f"--workdir={run}", f"--output_dir={root}/export", "--tflite_quantize=int8",
            f"--set=data.train_pattern={root}/gone/train-*.tfrecord"]


def _select(*args: str, records: bool = True):
    """tools/select_annotations on the synthetic CamVid smoke config with `args` ({root}
    filled in), reading the converted CamVid records (--input) unless `records` is False."""
    def prepare(root, res):
        head = ["--config=hoyer/synthetic_camvid_selection", "--smoke"]
        if records:
            folder = os.path.join(res.copy("camvid_converted", os.path.join(root, "c")), "out")
            head.append(f"--input={folder}/train-*.tfrecord")
        return head + [a.format(root=root) for a in args]
    return prepare


CLI_CASES: List[Case] = [
    Case("train_without_config", "tools.train", lambda root, res: [f"--workdir={root}/w"],
         ("--config",)),
    Case("train_unknown_config_name", "tools.train",
         lambda root, res: ["--config=suw/does_not_exist", f"--workdir={root}/w"],
         ("suw/does_not_exist", "Known configs", "suw/{", "synthetic_suw"), check=_no_workdir),
    Case("train_unknown_flag", "tools.train",
         lambda root, res: ["--config=suw/synthetic_s", "--workdirr=w"],
         ("Unknown command line flag 'workdirr'", "Did you mean: workdir", "--help")),
    Case("train_set_bad_value_type", "tools.train",
         lambda root, res: ["--config=suw/synthetic_s", f"--workdir={root}/w",
                            "--set=train.steps=abc"],
         ("train.steps", "expected int", "'abc'"), check=_no_workdir),
    Case("train_set_without_value", "tools.train",
         lambda root, res: ["--config=suw/synthetic_s", f"--workdir={root}/w",
                            "--set=train.steps"],
         ("train.steps", "section.field=value"), check=_no_workdir),
    Case("train_missing_data_leaves_no_workdir", "tools.train",
         lambda root, res: ["--config=suw/synthetic_s", "--smoke", "--workdir=w",
                            "--set=data.train_pattern=nothing/train-*.tfrecord",
                            "--set=data.eval_pattern=nothing/val-*.tfrecord"],
         ("nothing/train-*.tfrecord", "no TFRecord files match"), check=_no_workdir),
    # Data selection (the converted CamVid split has 1 record): nothing is created.
    Case("select_no_records", "tools.select_annotations",
         _select("--input={root}/nothing/train-*.tfrecord", "--sde={root}/sde",
                 "--output_dir={root}/sel", records=False),
         ("nothing/train-*.tfrecord", "no TFRecord files match")),
    Case("select_sde_missing", "tools.select_annotations",
         _select("--sde={root}/no_sde", "--steps=1", "--output_dir={root}/sel"),
         ("--sde=", "no_sde", "no such folder", "task=sde")),
    Case("select_sde_not_an_sde_run", "tools.select_annotations",
         lambda root, res: _select("--steps=1", "--output_dir={root}/sel")(root, res) + [
             f"--sde={res.get('trained_run')}"], ("trained task 'suw'", "task=sde")),
    Case("select_steps_not_increasing", "tools.select_annotations",
         _select("--sde={root}/sde", "--steps=4,2", "--output_dir={root}/sel", records=False),
         ("--steps=4,2", "increasing")),
    Case("select_steps_larger_than_the_pool", "tools.select_annotations",
         _select("--sde={root}/sde", "--steps=2,500", "--output_dir={root}/sel"),
         ("selection.steps=[2, 500]", "ends at 500 images", "at most")),
    Case("select_output_under_a_file", "tools.select_annotations",
         lambda root, res: _select("--sde={root}/sde")(root, res) + [
             f"--output_dir={_a_file(root)}/sel"], ("notes.txt", "--output_dir")),
    Case("select_config_of_another_task", "tools.select_annotations",
         lambda root, res: ["--config=hoyer/synthetic_camvid_seg", f"--output_dir={root}/sel"],
         ("--config=hoyer/synthetic_camvid_seg", "task='seg'", "_selection")),
    Case("convert_kitti_without_input_dir", "tools.convert_kitti",
         lambda root, res: [f"--output_dir={root}/out"], ("--input_dir is required",)),
    Case("predict_without_required_flags", "tools.predict", lambda root, res: [],
         ("--input is required", "--model is required", "--output_dir is required")),
    Case("make_synthetic_unknown_layout", "tools.make_synthetic",
         lambda root, res: ["--layout=kitty", f"--output_dir={root}/out"],
         ("--layout=kitty", "kitti|cityscapes")),
    Case("export_int8_without_training_records", "tools.export", _export_int8_without_records,
         ("gone/train-*.tfrecord", "no TFRecord files match", "int8", "data.train_pattern",
          "--tflite_quantize=none")),
]

CASES = DATA_CASES + TRAINING_CASES + CLI_CASES


@pytest.fixture(scope="session")
def resources(tmp_path_factory) -> Resources:
    return Resources(str(tmp_path_factory.mktemp("battery_resources")))


def test_case_names_are_unique():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, resources: Resources, tmp_path):
    root = str(tmp_path)
    args = list(case.prepare(root, resources))
    before = _snapshot(root)
    result = run_tool(case.tool, args, root, case.env)
    output = f"--- args {args}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    assert result.returncode == case.code, output
    assert "Traceback" not in result.stderr, output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output
    # The message is printed once: no absl `E... ] <message>` duplicate of it.
    message = error_lines[0][len("error:"):].strip()
    duplicates = [line for line in result.stderr.splitlines()
                  if line is not error_lines[0] and message[:60] in line
                  and not line.startswith("error:")]
    assert not duplicates, output
    for fragment in case.fragments:
        assert fragment in error_lines[0], (fragment, output)
    after = _snapshot(root)
    leftovers = [p for p in after if _matches(p, TEMP_PATTERNS)]
    assert not leftovers, (leftovers, output)
    changed = [p for p in before if before[p] != after.get(p) and not _matches(p, case.may_change)]
    assert not changed, (changed, output)
    created = [p for p in after if p not in before and not _matches(p, case.may_create)]
    assert not created, (created, output)
    if case.check is not None:
        case.check(root)


def test_battery_is_broad_enough():
    """The issue asks for >= 40 cases across converters, labelling tools, train, evaluate,
    export and predict."""
    tools = {case.tool for case in CASES}
    assert len(CASES) >= 40, len(CASES)
    for wanted in ("tools.convert_", "tools.generate_weak_labels", "tools.align_object_masks",
                   "tools.train", "tools.evaluate", "tools.export", "tools.predict"):
        assert any(t.startswith(wanted) for t in tools), wanted
