"""TensorBoard scalars and images written with TensorFlow core only.

`tf.summary.scalar` / `tf.summary.image` live in the `tensorboard` package, which
`tensorflow-cpu` does not install. They are thin wrappers over `tf.summary.write` with plugin
metadata; this module writes the same records (plugin "scalars": a float32 scalar; plugin
"images": a string vector `[width, height, png_1, ..., png_k]`), so TensorBoard shows them as
usual when it is installed to view the logs.
"""

from __future__ import annotations

import collections
import glob
import os
from typing import Dict, List, Tuple

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_PLUGIN = "scalars"
_IMAGE_PLUGIN = "images"


def _metadata(plugin: str, data_class: int) -> bytes:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
        data_class=data_class).SerializeToString()


def scalar(name: str, value, step: int) -> None:
    """Writes one scalar to the default writer (see `tf.summary.create_file_writer`)."""
    tf.summary.write(name, tf.cast(value, tf.float32), step=step,
                     metadata=_metadata(_SCALAR_PLUGIN, summary_pb2.DATA_CLASS_SCALAR))


def image(name: str, images: tf.Tensor, step: int, max_outputs: int = 4) -> None:
    """Writes up to `max_outputs` uint8 `[B, H, W, 3]` images as PNGs."""
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8 or images.shape.rank != 4:
        raise ValueError(f"image summary '{name}' needs uint8 [B, H, W, C], got "
                         f"{images.dtype.name} {images.shape}")
    images = images[:max_outputs]
    encoded = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
    size = [tf.as_string(tf.shape(images)[2]), tf.as_string(tf.shape(images)[1])]
    tensor = tf.concat([tf.stack(size), encoded], axis=0)
    tf.summary.write(name, tensor, step=step,
                     metadata=_metadata(_IMAGE_PLUGIN, summary_pb2.DATA_CLASS_BLOB_SEQUENCE))


def read_scalars(logdir: str) -> Dict[str, List[Tuple[int, float]]]:
    """All scalars of the event files in `logdir`: {tag: [(step, value), ...]} (for tests and
    plots without TensorBoard)."""
    found = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(logdir, "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == _SCALAR_PLUGIN:
                    found[value.tag].append(
                        (event.step, float(tf.make_ndarray(value.tensor))))
    return dict(found)


def read_image_tags(logdir: str) -> Dict[str, int]:
    """{image tag: number of records} of the event files in `logdir`."""
    found = collections.Counter()
    for path in sorted(glob.glob(os.path.join(logdir, "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == _IMAGE_PLUGIN:
                    found[value.tag] += 1
    return dict(found)
