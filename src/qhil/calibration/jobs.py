"""Recorded calibrations: open the bench from a profile, calibrate, record the run.

Each job records a run of kind ``calibration.<name>`` in the run store: the
profile snapshot, instrument identities, software, the routine's parameters, its
raw per-step data as it is taken (so a crash keeps what was measured) and its
results. The routines themselves only see role interfaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qhil.calibration.errors import CalibrationError
from qhil.calibration.polarization import (
    PolarizationCalibration,
    PolarizationStep,
    calibrate_polarization,
    step_row,
)
from qhil.calibration.settings import PolarizationSettings
from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore


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


async def run_polarization_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
    on_step: Callable[[PolarizationStep], None] | None = None,
) -> CalibrationSummary:
    """Polarization compensation of Bob's controller on the profile's bench, recorded.

    The run (kind ``calibration.polarization``) holds the settings as parameters,
    one ``steps`` row per measurement (:func:`~qhil.calibration.polarization.step_dtype`:
    phase, voltages, the four detectors' counts under each reference, e_Z, e_X),
    the final voltages as the array ``voltages_mv`` and the results of
    :meth:`PolarizationCalibration.to_results`. The controller is left at the voltages
    found. A :class:`CalibrationError` (no light, no response) ends the run as
    ``failed`` with its message and is reported in the summary; other errors propagate
    after the run is marked failed. ``on_step`` sees each measurement (progress).
    """
    prof = load_profile(None if profile is None else str(profile), list(overrides))
    settings = PolarizationSettings.from_profile(prof)
    store = RunStore(data_dir)
    kind = "calibration.polarization"
    run = store.start_run(
        kind,
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters=settings.model_dump(mode="json"),
    )
    with run:

        async def record(step: PolarizationStep) -> None:
            await run.aappend("steps", step_row(step))
            if on_step is not None:
                on_step(step)

        async with open_bench(prof, mode=mode) as bench:
            run.set_identities(await bench.identities())
            generator = bench.role(
                settings.alice_node, PatternGenerator, name=settings.pattern_generator
            )
            tagger = bench.role(settings.bob_node, TimeTagger, name=settings.tagger)
            controller = bench.role(
                settings.bob_node, PolarizationController, name=settings.controller
            )
            try:
                result: PolarizationCalibration = await calibrate_polarization(
                    generator, tagger, controller, on_step=record, **settings.routine_kwargs()
                )
            except CalibrationError as exc:
                reason = f"CalibrationError: {exc}"
                run.fail(reason)
                return CalibrationSummary(run.run_id, kind, "failed", reason)
        results = result.to_results()
        run.append("voltages_mv", np.asarray([result.voltages_mv], dtype=np.int64))
        run.log_results({k: v for k, v in results.items() if v is not None})
        run.finish("success")
    return CalibrationSummary(run.run_id, kind, "success", None, results)
