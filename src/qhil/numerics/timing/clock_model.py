"""Linear model between two sites' clocks, and weighted line fits of offset against time.

Clock B reads ``t_b = t_a + offset + drift * (t_a - t_ref)`` when clock A reads ``t_a``:
``offset`` is B minus A at the reference instant ``t_ref`` (an A-clock reading), and
``drift`` is B's fractional frequency error relative to A (1e-6 = 1 ppm). For photon
pairs "B minus A" includes the fibre delay difference, which is exactly what a
coincidence search needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing.errors import TimingInputError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ClockModel:
    """``t_b = t_a + offset_ps + drift * (t_a - t_ref_ps)``."""

    offset_ps: float
    drift: float = 0.0
    t_ref_ps: int = 0

    def __post_init__(self) -> None:
        if not np.isfinite(self.offset_ps) or not np.isfinite(self.drift):
            raise TimingInputError(
                f"ClockModel: offset_ps and drift must be finite "
                f"(got {self.offset_ps!r}, {self.drift!r})"
            )
        if self.drift <= -1.0:
            raise TimingInputError(f"ClockModel: drift must be > -1 (got {self.drift!r})")

    @property
    def drift_ppm(self) -> float:
        return self.drift * 1e6

    def offset_at(self, t_a_ps: npt.ArrayLike) -> FloatArray:
        """B minus A at A-clock time(s) ``t_a_ps``."""
        t = np.asarray(t_a_ps, dtype=np.int64) - self.t_ref_ps
        return self.offset_ps + self.drift * t.astype(np.float64)

    def b_from_a(self, t_a_ps: npt.ArrayLike) -> FloatArray:
        """B-clock reading of the instant A reads ``t_a_ps``."""
        rel = (np.asarray(t_a_ps, dtype=np.int64) - self.t_ref_ps).astype(np.float64)
        return self.t_ref_ps + (self.offset_ps + rel * (1.0 + self.drift))

    def a_from_b(self, t_b_ps: npt.ArrayLike) -> FloatArray:
        """A-clock reading of the instant B reads ``t_b_ps`` (float ps)."""
        # Subtract in int64 first so float64 only carries the (small) relative time.
        rel = (np.asarray(t_b_ps, dtype=np.int64) - self.t_ref_ps).astype(np.float64)
        return self.t_ref_ps + (rel - self.offset_ps) / (1.0 + self.drift)

    def map_b_to_a(self, t_b_ps: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """B timestamps re-expressed on A's clock, rounded to int64 ps (order preserved)."""
        rel = (np.asarray(t_b_ps, dtype=np.int64) - self.t_ref_ps).astype(np.float64)
        mapped = np.rint((rel - self.offset_ps) / (1.0 + self.drift)).astype(np.int64)
        return mapped + self.t_ref_ps

    def compose(self, residual_offset_ps: float, residual_drift: float) -> ClockModel:
        """Fold in a residual measured on B timestamps already mapped with this model.

        If mapped B reads ``t_a + e0 + eps * (t_a - t_ref)``, the true model is
        ``offset + (1 + drift) e0`` and ``drift + (1 + drift) eps``.
        """
        k = 1.0 + self.drift
        return ClockModel(
            self.offset_ps + k * residual_offset_ps,
            self.drift + k * residual_drift,
            self.t_ref_ps,
        )

    def with_reference(self, t_ref_ps: int) -> ClockModel:
        """The same line, with its offset quoted at another reference instant."""
        return ClockModel(float(self.offset_at(t_ref_ps)), self.drift, int(t_ref_ps))


@dataclass(frozen=True)
class LineFit:
    """Weighted least-squares line ``y = offset + slope * (t - t_ref)`` with 1-sigma errors."""

    offset: float
    slope: float
    offset_stderr: float
    slope_stderr: float
    t_ref: float
    n_points: int


def fit_line(
    t: npt.ArrayLike,
    y: npt.ArrayLike,
    stderr: npt.ArrayLike | None = None,
    *,
    t_ref: float = 0.0,
    fit_slope: bool = True,
) -> LineFit:
    """Least-squares line through ``(t, y)``; NaN points are ignored.

    With ``stderr`` the fit is weighted by ``1/stderr**2`` and the reported errors
    follow from those stderrs; without it, the errors come from the scatter.
    """
    t_arr = np.asarray(t, dtype=np.float64).ravel() - t_ref
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    if t_arr.shape != y_arr.shape:
        raise TimingInputError(f"fit_line: t and y differ in length ({t_arr.size} vs {y_arr.size})")
    if stderr is None:
        s = np.ones_like(y_arr)
    else:
        s = np.asarray(stderr, dtype=np.float64).ravel()
        if s.shape != y_arr.shape:
            raise TimingInputError("fit_line: stderr must have the same length as y")
    ok = np.isfinite(t_arr) & np.isfinite(y_arr) & np.isfinite(s) & (s > 0)
    t_arr, y_arr, s = t_arr[ok], y_arr[ok], s[ok]
    n_params = 2 if fit_slope else 1
    if t_arr.size < n_params:
        raise TimingInputError(
            f"fit_line: need at least {n_params} usable points, got {t_arr.size}"
        )
    w = 1.0 / s**2
    design = np.stack([np.ones_like(t_arr), t_arr], axis=1)[:, :n_params]
    normal = design.T @ (design * w[:, None])
    cov = np.linalg.inv(normal)
    params = cov @ (design.T @ (w * y_arr))
    if stderr is None:
        dof = t_arr.size - n_params
        resid = y_arr - design @ params
        scale = float(resid @ resid) / dof if dof > 0 else float("nan")
        cov = cov * scale
    slope = float(params[1]) if fit_slope else 0.0
    slope_err = float(np.sqrt(cov[1, 1])) if fit_slope else 0.0
    return LineFit(
        float(params[0]), slope, float(np.sqrt(cov[0, 0])), slope_err, float(t_ref), t_arr.size
    )
