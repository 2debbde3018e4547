"""Parameter estimation: gains and QBERs per intensity, decoy-state single-photon bounds.

Bounds use the vacuum + weak decoy method of Ma, Qi, Zhao, Lo, PRA 72, 012326
(2005) ("practical decoy state"), with signal mu, weak decoy nu < mu and vacuum:

  Y0     = Q_vac                                     (e0 = 1/2)
  Y1^L   = mu / (mu nu - nu^2) * [Q_nu e^nu - Q_mu e^mu nu^2/mu^2 - (mu^2 - nu^2)/mu^2 Y0]
  e1^U   = (E_nu Q_nu e^nu - e0 Y0) / (Y1^L nu)
  Q1^L   = Y1^L mu e^-mu

Finite size: every observed count (detections, errors) is replaced by the end of
a two-sided multiplicative Chernoff interval for its expectation that makes the
bound worse, each at failure probability ``eps`` (so the whole estimate fails
with probability at most 5 eps: Q_vac twice, Q_nu, Q_mu, E_nu Q_nu). The
Chernoff bounds hold for sums of independent, not necessarily identical,
Bernoulli trials:

  upper: x + L + sqrt(L^2 + 2 x L),  lower: max(0, x + L/2 - sqrt(L^2/4 + 2 x L)),  L = ln(1/eps)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhil.numerics.qkd.entropy import binary_entropy

IntArray = NDArray[np.int64]


def chernoff_interval(count: float, eps: float) -> tuple[float, float]:
    """Bounds on the expected count given ``count`` observed; each side fails w.p. <= eps."""
    if count < 0:
        raise ValueError(f"count must be >= 0 (got {count!r})")
    if not 0 < eps < 1:
        raise ValueError(f"eps must lie in (0, 1) (got {eps!r})")
    lg = math.log(1.0 / eps)
    upper = count + lg + math.sqrt(lg * lg + 2.0 * count * lg)
    lower = max(0.0, count + lg / 2.0 - math.sqrt(lg * lg / 4.0 + 2.0 * count * lg))
    return lower, upper


@dataclass(frozen=True)
class DecoyCounts:
    """Counts per intensity index k (arrays of equal length).

    ``pulses``: pulses Alice sent at k; ``detections``: detected pulses at k
    (after squashing, any basis); ``compared``: bits whose errors were checked at
    k; ``errors``: errors among them.
    """

    mu: tuple[float, ...]
    pulses: IntArray
    detections: IntArray
    compared: IntArray
    errors: IntArray

    def __post_init__(self) -> None:
        k = len(self.mu)
        for name in ("pulses", "detections", "compared", "errors"):
            arr = getattr(self, name)
            if np.shape(arr) != (k,):
                raise ValueError(f"DecoyCounts.{name}: expected {k} entries (got {np.shape(arr)})")
            if np.any(np.asarray(arr) < 0):
                raise ValueError(f"DecoyCounts.{name}: counts must be >= 0")
        if np.any(self.detections > self.pulses):
            raise ValueError("DecoyCounts.detections: more detections than pulses")
        if np.any(self.errors > self.compared):
            raise ValueError("DecoyCounts.errors: more errors than compared bits")
        if any(m < 0 for m in self.mu):
            raise ValueError(f"DecoyCounts.mu: intensities must be >= 0 (got {self.mu})")

    @property
    def gains(self) -> NDArray[np.float64]:
        """Q_k = detections / pulses."""
        return self.detections / np.maximum(self.pulses, 1)

    @property
    def qbers(self) -> NDArray[np.float64]:
        """E_k = errors / compared."""
        return self.errors / np.maximum(self.compared, 1)

    @classmethod
    def from_data(
        cls,
        mu: tuple[float, ...],
        pulse_intensity: ArrayLike,
        detected_intensity: ArrayLike,
        compared_intensity: ArrayLike,
        compared_error: ArrayLike,
    ) -> DecoyCounts:
        """Tally per intensity: Alice's intensity index of every pulse, of every
        detected pulse, of every compared bit, and the compared bits' error flags."""
        k = len(mu)
        pi = np.asarray(pulse_intensity, dtype=np.int64)
        di = np.asarray(detected_intensity, dtype=np.int64)
        ci = np.asarray(compared_intensity, dtype=np.int64)
        ce = np.asarray(compared_error).astype(bool)
        if ci.shape != ce.shape:
            raise ValueError("compared_intensity and compared_error differ in length")
        for name, arr in (("pulse", pi), ("detected", di), ("compared", ci)):
            if arr.size and (arr.min() < 0 or arr.max() >= k):
                raise ValueError(f"{name}_intensity: indices must lie in 0..{k - 1}")
        return cls(
            mu,
            np.bincount(pi, minlength=k),
            np.bincount(di, minlength=k),
            np.bincount(ci, minlength=k),
            np.bincount(ci[ce], minlength=k),
        )


@dataclass(frozen=True)
class DecoyBounds:
    """Single-photon estimates for the signal intensity (per pulse)."""

    y0: float  # background yield used in Y1^L (upper end when finite-size)
    y1_lower: float
    e1_upper: float
    q1_lower: float
    q_signal: float
    e_signal: float


def vacuum_weak_decoy_bounds(
    counts: DecoyCounts,
    signal: int = 0,
    decoy: int = 1,
    vacuum: int = 2,
    eps: float | None = None,
) -> DecoyBounds:
    """Y1 lower and e1 upper bounds (Ma et al. 2005); finite-size if ``eps`` is given.

    ``signal``, ``decoy``, ``vacuum`` are intensity indices into ``counts``; the
    vacuum intensity must be 0 and the decoy weaker than the signal.
    """
    mu, nu = counts.mu[signal], counts.mu[decoy]
    if counts.mu[vacuum] != 0:
        raise ValueError(f"vacuum intensity must be 0 (got {counts.mu[vacuum]})")
    if not 0 < nu < mu:
        raise ValueError(f"need 0 < decoy < signal intensity (got nu={nu}, mu={mu})")
    n = counts.pulses.astype(float)
    if np.any(n[[signal, decoy, vacuum]] == 0):
        raise ValueError("DecoyCounts.pulses: signal, decoy and vacuum each need pulses")
    det = counts.detections.astype(float)
    err_nu = float(counts.errors[decoy])
    cmp_nu = float(counts.compared[decoy])
    if cmp_nu == 0:
        raise ValueError("DecoyCounts.compared: no compared bits at the decoy intensity")
    # Error *counts* among detections at nu, scaled from the compared sample.
    frac = cmp_nu / max(det[decoy], 1.0)
    if eps is None:
        y0_hi = y0_lo = det[vacuum] / n[vacuum]
        q_nu_lo = det[decoy] / n[decoy]
        q_mu_hi = det[signal] / n[signal]
        eq_nu_hi = err_nu / frac / n[decoy]
    else:
        v_lo, v_hi = chernoff_interval(det[vacuum], eps)
        y0_lo, y0_hi = v_lo / n[vacuum], v_hi / n[vacuum]
        q_nu_lo = chernoff_interval(det[decoy], eps)[0] / n[decoy]
        q_mu_hi = chernoff_interval(det[signal], eps)[1] / n[signal]
        eq_nu_hi = chernoff_interval(err_nu, eps)[1] / frac / n[decoy]
    y1 = (mu / (mu * nu - nu * nu)) * (
        q_nu_lo * math.exp(nu)
        - q_mu_hi * math.exp(mu) * nu * nu / (mu * mu)
        - (mu * mu - nu * nu) / (mu * mu) * y0_hi
    )
    y1 = max(y1, 0.0)
    e1 = (eq_nu_hi * math.exp(nu) - 0.5 * y0_lo) / (y1 * nu) if y1 > 0 else 0.5
    e1 = min(max(e1, 0.0), 0.5)
    return DecoyBounds(
        y0=y0_hi,
        y1_lower=y1,
        e1_upper=e1,
        q1_lower=y1 * mu * math.exp(-mu),
        q_signal=det[signal] / n[signal],
        e_signal=float(counts.qbers[signal]),
    )


def decoy_key_rate(bounds: DecoyBounds, f_ec: float = 1.16, q_sift: float = 0.5) -> float:
    """Asymptotic GLLP rate per pulse from the bounds: q [Q1 (1 - h(e1)) - f Q h(E)]."""
    return q_sift * (
        bounds.q1_lower * (1.0 - binary_entropy(bounds.e1_upper))
        - f_ec * bounds.q_signal * binary_entropy(min(bounds.e_signal, 0.5))
    )
