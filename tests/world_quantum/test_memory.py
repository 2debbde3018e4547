"""The quantum memory: noise, efficiencies, cutoff, modes, errors and statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world.quantum import (
    MemoryParameters,
    ModeState,
    QuantumMemory,
    QuantumMemoryError,
    RetrievalOutcome,
    bell_fidelity,
    bell_ket,
    state_fidelity,
)
from qhil.emulators.world.quantum._qutip import qt

CONFIDENCE_P = 1e-3  # two-sided tests at 99.9 %


def _memory(seed: int = 0, **params: object) -> QuantumMemory:
    return QuantumMemory(MemoryParameters(**params), np.random.default_rng(seed))  # type: ignore[arg-type]


def test_dephasing_one_half_of_phi_plus_in_the_memory_matches_case_6() -> None:
    t2 = 0.25
    mem = _memory(t2_s=t2)
    for t in (0.0, 0.1, 0.25, 1.0):
        start = 10.0 * t
        assert mem.store(bell_ket(), start, qubit=1).success
        expected = (1 + math.exp(-t / t2)) / 2
        assert mem.fidelity(0, start + t) == pytest.approx(expected, abs=1e-12)
        ok, state = mem.retrieve(0, start + t)
        assert ok and state is not None
        assert bell_fidelity(state) == pytest.approx(expected, abs=1e-12)
        assert mem.last_retrieval is not None
        assert mem.last_retrieval.fidelity == pytest.approx(expected, abs=1e-12)


def test_stored_half_pair_agrees_with_a_lindblad_reference() -> None:
    t1, t2, t = 2.0, 1.0, 0.6
    mem = _memory(t1_s=t1, t2_s=t2)
    mem.store(bell_ket("psi+"), 0.0, qubit=0)
    _, state = mem.retrieve(0, t)
    ops = [math.sqrt(1 / t1) * qt.destroy(2), math.sqrt((1 / t2 - 0.5 / t1) / 2) * qt.sigmaz()]
    ops = [qt.expand_operator(op, dims=[2, 2], targets=0) for op in ops]
    reference = qt.mesolve(0 * qt.qeye([2, 2]), bell_ket("psi+").proj(), [0, t], ops).states[-1]
    assert state is not None
    np.testing.assert_allclose(state.full(), reference.full(), atol=1e-6)


def test_t1_relaxes_an_excited_qubit_to_ground() -> None:
    mem = _memory(t1_s=1.0, t2_s=2.0)
    mem.store(qt.basis(2, 1), 0.0)
    _, state = mem.retrieve(0, 0.7)
    assert state is not None
    assert state.full()[1, 1].real == pytest.approx(math.exp(-0.7), abs=1e-12)


def test_initial_fidelity_and_readout_error() -> None:
    plus = (qt.basis(2, 0) + qt.basis(2, 1)).unit()
    mem = _memory(initial_fidelity=0.9)
    mem.store(plus, 0.0)
    assert mem.fidelity(0, 0.0) == pytest.approx(0.9)
    mem = _memory(readout_error=0.05)
    mem.store(qt.basis(2, 0), 0.0)
    assert mem.fidelity(0, 0.0) == pytest.approx(0.95)
    mem.clear()
    mem.store(plus, 1.0)  # a bit flip leaves |+> alone
    assert mem.fidelity(0, 1.0) == pytest.approx(1.0)


def test_average_fidelity_agrees_with_qutip_average_gate_fidelity() -> None:
    params = MemoryParameters(t1_s=3.0, t2_s=1.0, initial_fidelity=0.97, readout_error=0.02)
    for t in (0.0, 0.5, 2.0):
        ours = params.average_fidelity(t)
        assert ours == pytest.approx(qt.average_gate_fidelity(params.storage_superoperator(t)))
    # pure dephasing: F_avg = (2 + exp(-t/T2)) / 3
    dephasing = MemoryParameters(t2_s=1.0)
    assert dephasing.average_fidelity(0.4) == pytest.approx((2 + math.exp(-0.4)) / 3)


def test_cutoff_empties_the_mode() -> None:
    mem = _memory(cutoff_s=1.0, n_modes=2)
    mem.store(qt.basis(2, 0), 0.0)
    mem.store(qt.basis(2, 1), 0.5)
    status = mem.status(1.2)
    assert [s.state for s in status] == [ModeState.EMPTY, ModeState.STORED]
    assert status[1].storage_time_s == pytest.approx(0.7)
    assert mem.retrieve(0, 1.2) == (False, None)
    assert mem.last_retrieval is not None
    assert mem.last_retrieval.outcome is RetrievalOutcome.EXPIRED
    assert mem.retrieve(1, 1.5).success  # exactly at the cutoff it is still there
    assert mem.retrieve(1, 1.6) == (False, None)
    assert mem.last_retrieval.outcome is RetrievalOutcome.EMPTY


def test_modes_hold_independent_qubits() -> None:
    mem = _memory(n_modes=3, t2_s=1.0)
    states = [qt.basis(2, 0), (qt.basis(2, 0) + qt.basis(2, 1)).unit(), qt.basis(2, 1)]
    for k, s in enumerate(states):
        assert mem.store(s, 0.1 * k) == (True, k)
    with pytest.raises(QuantumMemoryError, match="all 3 mode"):
        mem.store(states[0], 1.0)
    assert mem.storage_time(2, 1.0) == pytest.approx(0.8)
    ok, out = mem.retrieve(1, 1.0)
    assert ok and out is not None
    assert state_fidelity(states[1], out) == pytest.approx((1 + math.exp(-0.9)) / 2)
    assert mem.store(states[1], 1.1) == (True, 1)  # the freed mode is reused
    with pytest.raises(QuantumMemoryError, match="mode 0 is occupied"):
        mem.store(states[1], 1.2, mode=0)


def test_operation_errors_are_named() -> None:
    mem = _memory(n_modes=2)
    with pytest.raises(QuantumMemoryError, match=r"mode 5 does not exist.*0\.\.1"):
        mem.retrieve(5, 0.0)
    with pytest.raises(ValueError, match="pass qubit="):
        mem.store(bell_ket(), 0.0)
    with pytest.raises(ValueError, match="qubit 2 is not in"):
        mem.store(bell_ket(), 0.0, qubit=2)
    mem.status(2.0)
    with pytest.raises(QuantumMemoryError, match="earlier than"):
        mem.store(qt.basis(2, 0), 1.0)
    with pytest.raises(QuantumMemoryError, match="finite"):
        mem.status(math.nan)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_modes", 0, "n_modes must be an integer >= 1"),
        ("write_efficiency", 1.2, "write_efficiency must be in"),
        ("initial_fidelity", 0.3, "initial_fidelity must be in"),
        ("cutoff_s", 0.0, "cutoff_s must be > 0"),
        ("t2_s", 5.0, "t2 must be <= 2\\*t1"),
    ],
)
def test_bad_parameters_are_named(field: str, value: object, message: str) -> None:
    base = {"t1_s": 1.0, "t2_s": 1.0}
    with pytest.raises(ValueError, match=message):
        MemoryParameters(**{**base, field: value})  # type: ignore[arg-type]


def _success_count(mem: QuantumMemory, trials: int, storage_time: float) -> int:
    successes = 0
    for k in range(trials):
        t = 10.0 * k
        if mem.store(qt.basis(2, 0), t).success and mem.retrieve(0, t + storage_time).success:
            successes += 1
    return successes


@pytest.mark.parametrize("heralded", [True, False])
def test_success_rate_is_write_times_read_efficiency(heralded: bool) -> None:
    write, read, tau, t = 0.7, 0.8, 2.0, 1.0
    expected = write * read * math.exp(-t / tau)
    mem = _memory(
        seed=42,
        write_efficiency=write,
        read_efficiency=read,
        efficiency_decay_time_s=tau,
        heralded_write=heralded,
    )
    assert mem.params.retrieval_probability(t) == pytest.approx(expected)
    trials = 4000
    k = _success_count(mem, trials, t)
    assert stats.binomtest(k, trials, expected).pvalue > CONFIDENCE_P
    # power: a memory without the efficiency decay would be rejected
    assert stats.binomtest(k, trials, write * read).pvalue < CONFIDENCE_P


def test_gaussian_efficiency_decay_and_heralded_write_failures() -> None:
    params = MemoryParameters(
        write_efficiency=0.5, efficiency_decay_time_s=1.0, efficiency_decay_shape=2.0
    )
    np.testing.assert_allclose(
        params.retrieval_probability([0.0, 0.5, 2.0]), 0.5 * np.exp(-np.array([0, 0.25, 4.0]))
    )
    mem = QuantumMemory(params, np.random.default_rng(9))
    written = 0
    for k in range(3000):
        result = mem.store(qt.basis(2, 0), float(k), mode=0)
        if result.success:
            written += 1
            mem.clear(0)
        else:  # a heralded failure leaves the mode free
            assert result.mode is None
            assert mem.mode_status(0, float(k)).state is ModeState.EMPTY
    assert stats.binomtest(written, 3000, 0.5).pvalue > CONFIDENCE_P


def test_same_seed_same_history() -> None:
    def run(seed: int) -> list[bool]:
        mem = _memory(seed=seed, write_efficiency=0.6, read_efficiency=0.6)
        history = []
        for k in range(50):
            stored = mem.store(qt.basis(2, 0), float(k)).success
            history += [stored, stored and mem.retrieve(0, k + 0.5).success]
        return history

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_reconfigure_and_reset() -> None:
    mem = _memory(n_modes=2)
    mem.store(qt.basis(2, 0), 0.0, mode=1)
    with pytest.raises(QuantumMemoryError, match="mode\\(s\\) \\[1\\] hold qubits"):
        mem.reconfigure(n_modes=1)
    with pytest.raises(ValueError, match="unknown memory parameter"):
        mem.reconfigure(t3_s=1.0)
    mem.reconfigure(n_modes=4, t2_s=0.5)
    assert mem.n_modes == 4 and mem.t2_s == 0.5
    assert mem.status(0.5)[1].state is ModeState.STORED
    mem.reset()
    assert all(s.state is ModeState.EMPTY for s in mem.status(0.0))
    assert mem.last_retrieval is None
