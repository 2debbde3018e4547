"""Seeded randomness: one generator per component, and counter-based per-pulse draws.

Component streams are derived from the world seed and the component's *name*
(a hash of it goes into the SeedSequence spawn key), so adding or removing a
component never changes another component's stream. One exception: the jitter and
afterpulses of the detectors wired to one tagger are drawn for all of them at once,
from their bank's stream, so a detector added to that tagger changes its neighbours'
draws (not their statistics).

Some per-pulse quantities must be the same whichever detector asks about the pulse
(Eve's choices, a pulse's intensity fluctuation) and whatever batch the pulse falls
in. They are pure functions of (key, stream, pulse index): a SplitMix64 hash, so a
pulse's randomness is computed only for the pulses that matter, vectorised.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / float(1 << 53)
_S40 = np.uint64(40)
_LOW24 = np.uint64((1 << 24) - 1)
_INV24_F32 = np.float32(2.0**-24)
_ANGLE_STEP_F32 = np.float32(2.0 * math.pi / 2**24)
# Selected positions per vectorised pass: the working arrays stay in the L2 cache.
POSITION_CHUNK = 1 << 15


def seed_sequence(seed: int, name: str) -> np.random.SeedSequence:
    """SeedSequence of component ``name`` under world ``seed``."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    words = tuple(int(w) for w in np.frombuffer(digest, dtype="<u4"))
    return np.random.SeedSequence(entropy=seed, spawn_key=words)


def component_generator(seed: int, name: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, name)))


def component_key(seed: int, name: str) -> int:
    """A 64-bit key for counter-based draws of component ``name``."""
    return int(seed_sequence(seed, name + "#counter").generate_state(1, np.uint64)[0])


def derive_key(key: int, label: str) -> int:
    """A 64-bit key derived from ``key`` and a text label (stable across processes)."""
    digest = hashlib.blake2b(
        label.encode("utf-8"), digest_size=8, key=key.to_bytes(8, "little")
    ).digest()
    return int.from_bytes(digest, "little")


def splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _stream_key(key: int, stream: int) -> np.uint64:
    mixed = splitmix64(
        np.array([key ^ (stream * 0xD1B54A32D192ED03 & 0xFFFFFFFFFFFFFFFF)], np.uint64)
    )
    return np.uint64(mixed[0])


def hash_uniform(key: int, stream: int, index: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Uniform [0, 1) draws, one per index, a pure function of (key, stream, index)."""
    idx = np.asarray(index, dtype=np.int64).astype(np.uint64)
    h = splitmix64(idx * _GOLDEN + _stream_key(key, stream))
    return (h >> _S11).astype(np.float64) * _INV53


def hash_normal(key: int, stream: int, index: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Standard normal draws, one per index, a pure function of (key, stream, index)."""
    u = hash_uniform(key, stream, index) + 0.5 * _INV53
    return np.asarray(ndtri(u), dtype=np.float64)


def bernoulli_position_chunks(
    rng: np.random.Generator, n: int, q: float, chunk: int | None = None
) -> Iterator[npt.NDArray[np.int64]]:
    """Sorted indices in [0, n), each selected independently with probability q, in
    consecutive chunks of at most ``chunk`` (cost ~ n q, never ~ n).

    Gaps are geometric, drawn as floor(Exp / -log(1 - q)) + 1 (cheaper than rng.geometric).
    """
    chunk = chunk or POSITION_CHUNK
    if n <= 0 or q <= 0:
        return
    if q >= 1:
        for s in range(0, n, chunk):
            yield np.arange(s, min(n, s + chunk), dtype=np.int64)
        return
    scale = -1.0 / math.log1p(-q)
    cap = scale > 1e15  # an exponential draw is below ~40
    last = -1
    while True:
        mean = (n - 1 - last) * q
        size = min(chunk, int(mean + 6 * math.sqrt(mean) + 16))
        gaps = rng.standard_exponential(size)
        gaps *= scale
        if cap:
            # A gap past the end ends the stream; capping keeps tiny q from overflowing int64.
            np.minimum(gaps, float(n), out=gaps)
        pos = gaps.astype(np.int64)  # floor, the gaps being >= 0
        pos += 1
        np.cumsum(pos, out=pos)
        pos += last
        if pos[-1] >= n:
            cut = int(np.searchsorted(pos, n))
            if cut:
                yield pos[:cut]
            return
        last = int(pos[-1])
        yield pos


def bernoulli_positions(rng: np.random.Generator, n: int, q: float) -> npt.NDArray[np.int64]:
    """Sorted indices in [0, n), each selected independently with probability q."""
    chunks = list(bernoulli_position_chunks(rng, n, q, chunk=1 << 62))
    if not chunks:
        return np.zeros(0, np.int64)
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def standard_normal(
    rng: np.random.Generator, n: int, scale: float = 1.0
) -> npt.NDArray[np.float32]:
    """n independent normal draws (mean 0, standard deviation ``scale``), float32, by the
    Box-Muller transform.

    Three to four times as fast as ``Generator.standard_normal`` (whose ziggurat is scalar
    code): one 64-bit word per pair gives two 24-bit uniforms, radius and angle, and
    log/sqrt/sin/cos run as SIMD float32. The radius grid truncates the law at 5.77
    sigma (a tail of 8e-9); the angle grid, 2 pi / 2^24, moves a draw by at most 4e-7
    of its size. Add to float64 times with ``np.add(times, draws)``: float32 holds a
    jitter, not a timestamp.
    """
    half = (n + 1) // 2
    raw = rng.bit_generator.random_raw(half)
    r = (raw >> _S40).astype(np.float32)
    r += np.float32(1.0)  # (0, 1] in steps of 2^-24: the log stays finite
    r *= _INV24_F32
    np.log(r, out=r)
    r *= np.float32(-2.0 * scale * scale)
    np.sqrt(r, out=r)
    raw &= _LOW24
    theta = raw.astype(np.float32)
    theta *= _ANGLE_STEP_F32
    out = np.empty(2 * half, np.float32)
    np.multiply(r, np.cos(theta), out=out[:half])
    np.multiply(r, np.sin(theta), out=out[half:])
    return out[:n]
