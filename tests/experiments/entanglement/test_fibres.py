"""``fibres.compensate_fibres`` against a stored compensation, with fakes (no bench, ms):
reused when the one check acquisition at its voltages meets the target; contradicted by
the data, the search starts from those voltages; never tried when too old or made on
other instruments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted
from qhil.orchestrator.experiments.entanglement.fibres import compensate_fibres
from qhil.orchestrator.experiments.entanglement.settings import CompensatedSettings
from qhil.records import RunStore

BENCH = {"bob.polctrl": "EPC-400,SN42,2.1", "bob.tagger": "TDC1,7,1.0"}
STORED = [100, -200, 0, 5]


class Controller:
    channels = 4
    name = "bob.polctrl"

    def __init__(self) -> None:
        self.mv = [0, 0, 0, 0]

    async def set_voltages_mv(self, mv: list[int]) -> None:
        self.mv = list(mv)

    async def voltages_mv(self) -> list[int]:
        return list(self.mv)


class Run:
    run_id = "now"

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.arrays: dict[str, Any] = {}

    def log_results(self, r: dict[str, Any]) -> None:
        self.results.update(r)

    def append(self, name: str, a: Any) -> None:
        self.arrays[name] = a


def _heralds(ctrl: Controller, good: bool) -> Any:
    """Alice's H heralds bob's H, her D his D (1 % errors) when ``good`` and the controller
    is at the stored voltages; else half the pairs are errors."""
    calls: list[list[int]] = []

    async def heralds(duration_s: float) -> NDArray[np.int64]:
        calls.append(list(ctrl.mv))
        n = 2000
        e = 20 if good and ctrl.mv == STORED else n // 2
        m = np.zeros((4, 4), np.int64)
        m[0, 0], m[0, 1], m[2, 2], m[2, 3] = n - e, e, n - e, e
        m[1, 1], m[1, 0], m[3, 3], m[3, 2] = n - e, e, n - e, e
        return m

    heralds.calls = calls  # type: ignore[attr-defined]
    return heralds


def _stored(runs: RunStore, identities: dict[str, str] = BENCH) -> str:
    run = runs.start_run("bbm92", profile={"bench": {"name": "t"}}, seed=1)
    run.set_identities(identities)
    volts = {f"polcal_v{i}_mv": v for i, v in enumerate(STORED, 1)}
    run.log_results({**volts, "polcal_target_met": True, "polcal_e_z_after": 0.01})
    run.finish("success")
    return run.run_id


async def _run(tmp_path: Path, good: bool, **settings: Any) -> tuple[Run, Controller, Any]:
    ctrl, run = Controller(), Run()
    heralds = _heralds(ctrl, good)
    s = CompensatedSettings(compensation_max_acquisitions=4, **settings)
    try:
        await compensate_fibres(None, ctrl, s, run, RunStore(tmp_path), BENCH, heralds=heralds)  # type: ignore[arg-type]
    except EntanglementAborted as exc:  # the 4-acquisition search cannot finish
        run.results["aborted"] = str(exc)
    return run, ctrl, heralds


async def test_a_stored_compensation_that_holds_is_reused_after_one_acquisition(
    tmp_path: Path,
) -> None:
    rid = _stored(RunStore(tmp_path))
    run, ctrl, heralds = await _run(tmp_path, good=True)
    assert heralds.calls == [STORED] and ctrl.mv == STORED  # one check, no search
    assert run.results["polcal_reuse"].startswith(f"reused run {rid}")
    assert run.results["calibration_polarization_run"] == rid
    assert run.results["polcal_check_holds"] is True
    assert "polcal/steps" not in run.arrays
    assert run.arrays["polarization_voltages_mv"].tolist() == [STORED]


async def test_contradicted_by_the_data_the_search_starts_from_the_stored_voltages(
    tmp_path: Path,
) -> None:
    rid = _stored(RunStore(tmp_path))
    run, _, heralds = await _run(tmp_path, good=False)
    # The check, then the search's first evaluation: at the stored voltages.
    assert heralds.calls[0] == heralds.calls[1] == STORED
    assert run.results["polcal_check_holds"] is False
    assert run.results["polcal_reuse"].startswith(f"not reused: run {rid}: contradicted")
    assert run.results["aborted"].startswith("compensation_failed")


@pytest.mark.parametrize(
    ("settings", "identities", "why"),
    [
        ({"polarization_max_age_s": 0.0}, BENCH, "polarization_max_age_s = 0"),
        ({}, {**BENCH, "bob.polctrl": "EPC-400,SN43,2.1"}, "other instruments"),
    ],
)
async def test_no_reuse_when_too_old_or_other_instruments(
    tmp_path: Path, settings: dict[str, Any], identities: dict[str, str], why: str
) -> None:
    _stored(RunStore(tmp_path), identities)
    run, _, heralds = await _run(tmp_path, good=True, **settings)
    assert heralds.calls[0] == [0, 0, 0, 0]  # never set to the stored voltages
    assert "polcal_check_holds" not in run.results
    assert why in run.results["polcal_reuse"]
