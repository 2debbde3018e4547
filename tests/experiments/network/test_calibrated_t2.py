"""Each node's T2 in the fidelity estimate comes from the newest VALID memory calibration
that measured that node (issue 11, VF2): a newer calibration of another node does not hide
it, a failed run or one made with other instruments is skipped, and the estimate says
which run each value came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qhil.calibration.store import CalibrationStore
from qhil.orchestrator.experiments.network import Network
from qhil.records import RunStore

from .fakes import fake_bench, settings


def _calibration(
    store: RunStore,
    t2: dict[str, float],
    status: str = "success",
    identities: dict[str, str] | None = None,
) -> str:
    run = store.start_run("calibration.memory", profile={"bench": {"name": "t"}}, seed=1)
    run.set_identities(identities or {})  # the fake bench's identities are {}
    results: dict[str, Any] = {"nodes": ",".join(t2)}
    for node, value in t2.items():
        results |= {f"{node}_t2_s": value, f"{node}_t2_std_s": value / 100}
    run.log_results(results)
    run.finish(status, None if status == "success" else "test")
    return run.run_id


async def _t2(store: RunStore) -> dict[str, tuple[float, str]]:
    net = Network(fake_bench(t2_s=10e-3), settings(characterisation_pairs=8), store=store)
    estimates = await net.characterise()
    return {n: (e.t2_s, e.source) for n, e in estimates.nodes.items()}


async def test_each_node_from_the_newest_calibration_that_measured_it(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    old = _calibration(store, {"alice": 0.3, "repeater": 0.4, "bob": 0.6})
    new = _calibration(store, {"alice": 0.5})  # qhil calibrate memory --node alice
    _calibration(store, {"repeater": 0.01}, status="failed")
    _calibration(store, {"bob": 0.02}, identities={"bob.memory": "QHIL,QMC-1,OTHER,1"})
    t2 = await _t2(store)
    assert t2["alice"] == (0.5, f"calibration {new}")
    assert t2["repeater"] == (0.4, f"calibration {old}")  # the failed run is skipped
    assert t2["bob"] == (0.6, f"calibration {old}")  # other instruments: skipped


async def test_a_node_never_calibrated_uses_the_stated_value_and_says_why(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = _calibration(store, {"alice": 0.5})
    t2 = await _t2(store)
    assert t2["alice"] == (0.5, f"calibration {run}")
    value, source = t2["bob"]
    assert value == 10e-3  # the fake controller's stated T2
    assert source == "stated by the controller (no memory calibration measured bob_t2_s)"


def test_the_store_finds_by_quantity(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    old = _calibration(store, {"bob": 0.6})
    _calibration(store, {"alice": 0.5})
    found = CalibrationStore(store).find(
        "memory", identities={}, max_age_s=3600, quantities=("bob_t2_s",)
    )
    assert found.calibration is not None and found.calibration.run_id == old
