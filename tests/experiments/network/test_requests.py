"""Entanglement requests over a fake repeater bench (tests/experiments/network/fakes.py):
delivery with the right Bell state and fidelity estimate, and every typed error."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhil.orchestrator.experiments.network import (
    EntanglementRequest,
    EntanglementRequestError,
    ExpiredByCutoff,
    FidelityUnreachable,
    Network,
    NoResources,
    RequestTimeout,
    frames,
)
from qhil.orchestrator.experiments.network.frames import BASES, agree_expected
from qhil.records import RunStore

from .fakes import check_busy_memories, fake_bench, settings

Z99 = 2.576  # two-sided 99 %


async def _network(**kw: object) -> tuple[Network, object]:
    bench = fake_bench(**kw)  # type: ignore[arg-type]
    net = Network(bench, settings(characterisation_pairs=200))
    await net.characterise()
    return net, bench


async def test_characterisation_measures_the_links() -> None:
    net, _ = await _network(f=(0.95, 0.8), seed=3)
    est = net.estimates
    assert est is not None
    for link, truth in zip(est.links, (0.95, 0.8), strict=True):
        # 200 pairs, ~67 per basis: F = (q_z + q_x + q_y - 1) / 2, each q binomial at
        # (1 + 2 F) / 3; within 99 % two-sided of that error
        q = (1 + 2 * truth) / 3
        sigma = 0.5 * math.sqrt(3 * q * (1 - q) / (200 / 3))
        assert abs(link.fidelity - truth) < Z99 * sigma
        assert link.fidelity_std == pytest.approx(sigma, rel=0.6)
        assert link.success_probability == pytest.approx(0.05, rel=0.5)
    assert est.nodes["repeater"].t2_s == 10e-3
    assert "stated by the controller" in est.nodes["repeater"].source


@pytest.mark.slow
async def test_delivered_pairs_have_the_state_they_claim() -> None:
    """The measured agreement over many delivered pairs matches the mean estimated
    fidelity (two-sided, 99 %): the Bell state and the estimate are right."""
    net, _ = await _network(f=(0.95, 0.95), seed=4)
    rng = np.random.default_rng(0)
    agree, estimates, n = 0, [], 0
    request = EntanglementRequest(remote="bob", pairs=1, min_fidelity=0.5, deadline_s=1.0)
    for _ in range(400):
        async for pair in net.pairs(request):
            assert pair.nodes == ("alice", "bob")
            assert pair.latency_s >= 0 and pair.delivered_at_s <= pair.requested_at_s + 1.0
            basis = BASES[int(rng.integers(3))]
            a, b = await net.measure(pair, (basis, basis))
            assert a is not None and b is not None
            agree += (a == b) == agree_expected(pair.bell, basis)
            estimates.append(pair.estimated_fidelity)
            n += 1
    q_pred = (1 + 2 * float(np.mean(estimates))) / 3
    assert abs(agree / n - q_pred) < Z99 * math.sqrt(q_pred * (1 - q_pred) / n)
    # and the estimate is the Werner swap of the measured links (little waiting here)
    assert np.mean(estimates) == pytest.approx(0.25 + (4 * 0.95 - 1) ** 2 / 12, abs=0.05)


async def test_frame_correction_delivers_phi_plus() -> None:
    net, _ = await _network(seed=5)
    request = EntanglementRequest(remote="bob", pairs=2, frame="correct")
    pairs = await net.create(request)
    assert [p.bell for p in pairs] == ["phi+", "phi+"]
    for p in pairs:
        a, b = await net.measure(p, ("Z", "Z"))
        assert a is not None and b is not None


async def test_deadline_shorter_than_an_attempt_times_out_without_attempting() -> None:
    net, _ = await _network()
    before = list(net.attempts)
    with pytest.raises(RequestTimeout, match="shorter than one attempt"):
        await net.create(EntanglementRequest(remote="bob", deadline_s=1e-6))
    assert net.attempts == before


async def test_deadline_too_short_for_the_links_times_out_in_emulated_time() -> None:
    net, bench = await _network(p=1e-4, seed=6)  # ~10^4 attempts of 10 us per pair
    start = net.clock_s
    with pytest.raises(RequestTimeout, match="heralded nothing") as info:
        await net.create(EntanglementRequest(remote="bob", deadline_s=1e-3))
    assert info.value.code == "TIMEOUT"
    assert net.clock_s - start <= 1e-3 + 1e-12  # never past the deadline
    for mem in bench.memories.values():  # nothing left held
        assert all(h is None for h in mem.slots)


async def test_unreachable_fidelity_is_rejected_before_any_attempt() -> None:
    net, _ = await _network()
    before = list(net.attempts)
    with pytest.raises(FidelityUnreachable, match="rejected.*at best") as info:
        await net.create(EntanglementRequest(remote="bob", min_fidelity=0.99))
    assert info.value.code == "REJECTED"
    assert net.attempts == before


async def test_switched_off_memory_is_no_resources() -> None:
    net, bench = await _network()
    await bench.memories["repeater"].power.set(False)
    with pytest.raises(NoResources, match="repeater's memory is switched off"):
        await net.create(EntanglementRequest(remote="bob"))


async def test_busy_memories_are_no_resources() -> None:
    net, _ = await _network()
    await check_busy_memories(net)


async def test_halves_emptied_by_the_cutoff_expire_the_request() -> None:
    net, bench = await _network(p=2e-3, seed=8)
    for mem in bench.memories.values():
        mem.cutoff_s = 1e-5  # one attempt: the first link's halves never live to the swap
    with pytest.raises(ExpiredByCutoff, match="expired by the memories' cutoff") as info:
        await net.create(EntanglementRequest(remote="bob", deadline_s=0.5, min_fidelity=0.3))
    assert info.value.code == "EXPIRE"


async def test_long_waits_are_regenerated_to_meet_the_minimum() -> None:
    """T2 short against the waits: pairs that waited too long are made anew, so every
    delivered pair's estimate meets min_fidelity."""
    net, _ = await _network(t2_s=2e-3, p=0.01, seed=9)
    pairs = []
    request = EntanglementRequest(remote="bob", min_fidelity=0.7, deadline_s=5.0)
    for _ in range(20):
        async for p in net.pairs(request):
            pairs.append(p)
            await net.release(p)
    assert min(p.estimated_fidelity for p in pairs) >= 0.7


def test_bad_requests_name_the_field() -> None:
    with pytest.raises(ValueError, match="EntanglementRequest.pairs"):
        EntanglementRequest(remote="bob", pairs=0)
    with pytest.raises(ValueError, match="EntanglementRequest.deadline_s"):
        EntanglementRequest(remote="bob", deadline_s=math.inf)
    with pytest.raises(ValueError, match="min_fidelity"):
        EntanglementRequest(remote="bob", min_fidelity=1.5)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"pairs": True}, "pairs"),
        ({"pairs": 2.0}, "pairs"),
        ({"remote": 5}, "remote"),
        ({"local": 5}, "local"),
        ({"purpose_id": -5}, "purpose_id"),
        ({"purpose_id": 1 << 16}, "purpose_id"),
        ({"min_fidelity": "0.7"}, "min_fidelity"),
        ({"min_fidelity": math.nan}, "min_fidelity"),
        ({"deadline_s": "1"}, "deadline_s"),
        ({"purification_rounds": True}, "purification_rounds"),
    ],
)
def test_requests_of_the_wrong_type_are_a_value_error_naming_the_field(
    kw: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"EntanglementRequest\.{field}:"):
        EntanglementRequest(**{"remote": "bob", **kw})  # type: ignore[arg-type]


async def test_waits_the_deadline_cannot_avoid_are_rejected() -> None:
    """T2 = 30 us: fresh pairs reach ~0.55-0.6 but a link waiting more than ~2 attempts for
    the other loses it, so both links must herald within 2 attempts of each other
    (p = 0.2 %: ~0.5 % per try of ~7.5 ms): within 5 ms that is too unlikely (rejected,
    nothing attempted); within 10 s it happens and the pair delivered meets the minimum."""
    net, _ = await _network(t2_s=30e-6, p=2e-3, seed=10)
    route = net.settings.route("alice", "bob")
    assert net.chance_within(route, 0.5, 5e-3) < 0.01 < net.chance_within(route, 0.5, 10.0)
    before = list(net.attempts)
    with pytest.raises(FidelityUnreachable, match="probability"):
        await net.create(EntanglementRequest(remote="bob", min_fidelity=0.5, deadline_s=5e-3))
    assert net.attempts == before
    pairs = await net.create(EntanglementRequest(remote="bob", min_fidelity=0.5, deadline_s=10.0))
    assert pairs[0].estimated_fidelity >= 0.5


async def test_t2_comes_from_the_newest_memory_calibration(tmp_path: Path) -> None:
    """A recorded memory calibration's fitted T2 replaces the controller's stated one
    (and its source is said); a node it lacks keeps the stated value."""
    store = RunStore(tmp_path)
    with store.start_run("calibration.memory", profile={}) as run:
        run.log_results(nodes="repeater", repeater_t2_s=2e-3, repeater_t2_std_s=1e-4)
    net = Network(fake_bench(t2_s=10e-3), settings(characterisation_pairs=20), store=store)
    est = await net.characterise()
    assert est.nodes["repeater"].t2_s == 2e-3
    assert est.nodes["repeater"].source == f"calibration {run.run_id}"
    assert est.nodes["alice"].t2_s == 10e-3
    assert est.nodes["alice"].source == (
        "stated by the controller (no memory calibration measured alice_t2_s)"
    )


async def test_purification_rounds_call_the_purifier_per_link() -> None:
    """Each link's pair is purified with a second pair of the same link before the swap
    (the purifier's kept pair, with its new fidelity, goes on; a failed round starts the
    link again); without a purifier such requests are refused."""
    net, bench = await _network(seed=21, t2_s=math.inf)  # no dephasing while waiting
    calls: list[tuple[int, int]] = []

    async def purifier(network: Network, keep: Any, sacrifice: Any) -> Any:
        assert keep.nodes == sacrifice.nodes and keep.modes != sacrifice.modes
        calls.append((keep.link, len(calls)))
        await network.release(sacrifice)
        if len(calls) == 1:  # the first round fails: both consumed
            await network.release(keep)
            return None
        return replace(keep, fidelity=0.99)

    net.purifier = purifier
    pairs = await net.create(EntanglementRequest(remote="bob", purification_rounds=1))
    assert [link for link, _ in calls] == [0, 0, 1]  # link 0 again after its failed round
    assert pairs[0].estimated_fidelity == pytest.approx(
        frames.swap(frames.werner(0.99), frames.werner(0.99))[0], abs=0.01
    )
    for mem in bench.memories.values():  # only the delivered pair is held
        assert sum(h is not None for h in mem.slots) == (
            0 if mem is bench.memories["repeater"] else 1
        )
    net.purifier = None
    with pytest.raises(EntanglementRequestError, match="no purification is available"):
        await net.create(EntanglementRequest(remote="bob", purification_rounds=1))


async def test_a_station_reporting_no_elapsed_time_still_meets_the_deadline() -> None:
    """elapsed_s 0 from a station: the clock still moves by attempts x period, so a
    request that cannot be met ends at its deadline (fails before: the clock stood still)."""
    net, bench = await _network(p=1e-4, seed=22)
    for station in bench.stations.values():
        original = station.entangle

        async def entangle(n: int, original: Any = original) -> Any:
            return replace(await original(n), elapsed_s=0.0)

        station.entangle = entangle  # type: ignore[method-assign]
    start = net.clock_s
    with pytest.raises(RequestTimeout):
        await asyncio.wait_for(
            net.create(EntanglementRequest(remote="bob", deadline_s=1e-3)), timeout=30
        )
    assert net.clock_s - start == pytest.approx(1e-3, abs=2e-5)
