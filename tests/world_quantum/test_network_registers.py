"""Shared registers across memories and the heralding station (world/quantum/network.py).

Exact checks on the joint state (no sampling) against the validated protocol modules:
swapping (Werner formula), lazy T1/T2 per qubit, the twirl group, teleportation's
corrections; plus the station's figures and the memories' power switch and cutoff.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from qhil.emulators.world import World, load_world_config
from qhil.emulators.world.quantum import (
    BELL_STATES,
    bell_dm,
    bell_fidelity,
    t1t2_decay,
    werner_state,
    werner_swap_fidelity,
)
from qhil.emulators.world.quantum._qutip import Qobj
from qhil.emulators.world.quantum.bell_measurement import apply_pauli
from qhil.emulators.world.quantum.memory import ModeState, QuantumMemoryError, RetrievalOutcome
from qhil.emulators.world.quantum.network import TWIRL_UNITARIES, StationError
from qhil.emulators.world.quantum.swapping import swap_corrections
from qhil.emulators.world.quantum.teleportation import teleport_corrections


def chain(**station: Any) -> World:
    """alice.memory - (alice.station) - rep.memory, and rep.memory2 for swaps."""
    mem = {"type": "quantum_memory", "t1_s": 10.0, "t2_s": 1.0}
    st = {
        "type": "heralding_station",
        "memory_a": "memory",
        "memory_b": "rep.memory",
        "length_a_km": 1.0,
        "length_b_km": 0.5,
        "emission_efficiency_a": 0.3,
        "emission_efficiency_b": 0.2,
        "detection_efficiency": 0.9,
        "visibility": 0.9,
        "cycle_time_s": 10e-6,
        **station,
    }
    cfg = load_world_config(
        {
            "nodes": {
                "alice": {"components": {"memory": {**mem, "n_modes": 2}, "station": st}},
                "rep": {"components": {"memory": {**mem, "n_modes": 4}}},
                "bob": {"components": {"memory": {**mem, "n_modes": 2}}},
            }
        },
        "test",
    )
    return World(cfg, seed=3)


A, R, B = "alice.memory", "rep.memory", "bob.memory"


def test_station_figures_follow_the_configuration() -> None:
    w = chain()
    st = w.station("alice.station")
    eta_a = 0.3 * 10 ** (-0.2 * 1.0 / 10) * 0.9
    eta_b = 0.2 * 10 ** (-0.2 * 0.5 / 10) * 0.9
    assert st.success_probability == pytest.approx(0.5 * eta_a * eta_b, rel=1e-12)
    assert st.period_s == pytest.approx(2 * 1.0 * 4.9e-6 + 10e-6, rel=1e-12)
    assert st.expected_fidelity() == pytest.approx((1 + 0.9) / 2, abs=1e-12)


def test_eavesdropper_and_dark_counts_lower_the_heralded_fidelity() -> None:
    f = (1 + 0.9) / 2
    eve = chain(eavesdropper={"side": "b", "fraction": 0.5}).station("alice.station")
    # Intercept-resend in Z or X on one side: (1 - f/2) F + f/4 (1 - F) (Z maps psi+ to psi-).
    assert eve.expected_fidelity("psi-") == pytest.approx(0.75 * f + 0.125 * (1 - f), abs=1e-12)
    dark = chain(dark_count_probability=1e-3).station("alice.station")
    p_t, p_f = dark.true_probability, dark.false_probability
    assert p_f == pytest.approx(2e-3 * (dark.side_efficiency("a") + dark.side_efficiency("b")))
    assert dark.expected_fidelity() == pytest.approx((p_t * f + p_f * 0.5) / (p_t + p_f))


def herald(w: World, t: float) -> tuple[int, int, str]:
    st = w.station("alice.station")
    run = st.begin(10_000_000, t)
    w.clock.advance_to(run.done_s)
    st.complete(run, w.clock.now_s)
    assert run.mode_a is not None and run.mode_b is not None and run.bell is not None
    return run.mode_a, run.mode_b, run.bell


def test_heralded_pair_is_one_state_in_two_memories_and_dephases_per_qubit() -> None:
    w = chain()
    ma, mb, bell = herald(w, 0.0)
    now = w.clock.now_s
    # Both memories see the qubit, stored since the successful attempt's emission.
    for name, mode in ((A, ma), (R, mb)):
        status = w.memory(name).mode_status(mode, now)
        assert status.state is ModeState.STORED
        # stored from the emission, one round trip (2 x 1 km x 4.9 us/km) before the herald
        assert status.storage_time_s == pytest.approx(w.station("alice.station").herald_delay_s)
    born = now - w.memory(A).storage_time(ma, now)
    later = now + 0.2
    rho = w.network.state([(A, ma), (R, mb)], later)
    ideal = w.station("alice.station").pair_state(bell)
    for q in (0, 1):
        ideal = t1t2_decay(ideal, later - born, 10.0, 1.0, q)
    assert (rho - ideal).norm() < 1e-12
    # psi+- dephased on both qubits: coherence V exp(-2t/T2) (T1 adds a little more).
    assert bell_fidelity(rho, bell) == pytest.approx(
        (1 + 0.9 * math.exp(-2 * (later - born))) / 2, abs=2e-2
    )


@pytest.mark.parametrize(("f1", "f2"), [(0.9, 0.8), (0.95, 0.7)])
def test_swap_on_the_joint_state_gives_the_werner_fidelity(f1: float, f2: float) -> None:
    w = chain()
    net = w.network
    for name in (A, R, B):
        w.memory(name).reconfigure(t1_s=math.inf, t2_s=math.inf)
    net.add_register(werner_state(f1, "psi+"), [(A, 0), (R, 0)], 0.0)
    net.add_register(werner_state(f2, "psi-"), [(R, 1), (B, 0)], 0.0)
    outcome = net.bell_measure((R, 0), (R, 1), 0.0, np.random.default_rng(1))
    fix = swap_corrections("psi+", "psi-", "phi+")[outcome]
    net.pauli((B, 0), fix, 0.0)
    rho = net.state([(A, 0), (B, 0)], 0.0)
    assert bell_fidelity(rho, "phi+") == pytest.approx(werner_swap_fidelity(f1, f2), abs=1e-12)
    assert not net.holds((R, 0)) and not net.holds((R, 1))


def test_twirl_elements_turn_any_pair_into_the_werner_state_of_its_singlet_fidelity() -> None:
    rho = chain().station("alice.station").pair_state("psi+")
    rho = apply_pauli(rho, "Z", 1)  # psi+ -> psi-: the singlet frame of the twirl
    avg = sum(
        Qobj(np.kron(u, u), dims=[[2, 2], [2, 2]])
        * rho
        * Qobj(np.kron(u, u), dims=[[2, 2], [2, 2]]).dag()
        for u in TWIRL_UNITARIES
    ) / len(TWIRL_UNITARIES)
    werner = werner_state(bell_fidelity(rho, "psi-"), "psi-")
    assert (avg - werner).norm() < 1e-12
    assert len(TWIRL_UNITARIES) == 12


@pytest.mark.parametrize("bell", BELL_STATES)
def test_teleport_outcome_with_the_documented_correction_restores_the_input(bell: str) -> None:
    w = chain()
    for name in (A, B):
        w.memory(name).reconfigure(t1_s=math.inf, t2_s=math.inf)
    for seed, name in enumerate(("D", "R", "V")):
        w.network.add_register(bell_dm(bell), [(A, 0), (B, 0)], 0.0)
        mem = w.memory(A)
        mem._rng = np.random.default_rng(seed)
        outcome = mem.teleport(0, name, 0.0)
        assert outcome is not None
        w.network.pauli((B, 0), teleport_corrections(bell)[outcome], 0.0)
        out = w.network.state([(B, 0)], 0.0)
        ket = {"D": (1, 1), "R": (1, 1j), "V": (0, 1)}[name]
        v = np.array(ket) / np.linalg.norm(ket)
        assert float(np.real(v.conj() @ out.full() @ v)) == pytest.approx(1.0, abs=1e-12)
        w.memory(B).clear(0)


def test_power_off_loses_every_mode_and_refuses_writes_and_heralds() -> None:
    w = chain()
    ma, mb, _ = herald(w, 0.0)
    rep = w.memory(R)
    rep.set_power(False, w.clock.now_s)
    assert not w.network.holds((R, mb))
    assert rep.mode_status(mb, w.clock.now_s).state is ModeState.EMPTY
    # Alice's half stays in her memory, alone now.
    assert w.network.state([(A, ma)], w.clock.now_s).dims == [[2], [2]]
    with pytest.raises(QuantumMemoryError, match="switched off"):
        rep.store(bell_dm("phi+"), w.clock.now_s, qubit=1)
    with pytest.raises(StationError) as err:
        w.station("alice.station").begin(10, w.clock.now_s)
    assert err.value.reason == "memory_off" and err.value.memory == R


def test_full_memory_refuses_a_herald_naming_the_memory() -> None:
    w = chain()
    herald(w, 0.0)
    herald(w, w.clock.now_s)  # alice has two modes: both now hold pairs
    with pytest.raises(StationError) as err:
        w.station("alice.station").begin(10, w.clock.now_s)
    assert err.value.reason == "no_free_mode" and err.value.memory == A


def test_cutoff_discards_a_network_qubit_and_says_expired() -> None:
    w = chain()
    w.memory(R).reconfigure(cutoff_s=0.01)
    ma, mb, _ = herald(w, 0.0)
    later = w.clock.now_s + 0.02
    assert w.memory(R).measure(mb, "Z", later) is None
    last = w.memory(R).last_retrieval
    assert last is not None and last.outcome is RetrievalOutcome.EXPIRED
    # Alice's half is still there, now alone: a fair coin in every basis.
    rho = w.network.state([(A, ma)], later)
    assert rho.full()[0, 0].real == pytest.approx(0.5, abs=1e-2)


def test_same_seed_same_outcomes() -> None:
    def run() -> list[object]:
        w = chain()
        out: list[object] = []
        for _ in range(3):
            ma, mb, bell = herald(w, w.clock.now_s)
            now = w.clock.now_s
            out += [bell, w.memory(A).measure(ma, "X", now), w.memory(R).measure(mb, "X", now)]
        return out

    assert run() == run()


def test_a_time_within_a_picosecond_of_the_last_is_not_going_back() -> None:
    # The QMC reads the clock as ps * 1e-12, the world as ps / 1e12: for some picoseconds
    # the two differ in the last bit, and `qhil ping` crashed the memory on it.
    ps = 8_058_600_000
    assert ps * 1e-12 < ps / 1e12
    mem = chain().memory(R)
    mem.mode_status(0, ps / 1e12)
    assert mem.mode_status(0, ps * 1e-12).state is ModeState.EMPTY
    with pytest.raises(QuantumMemoryError, match="earlier"):
        mem.mode_status(0, ps / 1e12 - 2e-12)


@pytest.mark.parametrize(
    ("memory_b", "problem"),
    [
        ("rep.nothing", "names 'rep.nothing', which is not a quantum_memory component"),
        ("memory", "is the same memory as memory_a (alice.memory)"),
    ],
)
def test_a_station_must_join_two_memories(memory_b: str, problem: str) -> None:
    from qhil.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        chain(memory_b=memory_b)
    assert "world.nodes.alice.components.station.memory_b" in str(err.value)
    assert problem in str(err.value)


def test_a_pair_lands_when_its_herald_is_due_whoever_looks_and_ages_from_its_emission() -> None:
    """A run started in the past (a station commanded together with another) lands when
    time reaches its herald, seen by any memory operation (no result read), stored since
    its emission; an end switched off before the herald makes the run fail."""
    w = chain()
    st = w.station("alice.station")
    w.clock.advance_to(1.0)
    run = st.begin(10_000_000, 1.0, start_s=0.5)  # started half a second before now
    assert run.success and run.mode_a is not None and run.mode_b is not None
    assert run.born_s == pytest.approx(0.5 + (run.attempts - 1) * st.period_s + 10e-6)
    now = max(1.0, run.done_s)
    w.clock.advance_to(now)
    mem = w.memory(A)
    assert mem.holds(run.mode_a, now)  # nobody asked the station: the pair is there
    assert mem.mode_status(run.mode_a, now).storage_time_s == pytest.approx(now - run.born_s)
    assert st.complete(run, now) == run
    # switched off before its herald: the run fails, the reserved modes are free again
    late = st.begin(10_000_000, now)
    assert late.success and late.mode_b is not None
    w.memory(R).set_power(False, now)
    w.memory(R).set_power(True, now)
    w.clock.advance_to(late.done_s)
    done = st.complete(late, late.done_s)
    assert not done.success and done.mode_a is None
    assert not w.network.busy((R, late.mode_b))
