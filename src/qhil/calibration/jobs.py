"""Recorded calibrations: open the bench from a profile, calibrate, record the run.

Each job records a run of kind ``calibration.<name>`` in the run store: the
profile snapshot, instrument identities, software, the routine's settings as
parameters, its raw data (as it is taken where the routine allows, so a crash keeps
what was measured) and its results. The routines themselves only see role interfaces.
A :class:`CalibrationError` (no light, no response) ends the run as ``failed`` with
its message and is reported in the summary; any other error propagates after the
run is marked failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qhil.calibration.delays import calibrate_delays
from qhil.calibration.detector_efficiency import calibrate_detector_efficiency
from qhil.calibration.errors import CalibrationError
from qhil.calibration.mean_photon_number import (
    MeanPhotonNumberCalibration,
    calibrate_mean_photon_numbers,
)
from qhil.calibration.polarization import (
    PolarizationStep,
    calibrate_polarization,
    step_row,
)
from qhil.calibration.settings import (
    DelaySettings,
    DetectorEfficiencySettings,
    MeanPhotonNumberSettings,
    PolarizationSettings,
)
from qhil.drivers.roles import (
    Attenuator,
    PatternGenerator,
    PolarizationController,
    PowerMeter,
    TimeTagger,
)
from qhil.errors import ConfigError
from qhil.orchestrator.bench import Bench, open_bench
from qhil.orchestrator.profile import load_profile
from qhil.records import Run, RunStore


@dataclass
class CalibrationSummary:
    """What a finished calibration job reports (also when it failed)."""

    run_id: str
    kind: str
    status: str  # "success" or "failed"
    reason: str | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            **self.results,
        }


# body(bench, settings, run) -> results; it appends its own arrays.
_Body = Callable[[Bench, Any, Run], Awaitable[dict[str, Any]]]


async def _recorded(
    name: str,
    settings_cls: Any,
    profile: str | Path | None,
    overrides: Sequence[str],
    data_dir: str | Path | None,
    mode: str | None,
    body: _Body,
) -> CalibrationSummary:
    prof = load_profile(None if profile is None else str(profile), list(overrides))
    settings = settings_cls.from_profile(prof)
    kind = f"calibration.{name}"
    run = RunStore(data_dir).start_run(
        kind,
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters=settings.model_dump(mode="json"),
    )
    with run:
        async with open_bench(prof, mode=mode) as bench:
            run.set_identities(await bench.identities())
            try:
                results = await body(bench, settings, run)
            except CalibrationError as exc:
                reason = f"CalibrationError: {exc}"
                run.fail(reason)
                return CalibrationSummary(run.run_id, kind, "failed", reason)
        run.log_results({k: v for k, v in results.items() if v is not None})
        run.finish("success")
    return CalibrationSummary(run.run_id, kind, "success", None, results)


def _link_roles(bench: Bench, s: Any) -> tuple[PatternGenerator, TimeTagger]:
    gen = bench.role(s.alice_node, PatternGenerator, name=s.pattern_generator)
    tagger = bench.role(s.bob_node, TimeTagger, name=s.tagger)
    return gen, tagger


async def run_polarization_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
    on_step: Callable[[PolarizationStep], None] | None = None,
) -> CalibrationSummary:
    """Polarization compensation of Bob's controller on the profile's bench, recorded.

    The run (kind ``calibration.polarization``) holds one ``steps`` row per
    measurement (:func:`~qhil.calibration.polarization.step_dtype`: phase, voltages,
    the four detectors' counts under each reference, e_Z, e_X), the final voltages
    as the one-row array ``voltages_mv``, each channel's half-wave voltage as the
    one-row array ``half_wave_voltages_mv`` (when the search needed them) and the
    results of :meth:`~qhil.calibration.PolarizationCalibration.to_results`
    (``half_wave_v{i}_mv``, ``_source``, ``_std_mv`` per channel; ``half_wave_voltage_mv``
    is their mean, as older runs hold one value). The controller is
    left at the voltages found. ``on_step`` sees each measurement (progress).
    """

    async def body(bench: Bench, s: PolarizationSettings, run: Run) -> dict[str, Any]:
        async def record(step: PolarizationStep) -> None:
            await run.aappend("steps", step_row(step))
            if on_step is not None:
                on_step(step)

        gen, tagger = _link_roles(bench, s)
        controller = bench.role(s.bob_node, PolarizationController, name=s.controller)
        result = await calibrate_polarization(
            gen, tagger, controller, on_step=record, **s.routine_kwargs()
        )
        run.append("voltages_mv", np.asarray([result.voltages_mv], dtype=np.int64))
        if result.half_wave_voltages_mv is not None:
            run.append(
                "half_wave_voltages_mv", np.asarray([result.half_wave_voltages_mv], dtype=float)
            )
        return result.to_results()

    return await _recorded(
        "polarization", PolarizationSettings, profile, overrides, data_dir, mode, body
    )


async def run_detector_efficiency_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
) -> CalibrationSummary:
    """Relative efficiencies of Bob's four detectors, recorded.

    The run (kind ``calibration.detector_efficiency``) holds one ``gates`` row per
    gate (:data:`~qhil.calibration.detector_efficiency.GATE_DTYPE`), the relative
    efficiencies H, V, D, A as the one-row array ``relative`` (and ``relative_std``)
    and the results of ``to_results()``.
    """

    async def body(bench: Bench, s: DetectorEfficiencySettings, run: Run) -> dict[str, Any]:
        gen, tagger = _link_roles(bench, s)
        result = await calibrate_detector_efficiency(
            gen,
            tagger,
            on_gate=lambda row: run.aappend("gates", row),
            **s.routine_kwargs(),
        )
        run.append("relative", result.relative[None, :])
        run.append("relative_std", result.relative_std[None, :])
        return result.to_results()

    return await _recorded(
        "detector_efficiency",
        DetectorEfficiencySettings,
        profile,
        overrides,
        data_dir,
        mode,
        body,
    )


async def run_delay_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
) -> CalibrationSummary:
    """Relative delays of Bob's four detector channels, recorded.

    The run (kind ``calibration.delays``) holds one ``channels`` row per detector
    (:data:`~qhil.calibration.delays.CHANNEL_DTYPE`) and the results of
    ``to_results()``; with ``apply = true`` in the settings the tagger's input delays
    are set to line the channels up.
    """

    async def body(bench: Bench, s: DelaySettings, run: Run) -> dict[str, Any]:
        gen, tagger = _link_roles(bench, s)
        result = await calibrate_delays(gen, tagger, **s.routine_kwargs())
        run.append("channels", result.rows())
        return result.to_results()

    return await _recorded("delays", DelaySettings, profile, overrides, data_dir, mode, body)


async def measure_mean_photon_numbers(
    bench: Bench, s: MeanPhotonNumberSettings, run: Run, *, prefix: str = ""
) -> MeanPhotonNumberCalibration:
    """Alice's levels measured on her PowerMeter, recorded in ``run`` (arrays and results
    named with ``prefix``): one ``readings`` row per meter reading, ``mus`` and ``mus_std``."""
    gen = bench.role(s.alice_node, PatternGenerator, name=s.pattern_generator)
    meter = bench.role(s.alice_node, PowerMeter, name=s.power_meter)
    att = bench.role(s.alice_node, Attenuator, name=s.attenuator) if s.read_attenuator else None
    result = await calibrate_mean_photon_numbers(
        gen,
        meter,
        att,
        on_reading=lambda rows: run.aappend(f"{prefix}readings", rows),
        **s.routine_kwargs(),
    )
    run.append(f"{prefix}mus", result.mus[None, :])
    run.append(f"{prefix}mus_std", result.mus_std[None, :])
    return result


async def run_mean_photon_number_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
) -> CalibrationSummary:
    """Mean photon number of each of Alice's intensity levels at her output, recorded.

    The run (kind ``calibration.mean_photon_number``) holds one ``readings`` row per
    meter reading (:data:`~qhil.calibration.mean_photon_number.READING_DTYPE`), the
    one-row arrays ``mus`` and ``mus_std`` and the results of ``to_results()``
    (``mu_{i}``, ``_std``, ``_lo``, ``_hi`` per level).
    """

    async def body(bench: Bench, s: MeanPhotonNumberSettings, run: Run) -> dict[str, Any]:
        return (await measure_mean_photon_numbers(bench, s, run)).to_results()

    return await _recorded(
        "mean_photon_number", MeanPhotonNumberSettings, profile, overrides, data_dir, mode, body
    )


async def verify_mean_photon_numbers(
    prof: Any, bench: Bench, configured: Sequence[float], run: Run
) -> str | None:
    """Measure Alice's levels before a key exchange and compare the configured ``mus``.

    Records the measurement in ``run`` (``mucal_readings``, ``mucal_mus``,
    ``mucal_mus_std``, results ``mucal_*``). Returns None when every configured mu
    lies in its measured interval, else the reason to abort (a measurement that failed on
    the bench included: exit 3). A bench without a PowerMeter is a ConfigError naming the field.
    """
    s = MeanPhotonNumberSettings.from_profile(prof)
    field = "experiments.bb84.verify_mus"
    if s.levels != len(configured):
        raise ConfigError(
            prof.source,
            f"{s.table()}.levels",
            f"measures {s.levels} levels but experiments.bb84.mus has {len(configured)}",
        )
    try:
        result = await measure_mean_photon_numbers(bench, s, run, prefix="mucal_")
    except LookupError as exc:
        raise ConfigError(
            prof.source,
            field,
            f"cannot measure the mean photon numbers: {exc} (add a PowerMeter on Alice's "
            "monitor tap, or set verify_mus = false to trust mus unchecked)",
        ) from None
    except CalibrationError as exc:  # the bench failed, not the profile: abort (exit 3)
        return f"calibration_failed: measuring the mean photon numbers failed: {exc}"
    run.log_results({f"mucal_{k}": v for k, v in result.to_results().items()})
    bad = result.disagreements(configured)
    if not bad:
        return None
    return (
        "mean photon numbers: the configured experiments.bb84.mus disagree with Alice's "
        "measured levels: " + "; ".join(bad)
    )
