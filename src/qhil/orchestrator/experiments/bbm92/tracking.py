"""Drift tracking during a BBM92 acquisition: each chunk's test-basis QBER watched, bob's
controller re-compensated between chunks when it rises beyond its expectation.

The fibres are compensated once before the acquisition (``entanglement/fibres.py``); bob's
fibre then drifts. After each chunk (``chunk_s``, 2 s by default) :class:`ChunkTracker`:

* **What is watched.** The chunk's D/A coincidences (alice's D/A rows, bob's D/A columns of
  the 4 x 4 matrix): with phi+ restored, D heralds D, so D-A and A-D are errors. They are
  the test basis, disclosed anyway. The H/V key-basis errors are not known before Cascade
  and are not used.
* **The test** is BB84's (:func:`qhil.orchestrator.experiments.bb84.tracking.drift_p_value`
  through :class:`~qhil.orchestrator.experiments.bb84.tracking.QberWatch`): the exact
  one-sided binomial p-value of the chunk's D/A errors against ``e0``, the upper bound
  (at the compensation's confidence) of the e_X the compensation in force verified with
  alice-heralded light (a stored compensation reused: of its check, ``polcal_check_e_x``);
  without either, the first chunk's own upper bound. Only the X basis is tested, so the
  test's Bonferroni factor 2 makes it conservative by 2 (a false re-compensation at most
  once in ``2 / tracking_significance`` chunks).
* **The re-compensation** runs between chunks, the pump on, with the same search as the
  start's (:func:`compensate_pairs`), starting from the controller's current voltages;
  its verification sets the new ``e0`` when it met its target (one that missed it leaves
  ``e0``, so the next chunk still out of band tries again: a level that high is no
  reference, and taking it would stop the tracking). A search that fails (no light) is recorded
  and the acquisition goes on at the voltages it left, the triggering chunk's level taken
  as expected (no retry every chunk). The chunks measured before it, the triggering one
  included, stay in the key: their errors are found by Cascade and paid for in the key
  length, and the QBER estimate covers them.
* **The record.** ``tracking`` (a row per chunk: chunk, D/A coincidences and errors,
  ``e0``, p-value, whether it triggered) and ``recompensation`` (a row per re-compensation:
  the chunk and QBER that triggered it, the error fractions after, the acquisitions it
  took); results ``tracking_recompensations``, ``_failed``, ``_acquisitions``.

One process only (``qhil run bbm92``, ``--continuous``); with ``--party`` there is no
tracking (bbm92 README).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from qhil.calibration.binomial import upper_bound
from qhil.calibration.errors import CalibrationError
from qhil.orchestrator.experiments.bb84.tracking import QberWatch, Verdict
from qhil.orchestrator.experiments.entanglement.acquisition import (
    EntanglementNodes,
    PairAcquisition,
)
from qhil.orchestrator.experiments.entanglement.compensation import compensate_pairs
from qhil.orchestrator.experiments.entanglement.experiments import options

log = logging.getLogger(__name__)

#: The confidence of ``e0`` when the compensation's own is not known (the search's default).
CONFIDENCE = 0.95

#: Per chunk (``tracking``).
TRACKING_ROW = np.dtype(
    [
        ("chunk", np.int64),
        ("tested_x", np.int64),  # D/A coincidences
        ("errors_x", np.int64),
        ("expected_x", np.float64),  # e0 (NaN: this chunk set it)
        ("p_value", np.float64),
        ("triggered", np.int64),
    ]
)
#: Per re-compensation (``recompensation``).
RECOMPENSATION_ROW = np.dtype(
    [
        ("chunk", np.int64),  # the chunk whose QBER triggered it (it ran after this chunk)
        ("qber_x", np.float64),
        ("expected_x", np.float64),
        ("p_value", np.float64),
        ("ok", np.int64),  # 0: the search failed (the acquisition went on at the voltages left)
        ("e_z_after", np.float64),
        ("e_x_after", np.float64),
        ("target_met", np.int64),
        ("acquisitions", np.int64),
    ]
)


def da_errors(matrix: np.ndarray) -> tuple[int, int]:
    """(coincidences, errors) of the D/A block of a 4 x 4 matrix (rows alice's H, V, D, A;
    columns bob's): D-A and A-D are errors."""
    m = np.asarray(matrix, dtype=np.int64)
    da = m[2:4, 2:4]
    return int(da.sum()), int(da[0, 1] + da[1, 0])


def _row(schema: np.dtype, values: dict[str, Any]) -> np.ndarray:
    arr = np.zeros(1, dtype=schema)
    for f in schema.names or ():
        arr[f] = values.get(f, np.nan if schema[f].kind == "f" else -1)
    return arr


def verified_level(results: dict[str, Any]) -> float | None:
    """``e0`` from the start's compensation results: a new compensation's upper bound of
    e_X after it, or a reused one's check (its upper bound at 95 %); None without either."""
    hi = results.get("polcal_e_x_after_hi")
    if hi is not None and math.isfinite(hi):
        return float(hi)
    e, n = results.get("polcal_check_e_x"), results.get("polcal_check_e_x_clicks")
    if e is not None and n:
        return upper_bound(round(float(e) * int(n)), int(n), CONFIDENCE)
    return None


class ChunkTracker:
    """The per-chunk test and the re-compensation between chunks (module docstring)."""

    def __init__(
        self,
        nodes: EntanglementNodes,
        controller: Any,
        settings: Any,
        run: Any,
        start_results: dict[str, Any],
        *,
        continuous: bool = False,
    ) -> None:
        self.nodes = nodes
        self.continuous = continuous  # acquisition after acquisition (--continuous)
        self.controller = controller
        self.s = settings
        self.run = run
        self.watch = QberWatch(settings.tracking_significance, CONFIDENCE)
        e0 = verified_level(start_results)
        if e0 is not None:
            self.watch.expected = (1.0, e0)  # Z is not tested (no clicks: p = 1)
        self.chunk = 0
        self.recompensations = 0
        self.failed = 0
        self.acquisitions = 0

    def check(self, acq: PairAcquisition) -> Verdict:
        """The chunk's test, recorded as a ``tracking`` row."""
        n, k = da_errors(acq.matrix)
        first = self.watch.expected is None
        if first and n > 0:  # nothing verified before: this chunk is the reference
            self.watch.expected = (1.0, upper_bound(k, n, CONFIDENCE))
        v = (
            Verdict(self.chunk, (0, n), (0, k), (math.nan, math.nan), 1.0, False)
            if first
            else self.watch.check(self.chunk, np.array([0, n]), np.array([0, k]))
        )
        self.run.append(
            "tracking",
            _row(
                TRACKING_ROW,
                {
                    "chunk": self.chunk,
                    "tested_x": n,
                    "errors_x": k,
                    "expected_x": v.expected[1],
                    "p_value": v.p_value,
                    "triggered": int(v.triggered),
                },
            ),
        )
        return v

    async def after_chunk(self, acq: PairAcquisition, *, last: bool = False) -> None:
        """Test the chunk; re-compensate before the next one when it fires. After a run's
        last chunk only when the tracker goes on to another acquisition (``continuous``):
        a one-off run has no chunk left to profit from it."""
        v = self.check(acq)
        self.chunk += 1
        if v.triggered and (self.continuous or not last):
            await self.recompensate(v, acq)

    async def recompensate(self, v: Verdict, acq: PairAcquisition) -> None:
        qx = v.qber[1]
        row: dict[str, Any] = {
            "chunk": v.block,
            "qber_x": qx,
            "expected_x": v.expected[1],
            "p_value": v.p_value,
            "ok": 0,
        }
        log.warning(
            "bbm92: chunk %d: test-basis QBER %.2f %% (%d/%d) against the expected %.2f %%: "
            "p = %.2g; re-compensating bob's polarization",
            v.block,
            100 * qx,
            v.errors[1],
            v.tested[1],
            100 * v.expected[1],
            v.p_value,
        )
        s = self.s
        try:
            cal = await compensate_pairs(
                self.nodes,
                self.controller,
                options(s),
                integration_s=s.compensation_integration_s,
                verify_integration_s=s.compensation_verify_s,
                target_error=s.compensation_target_error,
                max_acquisitions=s.compensation_max_acquisitions,
                prior=getattr(acq, "model", None),
            )
        except CalibrationError as exc:
            log.warning("bbm92: polarization re-compensation failed, going on: %s", exc)
            self.watch.accept(v)  # only a further rise triggers again
            self.failed += 1
            self.run.append("recompensation", _row(RECOMPENSATION_ROW, row))
            return
        if cal.target_met:
            self.watch.expect_from(cal)
        else:  # its level is no reference: keep e0, so the next drifted chunk tries again
            log.warning(
                "bbm92: the re-compensation missed its target (e_X %.3f); keeping the "
                "expected level",
                cal.after.e_x.value,
            )
        self.recompensations += 1
        self.acquisitions += int(cal.acquisitions)
        row.update(
            ok=1,
            e_z_after=cal.after.e_z.value,
            e_x_after=cal.after.e_x.value,
            target_met=int(cal.target_met),
            acquisitions=int(cal.acquisitions),
        )
        self.run.append("recompensation", _row(RECOMPENSATION_ROW, row))

    def results(self) -> dict[str, int]:
        return {
            "tracking_recompensations": self.recompensations,
            "tracking_recompensations_failed": self.failed,
            "tracking_recompensation_acquisitions": self.acquisitions,
        }


def tracker_for(
    bench: Any,
    nodes: EntanglementNodes,
    s: Any,
    run: Any,
    start_results: dict[str, Any],
    *,
    continuous: bool = False,
) -> ChunkTracker | None:
    """The run's tracker when the settings ask for it (compensation on and
    ``track_polarization`` not false), else None."""
    from qhil.drivers.roles import PolarizationController

    if not s.compensate_polarization or s.track_polarization is False:
        return None
    controller = bench.role(s.bob_node, PolarizationController, name=s.polarization_controller)
    return ChunkTracker(nodes, controller, s, run, start_results, continuous=continuous)


__all__ = [
    "RECOMPENSATION_ROW",
    "TRACKING_ROW",
    "ChunkTracker",
    "da_errors",
    "tracker_for",
    "verified_level",
]
