"""Two-photon visibility from a fringe: coincidences against one analyser's HWP angle.

Model (a half-wave plate at ``theta`` turns the measured polarizer angle by ``2 theta``,
so a fringe of the coincidences goes as ``cos(4 theta)``)::

    N(theta) = A (1 + V cos(4 theta - phi)) / 2 + acc

``acc`` is the measured accidentals of each point (displaced windows), given, not fitted,
so ``V`` is the pairs' visibility; with ``acc = 0`` it is the raw one. Linear in
``(A/2, A V cos phi / 2, A V sin phi / 2)``: weighted least squares with Poisson weights
(the variance of each point is the model's own count plus its accidentals' variance,
iterated from the counts), and the standard error of ``V`` propagated from the fit's
covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qhil.numerics.entanglement.errors import EntanglementInputError

F64 = npt.NDArray[np.float64]
_ITERATIONS = 4


@dataclass(frozen=True)
class FringeFit:
    """The fitted fringe: amplitude ``A``, visibility ``V`` (with its standard error) and
    phase ``phi`` (degrees; the fringe's maximum is at ``theta = phi / 4``)."""

    amplitude: float
    visibility: float
    visibility_stderr: float
    phase_deg: float
    chi2: float
    dof: int

    @property
    def max_angle_deg(self) -> float:
        """HWP angle of the fringe's maximum, in [0, 90)."""
        return (self.phase_deg / 4.0) % 90.0

    def model(self, angles_deg: npt.ArrayLike, accidentals: npt.ArrayLike = 0.0) -> F64:
        th = np.radians(np.asarray(angles_deg, dtype=np.float64))
        phi = math.radians(self.phase_deg)
        return self.amplitude * (1.0 + self.visibility * np.cos(4.0 * th - phi)) / 2.0 + np.asarray(
            accidentals, dtype=np.float64
        )


def fit_fringe(
    angles_deg: npt.ArrayLike,
    counts: npt.ArrayLike,
    accidentals: npt.ArrayLike = 0.0,
    accidentals_std: npt.ArrayLike = 0.0,
) -> FringeFit:
    """Weighted least-squares fit of ``N = A (1 + V cos(4 theta - phi)) / 2 + acc``."""
    th = np.radians(np.asarray(angles_deg, dtype=np.float64).ravel())
    n = np.asarray(counts, dtype=np.float64).ravel()
    if th.size != n.size:
        raise EntanglementInputError(f"angles_deg, counts: {th.size} angles but {n.size} counts")
    if n.size < 4:
        raise EntanglementInputError(f"counts: need >= 4 points for 3 parameters (got {n.size})")
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        raise EntanglementInputError("counts: must be finite and >= 0")
    acc = np.broadcast_to(np.asarray(accidentals, dtype=np.float64), n.shape)
    acc_var = np.broadcast_to(np.asarray(accidentals_std, dtype=np.float64) ** 2, n.shape)
    x = np.column_stack([np.ones_like(th), np.cos(4.0 * th), np.sin(4.0 * th)])
    y = n - acc
    var = np.maximum(n, 1.0) + acc_var
    for _ in range(_ITERATIONS):
        w = 1.0 / var
        xtwx = x.T @ (x * w[:, None])
        try:
            cov = np.linalg.inv(xtwx)
        except np.linalg.LinAlgError:
            raise EntanglementInputError(
                "angles_deg: the angles do not span the fringe (need at least three "
                "different values of 4 theta mod 360)"
            ) from None
        beta = cov @ (x.T @ (w * y))
        # The next weights from the fitted means (Poisson), not the noisy counts.
        var = np.maximum(x @ beta + acc, 1.0) + acc_var
    a0, a1, a2 = (float(b) for b in beta)
    if a0 <= 0:
        raise EntanglementInputError("counts: no fringe (the fitted mean is not positive)")
    r = math.hypot(a1, a2)
    vis = r / a0
    # Gradient of V = hypot(a1, a2) / a0 with respect to (a0, a1, a2).
    grad = np.array([-vis / a0, a1 / (r * a0) if r > 0 else 0.0, a2 / (r * a0) if r > 0 else 0.0])
    v_std = float(math.sqrt(max(float(grad @ cov @ grad), 0.0)))
    resid = y - x @ beta
    chi2 = float(np.sum(resid**2 / var))
    return FringeFit(
        amplitude=2.0 * a0,
        visibility=vis,
        visibility_stderr=v_std,
        phase_deg=math.degrees(math.atan2(a2, a1)) % 360.0,
        chi2=chi2,
        dof=int(n.size - 3),
    )
