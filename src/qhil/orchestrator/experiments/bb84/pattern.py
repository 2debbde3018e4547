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

from qhil.numerics.qkd import AliceRecord, random_bits

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

    def in_window(self, start: int, count: int) -> NDArray[np.bool_]:
        """Mask of the ``count`` consecutive positions from ``start`` (wrapping at the end)."""
        offset = np.arange(self.n, dtype=np.int64) - start
        out: NDArray[np.bool_] = np.mod(offset, self.n) < count
        return out

    def unrevealed_pulses(self, n_intensities: int, start: int, count: int) -> I64:
        """Pulses per intensity index in the window, outside the revealed subset."""
        keep = self.in_window(start, count)
        keep[self.revealed] = False
        out: I64 = np.bincount(self.intensities[keep], minlength=n_intensities)[:n_intensities]
        return out.astype(np.int64)


def draw_pattern(
    rng: np.random.Generator,
    n: int,
    z_probability: float,
    intensity_probabilities: tuple[float, ...],
    reveal_fraction: float,
) -> BlockPattern:
    """Fresh symbols (bits uniform, basis Z w.p. ``z_probability``, intensities i.i.d.)
    and an independent random subset of about ``reveal_fraction * n`` positions."""
    bits = random_bits(rng, n)
    basis = (rng.random(n) >= z_probability).astype(np.uint8)
    edges = np.cumsum(intensity_probabilities)[:-1]
    intensity = np.searchsorted(edges, rng.random(n), side="right").astype(np.uint8)
    symbols = (bits | (basis << 1) | (intensity << 2)).astype(np.uint8)
    revealed = np.flatnonzero(rng.random(n) < reveal_fraction).astype(np.int64)
    return BlockPattern(symbols, revealed)
