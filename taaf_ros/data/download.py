"""Download the public originals (FSDD, MNIST) and verify their SHA-256 checksums.

MNIST: the published SHA-256 values of the canonical gzip files (the same values that
TensorFlow Datasets and many other loaders pin), downloaded from the CVDF mirror, since
yann.lecun.com often refuses downloads.

FSDD: no SHA-256 of the GitHub release archive is published. GitHub archives are generated on
demand, so the first download's hash is recorded beside it (trust on first use) with a warning,
and every later run verifies against that recorded value.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the expected value."""


@dataclass(frozen=True)
class Source:
    """One downloadable file: URL, file name and SHA-256 (None: trust on first use)."""

    url: str
    filename: str
    sha256: str | None


MNIST_MIRROR = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_SOURCES = (
    Source(MNIST_MIRROR + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
           "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    Source(MNIST_MIRROR + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
           "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
)
FSDD_VERSION = "v1.0.10"
FSDD_SOURCE = Source(
    f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{FSDD_VERSION}"
    ".tar.gz", f"free-spoken-digit-dataset-{FSDD_VERSION}.tar.gz", None)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: str | Path, expected: str | None) -> str:
    """Check ``path`` against ``expected`` SHA-256, or against ``<path>.sha256`` if recorded.

    With no expected value and no record, the hash is recorded (trust on first use) and a
    warning says so.

    Returns:
        The file's SHA-256.

    Raises:
        ChecksumError: the hash differs.
    """
    path = Path(path)
    actual = sha256_file(path)
    record = path.with_name(path.name + ".sha256")
    if expected is None and record.is_file():
        expected = record.read_text().split()[0]
    if expected is None:
        warnings.warn(f"{path.name}: no published SHA-256; recording {actual} in {record.name} "
                      "(trust on first use) - later runs verify against it", stacklevel=2)
        record.write_text(f"{actual}  {path.name}\n")
    elif actual != expected.lower():
        raise ChecksumError(f"{path}: SHA-256 {actual} != expected {expected}")
    return actual


def download(source: Source, folder: str | Path) -> Path:
    """Fetch ``source`` into ``folder`` (skipped if a verified copy is there) and verify it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / source.filename
    if not dest.is_file():
        # Download to a temporary name and rename, so an interrupted run leaves no half file.
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(source.url, timeout=60) as r:
                shutil.copyfileobj(r, f)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
    verify_checksum(dest, source.sha256)
    return dest


def fetch_mnist(folder: str | Path) -> Path:
    """Download the MNIST test set (10,000 images) into ``folder``; returns the folder."""
    for src in MNIST_SOURCES:
        download(src, folder)
    return Path(folder)


def fetch_fsdd(folder: str | Path) -> Path:
    """Download and unpack FSDD's recordings; returns the folder holding the WAV files."""
    folder = Path(folder)
    archive = download(FSDD_SOURCE, folder)
    out = folder / "recordings"
    if not out.is_dir():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile()
                       and "/recordings/" in m.name and m.name.endswith(".wav")]
            out.mkdir(parents=True)
            for m in members:
                # Write by base name only: archive paths never escape the target folder.
                src = tar.extractfile(m)
                if src is not None:
                    (out / Path(m.name).name).write_bytes(src.read())
    return out
