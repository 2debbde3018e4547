"""Emulated qhil QMC-1 quantum-memory controller (protocol: docs/protocols/qhil-qmc.md).

Backed by the world's quantum memory (``world.memory(component)``: the
``quantum_memory`` component's ``QuantumMemoryConfig`` becomes its
``MemoryParameters`` field by field), on the world's simulated clock. Not wired to
a world component, it runs a memory of its own (``parameters``), on the world's
clock if there is a world, else on a fast clock of its own.

Every operation happens at the present simulated time. A programmed read-out
(``READout:DELay d > 0``) is due ``d`` after its write, on the exact picosecond: it is
carried out lazily, in due order, before anything else touches the memory, and a
``RETRieve?`` that arrives before it waits for it (``await clock.wait_until_ps``: at
once in fast mode, moving time; on the wall clock in realtime mode).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from qhil.drivers.qhil.qmc import MAX_READOUT_DELAY_S, QMC, TWIRL_ELEMENTS
from qhil.drivers.values import scpi_special
from qhil.emulators.base import Raw, on
from qhil.emulators.scpi import DATA_OUT_OF_RANGE, ScpiEmulator, ScpiError
from qhil.emulators.world.clock import SimClock, seconds_to_ps

if TYPE_CHECKING:
    from qhil.emulators.world.quantum import MemoryParameters, RetrievalRecord
    from qhil.emulators.world.quantum.network import NetworkedMemory

MODE_OCCUPIED = (101, "Mode occupied")
MODE_EMPTY = (102, "Mode empty")
MEMORY_OFF = (103, "Memory off")
INPUT_CONFLICT = (-221, "Settings conflict;input is BELL, not a single-photon state")
NOT_DUE = (-200, "Execution error;read-out not yet due")
PS = 1e-12

#: Retrieval outcomes (``RetrievalOutcome`` values) as the controller spells them.
_OUTCOMES = {
    "ok": "OK",
    "empty": "EMPT",
    "expired": "EXP",
    "write_lost": "LOST",
    "read_failed": "FAIL",
}
_STORED = "STORED"  # ModeState.STORED's value


@functools.cache
def _kets() -> dict[str, np.ndarray]:
    """The prepared single-photon inputs H, V, D, A, R, L, and the analyser's port-0 state
    per basis (port 1 is the orthogonal one) as "port0:Z" ...: numpy amplitudes. Every
    command is answered in numpy, without qutip (issue Y3: qutip's 1-3 s import on the
    emulator host's thread, in the first memory command, missed the driver's 2 s)."""
    from qhil.emulators.world.quantum.density import PAULI_EIGENKET_ARRAYS

    single = dict(zip(("H", "V", "D", "A", "R", "L"), PAULI_EIGENKET_ARRAYS, strict=True))
    return {**single, "port0:Z": single["H"], "port0:X": single["D"], "port0:Y": single["R"]}


def nr3(x: float | None) -> Raw:
    """``+1.000000000E-03``; infinity 9.9E+37 and NaN (None) 9.91E+37, as SCPI spells them."""
    v = scpi_special(math.nan if x is None else float(x))
    return Raw(f"{v:+.9E}")


class QMCEmulator(ScpiEmulator):
    driver = QMC
    identity: ClassVar[tuple[str, str, str, str]] = ("QHIL", "QMC-1", "QMC00001", "1.0")
    default_port = 5031
    input_terminators = b"\n"

    def __init__(self, *, parameters: MemoryParameters | None = None, **kw: Any) -> None:
        # Used only without a world: a memory of its own on a fast clock of its own,
        # built on first use.
        self._own_params = parameters
        self._own_memory: NetworkedMemory | None = None
        self._own_clock = SimClock("fast")
        super().__init__(**kw)

    # --- what the controller is attached to ---

    @property
    def _bound(self) -> bool:
        """Wired to a world memory (else it runs its own)."""
        return self.world is not None and bool(self.component)

    @property
    def memory(self) -> NetworkedMemory:
        if self._bound:
            mem: NetworkedMemory = self.world.memory(self.component)
            return mem
        if self._own_memory is None:
            from qhil.emulators.world.quantum import MemoryParameters
            from qhil.emulators.world.quantum.network import Network, NetworkedMemory

            params = self._own_params or MemoryParameters()
            rng = np.random.default_rng(self.seed)
            self._own_memory = NetworkedMemory(params, rng, Network(), "memory")
        return self._own_memory

    def _built_memory(self) -> NetworkedMemory | None:
        """The memory if it exists already (else it will be built fresh when needed)."""
        if self._bound:
            comp = self.world.component(self.component)
            return self.memory if getattr(comp, "built", True) else None
        return self._own_memory

    @property
    def clock(self) -> SimClock:
        if self.world is not None:
            clock: SimClock = self.world.clock
            return clock
        return self._own_clock

    def _configured_cutoff(self) -> float:
        if self._bound:
            return float(self.world.component(self.component).cfg.cutoff_s)
        return math.inf if self._own_params is None else self._own_params.cutoff_s

    def power_on_state(self) -> None:
        super().power_on_state()
        self.input = "BELL"
        self.bloch = (0.0, 0.0)  # the prepared state of INPut BLOCh: theta, phi in rad
        self.readout_delay_ps = 0
        self.pending: dict[int, int] = {}  # mode -> due time of its programmed read-out (ps)
        self.latched: dict[int, tuple[bool, RetrievalRecord | None]] = {}
        self.last: RetrievalRecord | None = None
        self.herald = True
        self.analyzer = "Z"
        # The analyser's detectors draw from their own stream (the memory keeps its own).
        self.cycle_rng = np.random.default_rng(self.seed)
        memory = self._built_memory()
        if memory is not None:
            memory.clear()
            if memory.cutoff_s != self._configured_cutoff():
                memory.reconfigure(cutoff_s=self._configured_cutoff())

    # --- simulated time ---

    def _now(self) -> float:
        """The present in seconds, after every read-out that fell due up to now. A command
        acting on the memory ends the heralding stations' round (a station commanded after
        it starts at the present: world/quantum/network.py ``Network.round_start_ps``)."""
        self.memory.network.touch()
        now_ps = self.clock.now_ps
        for mode, due in sorted(self.pending.items(), key=lambda kv: kv[1]):
            if due > now_ps:
                break
            del self.pending[mode]
            success = self.memory.read_out(mode, due * PS)
            self.latched[mode] = (success, self.memory.last_retrieval)
        return now_ps * PS

    # --- modes ---

    def _mode(self, mode: int) -> int:
        if mode >= self.memory.n_modes:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        return mode

    def _input_state(self) -> tuple[np.ndarray, int | None]:
        """The input as numpy amplitudes, and which of its qubits the memory gets."""
        if self.input == "BELL":
            from qhil.emulators.world.quantum.states import bell_amplitudes

            return bell_amplitudes("phi+"), 1  # the memory gets photon 1; its twin stays behind
        return self._single_ket(), None

    def _single_ket(self) -> np.ndarray:
        """The prepared single-photon input (H..L, or the state at the Bloch angles)."""
        if self.input != "BLOCH":
            return _kets()[self.input]
        theta, phi = self.bloch
        h, v = _kets()["H"], _kets()["V"]
        return (
            math.cos(theta / 2) * h
            + complex(math.cos(phi), math.sin(phi)) * math.sin(theta / 2) * v
        )

    @on("mode_count.get")
    def _count(self) -> int:
        return self.memory.n_modes

    @on("input_state.get")
    def _inp_q(self) -> Raw:
        return Raw("BLOC" if self.input == "BLOCH" else self.input)

    @on("input_bloch.get")
    def _bloch_q(self) -> Raw:
        return Raw(",".join(nr3(x) for x in self.bloch))

    @on("input_bloch.set")
    def _bloch(self, value: list[float]) -> None:
        theta, phi = value
        if not (0.0 <= theta <= math.pi + 1e-12 and 0.0 <= phi <= 2 * math.pi + 1e-12):
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self.bloch = (theta, phi)
        self.input = "BLOCH"

    @on("input_state.set")
    def _inp(self, value: str) -> None:
        self.input = value

    @on("store_mode")
    def _store(self, mode: int) -> None:
        self._mode(mode)
        t = self._now()
        self.latched.pop(mode, None)
        if not self.memory.powered:
            raise ScpiError(*MEMORY_OFF)
        if self._slot_busy(mode, t):
            raise ScpiError(*MODE_OCCUPIED)
        state, qubit = self._input_state()
        result = self.memory.store(state, t, mode=mode, qubit=qubit)
        self.herald = result.success
        if result.success and self.readout_delay_ps > 0:
            self.pending[mode] = self.clock.now_ps + self.readout_delay_ps

    @on("store_herald.get")
    def _herald(self) -> bool:
        return self.herald

    @on("retrieve_mode.get")
    async def _retrieve(self, mode: int) -> bool:
        self._mode(mode)
        due = self.pending.get(mode)
        if due is not None and due > self.clock.now_ps:
            await self.clock.wait_until_ps(due)  # its programmed read-out lies ahead: wait
        t = self._now()
        if mode in self.pending:  # not yet due: only reachable if nobody waited for it
            raise ScpiError(*NOT_DUE)
        if mode in self.latched:
            success, self.last = self.latched.pop(mode)
            return success
        success = self.memory.read_out(mode, t)
        self.last = self.memory.last_retrieval
        return success

    @on("last_outcome.get")
    def _outcome(self) -> Raw:
        return Raw("NONE" if self.last is None else _OUTCOMES[self.last.outcome.value])

    @on("last_fidelity.get")
    def _last_fid(self) -> Raw:
        return nr3(None if self.last is None else self.last.fidelity)

    @on("last_storage_time_s.get")
    def _last_stime(self) -> Raw:
        return nr3(None if self.last is None else self.last.storage_time_s)

    @on("readout_delay_s.get")
    def _delay_q(self) -> Raw:
        return nr3(self.readout_delay_ps * PS)

    @on("readout_delay_s.set")
    def _delay(self, value: float) -> None:
        if not 0.0 <= value <= MAX_READOUT_DELAY_S:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self.readout_delay_ps = seconds_to_ps(value)

    @on("mode_state.get")
    def _state(self, mode: int) -> Raw:
        self._mode(mode)
        status = self.memory.mode_status(mode, self._now())
        return Raw("STOR" if status.state.value == _STORED else "EMPT")

    @on("mode_storage_time_s.get")
    def _stime(self, mode: int) -> Raw:
        self._mode(mode)
        return nr3(self.memory.storage_time(mode, self._now()))

    @on("mode_fidelity.get")
    def _fid(self, mode: int) -> Raw:
        self._mode(mode)
        return nr3(self.memory.fidelity(mode, self._now()))

    @on("status.get")
    def _status(self) -> Raw:
        modes = self.memory.status(self._now())
        return Raw(",".join("STOR" if m.state.value == _STORED else "EMPT" for m in modes))

    @on("clear_all")
    def _clear_all(self) -> None:
        self._now()
        self.memory.clear()
        self.pending.clear()
        self.latched.clear()

    @on("clear_mode")
    def _clear_mode(self, mode: int) -> None:
        self._mode(mode)
        self._now()
        self.memory.clear(mode)
        self.pending.pop(mode, None)
        self.latched.pop(mode, None)

    # --- the analyser after the output, and the sequencer's cycles ---

    @on("analyzer_basis.get")
    def _anal_q(self) -> Raw:
        return Raw(self.analyzer)

    @on("analyzer_basis.set")
    def _anal(self, value: str) -> None:
        self.analyzer = value

    def port0_probability(self, storage_time_s: float) -> float:
        """Probability that a qubit retrieved after ``storage_time_s`` clicks at port 0 of
        the analyser: the memory's storage channel on the input (its memory half for BELL)."""
        from qhil.emulators.world.quantum.channels import apply_kraus_array
        from qhil.emulators.world.quantum.density import density_array

        state, qubit = self._input_state()
        kraus = self.memory.params.storage_kraus(storage_time_s)
        out = apply_kraus_array(density_array(state), kraus, qubit or 0)
        if qubit is not None:  # the memory's photon of the pair: trace out its twin
            out = np.trace(out.reshape(2, 2, 2, 2), axis1=1 - qubit, axis2=3 - qubit)
        ket = _kets()["port0:" + self.analyzer]
        return float(np.clip(np.real(ket.conj() @ out @ ket), 0.0, 1.0))

    @on("cycle_counts.get")
    async def _cycle(self, mode: int, count: int) -> Raw:
        """``count`` store/read-out cycles of ``mode``, back to back, each read out after the
        read-out delay (at once if 0). Every cycle sees the same channel, so the clicks are
        drawn as binomials from the memory's own parameters (write, read efficiency after
        the delay, cutoff, storage channel) rather than cycle by cycle."""
        self._mode(mode)
        t = self._now()
        if not self.memory.powered:
            raise ScpiError(*MEMORY_OFF)
        if self._slot_busy(mode, t) or mode in self.pending:
            raise ScpiError(*MODE_OCCUPIED)
        self.latched.pop(mode, None)
        params = self.memory.params
        delay_s = self.readout_delay_ps * PS
        rng = self.cycle_rng
        written = int(rng.binomial(count, params.write_efficiency))
        stored = written if params.heralded_write else count
        p_read = 0.0 if delay_s > params.cutoff_s else float(params.read_efficiency_after(delay_s))
        retrieved = int(rng.binomial(written, p_read))
        port0 = int(rng.binomial(retrieved, self.port0_probability(delay_s)))
        if self.readout_delay_ps > 0:  # the sequencer runs on the bench's clock
            await self.clock.wait_until_ps(self.clock.now_ps + count * self.readout_delay_ps)
        return Raw(f"{stored},{port0},{retrieved - port0}")

    # --- operations on stored qubits (repeater nodes; world/quantum/network.py) ---

    def _slot_busy(self, mode: int, t: float) -> bool:
        """The mode holds a qubit (stored, or of a network pair) or a station reserved it."""
        return self.memory.mode_status(mode, t).state.value == _STORED or self.memory.busy(mode)

    def _take_mode(self, mode: int) -> float:
        """The present, with any programmed read-out of ``mode`` dropped: the operation
        is the mode's read-out."""
        self._mode(mode)
        t = self._now()
        self.pending.pop(mode, None)
        self.latched.pop(mode, None)
        return t

    @on("measure_outcome.get")
    def _measure(self, mode: int, basis: str) -> Raw:
        bit = self.memory.measure(mode, basis, self._take_mode(mode))
        self.last = self.memory.last_retrieval
        return Raw("NONE" if bit is None else str(bit))

    @on("bell_outcome.get")
    def _bell(self, mode1: int, mode2: int) -> Raw:
        self._mode(mode2)
        if mode1 == mode2:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        t = self._take_mode(mode1)
        self._take_mode(mode2)
        outcome = self.memory.bell_measure(mode1, mode2, t)
        self.last = self.memory.last_retrieval
        return Raw("NONE" if outcome is None else outcome.upper())

    def _stored_qubit(self, mode: int) -> float:
        self._mode(mode)
        t = self._now()
        if not self.memory.holds(mode, t):
            raise ScpiError(*MODE_EMPTY)
        return t

    @on("pauli_apply")
    def _pauli(self, mode: int, op: str) -> None:
        self.memory.pauli(mode, op, self._stored_qubit(mode))

    @on("twirl_apply")
    def _twirl(self, mode: int, element: int) -> None:
        if not 0 <= element < TWIRL_ELEMENTS:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self.memory.twirl(mode, element, self._stored_qubit(mode))

    @on("purify_outcome.get")
    def _purify(self, keep: int, sacrifice: int) -> Raw:
        self._mode(keep)
        if keep == sacrifice:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        t = self._take_mode(sacrifice)
        bit = self.memory.purify(keep, sacrifice, t)
        self.last = self.memory.last_retrieval
        return Raw("NONE" if bit is None else str(bit))

    @on("teleport_outcome.get")
    def _teleport(self, mode: int) -> Raw:
        t = self._take_mode(mode)
        if self.input == "BELL":  # nothing to teleport: answered, and said why
            self.push_error(*INPUT_CONFLICT)
            return Raw("NONE")
        outcome = self.memory.teleport(mode, self._single_ket(), t)
        self.last = self.memory.last_retrieval
        return Raw("NONE" if outcome is None else outcome.upper())

    @on("power.get")
    def _power_q(self) -> bool:
        return bool(self.memory.powered)

    @on("power.set")
    def _power(self, value: bool) -> None:
        t = self._now()
        if not value:
            self.pending.clear()
            self.latched.clear()
        self.memory.set_power(value, t)

    # --- readbacks of the medium ---

    @on("efficiency_total.get")
    def _eff(self) -> Raw:
        return nr3(self.memory.write_efficiency * self.memory.read_efficiency(0.0))

    @on("efficiency_write.get")
    def _eff_w(self) -> Raw:
        return nr3(self.memory.write_efficiency)

    @on("efficiency_read.get")
    def _eff_r(self) -> Raw:
        return nr3(self.memory.read_efficiency(0.0))

    @on("efficiency_decay_s.get")
    def _eff_decay(self) -> Raw:
        return nr3(self.memory.params.efficiency_decay_time_s)

    @on("t1_s.get")
    def _t1(self) -> Raw:
        return nr3(self.memory.t1_s)

    @on("t2_s.get")
    def _t2(self) -> Raw:
        return nr3(self.memory.t2_s)

    @on("initial_fidelity.get")
    def _f0(self) -> Raw:
        return nr3(self.memory.params.initial_fidelity)

    @on("readout_error.get")
    def _rerr(self) -> Raw:
        return nr3(self.memory.params.readout_error)

    @on("cutoff_s.get")
    def _cutoff_q(self) -> Raw:
        return nr3(self.memory.cutoff_s)

    @on("cutoff_s.set")
    def _cutoff(self, value: float) -> None:
        if not value > 0.0:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self._now()
        self.memory.reconfigure(cutoff_s=value)


__all__ = ["QMCEmulator", "nr3"]
