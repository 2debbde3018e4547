"""Entanglement requests and ``qhil ping`` on the emulated repeater bench
(hw_profiles/repeater.toml): the acceptance cases of issue 11, measured fidelities against
the analytic prediction from the world's parameters (two-sided, 99 %, fixed seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_config
from qhil.emulators.world.quantum.states import bell_dm
from qhil.orchestrator.experiments.network import (
    EntanglementRequest,
    FidelityUnreachable,
    RequestTimeout,
    frames,
    open_network,
)
from qhil.orchestrator.experiments.network.ping import ping
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

from .fakes import check_busy_memories

Z99 = 2.576  # two-sided 99 %


def link_errors(station: Any) -> np.ndarray:
    """The heralded pair's Bell-diagonal errors [F, pX, pZ, pY] (true and false heralds
    mixed, eavesdropper included), from the world's station itself."""
    p_t, p_f = station.true_probability, station.false_probability
    rho = (p_t * station.pair_state("psi+", True) + p_f * station.pair_state("psi+", False)) / (
        p_t + p_f
    )
    x, z = frames.BELL_BITS["psi+"]
    return np.array(
        [(bell_dm(frames.bell_name(x ^ (e & 1), z ^ (e >> 1))) * rho).tr().real for e in range(4)]
    )


def analytic_fidelity(world: Any, eve: bool = True) -> float:
    """The fidelity the ping measures, from the profile's parameters: both links' heralded
    pairs, the waiting link's two halves dephasing for |N1 - N2| attempt periods (geometric
    attempt counts; E[exp(-2 |D| tau / T2)] in closed form), the swap with the repeater's
    read-out error on both Bell bits, the ends' read-out errors on the agreement."""
    st1, st2 = world.station("alice.station_repeater"), world.station("repeater.station_bob")
    v1, v2 = link_errors(st1), link_errors(st2)
    t2 = world.memory("repeater.memory").t2_s  # all three memories alike here
    tau = st1.period_s
    q1, q2 = 1 - st1.success_probability, 1 - st2.success_probability
    r = math.exp(-2 * tau / t2)
    norm = (1 - q1) * (1 - q2) / (1 - q1 * q2)
    mean_coherence = norm * (1 + q1 * r / (1 - q1 * r) + q2 * r / (1 - q2 * r))
    v = frames.dephase(frames.swap(v1, v2), mean_coherence)
    e = world.memory("repeater.memory").params.readout_error
    for flip in (1, 2):  # the Bell measurement's parity (X) and phase (Z) bits
        v = (1 - e) * v + e * v[[i ^ flip for i in range(4)]]
    q = frames.agreement_from_fidelity(float(v[0]))
    ea, eb = (world.memory(f"{n}.memory").params.readout_error for n in ("alice", "bob"))
    flip = ea * (1 - eb) + eb * (1 - ea)
    return frames.fidelity_from_agreement(q * (1 - flip) + (1 - q) * flip)


def _ping_cli(tmp_path: Path, *args: str) -> Any:
    command = ["ping", "alice", "bob", *args, "--data-dir", str(tmp_path)]
    return CliRunner().invoke(main, command, catch_exceptions=False)


@pytest.mark.slow
def test_ping_reachable_on_the_shipped_bench_and_recorded(tmp_path: Path) -> None:
    r = _ping_cli(tmp_path, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["reachable"] is True and "reachable after" in out["reason"]
    assert out["pairs_measured"] >= 90 and out["rate_pairs_per_s"] > 0
    record = RunStore(tmp_path).get(out["run_id"])
    assert record.kind == "ping" and record.results["reachable"] is True
    assert record.arrays["probes"].shape == (10,)
    assert record.arrays["outcomes"]["agree"].sum() == out["pairs_agree"]
    assert [Path(p).name for p in out["plots"]] == ["probes.png"]
    assert Path(out["plots"][0]).is_file()


@pytest.mark.slow
def test_ping_text_lines_and_unreachable_with_the_repeater_memory_off(tmp_path: Path) -> None:
    r = _ping_cli(
        tmp_path, "--no-plots", "--set", "nodes.repeater.instruments.memory.settings.power=false"
    )
    assert r.exit_code == 1, r.output
    assert "0 probes, 0/0 pairs delivered, 0 measured, rate - pairs/s" in r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("UNREACHABLE: the links could not be measured: NoResources")
    assert "instrument error 202, 'Memory off;repeater.memory'" in last


@pytest.mark.slow
def test_ping_unreachable_when_t2_is_far_below_the_round_trip(tmp_path: Path) -> None:
    """T2 = 1 us against a 19.8 us attempt period: the halves dephase before the herald
    arrives; the measured links and the stated T2 reject every request."""
    r = _ping_cli(
        tmp_path,
        "--no-plots",
        "--count",
        "2",
        "--set",
        "world.nodes.repeater.components.memory.t2_s=1e-6",
    )
    assert r.exit_code == 1, r.output
    probes = [line for line in r.output.splitlines() if line.startswith("probe ")]
    assert len(probes) == 2
    assert "0/10 pairs, FidelityUnreachable: request rejected" in probes[0]
    assert probes[1] == "probe 2: 0/10 pairs, the error of probe 1 again"
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("UNREACHABLE: no pair delivered: FidelityUnreachable")
    assert last.endswith("; all 2 probes ended so")
    assert "repeater T2=1e-06 s" in last


def test_ping_bad_input_is_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["ping", "alice", "carol", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2
    assert "NODE_B: no node 'carol' on the network (alice, repeater, bob)" in r.output
    r = CliRunner().invoke(main, ["ping", "alice", "bob", "--count", "0"])
    assert r.exit_code == 2 and "--count" in r.output


async def _measured(
    prof: Any, tmp_path: Path, count: int, threshold: float = 0.5
) -> tuple[dict[str, Any], float]:
    async with open_network(prof, data_dir=tmp_path) as network:
        update = {"count": count, "min_fidelity": threshold}
        settings = network.settings.ping.model_copy(update=update)
        report = await ping(network, "alice", "bob", settings, deadline_s=2.0)
        world = network.bench.emulator_truth.world
        return report.results, analytic_fidelity(world)


@pytest.mark.slow
async def test_measured_fidelity_agrees_with_the_analytic_prediction(tmp_path: Path) -> None:
    results, predicted = await _measured(load_profile("repeater"), tmp_path, count=15)
    assert 0.8 < predicted < 0.9  # F_link ~0.95 each, 1 % read-out errors, ~20 ms waits
    assert abs(results["fidelity"] - predicted) < Z99 * results["fidelity_std"]
    # the request layer's own estimate (measured links) is near it too
    assert abs(results["estimated_fidelity"] - predicted) < 0.05


@pytest.mark.slow
async def test_an_eavesdropper_on_one_link_lowers_the_measured_fidelity(tmp_path: Path) -> None:
    """Intercept-resend on every one of alice's photons: the link's X and Z errors rise by
    1/4 each; the measured fidelity drops to the analytic value with Eve (below 1/2: the
    ping asks for 0.3 so that pairs are delivered and measured), far below the one
    without her."""
    eve = "world.nodes.alice.components.station_repeater.eavesdropper.fraction=1.0"
    prof = load_profile("repeater", [eve])
    results, predicted = await _measured(prof, tmp_path, count=12, threshold=0.3)
    clean = load_profile("repeater")
    without = analytic_fidelity(World(load_world_config(clean.world, clean.source)))
    assert predicted < without - 0.3
    assert abs(results["fidelity"] - predicted) < Z99 * results["fidelity_std"]
    assert results["fidelity"] < without - Z99 * results["fidelity_std"]
    # the link measurement sees it on alice's link only
    tapped = results["link_alice_repeater_fidelity"]
    other = results["link_repeater_bob_fidelity"]
    spread = math.hypot(
        results["link_alice_repeater_fidelity_std"], results["link_repeater_bob_fidelity_std"]
    )
    assert other - tapped > Z99 * spread


@pytest.mark.slow
async def test_requests_fail_with_their_typed_errors_on_the_bench(tmp_path: Path) -> None:
    async with open_network("repeater", data_dir=tmp_path) as network:
        await network.characterise(30)
        before = list(network.attempts)
        # deadline shorter than one attempt (19.8 us): at once, nothing attempted
        with pytest.raises(RequestTimeout, match="shorter than one attempt"):
            await network.create(EntanglementRequest(remote="bob", deadline_s=1e-5))
        # a fidelity the measured links cannot give: rejected, nothing attempted
        with pytest.raises(FidelityUnreachable, match="at best"):
            await network.create(EntanglementRequest(remote="bob", min_fidelity=0.99))
        assert network.attempts == before
        # two attempts' time (p ~ 1e-3 each link): times out in emulated time
        start = network.clock_s
        with pytest.raises(RequestTimeout, match="heralded nothing"):
            await network.create(EntanglementRequest(remote="bob", deadline_s=4e-5))
        assert network.clock_s - start <= 4e-5 + 1e-12
        await check_busy_memories(network)
