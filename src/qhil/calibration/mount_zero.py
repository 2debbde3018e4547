"""A rotation mount's zero: the mount angle where its half-wave plate's fast axis lies along H.

The bench: a polarization-entangled pair source (|phi+>), each photon through its node's
fibre (compensated), a half-wave plate on a motorized rotation mount
(:class:`~qhil.drivers.roles.RotationMount`) and a passive-basis analyser. A HWP with its
fast axis at ``phi`` acts on linear polarization as a reflection about ``phi``; on |phi+>
the two plates' reflections combine into one rotation by ``2 (phi_A - phi_B)``, so the H/V
correlation of the coincidences is

    E = (C_HH + C_VV - C_HV - C_VH) / (C_HH + C_VV + C_HV + C_VH)
      = V cos(4 (phi_A - phi_B))

(``V`` the pair's visibility). Scanning one node's mount angle ``theta`` with the other's held
at ``theta_ref`` gives a fringe ``E(theta) = b + A cos(4 (theta - theta_0))`` of period
90 deg; its maximum ``theta_0`` is the **zero**: the angle at which the scanned plate's axis is
parallel to the reference plate's. With |phi+> only this *relative* angle is measurable (the
pair is invariant under equal real rotations at both ends; each photon alone is unpolarized):
the zero is quoted against the reference mount held at ``reference_angle_deg``, which is by
definition that mount's zero. An experiment that wants a measurement axis ``phi`` moves the
scanned mount to ``zero_deg + phi`` and the reference mount to ``reference_angle_deg + phi``.
A HWP's zero is defined modulo 90 deg (fast axis along H or V: the same operation).

**The D/A fringe as a check.** The passive analyser measures D/A as often as H/V, and on
|phi+> the D/A correlation follows the same ``V cos 4 (phi_A - phi_B)``: its fringe must peak
at the same angle with the same visibility. It is fitted alike and reported beside the
zero (``da_zero_deg``, ``hv_da_difference_deg``, ``da_visibility`` and the disagreements'
significances): the zero itself is the H/V fringe's (the definition), and a disagreement
beyond the errors says the light reaching the plates is not what |phi+> through
compensated fibres gives (an elliptical fibre rotation a half-wave plate cannot undo). Beyond
``max_hv_da_sigma`` the calibration fails (the stock entanglement bench, fibres at random:
D/A visibility 0.32, its fringe 43 deg away, 50 sigma): compensate the fibres' polarization,
then calibrate again.

The fit is linear: weighted least squares of ``E`` on ``(1, cos 4 theta, sin 4 theta)``, with
each point's binomial variance ``(1 - E^2) / N`` (``E`` from the first pass's model in the
second, so a point's weight does not depend on its own noise). ``theta_0 = atan2(s, c) / 4``,
``A = hypot(c, s)``; their standard errors by the delta method from the fit's covariance,
scaled by ``sqrt(chi2 / dof)`` when that exceeds 1 (the data scatter more than counts explain:
drift, a moving fibre). On angles spaced evenly over whole periods the phase is unbiased
even when the fringe is not a pure sinusoid (detector mismatch, extinction): such a fringe
is still a function of ``cos 4 (theta - theta_0)``, symmetric about its maximum.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.calibration.errors import CalibrationError
from qhil.drivers.roles import RotationMount

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The coincidence pairs counted at each angle, in this column order (scanned node first).
PAIRS = ("HH", "HV", "VH", "VV")
#: The D/A block's pairs, the same way.
DA_PAIRS = ("DD", "DA", "AD", "AA")
#: Period of a HWP's H/V fringe against its mount angle, deg.
PERIOD_DEG = 90.0
#: Fewest H/V coincidences a point needs to enter the fit.
MIN_POINT_COINCIDENCES = 10

#: Run-record row per angle of the scan.
POINT_DTYPE = np.dtype(
    [
        ("angle_deg", np.float64),  # the scanned mount's angle, as commanded
        ("position_deg", np.float64),  # as the mount reads it back
        ("hh", np.int64),
        ("hv", np.int64),
        ("vh", np.int64),
        ("vv", np.int64),
        ("dd", np.int64),  # the D/A block alike (the check)
        ("da", np.int64),
        ("ad", np.int64),
        ("aa", np.int64),
        ("accidentals", np.float64),  # estimated from a displaced window (not subtracted)
        ("integration_s", np.float64),
        ("correlation", np.float64),  # E at this angle
        ("correlation_std", np.float64),
        ("model", np.float64),  # the fitted fringe at this angle
        ("da_correlation", np.float64),
        ("da_correlation_std", np.float64),
        ("da_model", np.float64),
    ]
)


@dataclass(frozen=True)
class FringeFit:
    """``E(theta) = offset + amplitude cos(4 (theta - zero_deg))``, with 1-sigma errors."""

    zero_deg: float  # in [0, 90)
    zero_std_deg: float
    amplitude: float  # the H/V visibility at the zero
    amplitude_std: float
    offset: float
    offset_std: float
    chi2: float
    dof: int
    error_scale: float  # sqrt(chi2 / dof) when > 1, else 1: already in the errors above

    def model(self, angle_deg: npt.ArrayLike) -> F64:
        theta = np.radians(np.asarray(angle_deg, dtype=np.float64) - self.zero_deg)
        return np.asarray(self.offset + self.amplitude * np.cos(4.0 * theta), dtype=np.float64)

    @property
    def p_value(self) -> float:
        from scipy.stats import chi2 as chi2_dist

        return float(chi2_dist.sf(self.chi2, self.dof)) if self.dof > 0 else float("nan")


def correlations(counts: npt.ArrayLike) -> tuple[F64, F64, I64]:
    """H/V correlation ``E`` of each row of counts (columns HH, HV, VH, VV), its binomial
    standard error ``sqrt((1 - E^2) / N)`` and ``N``."""
    c = np.asarray(counts, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError(f"counts must have one row per angle and 4 columns {PAIRS}")
    n = c.sum(axis=1)
    same = c[:, 0] + c[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(n > 0, (2.0 * same - n) / np.maximum(n, 1), np.nan)
        std = np.sqrt(np.maximum(1.0 - e**2, 1.0 / np.maximum(n, 1)) / np.maximum(n, 1))
    return e.astype(np.float64), std.astype(np.float64), n


def fit_fringe(angles_deg: npt.ArrayLike, counts: npt.ArrayLike) -> FringeFit:
    """Fit the H/V fringe of the coincidence ``counts`` (rows: angles; columns HH, HV, VH, VV).

    Raises ValueError when fewer than four angles hold ``MIN_POINT_COINCIDENCES`` (three
    parameters and one degree of freedom), or the angles do not span a fringe.
    """
    theta = np.radians(np.asarray(angles_deg, dtype=np.float64))
    e, _, n = correlations(counts)
    if theta.shape != e.shape:
        raise ValueError(f"{theta.size} angles but {e.size} rows of counts")
    use = n >= MIN_POINT_COINCIDENCES
    if int(use.sum()) < 4:
        raise ValueError(
            f"only {int(use.sum())} angles have >= {MIN_POINT_COINCIDENCES} H/V coincidences; "
            "a fringe needs at least 4"
        )
    theta, e, nf = theta[use], e[use], n[use].astype(np.float64)
    x = np.column_stack([np.ones_like(theta), np.cos(4.0 * theta), np.sin(4.0 * theta)])
    if np.linalg.matrix_rank(x) < 3:
        raise ValueError("the angles do not span a fringe (too few distinct angles mod 90 deg)")
    # Pass 1 weights each point by its own E; pass 2 by the first model's (unbiased weights).
    var = np.maximum(1.0 - e**2, 1.0 / nf) / nf
    for _ in range(2):
        w = 1.0 / var
        xtwx = x.T @ (x * w[:, None])
        beta = np.linalg.solve(xtwx, x.T @ (w * e))
        pred = np.clip(x @ beta, -1.0, 1.0)
        var = np.maximum(1.0 - pred**2, 1.0 / nf) / nf
    w = 1.0 / var
    xtwx = x.T @ (x * w[:, None])
    beta = np.linalg.solve(xtwx, x.T @ (w * e))
    cov = np.linalg.inv(xtwx)
    resid = e - x @ beta
    chi2 = float(np.sum(w * resid**2))
    dof = int(e.size - 3)
    scale = math.sqrt(chi2 / dof) if dof > 0 and chi2 > dof else 1.0
    cov = cov * scale**2
    b, c, s = (float(v) for v in beta)
    amp = math.hypot(c, s)
    if amp <= 0:
        raise ValueError("no fringe: the correlation does not depend on the angle")
    j_amp = np.array([0.0, c / amp, s / amp])
    j_phase = np.array([0.0, -s / amp**2, c / amp**2])
    amp_std = math.sqrt(max(float(j_amp @ cov @ j_amp), 0.0))
    phase_std = math.sqrt(max(float(j_phase @ cov @ j_phase), 0.0))
    zero = math.degrees(math.atan2(s, c)) / 4.0 % PERIOD_DEG
    zero = 0.0 if zero >= PERIOD_DEG else zero  # -1e-17 % 90 is 90.0
    return FringeFit(
        zero_deg=zero,
        zero_std_deg=math.degrees(phase_std) / 4.0,
        amplitude=amp,
        amplitude_std=amp_std,
        offset=b,
        offset_std=math.sqrt(max(float(cov[0, 0]), 0.0)),
        chi2=chi2,
        dof=dof,
        error_scale=scale,
    )


def scan_angles(points: int, start_deg: float = 0.0, span_deg: float = PERIOD_DEG) -> F64:
    """``points`` angles evenly spaced over ``span_deg`` (whole fringe periods) from ``start_deg``."""
    return np.asarray(start_deg + span_deg * np.arange(points) / points, dtype=np.float64)


def wrap_deg(angle_deg: float, period_deg: float = PERIOD_DEG) -> float:
    """``angle_deg`` folded into ``(-period/2, period/2]``: the distance of two zeros."""
    x = (angle_deg + period_deg / 2.0) % period_deg - period_deg / 2.0
    return period_deg / 2.0 if x == -period_deg / 2.0 else x


@dataclass(frozen=True)
class MountZeroPoint:
    """One angle of the scan: the coincidences counted there."""

    angle_deg: float
    position_deg: float
    counts: tuple[int, int, int, int]  # HH, HV, VH, VV (scanned node's detector first)
    accidentals: float  # in the H/V block's window
    integration_s: float
    da_counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # DD, DA, AD, AA


@dataclass(frozen=True)
class MountZeroCalibration:
    """The scanned mount's zero against the reference mount, and the fringe it came from."""

    node: str
    mount: str
    reference_node: str
    reference_mount: str
    reference_angle_deg: float
    fit: FringeFit
    points: tuple[MountZeroPoint, ...]
    left_at_deg: float  # where the scanned mount was left
    da_fit: FringeFit | None = None  # the D/A fringe (the check), when it could be fitted

    @property
    def hv_da_visibility_sigma(self) -> float | None:
        """|V_HV - V_DA| over its 1-sigma error."""
        if self.da_fit is None:
            return None
        std = math.hypot(self.fit.amplitude_std, self.da_fit.amplitude_std)
        diff = abs(self.fit.amplitude - self.da_fit.amplitude)
        return diff / std if std > 0 else float("inf")

    @property
    def hv_da_difference(self) -> tuple[float, float] | None:
        """D/A zero minus H/V zero (folded into +-45 deg) and its 1-sigma error."""
        if self.da_fit is None:
            return None
        diff = wrap_deg(self.da_fit.zero_deg - self.fit.zero_deg)
        return diff, math.hypot(self.da_fit.zero_std_deg, self.fit.zero_std_deg)

    @property
    def zero_deg(self) -> float:
        return self.fit.zero_deg

    @property
    def zero_std_deg(self) -> float:
        return self.fit.zero_std_deg

    def rows(self) -> npt.NDArray[np.void]:
        out = np.zeros(len(self.points), dtype=POINT_DTYPE)
        if not self.points:
            return out
        counts = np.array([p.counts for p in self.points], dtype=np.int64)
        e, std, _ = correlations(counts)
        out["angle_deg"] = [p.angle_deg for p in self.points]
        out["position_deg"] = [p.position_deg for p in self.points]
        for i, name in enumerate(PAIRS):
            out[name.lower()] = counts[:, i]
        out["accidentals"] = [p.accidentals for p in self.points]
        out["integration_s"] = [p.integration_s for p in self.points]
        out["correlation"], out["correlation_std"] = e, std
        out["model"] = self.fit.model(out["position_deg"])
        da = np.array([p.da_counts for p in self.points], dtype=np.int64)
        for i, name in enumerate(DA_PAIRS):
            out[name.lower()] = da[:, i]
        out["da_correlation"], out["da_correlation_std"], _ = correlations(da)
        out["da_model"] = np.nan if self.da_fit is None else self.da_fit.model(out["position_deg"])
        return out

    def to_results(self) -> dict[str, Any]:
        f = self.fit
        return {
            "node": self.node,
            "mount": self.mount,
            "reference_node": self.reference_node,
            "reference_mount": self.reference_mount,
            "reference_angle_deg": self.reference_angle_deg,
            "zero_deg": f.zero_deg,
            "zero_std_deg": f.zero_std_deg,
            # Each node's zero under its own name (what an experiment reads): the reference
            # mount's is its angle by definition, exactly.
            f"zero_{self.node}_deg": f.zero_deg,
            f"zero_{self.node}_std_deg": f.zero_std_deg,
            f"zero_{self.reference_node}_deg": self.reference_angle_deg,
            f"zero_{self.reference_node}_std_deg": 0.0,
            "visibility": f.amplitude,
            "visibility_std": f.amplitude_std,
            "correlation_offset": f.offset,
            "correlation_offset_std": f.offset_std,
            "chi2": f.chi2,
            "dof": f.dof,
            "error_scale": f.error_scale,
            "p_value": f.p_value,
            "points": len(self.points),
            "coincidences": int(sum(sum(p.counts) for p in self.points)),
            "left_at_deg": self.left_at_deg,
            **self._da_results(),
        }

    def _da_results(self) -> dict[str, Any]:
        d, diff = self.da_fit, self.hv_da_difference
        if d is None or diff is None:
            return {}
        return {
            "da_zero_deg": d.zero_deg,
            "da_zero_std_deg": d.zero_std_deg,
            "da_visibility": d.amplitude,
            "da_visibility_std": d.amplitude_std,
            "da_coincidences": int(sum(sum(p.da_counts) for p in self.points)),
            "hv_da_difference_deg": diff[0],
            "hv_da_difference_std_deg": diff[1],
            "hv_da_difference_sigma": abs(diff[0]) / diff[1] if diff[1] > 0 else float("inf"),
            "hv_da_visibility_sigma": self.hv_da_visibility_sigma,
        }


Counts = tuple[int, int, int, int]
#: count(integration_s) -> ((HH, HV, VH, VV), (DD, DA, AD, AA), H/V accidentals): one
#: coincidence measurement on the bench, the scanned node's detector first in each pair.
CountFn = Callable[[float], Awaitable[tuple[Counts, Counts, float]]]


async def calibrate_mount_zero(
    mount: RotationMount,
    reference: RotationMount,
    count: CountFn,
    *,
    node: str = "alice",
    mount_name: str = "hwp",
    reference_node: str = "bob",
    reference_name: str = "hwp",
    reference_angle_deg: float = 0.0,
    points: int = 12,
    integration_s: float = 0.5,
    start_deg: float = 0.0,
    min_visibility: float = 0.5,
    max_hv_da_sigma: float | None = 5.0,
    on_point: Callable[[MountZeroPoint], Awaitable[None]] | None = None,
) -> MountZeroCalibration:
    """Scan ``mount`` over one fringe period with ``reference`` held at
    ``reference_angle_deg``; fit the fringe; leave ``mount`` at the zero found.

    ``count`` measures the H/V coincidences over ``integration_s`` (the bench's two-node
    acquisition). Raises :class:`CalibrationError` when the fringe is too weak to place a
    zero (``min_visibility``: no pairs, fibres not compensated, a plate not turning), or when
    the D/A fringe's zero or visibility disagree with the H/V one's by more than
    ``max_hv_da_sigma`` standard errors (None: report only).
    """
    if points < 4:
        raise ValueError("points must be >= 4 (three fringe parameters and one check)")
    await reference.move_to_deg(reference_angle_deg)
    taken: list[MountZeroPoint] = []
    for angle in scan_angles(points, start_deg):
        await mount.move_to_deg(float(angle))
        position = await mount.position_deg()
        counts, da_counts, acc = await count(integration_s)
        point = MountZeroPoint(
            float(angle), float(position), counts, float(acc), integration_s, da_counts
        )
        taken.append(point)
        if on_point is not None:
            await on_point(point)
    # Fit against the angles the mount reports (its own encoder), not the ones asked for.
    positions = np.array([p.position_deg for p in taken])
    counts_arr = np.array([p.counts for p in taken], dtype=np.int64)
    try:
        fit = fit_fringe(positions, counts_arr)
    except ValueError as exc:
        raise CalibrationError(f"{node}.{mount_name}: no H/V fringe to fit: {exc}") from None
    if fit.amplitude - 3.0 * fit.amplitude_std < min_visibility:
        raise CalibrationError(
            f"{node}.{mount_name}: H/V fringe visibility {fit.amplitude:.3f} +- "
            f"{fit.amplitude_std:.3f} is below min_visibility {min_visibility:g} (3 sigma): "
            f"{int(counts_arr.sum())} H/V coincidences over {points} angles; check the pair "
            "source, both fibres' polarization compensation and that the plates turn"
        )
    try:
        da_fit: FringeFit | None = fit_fringe(
            positions, np.array([p.da_counts for p in taken], dtype=np.int64)
        )
    except ValueError:  # no D/A counts (an H/V-only analyser): no check
        da_fit = None
    result = MountZeroCalibration(
        node=node,
        mount=mount_name,
        reference_node=reference_node,
        reference_mount=reference_name,
        reference_angle_deg=reference_angle_deg,
        fit=fit,
        points=tuple(taken),
        left_at_deg=fit.zero_deg,
        da_fit=da_fit,
    )
    check_da(result, max_hv_da_sigma)
    await mount.move_to_deg(fit.zero_deg)
    return result


def check_da(result: MountZeroCalibration, max_sigma: float | None) -> None:
    """A CalibrationError when the D/A fringe disagrees with the H/V one (module doc)."""
    diff, vis_sigma = result.hv_da_difference, result.hv_da_visibility_sigma
    if max_sigma is None or diff is None or vis_sigma is None or result.da_fit is None:
        return
    phase_sigma = abs(diff[0]) / diff[1] if diff[1] > 0 else float("inf")
    if phase_sigma <= max_sigma and vis_sigma <= max_sigma:
        return
    raise CalibrationError(
        f"{result.node}.{result.mount}: the D/A fringe (visibility "
        f"{result.da_fit.amplitude:.3f}, zero {result.da_fit.zero_deg:.2f} deg) disagrees with "
        f"the H/V one (visibility {result.fit.amplitude:.3f}, zero {result.zero_deg:.2f} deg) "
        f"by {phase_sigma:.1f} sigma in angle and {vis_sigma:.1f} in visibility (max_hv_da_sigma "
        f"{max_sigma:g}): the light reaching the plates is not |phi+> through compensated "
        "fibres; compensate the fibres' polarization, then calibrate again"
    )


@dataclass(frozen=True)
class MountZeros:
    """The newest usable mount-zero calibration of a bench: each node's zero (deg, 1 sigma)."""

    run_id: str
    zeros_deg: dict[str, float]  # node -> mount angle where its plate's axis is along H
    zeros_std_deg: dict[str, float]
    mounts: dict[str, str]  # node -> instrument name of its mount
    reason: str  # why this one (or, when there is none, why not: see latest_mount_zeros)

    def angle_for(self, node: str, axis_deg: float) -> float:
        """The mount angle that puts ``node``'s plate's fast axis at ``axis_deg`` from H."""
        return (self.zeros_deg[node] + axis_deg) % 360.0


def latest_mount_zeros(
    data_dir: Any, identities: dict[str, str], *, max_age_s: float = 7 * 86400.0
) -> MountZeros | None:
    """The newest successful ``calibration.mount_zero`` run made with these instrument
    ``identities`` (the bench's ``await bench.identities()``) and at most ``max_age_s`` old,
    read through the calibration store (:mod:`qhil.calibration.store`); None when there is
    none. Both nodes' zeros come from one run: the scanned mount's fitted zero and the
    reference mount's angle (its zero by definition; std 0)."""
    from qhil.calibration.store import CalibrationStore

    found = CalibrationStore(data_dir).find(
        "mount_zero", identities=identities, max_age_s=max_age_s
    )
    cal = found.calibration
    if cal is None:
        return None
    nodes = [str(cal.extra.get("node")), str(cal.extra.get("reference_node"))]
    mounts = [str(cal.extra.get("mount")), str(cal.extra.get("reference_mount"))]
    zeros = {n: cal.value(f"zero_{n}_deg") for n in nodes}
    stds = {n: float(cal.quantities[f"zero_{n}_deg"].std or 0.0) for n in nodes}
    return MountZeros(cal.run_id, zeros, stds, dict(zip(nodes, mounts, strict=True)), found.reason)
