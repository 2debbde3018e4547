"""BBM92 with a PDC source: gain and QBER of Ma, Fung and Lo, PRA 76, 012307 (2007).

Reference formulas, to validate the emulated entanglement-distribution bench
against (not used to generate clicks). Vectorised over numpy arrays.

Model: the source emits n pairs with the thermal probability
P(n) = (n + 1) lambda^n / (1 + lambda)^(n + 2) (mean 2 lambda pairs); every
photon reaches Alice's (Bob's) detectors with overall efficiency eta_A (eta_B);
threshold detectors with background yield Y0 per side; a photon hits the wrong
detector with probability e_d; double clicks and background give random bits
(error e_0 = 1/2). Then

  Q = 1 - (1 - Y0A)/(1 + eta_A lam)^2 - (1 - Y0B)/(1 + eta_B lam)^2
        + (1 - Y0A)(1 - Y0B)/(1 + eta_A lam + eta_B lam - eta_A eta_B lam)^2
  E Q = e_0 Q - 2 (e_0 - e_d) eta_A eta_B lam (1 + lam)
        / ((1 + eta_A lam)(1 + eta_B lam)(1 + eta_A lam + eta_B lam - eta_A eta_B lam))

As in the paper, the correlated term ignores background clicks (an exact
treatment multiplies it by the per-side probability of no background click, a
correction of order Y0).

Key rate (Koashi-Preskill, basis-independent source, bit and phase error E):
  R = q Q [1 - f H2(E) - H2(E)].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class Bbm92Figures(NamedTuple):
    gain: FloatArray  # coincidence probability per pulse (both bases, before sifting)
    qber: FloatArray  # error rate of the coincidences


def _nonneg(value: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(value, dtype=float)
    if np.any(~(arr >= 0.0)):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return arr


def _unit(value: npt.ArrayLike, name: str) -> FloatArray:
    arr = _nonneg(value, name)
    if np.any(arr > 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return arr


def thermal_pair_probability(n: npt.ArrayLike, lam: npt.ArrayLike) -> FloatArray:
    """P(n) = (n + 1) lambda^n / (1 + lambda)^(n + 2): n pairs from one PDC pulse."""
    k = np.asarray(n, dtype=float)
    lam_ = _nonneg(lam, "lam")
    return np.asarray((k + 1.0) * lam_**k / (1.0 + lam_) ** (k + 2.0))


def bbm92_figures(
    lam: npt.ArrayLike,
    eta_a: npt.ArrayLike,
    eta_b: npt.ArrayLike,
    y0_a: npt.ArrayLike,
    y0_b: npt.ArrayLike,
    e_d: npt.ArrayLike,
    e_0: float = 0.5,
) -> Bbm92Figures:
    """Gain Q_lambda and QBER E_lambda for half mean pair number ``lam`` (Ma-Fung-Lo).

    ``eta_a``/``eta_b`` are the overall efficiencies (channel transmittance times
    detector efficiency) of each side, ``y0_a``/``y0_b`` the background yields
    (about twice the per-detector dark-count probability), ``e_d`` the intrinsic
    detector error.
    """
    lam_ = _nonneg(lam, "lam")
    ea, eb = _unit(eta_a, "eta_a"), _unit(eta_b, "eta_b")
    ya, yb = _unit(y0_a, "y0_a"), _unit(y0_b, "y0_b")
    ed = _unit(e_d, "e_d")
    one_a = 1.0 + ea * lam_
    one_b = 1.0 + eb * lam_
    both = 1.0 + ea * lam_ + eb * lam_ - ea * eb * lam_
    # The paper's Q, rearranged to avoid cancelling terms of order 1 when Q is tiny:
    # Q = P(A clicks) P(B clicks) + (1-Y0A)(1-Y0B) (both^-2 - (one_a one_b)^-2),
    # with one_a one_b = both + delta.
    click_a = -np.expm1(np.log1p(-ya) - 2.0 * np.log1p(ea * lam_))
    click_b = -np.expm1(np.log1p(-yb) - 2.0 * np.log1p(eb * lam_))
    delta = ea * eb * lam_ * (1.0 + lam_)
    gain = click_a * click_b + (1.0 - ya) * (1.0 - yb) * delta * (2.0 * both + delta) / (
        both**2 * (one_a * one_b) ** 2
    )
    correlated = 2.0 * delta / (one_a * one_b * both)
    with np.errstate(invalid="ignore", divide="ignore"):
        qber = np.where(gain > 0.0, e_0 - (e_0 - ed) * correlated / gain, e_0)
    return Bbm92Figures(np.asarray(gain), np.asarray(qber))


def side_efficiency(
    length_km: npt.ArrayLike, alpha_db_per_km: float, eta_detector: float
) -> FloatArray:
    """Overall efficiency of one side: eta_det * 10^(-alpha L / 10)."""
    length = _nonneg(length_km, "length_km")
    return np.asarray(
        _unit(eta_detector, "eta_detector")
        * 10.0 ** (-_nonneg(alpha_db_per_km, "alpha_db_per_km") * length / 10.0)
    )


def bbm92_symmetric(
    lam: npt.ArrayLike,
    length_km: npt.ArrayLike,
    alpha_db_per_km: float,
    eta_detector: float,
    y0: float,
    e_d: float,
) -> Bbm92Figures:
    """Symmetric case: source midway, L/2 of fibre and identical detectors on each side."""
    eta = side_efficiency(np.asarray(length_km, dtype=float) / 2.0, alpha_db_per_km, eta_detector)
    return bbm92_figures(lam, eta, eta, y0, y0, e_d)


def binary_entropy(x: npt.ArrayLike) -> FloatArray:
    """H2(x) in bits, with H2(0) = H2(1) = 0."""
    p = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -p * np.log2(p) - (1.0 - p) * np.log2(1.0 - p)
    return np.asarray(np.nan_to_num(h, nan=0.0))


def bbm92_key_rate(
    gain: npt.ArrayLike, qber: npt.ArrayLike, f_ec: float = 1.22, q: float = 0.5
) -> FloatArray:
    """Asymptotic key rate per pulse, q Q [1 - f H2(E) - H2(E)], floored at zero."""
    h = binary_entropy(qber)
    rate = q * np.asarray(gain, dtype=float) * (1.0 - f_ec * h - h)
    return np.asarray(np.maximum(rate, 0.0))
