"""The IDX file format of MNIST and Fashion-MNIST, plain or gzipped.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values. Only unsigned bytes (type 0x08) occur in
these datasets: magic 0x00000803 for images [N, H, W] and 0x00000801 for labels [N].
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from crlbench.errors import UserError

UBYTE = 0x08


def read_bytes(path: Path, dataset: str) -> bytes:
    """The file's content, decompressed when its name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(
            f"dataset {dataset}: cannot read {path}: {e}; replace it with the official file"
        ) from e


def parse_idx(raw: bytes, ndim: int, path: Path, dataset: str) -> np.ndarray:
    """Decode IDX bytes holding unsigned bytes in `ndim` dimensions; refuse anything else."""
    expected_magic = (UBYTE << 8) | ndim
    if len(raw) < 4:
        raise UserError(f"dataset {dataset}: {path} is {len(raw)} bytes, too short for IDX; "
                        "replace it with the official file")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise UserError(
            f"dataset {dataset}: {path} has magic number 0x{magic:08x}, expected "
            f"0x{expected_magic:08x}; it is not an IDX file of this kind, replace it"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"dataset {dataset}: {path} is truncated inside its header "
                        f"({len(raw)} of {header} bytes); replace it with the official file")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "too long"
        unpacked = " decompressed" if path.suffix == ".gz" else ""
        raise UserError(
            f"dataset {dataset}: {path} is {state}: header {list(dims)} needs {expected} bytes, "
            f"file has {len(raw)}{unpacked}; replace it with the official file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, ndim: int, dataset: str) -> np.ndarray:
    return parse_idx(read_bytes(path, dataset), ndim, path, dataset)
