"""PNG/JPEG reading and writing with errors that name the file, and atomic writes.

Converters and the synthetic generator run in plain Python worker processes, so this module
uses Pillow (no TensorFlow import, cheap to fork). The tf.data readers decode the same bytes
with `tf.io.decode_png`; `tests/` check both agree bit for bit.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image


from tf_depthseg.errors import BadInputError
from tf_depthseg.utils import atomic_write_bytes


def encode_png(array: np.ndarray) -> bytes:
    """Encodes uint8 `[H, W]`/`[H, W, 3]` or uint16 `[H, W]` to PNG bytes (lossless)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError(f"uint16 PNG must be [H, W], got shape {array.shape}")
        image = Image.fromarray(array, mode=None)
    elif array.dtype == np.uint8:
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        image = Image.fromarray(array)
    else:
        raise ValueError(f"PNG encoding needs uint8 or uint16, got {array.dtype}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_image_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes PNG/JPEG bytes; uint16 PNGs stay uint16. Raises BadInputError naming `name`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L"):
                return np.array(image, dtype=np.uint16)
            if image.mode == "I":
                return np.array(image).astype(np.uint16)
            if image.mode in ("L", "P"):
                return np.array(image) if image.mode == "L" else np.array(image.convert("L"))
            return np.array(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise BadInputError(
            f"{name}: cannot decode image ({error}). The file is corrupt or truncated; "
            "re-extract it from the dataset archive, or pass --skip_bad to quarantine it.") from error


def read_image(path: str) -> np.ndarray:
    """Reads an image file; BadInputError names the path when it is missing or corrupt."""
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: file not found. Check the dataset root and layout.")
    with open(path, "rb") as f:
        return decode_image_bytes(f.read(), path)


def read_label_png(path: str) -> np.ndarray:
    """Reads a palette-free label PNG as uint8 `[H, W]` class indices (no colour conversion)."""
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: label file not found. Check the dataset root and layout.")
    try:
        with Image.open(path) as image:
            image.load()
            array = np.array(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise BadInputError(f"{path}: cannot decode label PNG ({error}); the file is corrupt "
                            "or truncated.") from error
    if array.ndim != 2:
        raise BadInputError(f"{path}: expected a single-channel label PNG, got shape "
                            f"{array.shape}.")
    return array


def write_png(path: str, array: np.ndarray) -> None:
    """Atomically writes `array` (see `encode_png`) as a PNG file."""
    atomic_write_bytes(path, encode_png(array))


def depth_to_png16(depth: np.ndarray, scale: float = 256.0, name: str = "depth") -> np.ndarray:
    """Metric depth `[H, W]` (0 or non-finite = invalid) -> uint16 `round(depth*scale)`.

    Raises BadInputError for NaN or negative depth: silently writing 0 would hide a broken
    converter. Depth beyond 65535/scale (256 m for KITTI's 256) is stored as invalid.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if np.isnan(depth).any():
        raise BadInputError(f"{name}: depth contains NaN; mark invalid pixels with 0 instead.")
    if (depth < 0).any():
        raise BadInputError(f"{name}: depth contains negative values (min {depth.min():.3g}); "
                            "depth must be >= 0 with 0 = invalid.")
    value = np.round(np.where(np.isfinite(depth), depth, 0.0) * scale)
    value[value > 65535] = 0
    return value.astype(np.uint16)
