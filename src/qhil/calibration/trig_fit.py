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
from collections.abc import Sequence
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
    """Residual sum of squares and coefficients of ``a + b cos + c sin`` per rate.

    ``y`` is ``(n,)`` (coefficients ``(r, 3)``) or ``(n, m)`` series sharing the rate
    (coefficients ``(r, 3, m)``, the sum of squares over all series).
    """
    yy = y[:, None] if y.ndim == 1 else y
    ph = rates[:, None] * v[None, :]
    basis = np.stack([np.ones_like(ph), np.cos(ph), np.sin(ph)], axis=-1)  # (r, n, 3)
    gram = np.einsum("rni,rnj->rij", basis, basis)
    rhs = np.einsum("rni,nm->rim", basis, yy)
    # A scan shorter than a period leaves (cos, sin) nearly collinear: regularise lightly.
    gram = gram + 1e-12 * np.eye(3)[None] * np.trace(gram, axis1=1, axis2=2)[:, None, None]
    coef = np.linalg.solve(gram, rhs)  # (r, 3, m)
    resid = yy[None] - np.einsum("rni,rim->rnm", basis, coef)
    rss = np.einsum("rnm,rnm->r", resid, resid)
    return rss, (coef[..., 0] if y.ndim == 1 else coef)


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


@dataclass(frozen=True)
class CommonRateFit:
    """Sinusoids ``a_j + b_j cos(rate V) + c_j sin(rate V)`` of one rate, one per series."""

    rate_rad_per_mv: float
    coef: F64  # (3, m): a, b, c of each series
    rss: float  # residual sum of squares over all points of all series
    n_values: int
    curvature: float = math.nan  # d^2 rss / d rate^2 at the rate
    # The best rate of another dip of the residual (an alias the points may not rule out).
    alternative: CommonRateFit | None = None

    def rate_std(self, noise_variance: float) -> float:
        """Standard error of the rate for values of this noise variance (profile curvature)."""
        if not self.curvature > 0:
            return math.inf
        return math.sqrt(2 * noise_variance / self.curvature)

    @property
    def half_wave_voltage_mv(self) -> float:
        return math.pi / self.rate_rad_per_mv

    @property
    def amplitudes(self) -> F64:
        return cast(F64, np.hypot(self.coef[1], self.coef[2]))

    @property
    def residual_rms(self) -> float:
        return math.sqrt(self.rss / self.n_values)

    def __call__(self, v_mv: npt.ArrayLike) -> F64:
        """Values of every series at ``v_mv``: shape ``(n, m)``."""
        ph = self.rate_rad_per_mv * np.atleast_1d(np.asarray(v_mv, dtype=np.float64))
        basis = np.stack([np.ones_like(ph), np.cos(ph), np.sin(ph)], axis=-1)
        return basis @ self.coef


def fit_common_rate(
    v_mv: npt.ArrayLike,
    values: npt.ArrayLike,
    min_half_wave_mv: float,
    max_half_wave_mv: float,
    n_grid: int = 400,
    separation: float = 0.03,
) -> CommonRateFit:
    """Sinusoids sharing one unknown rate, fitted to several series measured at the same voltages.

    ``values`` is ``(n, m)``: m quantities (e.g. the four error fractions) at n voltages.
    The rate leaving the least residual over all series is found on a geometric grid of
    half-wave voltages in ``[min_half_wave_mv, max_half_wave_mv]`` and refined. Several
    series constrain the rate where one of them happens to move little. The deepest other
    local minimum of the residual more than ``separation`` (relative) away is returned as
    ``alternative``: few points can leave an alias almost as good, which one more point
    where the two disagree most decides.
    """
    v = np.asarray(v_mv, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or v.ndim != 1 or y.shape[0] != v.size:
        raise ValueError(f"need values of shape (n, m) for n voltages, got {y.shape} for {v.size}")
    if v.size < 4 or np.unique(v).size < 4:
        raise ValueError(f"need >= 4 distinct voltages for a rate, got {np.unique(v).size}")
    if not 0 < min_half_wave_mv < max_half_wave_mv:
        raise ValueError(
            f"half-wave voltage bounds must satisfy 0 < min < max, got "
            f"{min_half_wave_mv}, {max_half_wave_mv}"
        )
    rates = math.pi / np.geomspace(max_half_wave_mv, min_half_wave_mv, n_grid)
    rss, _ = _sinusoid_rss(v, y, rates)

    def polish(i: int) -> CommonRateFit:
        rate = float(rates[i])
        lo, hi = rates[max(i - 1, 0)], rates[min(i + 1, rates.size - 1)]
        if hi > lo:
            res = minimize_scalar(
                lambda r: float(_sinusoid_rss(v, y, np.array([r]))[0][0]),
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-8 * rate},  # rates are ~1e-3 rad/mV: a relative tolerance
            )
            if float(res.fun) < rss[i]:
                rate = float(res.x)
        rss1, coef = _sinusoid_rss(v, y, np.array([rate]))
        return CommonRateFit(rate, coef[0], float(rss1[0]), y.size)

    best = int(np.argmin(rss))
    padded = np.concatenate([[np.inf], rss, [np.inf]])
    dips = np.flatnonzero((rss <= padded[:-2]) & (rss <= padded[2:]))
    dips = dips[np.abs(np.log(rates[dips] / rates[best])) > separation]
    alternative = polish(int(dips[np.argmin(rss[dips])])) if dips.size else None
    fit = polish(best)
    r = fit.rate_rad_per_mv
    h = 1e-3 * r
    near = _sinusoid_rss(v, y, np.array([r - h, r + h]))[0]
    curvature = float((near[0] - 2 * fit.rss + near[1]) / h**2)
    return CommonRateFit(r, fit.coef, fit.rss, fit.n_values, curvature, alternative)


@dataclass(frozen=True)
class TrigPolynomialFit:
    """Degree-one trigonometric polynomials in ``rates * dv``, one per series, with fitted rates."""

    rates_rad_per_mv: F64  # (k,)
    coef: F64  # (3**k, m)
    residual_rms: float


def fit_trig_polynomial_rates(
    dv_mv: npt.ArrayLike,
    values: npt.ArrayLike,
    rates0: npt.ArrayLike,
    bounds: Sequence[tuple[float, float]],
) -> TrigPolynomialFit:
    """Least-squares polynomials of unknown per-axis rates (variable projection).

    ``dv_mv`` is ``(n, k)`` voltage offsets, ``values`` ``(n, m)`` series measured there.
    For given rates the coefficients are linear (least squares); the rates minimise the
    remaining sum of squares from ``rates0`` within ``bounds`` (rad per mV, per axis).
    Only points beyond three distinct voltages on a line along an axis tell its rate.
    """
    dv = np.atleast_2d(np.asarray(dv_mv, dtype=np.float64))
    y = np.asarray(values, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    r0 = np.asarray(rates0, dtype=np.float64)
    n, k = dv.shape
    if y.shape[0] != n or r0.shape != (k,) or len(bounds) != k:
        raise ValueError(f"shapes disagree: dv {dv.shape}, values {y.shape}, rates0 {r0.shape}")
    if n < 3**k:
        raise ValueError(f"{3**k} coefficients per series need as many points, got {n}")
    if not all(0 < lo <= r <= hi for (lo, hi), r in zip(bounds, r0, strict=True)):
        raise ValueError(f"rates0 {r0} must lie within bounds {list(bounds)}")

    def solve(rates: F64) -> tuple[F64, float]:
        basis = trig_basis(dv * rates[None, :])
        coef = np.asarray(np.linalg.lstsq(basis, y, rcond=None)[0], dtype=np.float64)
        resid = y - basis @ coef
        return coef, float(np.sum(resid * resid))

    # Relative units: every axis moves on the same scale for the optimiser.
    def objective(u: F64) -> float:
        return solve(r0 * np.exp(u))[1]

    ubounds = [(math.log(lo / r), math.log(hi / r)) for (lo, hi), r in zip(bounds, r0, strict=True)]
    u = np.zeros(k)
    if any(hi > lo for lo, hi in ubounds):
        res = minimize(objective, u, method="L-BFGS-B", bounds=ubounds)
        if float(res.fun) < objective(u):
            u = np.asarray(res.x, dtype=np.float64)
    rates = r0 * np.exp(u)
    coef, rss = solve(rates)
    return TrigPolynomialFit(rates, coef, math.sqrt(rss / y.size))


def wrap_phase(x: npt.ArrayLike) -> F64:
    """Phases into ``[-pi, pi)``."""
    return cast(F64, (np.asarray(x, dtype=np.float64) + math.pi) % (2 * math.pi) - math.pi)
