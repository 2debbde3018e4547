"""Alice's per-block randomness: symbols and the revealed alignment subset.

Every block gets fresh symbols from a generator seeded by the operating
system's CSPRNG (``secrets``), never from the world's seeded RNG, so no pattern
repeats across blocks and nothing in a profile can predict them.
Symbol = bit | basis << 1 | intensity_index << 2 (basis 0 = Z, 1 = X), the
PatternGenerator role's convention.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd import AliceRecord

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]


def secure_generator() -> np.random.Generator:
    """A numpy generator seeded with 128 bits from the OS CSPRNG."""
    return np.random.Generator(np.random.PCG64(secrets.randbits(128)))


@dataclass(frozen=True)
class BlockPattern:
    """One block's symbols and which positions Alice reveals for alignment."""

    symbols: U8
    revealed: I64  # sorted pattern positions

    @property
    def n(self) -> int:
        return int(self.symbols.size)

    @property
    def bits(self) -> U8:
        return (self.symbols & 1).astype(np.uint8)

    @property
    def bases(self) -> U8:
        return ((self.symbols >> 1) & 1).astype(np.uint8)

    @property
    def intensities(self) -> U8:
        return (self.symbols >> 2).astype(np.uint8)

    def record(self) -> AliceRecord:
        return AliceRecord(self.bits, self.bases, self.intensities)

    def record_at(self, positions: I64) -> AliceRecord:
        """The record of the pulses at ``positions`` only (record index i = positions[i]):
        sifting reads nothing else, and the whole record is three passes over a block."""
        s = self.symbols[positions]
        one, two = np.uint8(1), np.uint8(2)
        return AliceRecord(s & one, (s >> one) & one, s >> two)

    def in_window(self, start: int, count: int) -> NDArray[np.bool_]:
        """Mask of the ``count`` consecutive positions from ``start`` (wrapping at the end)."""
        out = np.zeros(self.n, dtype=bool)
        for lo, hi in self._window_slices(start, count):
            out[lo:hi] = True
        return out

    def _window_slices(self, start: int, count: int) -> list[tuple[int, int]]:
        n = self.n
        start, count = int(start) % n, max(0, min(int(count), n))
        if start + count <= n:
            return [(start, start + count)]
        return [(start, n), (0, start + count - n)]

    def unrevealed_pulses(self, n_intensities: int, start: int, count: int) -> I64:
        """Pulses per intensity index in the window, outside the revealed subset."""
        counts = np.zeros(n_intensities, dtype=np.int64)
        intensities = self.symbols >> 2
        for lo, hi in self._window_slices(start, count):
            counts += np.bincount(intensities[lo:hi], minlength=n_intensities)[:n_intensities]
        rev = self.revealed
        if rev.size:
            inside = np.mod(rev - int(start), self.n) < count
            counts -= np.bincount(intensities[rev[inside]], minlength=n_intensities)[:n_intensities]
        return counts


#: Each biased choice (basis, intensity) compares a 32-bit uniform word with a threshold:
#: the probabilities are realised as multiples of 2^-32 (within 2.4e-10 of the settings).
_WORD = 1 << 32


def _threshold(p: float) -> np.uint32:
    return np.uint32(min(max(round(p * _WORD), 1), _WORD - 1))


def _words(rng: np.random.Generator, n: int) -> NDArray[np.uint32]:
    """``n`` uniform 32-bit words, straight from the bit generator (its fastest path)."""
    out: NDArray[np.uint32] = rng.bit_generator.random_raw(-(-n // 2)).view(np.uint32)[:n]
    return out


def _bernoulli_positions(rng: np.random.Generator, n: int, p: float) -> I64:
    """Sorted positions in [0, n), each included independently with probability ``p``:
    the gaps of a Bernoulli process are geometric, so only ~p n draws are needed."""
    expect = n * p
    gaps = rng.geometric(p, size=int(expect + 8 * expect**0.5 + 16))
    pos = np.cumsum(gaps, dtype=np.int64) - 1
    while pos[-1] < n - 1:  # (rare) not yet past the end: draw on
        more = rng.geometric(p, size=int(8 * expect**0.5 + 16))
        pos = np.concatenate([pos, pos[-1] + np.cumsum(more, dtype=np.int64)])
    return pos[: int(np.searchsorted(pos, n))]


def draw_pattern(
    rng: np.random.Generator,
    n: int,
    z_probability: float,
    intensity_probabilities: tuple[float, ...],
    reveal_fraction: float,
) -> BlockPattern:
    """Fresh symbols (bits uniform, basis Z w.p. ``z_probability``, intensities i.i.d.)
    and an independent random subset of about ``reveal_fraction * n`` positions.

    Vectorised for 80 MHz blocks of up to 16 Mi symbols: two 32-bit words per symbol
    (basis, intensity), one bit per symbol for the bit value and geometric gaps for the
    revealed subset; a few byte-wide passes in all.
    """
    symbols = np.unpackbits(rng.bit_generator.random_raw(-(-n // 64)).view(np.uint8), count=n)
    x_basis = (_words(rng, n) >= _threshold(z_probability)).view(np.uint8)
    symbols |= x_basis << np.uint8(1)
    edges = np.cumsum(intensity_probabilities)[:-1]
    intensity = np.zeros(n, dtype=np.uint8)
    intensity_word = _words(rng, n)
    for edge in edges:
        intensity += (intensity_word >= _threshold(float(edge))).view(np.uint8)
    symbols |= intensity << np.uint8(2)
    return BlockPattern(symbols, _bernoulli_positions(rng, n, reveal_fraction))
