"""Pauli frames, the Bell-diagonal fidelity model and the ping's statistics (pure numpy).

Bell states are Paulis on the second qubit of ``|Phi+>``: ``|B> = (I x P)|Phi+>`` with
``P = X^x Z^z``, so each is two bits ``(x, z)``: phi+ (0, 0), psi+ (1, 0), phi- (0, 1),
psi- (1, 1). A Bell-state measurement on the middle qubits of two pairs leaves the outer
two in the state whose bits are the XOR of the three (both pairs' and the outcome's):
swapping composes Pauli frames (checked against the world's qutip swap in the tests).

A pair is described, relative to its nominal Bell state, by the probabilities of the four
Pauli errors on one qubit, index ``x + 2 z`` (``[F, p_X, p_Z, p_Y]``): exact for the
Bell-diagonal states that twirled, dephased and swapped pairs are, and what three
same-basis correlations (Z, X, Y) measure completely.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BELL_BITS: dict[str, tuple[int, int]] = {
    "phi+": (0, 0),
    "psi+": (1, 0),
    "phi-": (0, 1),
    "psi-": (1, 1),
}
_BY_BITS = {bits: name for name, bits in BELL_BITS.items()}
#: The Pauli that takes a Bell state to phi+ when applied to either qubit (up to phase).
CORRECTION = {"phi+": "I", "psi+": "X", "phi-": "Z", "psi-": "Y"}
BASES = ("Z", "X", "Y")

Vector = npt.NDArray[np.float64]


def bell_name(x: int, z: int) -> str:
    return _BY_BITS[(x & 1, z & 1)]


def compose(*bells: str) -> str:
    """The Bell state of the outer qubits after swapping pairs in ``bells[0]``, ``bells[2]``
    with Bell-measurement outcome ``bells[1]`` (any number: the XOR of all)."""
    x = z = 0
    for name in bells:
        bx, bz = BELL_BITS[name]
        x, z = x ^ bx, z ^ bz
    return bell_name(x, z)


def agree_expected(bell: str, basis: str) -> bool:
    """Whether both ends' outcomes agree when the pair in ``bell`` is measured in ``basis``
    at both ends (0 = H/D/R at either end): Z agrees unless X-flipped, X unless Z-flipped,
    Y (``YY = -ZZ XX``) exactly when one of the two is."""
    x, z = BELL_BITS[bell]
    return {"Z": x == 0, "X": z == 0, "Y": (x ^ z) == 1}[basis]


def werner(fidelity: float) -> Vector:
    """The Werner pair of ``fidelity``: the other three errors equally likely."""
    rest = (1.0 - fidelity) / 3.0
    return np.array([fidelity, rest, rest, rest])


def from_agreements(q_z: float, q_x: float, q_y: float) -> Vector:
    """The error probabilities from the three bases' agreement fractions (the Z basis
    misses X and Y errors, ...): ``F = (q_z + q_x + q_y - 1) / 2`` (unbiased; clipped to
    0 .. 1), the three errors ``q - F`` of the other bases, clipped at 0 and scaled to
    ``1 - F`` (a small sample can give a slightly negative estimate)."""
    f = min(max((q_z + q_x + q_y - 1.0) / 2.0, 0.0), 1.0)
    rest = np.clip(np.array([q_x - f, q_z - f, q_y - f]), 0.0, None)
    total = rest.sum()
    rest = rest * (1.0 - f) / total if total > 0 else np.full(3, (1.0 - f) / 3.0)
    return np.concatenate([[f], rest])


def dephase(v: Vector, coherence: float) -> Vector:
    """One qubit's (or both, with the product of their factors) dephasing that keeps a
    fraction ``coherence`` (``exp(-t / T2)``) of the coherences: a Z error with
    probability ``(1 - coherence) / 2`` flips the z bit of the error."""
    q = (1.0 - coherence) / 2.0
    flipped = v[[2, 3, 0, 1]]  # e -> e xor (0, 1)
    return np.asarray((1.0 - q) * v + q * flipped)


def swap(v1: Vector, v2: Vector) -> Vector:
    """The outer pair's errors after an ideal swap: errors compose by XOR."""
    out = np.zeros(4)
    for e1 in range(4):
        for e2 in range(4):
            out[e1 ^ e2] += v1[e1] * v2[e2]
    return out


def coherence(storage_s: float, t2_s: float) -> float:
    """``exp(-t / T2)`` (1 for no storage or no dephasing)."""
    if storage_s <= 0.0 or math.isinf(t2_s):
        return 1.0
    return math.exp(-storage_s / t2_s)


# --- statistics of the agreement outcomes ------------------------------------------------


def fidelity_from_agreement(q: float) -> float:
    """Bases drawn uniformly from Z, X, Y: the agreement probability is
    ``q = (1 + 2 F) / 3`` for any Bell-diagonal pair, so ``F = (3 q - 1) / 2``."""
    return (3.0 * q - 1.0) / 2.0


def agreement_from_fidelity(f: float) -> float:
    return (1.0 + 2.0 * f) / 3.0


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds (lower, upper) on a binomial probability, each at
    ``confidence``; (0, 1) for no trials."""
    from scipy import stats

    if n <= 0:
        return 0.0, 1.0
    a = 1.0 - confidence
    lower = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    upper = 1.0 if k == n else float(stats.beta.ppf(1.0 - a, k + 1, n - k))
    return lower, upper


def fidelity_bounds(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Fidelity bounds from ``k`` agreements in ``n`` pairs (floored at 0, capped at 1)."""
    lo, hi = clopper_pearson(k, n, confidence)
    return max(0.0, fidelity_from_agreement(lo)), min(1.0, fidelity_from_agreement(hi))


class Sprt:
    """Wald's sequential probability ratio test on the per-pair agreement outcomes.

    H1 "reachable": ``F = threshold + delta`` against H0 ``F = threshold`` (as agreement
    probabilities ``(1 + 2 F) / 3``), error rates ``alpha`` (calling a link at the
    threshold reachable; below it, less) and ``beta`` (missing one at ``threshold +
    delta``); decided at the first crossing of ``log((1 - beta) / alpha)`` or
    ``log(beta / (1 - alpha))``, later pairs change nothing. H0 sits at the threshold, not
    below it: a fully dephased pair has F = 1/2 exactly (classical correlations), so the
    default threshold 1/2 must count as "not reachable".
    """

    def __init__(self, threshold: float, delta: float, alpha: float, beta: float) -> None:
        self.q0 = agreement_from_fidelity(threshold)
        self.q1 = agreement_from_fidelity(min(threshold + delta, 1.0))
        if not 0.0 < self.q0 < self.q1 < 1.0:
            raise ValueError(f"threshold {threshold} + {delta} leaves no test")
        self.upper = math.log((1.0 - beta) / alpha)
        self.lower = math.log(beta / (1.0 - alpha))
        self.step_agree = math.log(self.q1 / self.q0)
        self.step_disagree = math.log((1.0 - self.q1) / (1.0 - self.q0))
        self.llr = 0.0
        self.pairs = 0
        self.decision: bool | None = None  # True reachable, False not, None undecided
        self.decided_after: int | None = None

    def update(self, agree: npt.ArrayLike) -> bool | None:
        """Feed outcomes in order; the decision so far."""
        a = np.asarray(agree, dtype=bool)
        if self.decision is not None or a.size == 0:
            return self.decision
        path = self.llr + np.cumsum(np.where(a, self.step_agree, self.step_disagree))
        crossed = np.flatnonzero((path >= self.upper) | (path <= self.lower))
        if crossed.size:
            i = int(crossed[0])
            self.llr = float(path[i])
            self.decision = bool(path[i] >= self.upper)
            self.decided_after = self.pairs + i + 1
        else:
            self.llr = float(path[-1])
        self.pairs += a.size
        return self.decision


__all__ = [
    "BASES",
    "BELL_BITS",
    "CORRECTION",
    "Sprt",
    "agree_expected",
    "agreement_from_fidelity",
    "bell_name",
    "clopper_pearson",
    "coherence",
    "compose",
    "dephase",
    "fidelity_bounds",
    "fidelity_from_agreement",
    "from_agreements",
    "swap",
    "werner",
]
