"""The five datasets as TensorFlow Datasets, and TFDS splits as a training input source.

* `tf_depthseg.tfds.builders`: TFDS builders `kitti_depthseg`, `cityscapes_depthseg`,
  `camvid_depthseg`, `mannequin_depthseg` and `megadepth_depthseg`. Importing the module
  registers them; they prepare from the dataset's original layout in TFDS's `manual_dir` with
  the converters' readers (`tf_depthseg.converters`), so a TFDS dataset and our converted
  TFRecords hold the same samples.
* `tf_depthseg.tfds.source`: what `data/pipeline.py` uses for patterns such as
  `tfds:camvid_depthseg/native:train[:50]` (reads prepared datasets; needs no builder code).
* `tf_depthseg.tfds.records_metadata`: TFDS metadata for our converted TFRecord folders, so
  `tfds.builder_from_directory` reads them.

This `__init__` imports nothing: `data/pipeline.py` and the converters' tools must not pay for
TensorFlow Datasets' import unless a TFDS source is asked for.
"""
