"""Time and frequency stability from phase data: ADEV, MDEV, TDEV (NIST SP 1065).

Input is a *phase* (time-error) series ``x_i`` in seconds, one sample every ``tau0_s``
(e.g. the residual clock offset once per tracking interval). Every estimator is the
overlapping one of NIST Special Publication 1065 (Riley 2008), at averaging factors
``m`` (``tau = m * tau0``):

* overlapping Allan variance (SP 1065 eq. 14)::

      AVAR(tau) = sum_{i=0}^{N-2m-1} (x[i+2m] - 2 x[i+m] + x[i])^2 / (2 (N-2m) tau^2)

* modified Allan variance (eq. 15)::

      MVAR(tau) = sum_{j=0}^{N-3m} ( sum_{i=j}^{j+m-1} (x[i+2m] - 2 x[i+m] + x[i]) )^2
                  / (2 m^2 tau^2 (N-3m+1))

* time variance (eq. 17): ``TVAR(tau) = tau^2 / 3 * MVAR(tau)``.

The inner sums are moving sums computed from one cumulative sum per ``m``: no Python
loop over samples. Samples may be NaN (a gap: the clock was not locked): every term
that touches a NaN is left out and ``n_terms`` counts the terms that remain, so a gap
costs only its own terms, not the whole series.

Reference slopes (power-law noise): TDEV ~ tau^-1/2 for white PM, tau^+1/2 for white FM,
tau^+3/2 for random-walk FM; ADEV ~ tau^-1/2 for white FM, tau^+1/2 for random-walk FM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing.errors import TimingInputError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

Estimator = Literal["adev", "mdev", "tdev"]


@dataclass(frozen=True)
class Stability:
    """One deviation against averaging time.

    ``dev`` is ADEV / MDEV (dimensionless, fractional frequency) or TDEV (seconds);
    ``n_terms`` is how many (overlapping) terms each value averages; ``err`` is a simple
    1-sigma error bar in the spirit of SP 1065 sec. 5.3 (``dev / sqrt(N)``), with ``N`` the
    number of non-overlapping terms (``n_terms / m``, at least 1) so that it widens where
    few independent samples remain. For exact confidence intervals use the equivalent
    degrees of freedom (SP 1065 sec. 5.3.2), not computed here.
    """

    kind: Estimator
    m: I64
    tau_s: F64
    dev: F64
    n_terms: I64

    @property
    def err(self) -> F64:
        independent = np.maximum(self.n_terms / np.maximum(self.m, 1), 1.0)
        return np.asarray(self.dev / np.sqrt(independent), dtype=np.float64)


def octave_factors(n_samples: int, kind: Estimator = "tdev") -> I64:
    """Averaging factors 1, 2, 4, ... that leave at least one term for ``kind``
    (``N - 2m >= 1`` for ADEV, ``N - 3m + 1 >= 1`` for MDEV and TDEV)."""
    top = (n_samples - 1) // 2 if kind == "adev" else n_samples // 3
    if top < 1:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(2 ** np.arange(int(np.log2(top)) + 1), dtype=np.int64)


def adev(phase_s: npt.ArrayLike, tau0_s: float, m: npt.ArrayLike | None = None) -> Stability:
    """Overlapping Allan deviation from phase data (fractional frequency)."""
    return _deviation("adev", phase_s, tau0_s, m)


def mdev(phase_s: npt.ArrayLike, tau0_s: float, m: npt.ArrayLike | None = None) -> Stability:
    """Modified Allan deviation from phase data (fractional frequency)."""
    return _deviation("mdev", phase_s, tau0_s, m)


def tdev(phase_s: npt.ArrayLike, tau0_s: float, m: npt.ArrayLike | None = None) -> Stability:
    """Time deviation from phase data (seconds): ``tau / sqrt(3) * MDEV``."""
    return _deviation("tdev", phase_s, tau0_s, m)


def _deviation(
    kind: Estimator, phase_s: npt.ArrayLike, tau0_s: float, m: npt.ArrayLike | None
) -> Stability:
    x = _phase(phase_s)
    real = isinstance(tau0_s, int | float | np.floating | np.integer)
    if not real or not (np.isfinite(tau0_s) and tau0_s > 0):
        raise TimingInputError(f"tau0_s: expected a finite sampling interval > 0 s, got {tau0_s!r}")
    factors = octave_factors(x.size, kind) if m is None else _factors(m, x.size, kind)
    devs = np.empty(factors.size)
    counts = np.empty(factors.size, dtype=np.int64)
    # One vectorised pass per averaging factor (a few dozen at most: octaves).
    for k, mk in enumerate(factors):
        devs[k], counts[k] = _one(kind, x, int(mk), float(tau0_s))
    tau_s = np.asarray(factors * float(tau0_s), dtype=np.float64)
    return Stability(kind, factors, tau_s, devs, counts)


def _one(kind: Estimator, x: F64, m: int, tau0: float) -> tuple[float, int]:
    tau = m * tau0
    d2 = x[2 * m :] - 2.0 * x[m:-m] + x[: -2 * m]  # second differences at stride m
    # MDEV/TDEV: the N - 3m + 1 sums of m consecutive second differences
    terms = d2 if kind == "adev" else _moving_sum(d2, m)
    good = np.isfinite(terms)
    n = int(good.sum())
    if n == 0:
        return float("nan"), 0
    mean_sq = float(np.mean(np.square(terms[good])))
    if kind == "adev":
        var = mean_sq / (2.0 * tau * tau)
    else:
        var = mean_sq / (2.0 * m * m * tau * tau)
        if kind == "tdev":
            var *= tau * tau / 3.0
    return float(np.sqrt(var)), n


def _moving_sum(d: F64, m: int) -> F64:
    """Sums of ``m`` consecutive values; a window holding a NaN gives NaN."""
    bad = ~np.isfinite(d)
    c = np.concatenate(([0.0], np.cumsum(np.where(bad, 0.0, d))))
    nb = np.concatenate(([0], np.cumsum(bad)))
    out = c[m:] - c[:-m]
    out[(nb[m:] - nb[:-m]) > 0] = np.nan
    return out


def _phase(phase_s: npt.ArrayLike) -> F64:
    x = np.asarray(phase_s)
    if x.ndim != 1:
        raise TimingInputError(
            f"phase_s: expected a 1-D series of phase samples, got shape {x.shape}"
        )
    if x.size and not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TimingInputError(f"phase_s: expected real numbers (seconds), got dtype {x.dtype}")
    x = x.astype(np.float64)
    if np.isinf(x).any():
        raise TimingInputError("phase_s: infinite sample (use NaN for a gap)")
    return x


def _factors(m: npt.ArrayLike, n_samples: int, kind: Estimator) -> I64:
    arr = np.atleast_1d(np.asarray(m))
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TimingInputError(f"m: expected integer averaging factors, got {m!r}")
    arr = arr.astype(np.int64)
    need = "N - 2m >= 1" if kind == "adev" else "N - 3m + 1 >= 1"
    top = (n_samples - 1) // 2 if kind == "adev" else n_samples // 3
    if arr.size and (arr.min() < 1 or arr.max() > top):
        raise TimingInputError(
            f"m: averaging factors must lie in 1..{top} for {kind} of {n_samples} samples "
            f"({need}), got {arr.min()}..{arr.max()}"
        )
    return arr
