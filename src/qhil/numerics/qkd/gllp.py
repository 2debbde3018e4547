"""Asymptotic decoy-state BB84 key rate (GLLP with Lo-Ma-Chen decoys), PHYSICS.md case 4.

The formulas are exactly those of Lo, Ma, Chen, PRL 94, 230504 (2005) with the
parameters of the GYS experiment as defaults; the rate is per emitted pulse.
Infinitely many decoys are assumed, so Y1 and e1 are the true single-photon
values. ``optimal_mu`` maximises the rate over the signal intensity numerically
and ``max_distance`` finds where the optimised rate reaches zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from qhil.numerics.qkd.entropy import binary_entropy


@dataclass(frozen=True)
class GllpParameters:
    """Link and protocol parameters; defaults are the GYS set of PHYSICS.md."""

    alpha_db_per_km: float = 0.21
    e_detector: float = 0.033  # e_d: probability that a photon hits the wrong detector
    y0: float = 1.7e-6  # background yield per pulse
    eta_bob: float = 0.045  # Bob's detection efficiency including his optics
    f_ec: float = 1.22  # error-correction inefficiency
    q_sift: float = 0.5  # sifting factor

    def __post_init__(self) -> None:
        checks = {
            "alpha_db_per_km": self.alpha_db_per_km >= 0,
            "e_detector": 0 <= self.e_detector <= 0.5,
            "y0": 0 <= self.y0 < 1,
            "eta_bob": 0 < self.eta_bob <= 1,
            "f_ec": self.f_ec >= 1,
            "q_sift": 0 < self.q_sift <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"GllpParameters.{name}: out of range (got {getattr(self, name)!r})"
                )


def transmittance(distance_km: float, p: GllpParameters) -> float:
    """eta = eta_Bob 10^(-alpha L / 10)."""
    if distance_km < 0:
        raise ValueError(f"distance_km must be >= 0 (got {distance_km!r})")
    return p.eta_bob * 10.0 ** (-p.alpha_db_per_km * distance_km / 10.0)


def signal_gain(mu: float, distance_km: float, p: GllpParameters) -> float:
    """Q_mu = Y0 + 1 - exp(-eta mu)."""
    return p.y0 + 1.0 - float(np.exp(-transmittance(distance_km, p) * mu))


def signal_qber(mu: float, distance_km: float, p: GllpParameters) -> float:
    """E_mu from E_mu Q_mu = Y0/2 + e_d (1 - exp(-eta mu))."""
    eta = transmittance(distance_km, p)
    return (p.y0 / 2 + p.e_detector * (1.0 - float(np.exp(-eta * mu)))) / signal_gain(
        mu, distance_km, p
    )


def single_photon_yield(distance_km: float, p: GllpParameters) -> float:
    """Y1 = Y0 + eta - Y0 eta."""
    eta = transmittance(distance_km, p)
    return p.y0 + eta - p.y0 * eta


def single_photon_error(distance_km: float, p: GllpParameters) -> float:
    """e1 = (Y0/2 + e_d eta) / Y1."""
    eta = transmittance(distance_km, p)
    return (p.y0 / 2 + p.e_detector * eta) / single_photon_yield(distance_km, p)


def key_rate(mu: float, distance_km: float, p: GllpParameters | None = None) -> float:
    """R = q [Q1 (1 - h(e1)) - f Q_mu h(E_mu)] per pulse (may be negative: no key)."""
    p = p or GllpParameters()
    if mu <= 0:
        raise ValueError(f"mu must be > 0 (got {mu!r})")
    y1 = single_photon_yield(distance_km, p)
    q1 = y1 * mu * float(np.exp(-mu))
    e1 = min(single_photon_error(distance_km, p), 0.5)
    qm = signal_gain(mu, distance_km, p)
    em = min(signal_qber(mu, distance_km, p), 0.5)
    return p.q_sift * (q1 * (1 - binary_entropy(e1)) - p.f_ec * qm * binary_entropy(em))


def optimal_mu(distance_km: float, p: GllpParameters | None = None) -> tuple[float, float]:
    """(mu*, R(mu*)): the signal intensity maximising the rate, searched in (0, 1.5]."""
    p = p or GllpParameters()
    res = minimize_scalar(
        lambda m: -key_rate(m, distance_km, p),
        bounds=(1e-4, 1.5),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(res.x), float(-res.fun)


def max_distance(p: GllpParameters | None = None, upper_km: float = 400.0) -> float:
    """Distance where the optimised rate reaches zero (the cut-off), in km."""
    p = p or GllpParameters()
    if optimal_mu(0.0, p)[1] <= 0:
        return 0.0
    hi = upper_km
    if optimal_mu(hi, p)[1] > 0:
        raise ValueError(f"max_distance: rate still positive at upper_km={upper_km}")
    return float(brentq(lambda d: optimal_mu(d, p)[1], 0.0, hi, xtol=1e-3))
