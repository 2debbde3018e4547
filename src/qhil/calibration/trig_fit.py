"""Fits of trigonometric models to noisy scalar measurements (pure numpy, no I/O).

A retarder whose retardance is linear in its drive voltage rotates the Stokes
vector by ``delta = rate * V + const``; any error fraction measured behind it is
then an affine function of ``(cos delta, sin delta)`` — a sinusoid of the voltage.
Several retarders in a row give a *trigonometric polynomial of degree one in
each phase*: ``f = sum_c coef_c prod_j basis_{c_j}(delta_j)`` with
``basis = (1, cos, sin)`` (3^k coefficients for k phases). Sampling 3 phases per
axis determines it exactly; its minimum over the torus is then found numerically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize, minimize_scalar

F64 = npt.NDArray[np.float64]


def trig_basis(phases: npt.ArrayLike) -> F64:
    """Tensor basis ``prod_j (1, cos x_j, sin x_j)``, shape ``(n, 3**k)`` for phases ``(n, k)``.

    Column index ``c`` in base 3 (most significant digit = first phase) picks
    1, cos or sin of each phase.
    """
    x = np.atleast_2d(np.asarray(phases, dtype=np.float64))
    n, k = x.shape
    out = np.ones((n, 1))
    for j in range(k):
        b = np.stack([np.ones(n), np.cos(x[:, j]), np.sin(x[:, j])], axis=1)
        out = (out[:, :, None] * b[:, None, :]).reshape(n, -1)
    return out


def fit_trig_polynomial(phases: npt.ArrayLike, values: npt.ArrayLike) -> F64:
    """Least-squares coefficients of the degree-one trigonometric polynomial through the points.

    Needs at least ``3**k`` points whose phases differ enough per axis (three distinct
    phases per axis on a grid make it exact); raises ``ValueError`` otherwise.
    """
    x = np.atleast_2d(np.asarray(phases, dtype=np.float64))
    y = np.asarray(values, dtype=np.float64).ravel()
    if x.shape[0] != y.size:
        raise ValueError(f"{x.shape[0]} phase rows but {y.size} values")
    basis = trig_basis(x)
    if basis.shape[0] < basis.shape[1]:
        raise ValueError(f"{basis.shape[1]} coefficients need as many points, got {y.size}")
    coef, _, rank, _ = np.linalg.lstsq(basis, y, rcond=None)
    if rank < basis.shape[1]:
        raise ValueError("phases do not determine the polynomial (need 3 distinct per axis)")
    return np.asarray(coef, dtype=np.float64)


def evaluate_trig_polynomial(coef: F64, phases: npt.ArrayLike) -> F64:
    return trig_basis(phases) @ coef


def minimize_trig_polynomial(coef: F64, k: int, grid_points: int = 24) -> tuple[F64, float]:
    """(phases, value) of the global minimum over ``[-pi, pi)^k``: grid, then a local polish."""
    if coef.size != 3**k:
        raise ValueError(f"{coef.size} coefficients do not make a polynomial of {k} phases")
    g = np.linspace(-math.pi, math.pi, grid_points, endpoint=False)
    grid = np.stack(np.meshgrid(*([g] * k), indexing="ij"), axis=-1).reshape(-1, k)
    x0 = grid[int(np.argmin(evaluate_trig_polynomial(coef, grid)))]

    def f(x: F64) -> float:
        return float(evaluate_trig_polynomial(coef, x[None, :])[0])

    res = minimize(f, x0, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-9})
    best = np.asarray(res.x, dtype=np.float64)
    best = (best + math.pi) % (2 * math.pi) - math.pi
    return best, f(best)


@dataclass(frozen=True)
class SinusoidFit:
    """``f(V) = offset + amplitude * cos(rate * V - phase)``, fitted to a voltage scan."""

    rate_rad_per_mv: float
    offset: float
    amplitude: float
    phase: float
    residual_rms: float

    @property
    def half_wave_voltage_mv(self) -> float:
        """Voltage that changes the retardance by pi."""
        return math.pi / self.rate_rad_per_mv

    def __call__(self, v_mv: npt.ArrayLike) -> F64:
        v = np.asarray(v_mv, dtype=np.float64)
        return self.offset + self.amplitude * np.cos(self.rate_rad_per_mv * v - self.phase)

    def minima_mv(self, lo_mv: float, hi_mv: float) -> F64:
        """Every voltage in ``[lo, hi]`` where the sinusoid is minimal."""
        period = 2 * math.pi / self.rate_rad_per_mv
        first = (self.phase + math.pi) / self.rate_rad_per_mv
        m0 = math.ceil((lo_mv - first) / period)
        m1 = math.floor((hi_mv - first) / period)
        return first + period * np.arange(m0, m1 + 1, dtype=np.float64)


def _sinusoid_rss(v: F64, y: F64, rates: F64) -> tuple[F64, F64]:
    """Residual sum of squares and coefficients (a, b, c) of ``a + b cos + c sin`` per rate."""
    ph = rates[:, None] * v[None, :]
    basis = np.stack([np.ones_like(ph), np.cos(ph), np.sin(ph)], axis=-1)  # (r, n, 3)
    gram = np.einsum("rni,rnj->rij", basis, basis)
    rhs = np.einsum("rni,n->ri", basis, y)
    # A scan shorter than a period leaves (cos, sin) nearly collinear: regularise lightly.
    gram = gram + 1e-12 * np.eye(3)[None] * np.trace(gram, axis1=1, axis2=2)[:, None, None]
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    resid = y[None, :] - np.einsum("rni,ri->rn", basis, coef)
    return np.einsum("rn,rn->r", resid, resid), coef


def fit_sinusoid(v_mv: npt.ArrayLike, values: npt.ArrayLike, rate_rad_per_mv: float) -> SinusoidFit:
    """Least-squares sinusoid of a known angular rate (rad per mV)."""
    v = np.asarray(v_mv, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if v.size != y.size or v.size < 3:
        raise ValueError(f"need >= 3 (voltage, value) pairs, got {v.size} and {y.size}")
    rss, coef = _sinusoid_rss(v, y, np.array([rate_rad_per_mv]))
    return _as_fit(rate_rad_per_mv, coef[0], float(rss[0]), v.size)


def fit_sinusoid_rate(
    v_mv: npt.ArrayLike,
    values: npt.ArrayLike,
    min_half_wave_mv: float,
    max_half_wave_mv: float,
    n_grid: int = 4000,
) -> SinusoidFit:
    """Sinusoid of unknown rate: the rate whose least-squares fit leaves the least residual.

    The half-wave voltage is searched in ``[min_half_wave_mv, max_half_wave_mv]``
    (a periodogram on a geometric grid, then a bounded refinement). Scans at
    irregular voltages keep aliases of the true rate from fitting equally well.
    """
    v = np.asarray(v_mv, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if v.size != y.size or v.size < 5:
        raise ValueError(f"need >= 5 (voltage, value) pairs, got {v.size} and {y.size}")
    if not 0 < min_half_wave_mv < max_half_wave_mv:
        raise ValueError(
            f"half-wave voltage bounds must satisfy 0 < min < max, got "
            f"{min_half_wave_mv}, {max_half_wave_mv}"
        )
    rates = math.pi / np.geomspace(max_half_wave_mv, min_half_wave_mv, n_grid)
    rss, _ = _sinusoid_rss(v, y, rates)
    i = int(np.argmin(rss))
    lo, hi = rates[max(i - 1, 0)], rates[min(i + 1, rates.size - 1)]

    def objective(rate: float) -> float:
        return float(_sinusoid_rss(v, y, np.array([rate]))[0][0])

    rate = rates[i]
    if hi > lo:
        res = minimize_scalar(objective, bounds=(lo, hi), method="bounded")
        if float(res.fun) < rss[i]:
            rate = float(res.x)
    rss1, coef = _sinusoid_rss(v, y, np.array([rate]))
    return _as_fit(float(rate), coef[0], float(rss1[0]), v.size)


def _as_fit(rate: float, coef: F64, rss: float, n: int) -> SinusoidFit:
    a, b, c = (float(x) for x in coef)
    return SinusoidFit(
        rate_rad_per_mv=rate,
        offset=a,
        amplitude=math.hypot(b, c),
        phase=math.atan2(c, b),
        residual_rms=math.sqrt(rss / n),
    )


def wrap_phase(x: npt.ArrayLike) -> F64:
    """Phases into ``[-pi, pi)``."""
    return cast(F64, (np.asarray(x, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi)
