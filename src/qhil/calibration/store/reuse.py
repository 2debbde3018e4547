"""Reusing a stored polarization calibration before a key exchange, checked by the data.

The stored voltages are only a candidate: the fibre of a lab may have moved since, and an
emulated bench restarts its world at every run (its fibre's state is a function of the
seed, the link's settings and the emulated time, none of which the instruments' identities
show). So before they are trusted, Bob's controller is set to them and one evaluation of
the calibration's own verification (an H then a D reference, ``verify_integration_s``
each) must meet the calibration's own target: both error fractions' one-sided upper bounds
at ``confidence`` below ``target_error``. Otherwise the data contradict the stored
compensation and the fibre is compensated again, starting from those voltages.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from qhil.calibration.binomial import ErrorFraction
from qhil.calibration.polarization import (
    MIN_CLICKS,
    PolarizationCalibration,
    PolarizationMeasurement,
    SearchOptions,
)
from qhil.calibration.reference import ReferenceSource
from qhil.calibration.settings import PolarizationSettings
from qhil.calibration.store.model import Calibration
from qhil.calibration.store.store import CalibrationStore
from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger
from qhil.records import Run, RunStore

log = logging.getLogger(__name__)

#: The search's stop reason when the voltages it started from already met the target.
START_MET = "target met at the start voltages"


@dataclass(frozen=True)
class PolarizationCheck:
    """The stored voltages measured on the bench now."""

    calibration: Calibration
    measurement: PolarizationMeasurement
    holds: bool
    reason: str  # why it does not hold ("" when it does)

    def to_results(self) -> dict[str, float | int | str | bool]:
        """Scalars for the run (``polcal_check_*`` there)."""
        out: dict[str, float | int | str | bool] = {"holds": self.holds, "reason": self.reason}
        for basis, ef in (("z", self.measurement.e_z), ("x", self.measurement.e_x)):
            out[f"e_{basis}"], out[f"e_{basis}_std"] = ef.value, ef.std
            out[f"e_{basis}_clicks"] = ef.total
        return out


def stored_half_wave_voltages(cal: Calibration, channels: int) -> tuple[float, ...] | None:
    """The half-wave voltages the stored calibration learned, one per channel (None: not
    all recorded, or not finite and positive)."""
    names = [f"half_wave_v{i}_mv" for i in range(1, channels + 1)]
    if any(n not in cal.quantities for n in names):
        return None
    values = tuple(cal.value(n) for n in names)
    return values if all(math.isfinite(v) and v > 0 for v in values) else None


def stored_verification(cal: Calibration) -> tuple[ErrorFraction, ErrorFraction] | None:
    """The stored compensation's own verification (e_Z, e_X as counts), when recorded."""
    names = ("e_z_after", "e_z_after_clicks", "e_x_after", "e_x_after_clicks")
    if any(n not in cal.quantities for n in names):
        return None
    z, nz, x, nx = (cal.value(n) for n in names)
    return ErrorFraction(round(z * nz), round(nz)), ErrorFraction(round(x * nx), round(nx))


def tracking_start(check: PolarizationCheck, ps: PolarizationSettings) -> PolarizationCalibration:
    """A reused compensation as drift tracking's start (bb84 ``tracking.py``), not a first
    key block that may already have drifted: per basis, the lower upper bound (at the
    compensation's confidence) of the check and of the stored compensation's verification
    is the expected error rate (the fibre is known to compensate to the stored one's level:
    a block significantly above it re-compensates), and the stored half-wave voltages spare
    a re-compensation the scan. Not recorded: a run that reused a calibration is not itself
    one."""
    m = check.measurement
    c = ps.confidence
    z, x = m.e_z, m.e_x
    stored = stored_verification(check.calibration)
    if stored is not None:
        z = min((z, stored[0]), key=lambda ef: ef.upper(c))
        x = min((x, stored[1]), key=lambda ef: ef.upper(c))
    # the expectation's measurement: these counts under H (e_Z) and under D (e_X)
    expected = PolarizationMeasurement(
        m.voltages_mv,
        (z.total - z.errors, z.errors, 0, 0),
        (0, 0, x.total - x.errors, x.errors),
        m.integration_s,
    )
    half_wave = stored_half_wave_voltages(check.calibration, len(m.voltages_mv))
    return PolarizationCalibration(
        voltages_mv=m.voltages_mv,
        start_voltages_mv=m.voltages_mv,
        before=m,
        after=expected,
        target_error=ps.target_error,
        confidence=ps.confidence,
        target_met=check.holds,
        stop_reason=f"reused run {check.calibration.run_id}",
        half_wave_voltages_mv=half_wave,
        half_wave_voltage_sources=("given",) * len(m.voltages_mv),
        half_wave_voltage_stds_mv=None,
        acquisitions=0,
        settle_gates=0,
        steps=(),
    )


def stored_voltages(cal: Calibration, channels: int) -> list[int] | None:
    """The controller voltages of a polarization calibration (None: not for this controller)."""
    names = [f"v{i}_mv" for i in range(1, channels + 1)]
    if any(n not in cal.quantities for n in names) or f"v{channels + 1}_mv" in cal.quantities:
        return None
    return [round(cal.value(n)) for n in names]


def judge(m: PolarizationMeasurement, ps: PolarizationSettings | SearchOptions) -> str:
    """Why the measurement does not meet the calibration's target ("" when it does);
    ``ps``: anything with the search's ``target_error`` and ``confidence``."""
    if m.e_z.total < MIN_CLICKS or m.e_x.total < MIN_CLICKS:
        return f"too few clicks ({m.e_z.total} under H, {m.e_x.total} under D)"
    bad = [
        f"e_{b} {100 * ef.value:.2f} % (upper bound {100 * ef.upper(ps.confidence):.2f} %)"
        for b, ef in (("Z", m.e_z), ("X", m.e_x))
        if ef.upper(ps.confidence) >= ps.target_error
    ]
    if not bad:
        return ""
    return (
        f"contradicted by the data: {', '.join(bad)} at the stored voltages, "
        f"target {100 * ps.target_error:g} %"
    )


async def measure_at(
    generator: PatternGenerator,
    tagger: TimeTagger,
    controller: PolarizationController,
    voltages_mv: list[int],
    ps: PolarizationSettings,
    rng: Any = None,
) -> PolarizationMeasurement:
    """One verification evaluation at ``voltages_mv`` (the controller is left there)."""
    source = ReferenceSource(
        generator,
        tagger,
        {str(k): v for k, v in ps.channel_map.items()},
        ps.rep_rate_hz,
        pattern_length=ps.pattern_length,
        intensity_index=ps.intensity_index,
        rng=rng,
    )
    await controller.set_voltages_mv(voltages_mv)
    await generator.set_output(True)
    try:
        counts = []
        for state in ("H", "D"):
            await source.load(state)
            await source.settle(ps.settle_s)  # light from before the change passes first
            counts.append(await source.count(ps.verify_integration_s))
    finally:
        await generator.set_output(False)
    return PolarizationMeasurement(
        tuple(voltages_mv), counts[0], counts[1], ps.verify_integration_s
    )


def _candidate(
    runs: RunStore,
    identities: dict[str, str],
    max_age_s: float,
    controller: PolarizationController,
) -> tuple[Calibration | None, list[int] | None, str]:
    """The latest valid stored calibration and its voltages for this controller, or None
    and why none is tried (max age 0, missing, stale, other instruments, other channels)."""
    if max_age_s <= 0:
        return None, None, "polarization_max_age_s = 0"
    found = CalibrationStore(runs).find("polarization", identities=identities, max_age_s=max_age_s)
    if found.calibration is None:
        return None, None, found.reason
    voltages = stored_voltages(found.calibration, int(controller.channels))
    if voltages is None:
        return None, None, f"run {found.calibration.run_id} set a controller of other channels"
    return found.calibration, voltages, found.reason


async def reuse_stored_polarization(
    runs: RunStore,
    identities: dict[str, str],
    max_age_s: float,
    generator: PatternGenerator,
    tagger: TimeTagger,
    controller: PolarizationController,
    ps: PolarizationSettings,
    run: Run,
    rng: Any = None,
) -> PolarizationCalibration | None:
    """Before a key exchange: when the stored compensation holds (the controller is then at
    its voltages), drift tracking's start (:func:`tracking_start`: the check's error rates,
    the stored half-wave voltages), recorded in ``run``: ``polcal_reuse`` (what happened),
    the check as ``polcal_check_*``, ``calibration_polarization_run`` (the run that measured
    it) and the voltages as ``polarization_voltages_mv``. None: compensate now (the reason
    is recorded).
    """
    cal, voltages, why = _candidate(runs, identities, max_age_s, controller)
    check: PolarizationCheck | None = None
    if cal is not None and voltages is not None:
        m = await measure_at(generator, tagger, controller, voltages, ps, rng)
        bad = judge(m, ps)
        check = PolarizationCheck(cal, m, not bad, bad)
        run.log_results({f"polcal_check_{k}": v for k, v in check.to_results().items()})
        if not check.holds:
            why = f"run {cal.run_id}: {check.reason}"
    if check is None or not check.holds:
        log.info("polarization: compensating (%s)", why)
        run.log_results({"polcal_reuse": f"not reused: {why}"})
        return None
    log.info(
        "polarization: %s, checked: e_Z %.4f, e_X %.4f",
        why,
        check.measurement.e_z.value,
        check.measurement.e_x.value,
    )
    run.log_results({"polcal_reuse": why, "calibration_polarization_run": check.calibration.run_id})
    run.append(
        "polarization_voltages_mv", np.asarray([check.measurement.voltages_mv], dtype=np.int64)
    )
    return tracking_start(check, ps)


@dataclass(frozen=True)
class StartingPoint:
    """Party mode: the stored calibration Bob's compensation starts from."""

    calibration: Calibration
    voltages_mv: list[int]
    found: str  # "reused run <id> (<age> s old)"


async def start_from_stored(
    runs: RunStore,
    identities: dict[str, str],
    max_age_s: float,
    controller: PolarizationController,
    run: Run,
) -> StartingPoint | None:
    """Party mode (Bob): set the controller to the latest valid stored calibration's voltages,
    so the compensation over the channel starts there. Its first evaluation is then the check
    and, when it meets the target, it only verifies (no search); :func:`note_start_check`
    records what happened. None (the reason recorded): nothing stored to start from."""
    cal, voltages, why = _candidate(runs, identities, max_age_s, controller)
    if cal is None or voltages is None:
        run.log_results({"polcal_reuse": f"not reused: {why}"})
        return None
    await controller.set_voltages_mv(voltages)
    return StartingPoint(cal, voltages, why)


def note_start_check(
    run: Run, result: PolarizationCalibration, start: StartingPoint | None, ps: PolarizationSettings
) -> None:
    """Record whether the compensation over the channel kept the stored voltages (reused:
    met the target at the start and verified there) or had to search (contradicted)."""
    if start is None:
        run.log_results({"calibration_polarization_run": run.run_id})
        return
    kept = (
        result.stop_reason == START_MET
        and result.target_met
        and list(result.voltages_mv) == start.voltages_mv
    )
    check = PolarizationCheck(start.calibration, result.before, kept, judge(result.before, ps))
    run.log_results({f"polcal_check_{k}": v for k, v in check.to_results().items()})
    if kept:
        run.log_results(
            {
                "polcal_reuse": f"{start.found}, checked over the channel",
                "calibration_polarization_run": start.calibration.run_id,
            }
        )
        return
    why = check.reason or "the verification at the stored voltages missed the target"
    run.log_results(
        {
            "polcal_reuse": f"not reused: run {start.calibration.run_id}: {why}",
            "calibration_polarization_run": run.run_id,
        }
    )


__all__ = [
    "PolarizationCheck",
    "StartingPoint",
    "judge",
    "measure_at",
    "note_start_check",
    "reuse_stored_polarization",
    "start_from_stored",
    "stored_half_wave_voltages",
    "stored_verification",
    "stored_voltages",
    "tracking_start",
]
