"""Tests for tf_depthseg/tfds: the TFDS builders against the converters on synthetic layouts, and
TFDS splits as a pipeline source (`tfds:<name>[/<config>]:<split>`)."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_depthseg import common
from tf_depthseg import config as config_lib
from tf_depthseg import errors
from tf_depthseg import synthetic
from tf_depthseg.converters import base, camvid, cityscapes, kitti, mannequin, megadepth
from tf_depthseg.data import datasets, pipeline, records
from tf_depthseg.synthetic import layouts
from tf_depthseg.tfds import builders

from shared_data import CAMVID_SAMPLE

SCENE = synthetic.SceneConfig(height=32, width=104, frames_per_drive=4, num_parked_cars=2,
                              num_moving_cars=1, num_pedestrians=1, num_cyclists=1)
NUM_DRIVES = 3  # train, val, test


def _layout(layout: str, root: str) -> str:
    """Writes the synthetic `layout` (3 tiny drives) under `root`."""
    entries = {}
    for index in range(NUM_DRIVES):
        split, drive_entries = layouts.generate_and_write(layout, root, SCENE, 7, index,
                                                          NUM_DRIVES)
        entries.setdefault(split, []).extend(drive_entries)
    layouts.finish_layout(layout, root, entries)
    return root


def _kitti_labels(root):
    return kitti.Options(semantic_dir=os.path.join(root, "predictions", "semantic"),
                         instance_dir=os.path.join(root, "predictions", "instances"))


# layout -> (TFDS name/config, converter module, converter options for the root, the features
# the config stores besides image and source_id, the batch keys compared).
CASES = {
    "kitti": ("kitti_depthseg/labels", kitti, _kitti_labels,
              {common.CONTEXT, common.INTRINSICS, common.DEPTH, common.SEMANTIC,
               common.INSTANCES},
              [common.CONTEXT, common.INTRINSICS, common.DEPTH, common.SEMANTIC,
               common.INSTANCES]),
    "cityscapes": ("cityscapes_depthseg/native", cityscapes,
                   lambda root: cityscapes.Options(height=0, width=0),
                   {common.CONTEXT, common.INTRINSICS, common.SEMANTIC},
                   [common.CONTEXT, common.INTRINSICS, common.SEMANTIC]),
    "camvid": ("camvid_depthseg/native", camvid, lambda root: camvid.Options(height=0, width=0),
               {common.SEMANTIC}, [common.SEMANTIC]),
    "mannequin": ("mannequin_depthseg/native", mannequin,
                  lambda root: mannequin.Options(height=0, width=0, require_depth=True),
                  {common.CONTEXT, common.INTRINSICS, common.POSES, common.DEPTH},
                  [common.CONTEXT, common.INTRINSICS, common.POSES, common.DEPTH]),
    "megadepth": ("megadepth_depthseg/native", megadepth,
                  lambda root: megadepth.Options(height=0, width=0),
                  {common.DEPTH, common.WEAK_PAIRS}, [common.DEPTH, common.WEAK_PAIRS]),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Per layout: (dataset root, converted records folder, TFDS data_dir with the builder's
    config prepared from the root)."""
    tmp = tmp_path_factory.mktemp("tfds")
    data_dir = str(tmp / "tfds")
    tfds.disable_progress_bar()
    out = {}
    for layout, (name, module, options_of, _, _) in CASES.items():
        root = _layout(layout, str(tmp / layout))
        options = options_of(root)
        records_dir = str(tmp / f"{layout}_records")
        for split in module.SPLITS:
            try:
                specs = module.list_samples(root, split, options)
            except errors.BadInputError:
                continue  # a split the layout has no index for
            if specs:
                base.convert_split(module.load_sample, specs, options, records_dir, split,
                                   num_shards=1)
        tfds.builder(name, data_dir=data_dir).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=root))
        out[layout] = (root, records_dir, data_dir)
    return out


def _batches(dataset):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def _assert_equal_batches(expected, actual):
    assert len(expected) == len(actual) > 0
    for want, got in zip(expected, actual):
        assert sorted(want) == sorted(got)
        for key in want:
            assert want[key].dtype == got[key].dtype, key
            np.testing.assert_array_equal(want[key], got[key], err_msg=key)


@pytest.mark.parametrize("layout", list(CASES))
def test_builder_split_sizes_features_and_batches_equal_the_converter(prepared, layout):
    name, _, _, stored, keys = CASES[layout]
    root, records_dir, data_dir = prepared[layout]
    manifest = records.read_manifest(records_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    # Split sizes equal the converter's manifest, split by split.
    sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
    assert sizes == {split: entry["num_examples"]
                     for split, entry in manifest["splits"].items()}
    assert len(sizes) >= 2
    # tfds.load returns the declared features, with their dtypes.
    features = builder.info.features
    assert set(features.keys()) == stored | {common.IMAGE, common.SOURCE_ID}
    example = next(iter(tfds.load(name, split="train[:1]", data_dir=data_dir)))
    assert set(example) == set(features.keys())
    for key, value in example.items():
        assert value.dtype == features[key].tf_dtype, key
    assert builder.info.citation.strip().startswith("@")
    assert builder.info.metadata["depth_png_scale"] == common.DEPTH_PNG_SCALE
    if common.SEMANTIC in stored:
        names = (datasets.CAMVID_CLASS_NAMES if layout == "camvid"
                 else datasets.CITYSCAPES_TRAIN_NAMES)
        assert features[common.SEMANTIC].names == list(names)
    # The pipeline gives the same batches from the TFDS split as from the records, in order.
    from_records = pipeline.make_dataset(records.split_pattern(records_dir, "train"), keys, 2,
                                         training=False, deterministic=True)
    from_tfds = pipeline.make_dataset(f"tfds:{name}:train", keys, 2, training=False,
                                      deterministic=True, tfds_data_dir=data_dir)
    _assert_equal_batches(_batches(from_records), _batches(from_tfds))


def test_training_batches_equal_with_augmentation_and_slicing(prepared):
    """Shuffled, repeated, augmented training batches (crop, scale, flip, jitter, pairs
    padded) are equal too: same order, same per-element seeds; and split slicing works."""
    name, _, _, _, keys = CASES["kitti"]
    _, records_dir, data_dir = prepared["kitti"]
    args = dict(keys=keys, batch_size=2, training=True, image_size=(32, 96),
                crop_size=(24, 64), scale_range=(0.8, 1.2), deterministic=True, seed=3)

    def take(pattern, **extra):
        return _batches(pipeline.make_dataset(pattern, **args, **extra).take(3))

    _assert_equal_batches(take(records.split_pattern(records_dir, "train")),
                          take(f"tfds:{name}:train", tfds_data_dir=data_dir))
    # Slices: the first example of the split, read twice in one batch.
    sliced = _batches(pipeline.make_dataset(f"tfds:{name}:train[:1]", [common.DEPTH], 2,
                                            training=False, deterministic=True,
                                            tfds_data_dir=data_dir, repeat=True).take(1))[0]
    np.testing.assert_array_equal(sliced[common.SOURCE_ID][0], sliced[common.SOURCE_ID][1])
    assert pipeline.count_examples(f"tfds:{name}:train[:1]", tfds_data_dir=data_dir) == 1
    # Two input pipelines (distributed training): each reads every other example, as from
    # records in fewer files than pipelines.
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    _assert_equal_batches(
        _batches(pipeline.make_dataset(records.split_pattern(records_dir, "train"), keys, 2,
                                       training=False, input_context=context)),
        _batches(pipeline.make_dataset(f"tfds:{name}:train", keys, 2, training=False,
                                       input_context=context, tfds_data_dir=data_dir)))
    # A labelled subset by source id (data/subsets.py) selects TFDS examples too.
    wanted = sliced[common.SOURCE_ID][0].decode()
    subset = _batches(pipeline.make_dataset(f"tfds:{name}:train+val", [common.DEPTH], 4,
                                            training=False, tfds_data_dir=data_dir,
                                            source_ids=[wanted]))
    assert [s.decode() for s in subset[0][common.SOURCE_ID]] == [wanted]
    assert pipeline.count_examples(f"tfds:{name}:train+val", tfds_data_dir=data_dir) == 4


def test_bad_manual_dir_gives_the_converters_errors(prepared, tmp_path):
    data_dir = str(tmp_path / "tfds")
    config = tfds.download.DownloadConfig
    # Missing folder: the error names it and shows the layout to put there.
    missing = str(tmp_path / "no_such_dataset")
    with pytest.raises(errors.BadInputError, match=r"(?s)no_such_dataset does not exist.*"
                                                   r"train,val,test\}\.txt"):
        tfds.builder("camvid_depthseg/native", data_dir=data_dir).download_and_prepare(
            download_config=config(manual_dir=missing))
    # A folder without any split index.
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("not camvid")
    with pytest.raises(errors.BadInputError, match="no split of camvid_depthseg found"):
        tfds.builder("camvid_depthseg/native", data_dir=data_dir).download_and_prepare(
            download_config=config(manual_dir=str(tmp_path / "empty")))
    # A corrupt image: the converter's message, word for word.
    root = str(tmp_path / "camvid")
    shutil.copytree(prepared["camvid"][0], root)
    spec = camvid.list_samples(root, "val")[1]
    with open(spec.image_path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(errors.BadInputError) as converter_error:
        camvid.load_sample(spec, camvid.Options(height=0, width=0))
    with pytest.raises(errors.BadInputError) as builder_error:
        tfds.builder("camvid_depthseg/native", data_dir=data_dir).download_and_prepare(
            download_config=config(manual_dir=root))
    assert str(builder_error.value) == str(converter_error.value)
    assert spec.image_path in str(builder_error.value)
    # KITTI without a neighbour frame: the converter's message too.
    root = str(tmp_path / "kitti")
    shutil.copytree(prepared["kitti"][0], root)
    spec = kitti.list_samples(root, "val")[0]
    os.remove(kitti.image_path(spec, spec.frame + 1))
    with pytest.raises(errors.BadInputError, match="missing neighbour frame") as builder_error:
        tfds.builder("kitti_depthseg", data_dir=data_dir).download_and_prepare(
            download_config=config(manual_dir=root))
    with pytest.raises(errors.BadInputError) as converter_error:
        kitti.load_sample(spec, kitti.Options())
    assert str(builder_error.value) == str(converter_error.value)


def test_pipeline_errors_name_the_tfds_source(prepared, tmp_path):
    _, _, data_dir = prepared["camvid"]
    cases = [
        ("tfds:camvid_depthseg/native", [common.SEMANTIC], data_dir,
         "tfds:<name>\\[/<config>\\]:<split>"),
        ("tfds:camvid_depthseg:train", [common.SEMANTIC], data_dir,
         "camvid_depthseg is not prepared in .*download_and_prepare"),
        ("tfds:camvid_depthseg/native:train", [common.SEMANTIC], str(tmp_path),
         "not prepared in"),
        ("tfds:camvid_depthseg/nosuchconfig:train", [common.SEMANTIC], data_dir,
         "nosuchconfig not found"),
        ("tfds:camvid_depthseg/native:tran", [common.SEMANTIC], data_dir,
         "Unknown split 'tran'.*splits of camvid_depthseg/native: \\['test', 'train', 'val'\\]"),
        ("tfds:camvid_depthseg/native:train", [common.DEPTH], data_dir,
         "has no depth feature .*asks for depth"),
        ("tfds:mannequin_depthseg/native:train", [common.CONTEXT], prepared["mannequin"][2],
         None),
    ]
    for pattern, keys, directory, message in cases:
        if message is None:  # 2 neighbour frames stored, data.num_context=1 asked for
            message = "context holds 2 frames per example but data.num_context=1 needs 1"
            num_context = 1
        else:
            num_context = 2
        with pytest.raises(errors.BadInputError, match=message):
            pipeline.make_dataset(pattern, keys, 2, training=False, num_context=num_context,
                                  tfds_data_dir=directory)


def test_config_keeps_tfds_patterns_and_resolves_the_data_dir():
    config = config_lib.apply_overrides(config_lib.ExperimentConfig(), [
        "data.train_pattern=tfds:camvid_depthseg/native:train[:50]",
        "data.eval_pattern=records/val-*.tfrecord", "data.tfds_data_dir=tfds_data"])
    resolved = config_lib.resolve_paths(config, lambda path: "/abs/" + path)
    assert resolved.data.train_pattern == "tfds:camvid_depthseg/native:train[:50]"
    assert resolved.data.eval_pattern == "/abs/records/val-*.tfrecord"
    assert resolved.data.tfds_data_dir == "/abs/tfds_data"


def test_custom_config_object_prepares_and_feeds_the_pipeline(prepared):
    """A config not among BUILDER_CONFIGS (other converter options) is prepared from its
    object, then read by name."""
    root, _, data_dir = prepared["camvid"]
    config = builders.DepthsegConfig(name="tiny", description="16x52",
                                     options=camvid.Options(height=16, width=52))
    builder = tfds.builder("camvid_depthseg", config=config, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
    assert builder.info.splits["val"].num_examples == 2
    batch = next(iter(pipeline.make_dataset("tfds:camvid_depthseg/tiny:val", [common.SEMANTIC],
                                            2, training=False, tfds_data_dir=data_dir)))
    assert batch[common.IMAGE].shape == (2, 16, 52, 3)
    assert batch[common.SEMANTIC].shape == (2, 16, 52, 1)


@pytest.mark.parametrize("layout", ["kitti", "megadepth"])
def test_converted_records_read_by_tfds_tooling(prepared, layout, tmp_path):
    """records_metadata.write_metadata lets tfds.builder_from_directory read a converted
    folder as it is: the manifest's splits and sizes, every schema feature decoded."""
    from tf_depthseg.data import schema
    from tf_depthseg.tfds import records_metadata
    folder = str(tmp_path / "records")
    shutil.copytree(prepared[layout][1], folder)
    names = datasets.CITYSCAPES_TRAIN_NAMES if layout == "kitti" else None
    sizes = records_metadata.write_metadata(folder, class_names=names)
    manifest = records.read_manifest(folder)
    assert sizes == {split: e["num_examples"] for split, e in manifest["splits"].items()}
    builder = tfds.builder_from_directory(folder)
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == sizes
    got = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
    want = schema.decode_example(next(records.iterate_records(
        records.split_pattern(folder, "train"))))
    assert got["image"]["source_id"].decode() == want.source_id
    # MegaDepth keeps its JPEG bytes: compare with TensorFlow's decoding of them (Pillow's
    # JPEG decoder differs by a few levels).
    np.testing.assert_array_equal(got["image"]["encoded"],
                                  tf.io.decode_image(want.encoded_image, channels=3).numpy())
    np.testing.assert_array_equal(got["depth"]["encoded"][..., 0],
                                  np.round(want.depth * common.DEPTH_PNG_SCALE))
    if layout == "kitti":
        np.testing.assert_array_equal(got["image"]["context"]["encoded"], np.stack(want.context))
        np.testing.assert_array_equal(got["camera"]["intrinsics"], want.intrinsics)
        np.testing.assert_array_equal(got["segmentation"]["class"]["encoded"][..., 0],
                                      want.semantic)
        np.testing.assert_array_equal(got["segmentation"]["instance"]["encoded"][..., 0],
                                      np.stack(want.instances))
        assert builder.info.features["segmentation"]["class"]["encoded"].names[0] == "road"
    else:
        np.testing.assert_array_equal(got["weak"]["pairs"], want.weak_pairs)


@pytest.mark.skipif(not os.path.isdir(CAMVID_SAMPLE),
                    reason=f"real CamVid sample not found at {CAMVID_SAMPLE}")
def test_real_camvid_sample(tmp_path):
    """The real SegNet CamVid sample: 8 / 4 / 4 frames; images and labels as in the files
    (void 11 -> 255)."""
    from tf_depthseg.data import image_io
    builder = tfds.builder("camvid_depthseg/native", data_dir=str(tmp_path))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=CAMVID_SAMPLE))
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
        "train": 8, "val": 4, "test": 4}
    specs = camvid.list_samples(CAMVID_SAMPLE, "val")
    for spec, example in zip(specs, tfds.as_numpy(builder.as_dataset(split="val"))):
        assert example["source_id"].decode() == spec.source_id
        np.testing.assert_array_equal(example["image"], image_io.read_image(spec.image_path))
        labels = image_io.read_label_png(spec.label_path)
        np.testing.assert_array_equal(example["semantic"][..., 0],
                                      np.where(labels == 11, 255, labels))
