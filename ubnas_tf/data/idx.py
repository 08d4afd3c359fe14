"""The IDX file format of MNIST and Fashion-MNIST, read and written with numpy.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, section "FILE FORMATS FOR THE MNIST
DATABASE"): a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32 sizes,
then the data in row-major order, big-endian. MNIST images are ``0x00000803`` (unsigned byte,
3 dims: N, rows, cols) and labels ``0x00000801`` (unsigned byte, 1 dim: N).

We parse the files ourselves rather than through TFDS because TFDS checks the SHA-256 of the
files it downloads and rejects the ones Debian's ``dataset-fashion-mnist`` installs.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from ubnas_tf.errors import UserError

__all__ = ["IDX_FILES", "read_idx", "write_idx", "read_idx_folder"]

# The four files of an MNIST-format dataset, by (split, part).
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}

# IDX type byte -> numpy dtype (big-endian where it matters).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def _open(path: str):
    # Files ending in .gz are gzip streams; anything else is taken as the raw IDX bytes.
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx(path: str, *, expect_ndim: int | None = None) -> np.ndarray:
    """Reads one IDX file (optionally gzip-compressed) into a numpy array.

    Raises `UserError` when the file is missing, truncated, not gzip, or its magic number is
    not an IDX one (or has a different number of dimensions than `expect_ndim`).
    """
    try:
        with _open(path) as stream:
            raw = stream.read()
    except FileNotFoundError:
        raise UserError(f"missing IDX file {path}; put the MNIST-format file there") from None
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(
            f"cannot read IDX file {path} ({error}); replace it with an intact copy"
        ) from None
    if len(raw) < 4:
        raise UserError(f"IDX file {path} is truncated; replace it with an intact copy")
    zero1, zero2, type_code, ndim = struct.unpack(">BBBB", raw[:4])
    if zero1 or zero2 or type_code not in _IDX_DTYPES or ndim == 0:
        raise UserError(
            f"bad IDX magic number 0x{raw[:4].hex()} in {path}; expected an MNIST-format "
            "file such as 0x00000803 (images) or 0x00000801 (labels)"
        )
    if expect_ndim is not None and ndim != expect_ndim:
        raise UserError(
            f"IDX file {path} has {ndim} dimensions, expected {expect_ndim}; "
            "check that images and labels files are not swapped"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise UserError(f"IDX file {path} is truncated; replace it with an intact copy")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    dtype = _IDX_DTYPES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected_bytes:
        raise UserError(
            f"IDX file {path} holds {len(raw) - header_end} data bytes but its header "
            f"{tuple(shape)} needs {expected_bytes}; replace it with an intact copy"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 or int8 array as an IDX file, gzip-compressed when `path` ends in .gz."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _DTYPE_CODES:
        raise ValueError(f"write_idx supports uint8 and int8, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, _DTYPE_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    if path.endswith(".gz"):
        # mtime=0 keeps the file byte-identical between runs, so regenerating is a no-op in git.
        with open(path, "wb") as raw_file:
            with gzip.GzipFile(fileobj=raw_file, mode="wb", compresslevel=9, mtime=0) as stream:
                stream.write(header + array.tobytes())
    else:
        with open(path, "wb") as stream:
            stream.write(header + array.tobytes())


def _find(folder: str, name: str) -> str:
    """The path of `name` in `folder`, accepting the uncompressed file (name without .gz)."""
    path = os.path.join(folder, name)
    uncompressed = path[: -len(".gz")]
    if not os.path.exists(path) and os.path.exists(uncompressed):
        return uncompressed
    return path


def read_idx_folder(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads the four MNIST-format files of `folder`: ``{"train": (x, y), "test": (x, y)}``.

    Images come back as uint8 ``[N, H, W, 1]`` and labels as int32 ``[N]``.
    """
    if not os.path.isdir(folder):
        raise UserError(
            f"IDX folder {folder} does not exist; pass a folder holding "
            + ", ".join(IDX_FILES.values())
        )
    missing = [name for name in IDX_FILES.values() if not os.path.exists(_find(folder, name))]
    if missing:
        raise UserError(
            f"missing IDX file(s) {', '.join(missing)} in {folder}; put the four MNIST-format "
            "files there (Debian: apt install dataset-fashion-mnist)"
        )
    splits = {}
    for split in ("train", "test"):
        images = read_idx(_find(folder, IDX_FILES[(split, "images")]), expect_ndim=3)
        labels = read_idx(_find(folder, IDX_FILES[(split, "labels")]), expect_ndim=1)
        if images.dtype != np.uint8:
            raise UserError(
                f"IDX images of {folder} ({split}) are {images.dtype}, expected unsigned bytes"
            )
        if len(images) != len(labels):
            raise UserError(
                f"{split} split of {folder} has {len(images)} images but {len(labels)} labels; "
                "use matching images and labels files"
            )
        if len(images) == 0:
            raise UserError(f"{split} split of {folder} is empty; use non-empty IDX files")
        if labels.min() < 0:
            raise UserError(f"negative labels in the {split} split of {folder}; fix the file")
        splits[split] = (images[..., np.newaxis], labels.astype(np.int32))
    return splits
