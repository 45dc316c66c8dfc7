"""Small utilities every room uses: progress bars and atomic file writes.

No TensorFlow or absl imports, so converter worker processes can use it cheaply.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterable, Iterator, Optional


def progress(iterable: Optional[Iterable], total: Optional[int] = None, desc: str = "",
             unit: str = "it"):
    """A tqdm progress bar on stderr (ETA, rate); off when TF_DEPTHSEG_PROGRESS=0, so CI logs
    stay short."""
    from tqdm.auto import tqdm
    disable = os.environ.get("TF_DEPTHSEG_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                dynamic_ncols=True, mininterval=0.5)


@contextlib.contextmanager
def atomic_output(path: str, prefix: str = ".tmp-") -> Iterator[str]:
    """Yields a temporary path next to `path`; renames it onto `path` if the block succeeds.

    A kill or an exception mid-write leaves either the old file or no file, never a truncated
    one; the temporary file is removed on an exception. The result gets the permissions a plain
    `open()` would give (mkstemp creates 0600 files).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temporary file in the same folder, then renames."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text (JSON files, reports)."""
    atomic_write_bytes(path, text.encode("utf-8"))
