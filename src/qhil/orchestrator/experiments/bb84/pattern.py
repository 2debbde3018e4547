"""Alice's per-block randomness: symbols and the revealed alignment subset.

Every block gets fresh symbols from a cryptographic generator keyed by the
operating system's CSPRNG (:func:`qhil.numerics.qkd.randomness.secure_generator`,
AES-128-CTR), never from the world's seeded RNG, so no pattern repeats across
blocks and nothing in a profile or in the public messages can predict them.
Symbol = bit | basis << 1 | intensity_index << 2 (basis 0 = Z, 1 = X), the
PatternGenerator role's convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd import AliceRecord, random_bits

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]


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


def draw_pattern(
    rng: np.random.Generator,
    n: int,
    z_probability: float,
    intensity_probabilities: tuple[float, ...],
    reveal_fraction: float,
) -> BlockPattern:
    """Fresh symbols (bits uniform, basis Z w.p. ``z_probability``, intensities i.i.d.)
    and an independent random subset of about ``reveal_fraction * n`` positions."""
    # A faster draw (raw 32-bit words, geometric gaps for the revealed subset; ~6.5 instead
    # of ~17 ns per symbol) was tried and reverted: with it, Bob's settling measurement at
    # 61 km missed the previous pattern's light far more often (tests/experiments/bb84/
    # test_settle_measured.py failed at 3 of 4 seeds, the draw below at none), for a
    # reason not found in the time; benchmarks/README.md, "bb84_end_to_end.py".
    bits = random_bits(rng, n)
    basis = (rng.random(n) >= z_probability).astype(np.uint8)
    edges = np.cumsum(intensity_probabilities)[:-1]
    # Intensity index = how many edges lie at or below the uniform draw: what
    # searchsorted(side="right") gives, in ~3 instead of ~32 ns per symbol.
    u = rng.random(n)
    intensity = np.zeros(n, dtype=np.uint8)
    for edge in edges:
        intensity += (u >= edge).view(np.uint8)
    symbols = (bits | (basis << 1) | (intensity << 2)).astype(np.uint8)
    revealed = np.flatnonzero(rng.random(n) < reveal_fraction).astype(np.int64)
    return BlockPattern(symbols, revealed)
