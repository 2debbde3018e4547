"""Public tallies of a BB84 run, and the estimates both parties derive from them.

Both parties build the same :class:`Tally` from public messages only (pulse
counts, Alice's intensity indices of detected pulses, basis matches, test-basis
errors, key-basis errors found by reconciliation), so both compute the same
decoy bounds and the same finite-key length without agreeing on them again.

Roles of the bases (Lim et al., PRA 89, 022307 (2014)): Z is the key basis,
every intensity's Z-basis sifted bits form the raw key; X is the test basis,
whose sifted bits Alice discloses in full (all intensities), giving the phase
error estimate and the pre-reconciliation QBER. The key-basis QBER per
intensity is counted from the bits Cascade corrected (exact once the
verification hash matched); it does not enter the key length, which uses the
bits Cascade actually disclosed (``leak_ec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd import (
    DecoyBounds,
    DecoyCounts,
    FiniteKeyInput,
    FiniteKeyResult,
    secret_key_length,
    vacuum_weak_decoy_bounds,
)

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
N_INTENSITIES = 3  # signal, decoy, vacuum
SIGNAL = 0


def _zeros() -> I64:
    return np.zeros(N_INTENSITIES, dtype=np.int64)


@dataclass(frozen=True)
class BB84Statistics:
    """Counts per intensity index (0 signal, 1 decoy, 2 vacuum) over the used blocks.

    ``pulses_sent``: every pulse of every block (revealed and discarded included);
    ``window_pulses``: pulses in the used blocks' counting windows (between each
    block's first and last click, revealed included);
    ``pulses``: Alice's unrevealed pulses in those windows;
    ``detections``: pulses Bob detected (squashed, any basis, revealed excluded);
    ``key_sifted`` / ``test_sifted``: basis-matched detections in Z / X;
    ``test_errors``: X-basis errors (disclosed); ``key_errors``: Z-basis errors
    corrected by reconciliation (None before reconciliation succeeded).
    """

    mus: tuple[float, float, float]
    blocks: int
    blocks_used: int
    acquisition_s: float
    pulses_sent: int
    window_pulses: int
    pulses: I64
    detections: I64
    key_sifted: I64
    test_sifted: I64
    test_errors: I64
    key_errors: I64 | None = None

    @property
    def gains(self) -> F64:
        """Q_k = detections / pulses."""
        out: F64 = self.detections / np.maximum(self.pulses, 1)
        return out

    @property
    def qber_test(self) -> F64:
        """X-basis (test) QBER per intensity (NaN where nothing was compared)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out: F64 = np.where(self.test_sifted > 0, self.test_errors / self.test_sifted, np.nan)
        return out

    @property
    def qber_key(self) -> F64 | None:
        """Z-basis (key) QBER per intensity, from reconciliation; None before it."""
        if self.key_errors is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            out: F64 = np.where(self.key_sifted > 0, self.key_errors / self.key_sifted, np.nan)
        return out

    @property
    def test_qber_all(self) -> float:
        """X-basis QBER over all intensities (the error-rate estimate for Cascade)."""
        n = int(self.test_sifted.sum())
        return float(self.test_errors.sum() / n) if n else float("nan")

    @property
    def sifted_key_bits(self) -> int:
        return int(self.key_sifted.sum())


@dataclass
class Tally:
    """Accumulates the public per-block counts into :class:`BB84Statistics`."""

    mus: tuple[float, float, float]
    blocks: int = 0
    blocks_used: int = 0
    acquisition_s: float = 0.0
    pulses_sent: int = 0
    window_pulses: int = 0
    pulses: I64 = field(default_factory=_zeros)
    detections: I64 = field(default_factory=_zeros)
    key_sifted: I64 = field(default_factory=_zeros)
    test_sifted: I64 = field(default_factory=_zeros)
    test_errors: I64 = field(default_factory=_zeros)
    key_errors: I64 | None = None

    def add_block(
        self,
        *,
        duration_s: float,
        pulses_sent: int,
        window_pulses: int,
        pulses: I64,
        detected_intensity: NDArray[np.uint8],
        match: NDArray[np.bool_],
        bases: NDArray[np.uint8],
        test_errors: I64,
    ) -> None:
        """One aligned block: per announced detection its intensity, basis match and basis."""
        k = N_INTENSITIES
        self.blocks += 1
        self.blocks_used += 1
        self.acquisition_s += duration_s
        self.pulses_sent += pulses_sent
        self.window_pulses += window_pulses
        self.pulses += np.asarray(pulses, dtype=np.int64)
        # One pass: each detection's (intensity, basis match, basis) as one code, counted.
        # Intensity indices beyond the set land past 4k and are not counted, as before.
        inten = np.asarray(detected_intensity).astype(np.uint16)
        code = (inten << 2) | (np.asarray(match, dtype=np.uint16) << 1) | (bases & 1)
        counts = np.bincount(code, minlength=4 * k)[: 4 * k].reshape(k, 4)
        self.detections += counts.sum(axis=1)
        self.key_sifted += counts[:, 2]  # matched, Z
        self.test_sifted += counts[:, 3]  # matched, X
        self.test_errors += np.asarray(test_errors, dtype=np.int64)

    def discard_block(self, duration_s: float, pulses_sent: int) -> None:
        self.blocks += 1
        self.acquisition_s += duration_s
        self.pulses_sent += pulses_sent

    def snapshot(self) -> BB84Statistics:
        return BB84Statistics(
            self.mus,
            self.blocks,
            self.blocks_used,
            self.acquisition_s,
            self.pulses_sent,
            self.window_pulses,
            self.pulses.copy(),
            self.detections.copy(),
            self.key_sifted.copy(),
            self.test_sifted.copy(),
            self.test_errors.copy(),
            None if self.key_errors is None else self.key_errors.copy(),
        )


def decoy_counts(stats: BB84Statistics) -> DecoyCounts:
    """Gains from all detections, error rates from the disclosed test basis."""
    return DecoyCounts(
        stats.mus, stats.pulses, stats.detections, stats.test_sifted, stats.test_errors
    )


def decoy_bounds(stats: BB84Statistics, eps: float) -> DecoyBounds | None:
    """Finite-size vacuum + weak decoy bounds (Ma et al. 2005) at ``eps`` per count.

    None when they cannot be formed (vacuum intensity not 0, or no test bits at the decoy).
    """
    if stats.mus[2] != 0 or stats.test_sifted[1] == 0 or np.any(stats.pulses == 0):
        return None
    return vacuum_weak_decoy_bounds(decoy_counts(stats), eps=eps)


def finite_key(
    stats: BB84Statistics,
    probabilities: tuple[float, float, float],
    leak_ec: int,
    eps_sec: float,
    eps_cor: float,
) -> FiniteKeyResult:
    """Lim et al. (2014) secret length for the Z-basis key of all intensities."""
    return secret_key_length(
        FiniteKeyInput(
            mu=stats.mus,
            p_mu=probabilities,
            n_key=stats.key_sifted.astype(float),
            n_test=stats.test_sifted.astype(float),
            m_test=stats.test_errors.astype(float),
            leak_ec=float(leak_ec),
            eps_sec=eps_sec,
            eps_cor=eps_cor,
        )
    )
