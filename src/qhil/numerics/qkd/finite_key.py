"""Finite-key secret length for decoy-state BB84 (Lim et al., PRA 89, 022307 (2014)).

Three intensities mu1 > mu2 + mu3, mu2 > mu3 >= 0, chosen with probabilities
p_k. The key comes from the key basis; the test basis is fully disclosed to
estimate the phase error rate. With tau_n = sum_k p_k e^-mu_k mu_k^n / n! and
Hoeffding-corrected counts n^+-_k = e^mu_k / p_k (n_k +- sqrt(n/2 ln(21/eps_sec))):

  s0 >= tau0 (mu2 n^-_3 - mu3 n^+_2) / (mu2 - mu3)
  s1 >= tau1 mu1 [n^-_2 - n^+_3 - (mu2^2 - mu3^2)/mu1^2 (n^+_1 - s0/tau0)]
        / (mu1 (mu2 - mu3) - mu2^2 + mu3^2)
  v1 <= tau1 (m^+_2 - m^-_3) / (mu2 - mu3)          (test-basis errors)
  phi <= v1/s1_T + gamma(eps_sec, v1/s1_T, s1_T, s1_K)
  gamma(a,b,c,d) = sqrt((c+d)(1-b)b/(c d ln2) * log2((c+d)/(c d (1-b) b) * 21^2/a^2))
  l = floor(s0_K + s1_K (1 - h(phi)) - leak_EC - 6 log2(21/eps_sec) - log2(2/eps_cor))

Epsilons: the protocol is eps_cor-correct (``eps_cor`` is the verification hash
collision probability, its tag being the log2(2/eps_cor) term) and eps_sec-secret.
Lim et al. split eps_sec into 21 equal parts: each of the decoy/Hoeffding
estimates fails with probability eps_pe = eps_sec/21, the phase-error sampling
bound likewise, and privacy amplification/smoothing consume the rest (the
6 log2(21/eps_sec) term), so eps_pa = eps_sec - (failure budget of estimation).
The total security parameter is eps_sec + eps_cor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhil.numerics.qkd.entropy import binary_entropy


@dataclass(frozen=True)
class FiniteKeyInput:
    """Observed counts per intensity (index 0 = mu1 signal, 1 = mu2, 2 = mu3)."""

    mu: tuple[float, float, float]
    p_mu: tuple[float, float, float]
    n_key: NDArray[np.float64]  # sifted key-basis detections per intensity
    n_test: NDArray[np.float64]  # sifted test-basis detections per intensity
    m_test: NDArray[np.float64]  # errors among the test-basis detections
    leak_ec: float  # bits disclosed by error correction
    eps_sec: float = 1e-9
    eps_cor: float = 1e-15

    def __post_init__(self) -> None:
        m1, m2, m3 = self.mu
        if not (m1 > m2 + m3 and m2 > m3 >= 0):
            raise ValueError(
                f"FiniteKeyInput.mu: need mu1 > mu2 + mu3, mu2 > mu3 >= 0 (got {self.mu})"
            )
        if abs(sum(self.p_mu) - 1) > 1e-9 or min(self.p_mu) <= 0:
            raise ValueError(
                f"FiniteKeyInput.p_mu: probabilities > 0 summing to 1 (got {self.p_mu})"
            )
        for name in ("n_key", "n_test", "m_test"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (3,) or np.any(arr < 0):
                raise ValueError(f"FiniteKeyInput.{name}: three counts >= 0 expected (got {arr})")
        if np.any(np.asarray(self.m_test) > np.asarray(self.n_test)):
            raise ValueError("FiniteKeyInput.m_test: more errors than test detections")
        if self.leak_ec < 0:
            raise ValueError(f"FiniteKeyInput.leak_ec: must be >= 0 (got {self.leak_ec})")
        for name in ("eps_sec", "eps_cor"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"FiniteKeyInput.{name}: must lie in (0, 1)")


@dataclass(frozen=True)
class FiniteKeyResult:
    length: int  # secret bits to extract (0 when no key)
    s0_key: float
    s1_key: float
    s1_test: float
    v1_test: float
    phase_error: float
    correction_bits: float  # 6 log2(21/eps_sec) + log2(2/eps_cor)


def _tau(n: int, mu: tuple[float, ...], p: tuple[float, ...]) -> float:
    return sum(pk * math.exp(-mk) * mk**n / math.factorial(n) for mk, pk in zip(mu, p, strict=True))


def _hoeffding(total: float, eps_sec: float) -> float:
    return math.sqrt(total / 2.0 * math.log(21.0 / eps_sec))


def _vacuum_and_single(
    counts: ArrayLike, mu: tuple[float, float, float], p: tuple[float, float, float], eps_sec: float
) -> tuple[float, float]:
    c = np.asarray(counts, dtype=float)
    d = _hoeffding(float(c.sum()), eps_sec)
    scale = [math.exp(m) / pk for m, pk in zip(mu, p, strict=True)]
    lo = [scale[k] * (c[k] - d) for k in range(3)]
    hi = [scale[k] * (c[k] + d) for k in range(3)]
    m1, m2, m3 = mu
    tau0, tau1 = _tau(0, mu, p), _tau(1, mu, p)
    s0 = max(0.0, tau0 * (m2 * lo[2] - m3 * hi[1]) / (m2 - m3))
    s1 = (
        tau1
        * m1
        * (lo[1] - hi[2] - (m2 * m2 - m3 * m3) / (m1 * m1) * (hi[0] - s0 / tau0))
        / (m1 * (m2 - m3) - m2 * m2 + m3 * m3)
    )
    return s0, max(0.0, s1)


def gamma(a: float, b: float, c: float, d: float) -> float:
    """Random-sampling correction to the phase error rate (Lim et al. 2014)."""
    if b <= 0 or b >= 1 or c <= 0 or d <= 0:
        return 0.0 if b <= 0 else math.inf
    inner = (c + d) / (c * d * (1 - b) * b) * 21.0**2 / a**2
    return math.sqrt((c + d) * (1 - b) * b / (c * d * math.log(2)) * math.log2(inner))


def secret_key_length(inp: FiniteKeyInput) -> FiniteKeyResult:
    """Extractable secret bits for the observed counts (Lim et al. 2014, Eq. (1)-(2))."""
    mu, p, eps = inp.mu, inp.p_mu, inp.eps_sec
    s0k, s1k = _vacuum_and_single(inp.n_key, mu, p, eps)
    _, s1t = _vacuum_and_single(inp.n_test, mu, p, eps)
    m = np.asarray(inp.m_test, dtype=float)
    dm = _hoeffding(float(m.sum()), eps)
    m_hi2 = math.exp(mu[1]) / p[1] * (m[1] + dm)
    m_lo3 = math.exp(mu[2]) / p[2] * (m[2] - dm)
    v1 = max(0.0, _tau(1, mu, p) * (m_hi2 - m_lo3) / (mu[1] - mu[2]))
    correction = 6.0 * math.log2(21.0 / eps) + math.log2(2.0 / inp.eps_cor)
    if s1t <= 0 or s1k <= 0:
        return FiniteKeyResult(0, s0k, s1k, s1t, v1, 0.5, correction)
    ratio = v1 / s1t
    phi = min(0.5, ratio + gamma(eps, ratio, s1t, s1k)) if ratio < 0.5 else 0.5
    raw = s0k + s1k * (1.0 - binary_entropy(phi)) - inp.leak_ec - correction
    return FiniteKeyResult(max(0, math.floor(raw)), s0k, s1k, s1t, v1, phi, correction)
