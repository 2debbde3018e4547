"""The repeater bench's physics measured through its instruments (HSC-1 stations, QMC-1
memories over TCP) against the direct qutip/analytic prediction for the parameters of
hw_profiles/repeater.toml (issue 11's acceptance; PHYSICS.md case 6):

- heralded success probability per attempt, p = 1/2 eta_a eta_b;
- elementary-link fidelity from Z/X/Y correlations against the configured state;
- dephasing of a stored pair, F = (1 + exp(-t/T2))/2 (one memory dephasing);
- swapping of twirled (Werner) links, F = 1/4 + (4 F1 - 1)(4 F2 - 1)/12;
- BBPSSW from F = 0.9 Werner pairs: success 0.8756, output 0.9264;
- teleportation over a Werner pair, average fidelity (2F + 1)/3 over the six inputs.

Every test is two-sided at 99.9 % with a fixed seed, and checks its power against a
plausible wrong model where the sample allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.drivers.qhil.hsc import HSC
from qhil.drivers.qhil.qmc import QMC
from qhil.emulators.qhil.hsc import HSCEmulator
from qhil.emulators.qhil.qmc import QMCEmulator
from qhil.emulators.server import EmulatorHost
from qhil.emulators.world import World, load_world_config
from qhil.emulators.world.quantum import (
    bbpssw_werner,
    bell_fidelity,
    bell_ket,
    t1t2_decay,
    werner_swap_fidelity,
)
from qhil.emulators.world.quantum.swapping import swap_corrections
from qhil.emulators.world.quantum.teleportation import teleport_corrections

PROFILE = Path(__file__).resolve().parents[2] / "hw_profiles" / "repeater.toml"
Z999 = stats.norm.ppf(1 - 0.0005)  # two-sided 99.9 %
#: A Pauli at one end that takes a pair nominally in this Bell state to psi-, the twirl's frame.
TO_SINGLET = {"phi+": "Y", "phi-": "X", "psi+": "Z", "psi-": "I"}
#: Sign of <sigma (x) sigma> for X, Y, Z in each Bell state.
SIGNS = {
    "phi+": (1, -1, 1),
    "phi-": (-1, 1, 1),
    "psi+": (1, 1, -1),
    "psi-": (-1, -1, -1),
}
BASES = ("X", "Y", "Z")


def world_table(**changes: Any) -> dict[str, Any]:
    """The shipped profile's [world], with ``changes`` as {"node.component.field": value}."""
    with PROFILE.open("rb") as fh:
        table = copy.deepcopy(tomllib.load(fh)["world"])
    for path, value in changes.items():
        node, comp, field = path.split(".")
        table["nodes"][node]["components"][comp][field] = value
    return table


def ideal_memories(*nodes: str) -> dict[str, Any]:
    """Changes making the nodes' memories ideal (no decay, no cutoff, no read-out error), so
    that a protocol's own formula is the whole prediction."""
    ideal = {"t1_s": math.inf, "t2_s": math.inf, "readout_error": 0.0, "cutoff_s": math.inf}
    return {f"{node}.memory.{k}": x for node in nodes for k, x in ideal.items()}


@dataclass
class Bench:
    world: World
    qmc: dict[str, QMC]
    hsc: dict[str, HSC]  # "link1" = alice-repeater, "link2" = repeater-bob


@contextlib.asynccontextmanager
async def bench(seed: int, **changes: Any) -> AsyncIterator[Bench]:
    cfg = load_world_config(world_table(**changes), str(PROFILE))
    world = World(cfg, seed=seed)
    with EmulatorHost() as host:
        async with contextlib.AsyncExitStack() as stack:
            qmc = {}
            for node in ("alice", "repeater", "bob"):
                ep = host.add(QMCEmulator(name=node, world=world, component=f"{node}.memory"))
                qmc[node] = await stack.enter_async_context(QMC.open(ep.resource))
            hsc = {}
            for link, comp in (
                ("link1", "alice.station_repeater"),
                ("link2", "repeater.station_bob"),
            ):
                ep = host.add(HSCEmulator(name=link, world=world, component=comp))
                hsc[link] = await stack.enter_async_context(HSC.open(ep.resource))
            yield Bench(world, qmc, hsc)


async def link_pair(b: Bench, link: str) -> tuple[int, int, str]:
    result = await b.hsc[link].entangle(10_000_000)
    assert result.success and result.bell is not None
    assert result.mode_a is not None and result.mode_b is not None
    return result.mode_a, result.mode_b, result.bell


async def twirl(
    b: Bench, ends: tuple[str, str], modes: tuple[int, int], bell: str, rng: np.random.Generator
) -> str:
    """Twirl a pair to Werner form in the psi- frame; returns its nominal state, psi-."""
    fix = TO_SINGLET[bell]
    if fix != "I":
        await b.qmc[ends[1]].pauli(modes[1], fix)
    k = int(rng.integers(12))
    for node, mode in zip(ends, modes, strict=True):
        await b.qmc[node].twirl(mode, k)
    return "psi-"


def fidelity_from_counts(agree: dict[str, list[int]]) -> tuple[float, float]:
    """F = (1 + sum of the three sign-corrected correlators)/4 and its standard error, from
    per-basis lists of 1 (outcomes correlated as the Bell state says) / 0."""
    f, var = 0.25, 0.0
    for basis in BASES:
        x = np.asarray(agree[basis], dtype=float)
        e = 2 * x.mean() - 1
        f += e / 4
        var += (1 - e**2) / len(x) / 16
    return f, math.sqrt(var)


async def measure_pair(
    b: Bench, ends: tuple[str, str], modes: tuple[int, int], bell: str, basis: str
) -> int:
    """1 when the two outcomes correlate as ``bell`` predicts in ``basis``."""
    x = await b.qmc[ends[0]].measure(modes[0], basis)
    y = await b.qmc[ends[1]].measure(modes[1], basis)
    assert x is not None and y is not None
    sign = SIGNS[bell][BASES.index(basis)]
    return int((1 - 2 * x) * (1 - 2 * y) == sign)


# --- heralded generation ------------------------------------------------------------------


async def test_heralded_success_probability_per_attempt() -> None:
    n = 150
    eta = 0.05 * 10 ** (-0.2 * 1.0 / 10) * 0.9  # emission x 1 km at 0.2 dB/km x detection
    p = 0.5 * eta**2 + 2 * 1e-7 * 2 * eta  # Barrett-Kok, plus dark-count heralds
    async with bench(11) as b:
        assert await b.hsc["link1"].success_probability.get() == pytest.approx(p, rel=1e-9)
        period = await b.hsc["link1"].attempt_period_s.get()
        assert period == pytest.approx(2 * 4.9e-6 + 10e-6, rel=1e-9)
        attempts = 0
        t0 = b.world.clock.now_s
        for _ in range(n):
            result = await b.hsc["link1"].entangle(10_000_000)
            assert result.success and result.mode_a is not None and result.mode_b is not None
            assert result.elapsed_s == pytest.approx(result.attempts * period, rel=1e-9)
            attempts += result.attempts
            await b.qmc["alice"].clear_mode(mode=result.mode_a)
            await b.qmc["repeater"].clear_mode(mode=result.mode_b)
        # Emulated time advanced by what happened, attempts x period.
        assert b.world.clock.now_s - t0 == pytest.approx(attempts * period, rel=1e-6)
    # Attempts to n heralds: n + NegBinom(n, p) failures; two-sided at 99.9 %.
    inside = lambda q: 5e-4 < stats.nbinom.cdf(attempts - n, n, q) < 1 - 5e-4  # noqa: E731
    assert inside(p), (n / attempts, p)
    # Power: a station at 2/3 or 3/2 of the probability would have been rejected.
    assert not inside(p * 2 / 3) and not inside(p * 3 / 2)


async def test_elementary_link_fidelity_from_correlations() -> None:
    n = 300
    agree: dict[str, list[int]] = {basis: [] for basis in BASES}
    async with bench(12) as b:
        period = await b.hsc["link1"].attempt_period_s.get()
        station = b.world.station("alice.station_repeater")
        for i in range(n):
            ma, mb, bell = await link_pair(b, "link1")
            basis = BASES[i % 3]
            agree[basis].append(await measure_pair(b, ("alice", "repeater"), (ma, mb), bell, basis))
    measured, err = fidelity_from_counts(agree)
    # Prediction: the configured heralded state (V = 0.9, dark counts) after the herald's
    # round trip of T1/T2 in both memories (qutip), read-out error e = 0.01 at each end
    # scaling every correlator by (1 - 2e)^2.
    rho = station.pair_state("psi+", True)
    for q in (0, 1):
        rho = t1t2_decay(rho, period - 10e-6, 3600.0, 1.0, q)
    f_dark = (
        station.expected_fidelity()
        - station.pair_state("psi+", True).matrix_element(bell_ket("psi+"), bell_ket("psi+")).real
    )
    f_true = bell_fidelity(rho, "psi+") + f_dark  # dark-count heralds: -8e-6
    assert f_true == pytest.approx((1 + 0.9) / 2, abs=1e-4)
    predicted = 0.25 + (f_true - 0.25) * (1 - 2 * 0.01) ** 2
    assert abs(measured - predicted) < Z999 * err, (measured, predicted, err)
    # Power: a station of visibility 0.7 (F = 0.85) would have been rejected.
    assert abs(measured - (0.25 + 0.6 * 0.98**2)) > Z999 * err


async def test_eavesdropper_on_one_arm_lowers_the_link_fidelity() -> None:
    """Intercept-resend of every photon on the repeater's arm (random Z/X basis):
    F -> (1 - f/2) F + f/4 (1 - F) = 0.4875 for f = 1, F = 0.95: no entanglement left."""
    n = 150
    agree: dict[str, list[int]] = {basis: [] for basis in BASES}
    eve = {"side": "b", "fraction": 1.0}
    async with bench(17, **{"alice.station_repeater.eavesdropper": eve}) as b:
        for i in range(n):
            ma, mb, bell = await link_pair(b, "link1")
            basis = BASES[i % 3]
            agree[basis].append(await measure_pair(b, ("alice", "repeater"), (ma, mb), bell, basis))
    measured, err = fidelity_from_counts(agree)
    f = (1 + 0.9) / 2
    predicted = 0.25 + ((1 - 0.5) * f + 0.25 * (1 - f) - 0.25) * (1 - 2 * 0.01) ** 2
    assert abs(measured - predicted) < Z999 * err, (measured, predicted, err)
    # Power: the undisturbed link (0.922 measured) would have been rejected.
    assert abs(measured - (0.25 + (f - 0.25) * 0.98**2)) > Z999 * err


@pytest.mark.parametrize("wait_t2", [0.0, 1.0])
async def test_stored_pair_dephases_as_one_memory_with_t2(wait_t2: float) -> None:
    """Only the repeater's memory dephases (alice's is ideal), V = 1, no read-out error:
    the X/Y correlations give the coherence, F = (1 + exp(-t/T2))/2 with t the storage time."""
    t2 = 1e-3
    n = 160
    async with bench(
        13,
        **{
            "alice.memory.t1_s": math.inf,
            "alice.memory.t2_s": math.inf,
            "repeater.memory.t1_s": math.inf,
            "repeater.memory.t2_s": t2,
            "alice.memory.readout_error": 0.0,
            "repeater.memory.readout_error": 0.0,
            "alice.station_repeater.visibility": 1.0,
        },
    ) as b:
        agree = 0
        storage = []
        for i in range(n):
            ma, mb, bell = await link_pair(b, "link1")
            b.world.clock.advance(wait_t2 * t2)
            storage.append(await b.qmc["repeater"].storage_time_s(mb))
            basis = ("X", "Y")[i % 2]
            agree += await measure_pair(b, ("alice", "repeater"), (ma, mb), bell, basis)
    t = float(np.mean(storage))
    assert t == pytest.approx(wait_t2 * t2 + 9.8e-6, rel=1e-6)  # + the herald's round trip
    # P(correlated as the Bell state says, in X or Y) = (1 + coherence)/2 = F for this state.
    f = (1 + math.exp(-t / t2)) / 2
    assert stats.binomtest(agree, n, f).pvalue > 1e-3, (agree / n, f)
    # Power: at one T2 the undephased F = 1 is rejected; at zero wait F(T2) is rejected.
    other = 1.0 if wait_t2 else (1 + math.exp(-1)) / 2
    if other < 1.0:
        assert stats.binomtest(agree, n, other).pvalue < 1e-3
    else:
        assert agree < n  # F = 1 would never disagree


@pytest.mark.slow
async def test_swapped_pair_of_twirled_links_has_the_werner_fidelity() -> None:
    """Both links twirled to Werner F = (1 + V)/2 = 0.8 (V = 0.6), no dephasing or read-out
    error; swap at the repeater, Bob's Pauli correction to phi+, F from the correlations."""
    n = 240
    v = 0.6
    f1 = (1 + v) / 2
    changes = ideal_memories("alice", "repeater", "bob")
    changes |= {"alice.station_repeater.visibility": v, "repeater.station_bob.visibility": v}
    rng = np.random.default_rng(7)
    agree: dict[str, list[int]] = {basis: [] for basis in BASES}
    async with bench(14, **changes) as b:
        for i in range(n):
            a1, r1, bell1 = await link_pair(b, "link1")
            r2, b2, bell2 = await link_pair(b, "link2")
            bell1 = await twirl(b, ("alice", "repeater"), (a1, r1), bell1, rng)
            bell2 = await twirl(b, ("repeater", "bob"), (r2, b2), bell2, rng)
            outcome = await b.qmc["repeater"].bell_measure(r1, r2)
            assert outcome is not None
            fix = swap_corrections(bell1, bell2, "phi+")[outcome]  # type: ignore[arg-type]
            if fix != "I":
                await b.qmc["bob"].pauli(b2, fix)
            basis = BASES[i % 3]
            agree[basis].append(await measure_pair(b, ("alice", "bob"), (a1, b2), "phi+", basis))
    measured, err = fidelity_from_counts(agree)
    predicted = werner_swap_fidelity(f1, f1)  # 1/4 + (4F1 - 1)(4F2 - 1)/12 = 0.6533
    assert abs(measured - predicted) < Z999 * err, (measured, predicted, err)
    # Power: the links' own fidelity (no loss in the swap) would have been rejected.
    assert abs(measured - f1) > Z999 * err


@pytest.mark.slow
async def test_bbpssw_from_werner_0_9_pairs() -> None:
    """Two alice-repeater pairs twirled to Werner F = 0.9 (V = 0.8), taken to phi+, purified
    at both nodes: success 0.8756, kept pair 0.9264 (PHYSICS.md case 6)."""
    n = 400
    f_in = 0.9
    changes = ideal_memories("alice", "repeater")
    changes["alice.station_repeater.visibility"] = 2 * f_in - 1
    rng = np.random.default_rng(8)
    successes = 0
    agree: dict[str, list[int]] = {basis: [] for basis in BASES}
    ends = ("alice", "repeater")
    async with bench(15, **changes) as b:
        for i in range(n):
            pairs = []
            for _ in range(2):
                ma, mb, bell = await link_pair(b, "link1")
                await twirl(b, ends, (ma, mb), bell, rng)
                await b.qmc["repeater"].pauli(mb, "Y")  # psi- -> phi+
                pairs.append((ma, mb))
            (ka, kb), (sa, sb) = pairs
            bits = [await b.qmc["alice"].purify(ka, sa), await b.qmc["repeater"].purify(kb, sb)]
            assert None not in bits
            if bits[0] != bits[1]:
                await b.qmc["alice"].clear_mode(mode=ka)
                await b.qmc["repeater"].clear_mode(mode=kb)
                continue
            successes += 1
            basis = BASES[i % 3]
            agree[basis].append(await measure_pair(b, ends, (ka, kb), "phi+", basis))
    f_out, p_success = bbpssw_werner(f_in)
    assert (round(f_out, 4), round(p_success, 4)) == (0.9264, 0.8756)
    assert stats.binomtest(successes, n, p_success).pvalue > 1e-3, (successes / n, p_success)
    measured, err = fidelity_from_counts(agree)
    assert abs(measured - f_out) < Z999 * err, (measured, f_out, err)
    # Power: untwirled, the heralded pairs' errors are phase errors only, which the parity
    # check never sees (p = 1): the twirl's Werner form is what the rate shows.
    assert successes < n and stats.binomtest(successes, n, 0.99).pvalue < 1e-3


async def test_teleportation_average_fidelity_over_the_six_inputs() -> None:
    """alice teleports H/V/D/A/R/L to the repeater over a Werner pair of F = 0.8 (V = 0.6);
    the repeater applies the Pauli correction and measures in the input's basis: the
    probability of getting the input back is the fidelity; averaged, (2F + 1)/3."""
    n = 300
    v = 0.6
    f = (1 + v) / 2
    changes = ideal_memories("alice", "repeater")
    changes["alice.station_repeater.visibility"] = v
    rng = np.random.default_rng(9)
    inputs = {
        "H": ("Z", 0),
        "V": ("Z", 1),
        "D": ("X", 0),
        "A": ("X", 1),
        "R": ("Y", 0),
        "L": ("Y", 1),
    }
    right = 0
    async with bench(16, **changes) as b:
        for i in range(n):
            name = list(inputs)[i % 6]
            ma, mb, bell = await link_pair(b, "link1")
            nominal = await twirl(b, ("alice", "repeater"), (ma, mb), bell, rng)
            await b.qmc["alice"].set_input(name)
            outcome = await b.qmc["alice"].teleport(ma)
            assert outcome is not None
            fix = teleport_corrections(nominal)[outcome]  # type: ignore[index]
            if fix != "I":
                await b.qmc["repeater"].pauli(mb, fix)
            basis, expected = inputs[name]
            right += int(await b.qmc["repeater"].measure(mb, basis) == expected)
    predicted = (2 * f + 1) / 3
    assert stats.binomtest(right, n, predicted).pvalue > 1e-3, (right / n, predicted)
    # Power: the classical limit 2/3 would have been rejected.
    assert stats.binomtest(right, n, 2 / 3).pvalue < 1e-3


# --- the two links run concurrently in emulated time (issue 11, RF1) ----------------------


def concurrent_changes(t2_s: float) -> dict[str, Any]:
    """Memories with only dephasing (T2 ``t2_s``, no T1, cutoff or read-out error) and
    stations without dark counts, so a heralded pair's fidelity is exactly
    (1 + V exp(-(s_a + s_b) / T2))/2 for its halves' storage times s_a, s_b."""
    changes = ideal_memories("alice", "repeater", "bob")
    for node in ("alice", "repeater", "bob"):
        changes[f"{node}.memory.t2_s"] = t2_s
    changes["alice.station_repeater.dark_count_probability"] = 0.0
    changes["repeater.station_bob.dark_count_probability"] = 0.0
    return changes


async def test_two_links_commanded_together_herald_over_the_same_emulated_interval() -> None:
    """Both stations commanded at once (either order): their attempts cover the same
    emulated interval, so the world's clock moves by the slower link's time (not the sum),
    the faster link's halves have waited the difference (plus the herald round trip), and
    the pairs' fidelities, and the swapped pair's, are the analytic ones for that parallel
    timing: F_i = (1 + V exp(-2 s_i / T2))/2, swapped F1 F2 + (1 - F1)(1 - F2)."""
    t2 = 0.05
    v = 0.9
    async with bench(21, **concurrent_changes(t2)) as b:
        period = await b.hsc["link1"].attempt_period_s.get()
        round_trip = period - 10e-6
        for trial in range(4):
            order = ("link1", "link2") if trial % 2 == 0 else ("link2", "link1")
            t0 = b.world.clock.now_s
            got = await asyncio.gather(*(b.hsc[k].entangle(10_000_000) for k in order))
            r = dict(zip(order, got, strict=True))
            assert all(x.success for x in got)
            longest = max(x.elapsed_s for x in got)
            assert b.world.clock.now_s - t0 == pytest.approx(longest, rel=1e-9)
            halves = {
                "link1": (("alice", r["link1"].mode_a), ("repeater", r["link1"].mode_b)),
                "link2": (("repeater", r["link2"].mode_a), ("bob", r["link2"].mode_b)),
            }
            fid = {}
            for link, ends in halves.items():
                wait = longest - r[link].elapsed_s + round_trip
                for node, mode in ends:
                    assert mode is not None
                    stored = await b.qmc[node].storage_time_s(mode)
                    assert stored == pytest.approx(wait, rel=1e-9, abs=1e-12), (trial, link)
                node, mode = ends[0]
                fid[link] = await b.qmc[node].mode_fidelity.get(mode=mode)
                assert fid[link] == pytest.approx((1 + v * math.exp(-2 * wait / t2)) / 2, abs=1e-9)
            (_, a1), (_, r1) = halves["link1"]
            (_, r2), (_, b2) = halves["link2"]
            assert a1 is not None and r1 is not None and r2 is not None and b2 is not None
            assert await b.qmc["repeater"].bell_measure(r1, r2) is not None
            f1, f2 = fid["link1"], fid["link2"]
            swapped = await b.qmc["alice"].mode_fidelity.get(mode=a1)
            assert swapped == pytest.approx(f1 * f2 + (1 - f1) * (1 - f2), abs=1e-9)
            await b.qmc["alice"].clear_mode(mode=a1)
            await b.qmc["bob"].clear_mode(mode=b2)


async def test_a_station_commanded_after_a_memory_command_starts_then() -> None:
    """Stations commanded one after the other with nothing in between still start together
    (virtual time: nothing happened on the bench meanwhile), but a memory command in
    between (here a storage-time readback) is a later moment: the second link then starts
    when the first has heralded, and the first's halves wait its whole run."""
    async with bench(22, **concurrent_changes(1.0)) as b:
        period = await b.hsc["link1"].attempt_period_s.get()
        round_trip = period - 10e-6
        t0 = b.world.clock.now_s
        first = await b.hsc["link1"].entangle(10_000_000)
        second = await b.hsc["link2"].entangle(10_000_000)
        longest = max(first.elapsed_s, second.elapsed_s)
        assert b.world.clock.now_s - t0 == pytest.approx(longest, rel=1e-9)
        assert first.mode_a is not None and second.mode_a is not None
        stored = await b.qmc["alice"].storage_time_s(first.mode_a)
        assert stored == pytest.approx(longest - first.elapsed_s + round_trip, rel=1e-9)
        await b.qmc["alice"].clear_all()
        await b.qmc["repeater"].clear_all()
        await b.qmc["bob"].clear_all()

        t0 = b.world.clock.now_s
        first = await b.hsc["link1"].entangle(10_000_000)
        assert first.mode_a is not None
        await b.qmc["alice"].storage_time_s(first.mode_a)  # the bench acts: a later moment
        second = await b.hsc["link2"].entangle(10_000_000)
        total = first.elapsed_s + second.elapsed_s
        assert b.world.clock.now_s - t0 == pytest.approx(total, rel=1e-9)
        stored = await b.qmc["alice"].storage_time_s(first.mode_a)
        assert stored == pytest.approx(second.elapsed_s + round_trip, rel=1e-9)


async def test_the_network_handles_clock_agrees_with_the_worlds(tmp_path: Path) -> None:
    """The request layer counts links heralding at once as parallel (the slowest one's
    time): the world's clock, advanced by the stations, moves by exactly as much."""
    from qhil.orchestrator.experiments.network import EntanglementRequest, open_network

    async with open_network("repeater", data_dir=tmp_path) as network:
        world = network.bench.emulator_truth.world
        await network.characterise(12)
        c0, w0 = network.clock_s, world.clock.now_s
        pairs = await network.create(EntanglementRequest(remote="bob", pairs=2))
        assert len(pairs) == 2
        assert network.clock_s - c0 > 0
        assert world.clock.now_s - w0 == pytest.approx(network.clock_s - c0, rel=1e-9)
