"""Each node's T2 in the fidelity estimate comes from the newest VALID memory calibration
that measured that node (issue 11, VF2): a newer calibration of another node does not hide
it, a failed run or one made with other instruments is skipped, and the estimate says
which run each value came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qhil.calibration.store import CalibrationStore
from qhil.orchestrator.experiments.network import EntanglementRequest, Network
from qhil.orchestrator.experiments.network.frames import BASES
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


async def _measure_delivered(net: Network, n: int) -> None:
    request = EntanglementRequest(remote="bob", local="alice", min_fidelity=0.0, deadline_s=1.0)
    for _ in range(n):
        async for pair in net.pairs(request):
            basis = BASES[int(net.rng.integers(3))]
            await net.measure(pair, (basis, basis))


async def test_a_calibrated_t2_the_delivered_pairs_contradict_gives_way(tmp_path: Path) -> None:
    """A calibration of another unit (emulated QMC-1s share one serial) says T2 = 50 us
    where the memories keep 10 ms: the measured pairs agree far more often than the
    estimate expects, so the stated T2 replaces it, and the source says why."""
    store = RunStore(tmp_path)
    run = _calibration(store, {"alice": 5e-5, "repeater": 5e-5, "bob": 5e-5})
    net = Network(fake_bench(t2_s=10e-3), settings(characterisation_pairs=40), store=store)
    await net.characterise()
    assert net.estimates is not None
    assert net.estimates.nodes["repeater"].source == f"calibration {run}"
    await _measure_delivered(net, 80)
    for node in ("alice", "repeater", "bob"):
        e = net.estimates.nodes[node]
        assert e.t2_s == 10e-3
        assert e.source.startswith(f"stated by the controller (calibration {run} contradicted by")


async def test_a_calibrated_t2_the_pairs_agree_with_stays(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = _calibration(store, {"alice": 10e-3, "repeater": 10e-3, "bob": 10e-3})
    net = Network(fake_bench(t2_s=10e-3), settings(characterisation_pairs=40), store=store)
    await net.characterise()
    await _measure_delivered(net, 80)
    assert net.estimates is not None
    assert {e.source for e in net.estimates.nodes.values()} == {f"calibration {run}"}
