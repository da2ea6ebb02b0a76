"""IDX file reader (the MNIST format) and a finder for an MNIST image/label pair in a folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxFormatError(ValueError):
    """An IDX file that is truncated or has a bad header."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``).

    Returns:
        The array with the shape from its header, native byte order.

    Raises:
        IdxFormatError: bad magic number, unknown type code or wrong payload length.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip raises these on corrupt archives
        raise IdxFormatError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise IdxFormatError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxFormatError(
            f"{path}: payload is {len(raw) - header} bytes, header says {expected}")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def find_mnist_files(folder: str | Path) -> tuple[Path, Path]:
    """Find ``*images-idx3-ubyte*`` and ``*labels-idx1-ubyte*`` under ``folder`` (recursively).

    Where several pairs exist, the test set (``t10k``) is preferred, then the first by name.

    Raises:
        FileNotFoundError: no image or no label file.
    """
    folder = Path(folder)

    def pick(pattern: str) -> Path:
        found = sorted(p for p in folder.rglob(f"*{pattern}*") if p.is_file()
                       and not p.name.endswith(".sha256"))
        if not found:
            raise FileNotFoundError(f"no *{pattern}* file under {folder}")
        t10k = [p for p in found if "t10k" in p.name]
        return (t10k or found)[0]

    return pick("images-idx3-ubyte"), pick("labels-idx1-ubyte")


def load_mnist(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels uint8 (N,) from the IDX pair found in ``folder``."""
    images_path, labels_path = find_mnist_files(folder)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IdxFormatError(
            f"image/label files do not match: {images.shape} vs {labels.shape}")
    return images.astype(np.uint8, copy=False), labels.astype(np.uint8, copy=False)
