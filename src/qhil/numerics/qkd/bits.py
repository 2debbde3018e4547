"""Bit arrays: validation and packing for the classical messages.

Keys are 1-D ``uint8`` arrays of 0/1 values (one bit per byte) inside the
numerics, and packed bytes (``np.packbits``, big-endian within a byte) on the
wire, with the bit count sent alongside.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

BitArray = NDArray[np.uint8]


def as_bits(values: ArrayLike, name: str = "bits") -> BitArray:
    """Return ``values`` as a 1-D uint8 array of 0/1, or raise naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D bit array (got shape {arr.shape})")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer 0/1 values (got dtype {arr.dtype})")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name}: values must be 0 or 1")
    return arr.astype(np.uint8, copy=False)


def pack_bits(bits: ArrayLike) -> bytes:
    """Pack a 0/1 array into bytes (the bit count travels separately)."""
    return np.packbits(as_bits(bits)).tobytes()


def unpack_bits(data: bytes, n_bits: int) -> BitArray:
    """Inverse of :func:`pack_bits`."""
    if n_bits < 0 or n_bits > 8 * len(data):
        raise ValueError(f"unpack_bits: {n_bits} bits do not fit in {len(data)} bytes")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n_bits)


def random_bits(rng: np.random.Generator, n: int) -> BitArray:
    """n uniform random bits from ``rng`` (fast: 8 bits per random byte)."""
    if n < 0:
        raise ValueError(f"random_bits: n must be >= 0 (got {n})")
    raw = rng.integers(0, 256, size=(n + 7) // 8, dtype=np.uint8)
    return np.unpackbits(raw, count=n)
