"""The two experiments on the shared acquisition: visibility fringes and the CHSH test.

Only roles are used (through :class:`EntanglementNodes`); nothing asks whether the bench
is emulated. Each point is one :func:`acquire_pairs` of both nodes; the first point's
clock frequency is the next points' prior (their offsets are found anew: every stream
resets its counters).

Angles (see ``settings.py``): a plate axis ``t`` (from the mount's zero) measures the
polarization angle ``2 t`` at the analyser's H/V outputs and ``2 t + 45`` at D/A.

* **Visibility**: the scanned node's plate steps through ``angles_deg`` with the other's
  fixed; per basis a fringe of the (+,+) coincidences (H&H in H/V, D&D in D/A) goes as
  ``A (1 + V cos(4 theta - phi)) / 2 + acc``, fitted with the measured accidentals of
  each point given (:func:`qhil.numerics.entanglement.fit_fringe`).
* **CHSH**: for each setting pair (a, b) of polarization angles the plates go to
  ``a / 2`` and ``b / 2`` (mount: zero + that), and the correlator comes from the H/V
  block of the coincidences, raw (accidentals reported, not subtracted):
  (0, 22.5), (0, 67.5), (45, 22.5), (45, 67.5) deg are plate axes (0, 11.25), (0, 33.75),
  (22.5, 11.25), (22.5, 33.75).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.numerics.entanglement import ChshResult, FringeFit, chsh, fit_fringe
from qhil.numerics.timing import ClockModel
from qhil.orchestrator.experiments.entanglement.acquisition import (
    CoincidenceOptions,
    EntanglementNodes,
    PairAcquisition,
    acquire_pairs,
)
from qhil.orchestrator.experiments.entanglement.settings import (
    AcquisitionSettings,
    ChshSettings,
    VisibilitySettings,
)

F64 = npt.NDArray[np.float64]
#: Per basis, the (+, +) cell of the 4 x 4 matrix (H&H, D&D) a fringe counts.
BASES = {"HV": (0, 0), "DA": (2, 2)}


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` points; ``coincidences`` so far."""

    experiment: str
    done: int
    total: int
    coincidences: int


ProgressHook = Callable[[Progress], Any]
PointHook = Callable[[int, PairAcquisition], Any]


def options(settings: AcquisitionSettings) -> CoincidenceOptions:
    return CoincidenceOptions(
        n_sigma=settings.n_sigma,
        window_ps=settings.window_ps,
        uncertainty_s=settings.uncertainty_s,
        max_frequency_offset_ppm=settings.max_frequency_offset_ppm,
        min_significance=settings.min_significance,
    )


async def _points(
    name: str,
    settings: AcquisitionSettings,
    nodes: EntanglementNodes,
    plate_axes: list[tuple[float, float]],
    integration_s: float,
    progress: ProgressHook | None,
    on_point: PointHook | None,
) -> list[PairAcquisition]:
    """One acquisition per (alice axis, bob axis), the plates moved first (mount = zero + axis)."""
    opts = options(settings)
    prior: ClockModel | None = None
    out: list[PairAcquisition] = []
    total = 0
    for i, (ta, tb) in enumerate(plate_axes):
        ma = (settings.alice_mount_zero_deg + ta) % 360.0
        mb = (settings.bob_mount_zero_deg + tb) % 360.0
        await nodes.set_angles(ma, mb)
        acq = await acquire_pairs(nodes, integration_s, opts, prior=prior)
        acq = _with_angles(acq, ta, tb)
        prior = acq.model
        out.append(acq)
        total += acq.coincidences.coincidences
        if on_point is not None:
            on_point(i, acq)
        if progress is not None:
            progress(Progress(name, i + 1, len(plate_axes), total))
    return out


def _with_angles(acq: PairAcquisition, ta: float, tb: float) -> PairAcquisition:
    return replace(acq, alice_angle_deg=ta, bob_angle_deg=tb)


@dataclass(frozen=True)
class VisibilityResult:
    angles_deg: F64  # the scanned plate's axes
    fixed_angle_deg: float
    scanned_node: str
    counts: dict[str, F64]  # per basis, the (+, +) coincidences at each angle (raw)
    accidentals: dict[str, F64]
    accidentals_std: dict[str, F64]
    fits: dict[str, FringeFit]
    points: tuple[PairAcquisition, ...]

    def to_results(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scanned_node": self.scanned_node}
        for basis, fit in self.fits.items():
            b = basis.lower()
            out[f"visibility_{b}"] = fit.visibility
            out[f"visibility_{b}_stderr"] = fit.visibility_stderr
            out[f"phase_{b}_deg"] = fit.phase_deg
            out[f"max_angle_{b}_deg"] = fit.max_angle_deg
            out[f"amplitude_{b}"] = fit.amplitude
            out[f"chi2_{b}"] = fit.chi2
            out[f"dof_{b}"] = fit.dof
        out.update(_acquisition_totals(self.points))
        return out


@dataclass(frozen=True)
class ChshOutcome:
    result: ChshResult
    setting_pairs: list[tuple[float, float]]  # polarization angles (a, b)
    counts: npt.NDArray[np.int64]  # (4, 2, 2): H/V block of each setting pair (raw)
    accidentals: F64  # (4, 2, 2)
    points: tuple[PairAcquisition, ...]

    def to_results(self) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {
            "s": r.s,
            "s_stderr": r.s_stderr,
            "sigmas_above_2": r.sigmas_above_2,
        }
        for i, ((a, b), c) in enumerate(zip(self.setting_pairs, r.correlators, strict=True)):
            out[f"e{i}_alice_deg"], out[f"e{i}_bob_deg"] = a, b
            out[f"e{i}"], out[f"e{i}_stderr"] = c.value, c.stderr
        out["accidentals_fraction"] = float(self.accidentals.sum() / max(self.counts.sum(), 1))
        out.update(_acquisition_totals(self.points))
        return out


def _acquisition_totals(points: tuple[PairAcquisition, ...]) -> dict[str, Any]:
    """Totals over the points, and the last point's window and clock model."""
    c = [p.coincidences for p in points]
    span = sum(p.duration_s for p in points)
    acc = float(sum(x.accidentals_total for x in c))
    pred = float(sum(x.predicted_accidentals() for x in c))
    return {
        "points": len(points),
        "acquired_s": span,
        "coincidences": int(sum(x.coincidences for x in c)),
        "accidentals": acc,
        "accidentals_std": float(np.sqrt(sum(float((x.accidentals_std**2).sum()) for x in c))),
        "accidentals_predicted": pred,
        "window_ps": int(points[-1].coincidences.window_ps),
        "peak_sigma_ps": float(np.mean([x.sigma_ps for x in c])),
        "clock_drift_ppb": points[-1].model.drift * 1e9,
        "singles_a_hz": float(sum(int(x.singles_a.sum()) for x in c)) / max(span, 1e-12),
        "singles_b_hz": float(sum(int(x.singles_b.sum()) for x in c)) / max(span, 1e-12),
    }


async def run_visibility(
    settings: VisibilitySettings,
    nodes: EntanglementNodes,
    *,
    progress: ProgressHook | None = None,
    on_point: PointHook | None = None,
) -> VisibilityResult:
    """Fringes in H/V and D/A against the scanned node's plate (the pump must be on)."""
    if settings.scanned_node == "alice":
        axes = [(a, settings.fixed_angle_deg) for a in settings.angles_deg]
    else:
        axes = [(settings.fixed_angle_deg, a) for a in settings.angles_deg]
    points = await _points(
        "visibility", settings, nodes, axes, settings.integration_s, progress, on_point
    )
    angles = np.asarray(settings.angles_deg, dtype=np.float64)
    counts, acc, acc_std, fits = {}, {}, {}, {}
    for basis, (i, j) in BASES.items():
        counts[basis] = np.array([p.matrix[i, j] for p in points], dtype=np.float64)
        acc[basis] = np.array([p.accidentals[i, j] for p in points], dtype=np.float64)
        acc_std[basis] = np.array(
            [p.coincidences.accidentals_std[i, j] for p in points], dtype=np.float64
        )
        fits[basis] = fit_fringe(angles, counts[basis], acc[basis], acc_std[basis])
    return VisibilityResult(
        angles,
        settings.fixed_angle_deg,
        settings.scanned_node,
        counts,
        acc,
        acc_std,
        fits,
        tuple(points),
    )


async def run_chsh(
    settings: ChshSettings,
    nodes: EntanglementNodes,
    *,
    progress: ProgressHook | None = None,
    on_point: PointHook | None = None,
) -> ChshOutcome:
    """The four setting pairs through the plates; S from the H/V blocks (pump must be on)."""
    pairs = settings.setting_pairs()
    axes = [(a / 2.0, b / 2.0) for a, b in pairs]  # a plate at t measures angle 2 t
    points = await _points(
        "chsh", settings, nodes, axes, settings.integration_s, progress, on_point
    )
    counts = np.stack([p.matrix[:2, :2] for p in points]).astype(np.int64)
    acc = np.stack([p.accidentals[:2, :2] for p in points]).astype(np.float64)
    return ChshOutcome(chsh(counts, settings.signs), pairs, counts, acc, tuple(points))
