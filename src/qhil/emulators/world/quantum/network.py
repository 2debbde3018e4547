"""Entangled registers shared across quantum memories, and heralded entanglement generation.

A memory-based repeater chain keeps pairs whose two qubits sit in two memories (any
nodes). Here such a pair is ONE density matrix, a *register*, whose qubits live in slots
``(memory component, mode)``. Swapping, purification and teleportation act on the joint
state; each qubit decoheres with its own memory's T1/T2 for its own storage time,
lazily: the channel for the time since it was last touched is applied when it is next
touched (the channels on different qubits commute with everything done to the others,
so the order does not matter).

- :class:`Network`: the registers, keyed by slot; every operation a node can do on its
  memory's qubits (measure in Z/X/Y, Bell-state measurement, Pauli, twirl, CNOT + Z
  read-out for BBPSSW, teleportation of a prepared input).
- :class:`NetworkedMemory`: a :class:`~.memory.QuantumMemory` whose modes may hold
  register qubits (so ``status``, ``STORe``'s "mode occupied", ``CLEar``, the cutoff and
  ``RETRieve?`` see them), and which can be switched off (every mode lost).
- :class:`HeraldingStation`: the midpoint Bell-state measurement station of an
  elementary link (Barrett-Kok): per attempt success ``1/2 eta_a eta_b`` (plus false
  heralds from dark counts), heralded state from the station's visibility, optional
  intercept-resend eavesdropper on one side; attempts drawn at once (geometric).

Model and numbers: docs/protocols/qhil-hsc.md. Randomness: a station draws from its own
generator, a memory's operations from the memory's (both seeded per component).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..component import Component, db_to_transmission
from .channels import apply_kraus_array, depolarizing_array, t1t2_array
from .density import PAULI_EIGENKET_ARRAYS, as_density_matrix
from .memory import (
    MemoryParameters,
    ModeState,
    ModeStatus,
    QuantumMemory,
    QuantumMemoryError,
    RetrievalOutcome,
    RetrievalRecord,
    StoreResult,
)
from .states import BELL_STATES, BellState, bell_amplitudes

if TYPE_CHECKING:
    from ._qutip import Qobj

    BASIS_KETS: dict[str, Qobj]
    INPUT_KETS: dict[str, Qobj]

#: A qubit's place: (memory component name, mode).
Slot = tuple[str, int]

# Plain numpy, so building a memory and answering its readbacks never imports qutip
# (issue Y3); ``BASIS_KETS`` and ``INPUT_KETS`` are the same kets as qutip objects.
#: Port-0 ket of a single-qubit measurement per basis (port 1 is the orthogonal ket).
_BASIS_KET_ARRAYS: dict[str, np.ndarray] = {
    "Z": PAULI_EIGENKET_ARRAYS[0],
    "X": PAULI_EIGENKET_ARRAYS[2],
    "Y": PAULI_EIGENKET_ARRAYS[4],
}
#: The prepared single-photon inputs a TELeport? can send.
_INPUT_KET_ARRAYS: dict[str, np.ndarray] = dict(
    zip(("H", "V", "D", "A", "R", "L"), PAULI_EIGENKET_ARRAYS, strict=True)
)
#: Bell states as (parity bit, phase bit): what the two read-outs of a Bell-state
#: measurement give; a read-out error flips one of them.
BELL_BITS: dict[BellState, tuple[int, int]] = {
    "phi+": (0, 0),
    "phi-": (0, 1),
    "psi+": (1, 0),
    "psi-": (1, 1),
}
_BELL_OF_BITS = {bits: name for name, bits in BELL_BITS.items()}
_NEGLIGIBLE = 1e-14


def __getattr__(name: str) -> Any:
    if name in ("BASIS_KETS", "INPUT_KETS"):
        from ._qutip import Qobj

        arrays = _BASIS_KET_ARRAYS if name == "BASIS_KETS" else _INPUT_KET_ARRAYS
        return {k: Qobj(v.reshape(2, 1)) for k, v in arrays.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PAULI_ARRAYS = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}


def _twirl_unitaries() -> tuple[np.ndarray, ...]:
    """The 12 rotations of the tetrahedral group (as SU(2) matrices, up to sign): the
    Paulis times the 0, 120 and 240 degree rotations about (1, 1, 1). Their adjoint
    action on the Bloch sphere is irreducible, so they form a unitary 2-design: averaging
    ``U (x) U`` over them turns any two-qubit state into a Werner state with respect to
    the singlet psi- (which every ``U (x) U`` leaves invariant)."""
    paulis = [_PAULI_ARRAYS[p] for p in "IXYZ"]
    n = (_PAULI_ARRAYS["X"] + _PAULI_ARRAYS["Y"] + _PAULI_ARRAYS["Z"]) / math.sqrt(3)
    angle = 2.0 * math.pi / 3.0
    c = math.cos(angle / 2) * np.eye(2) - 1j * math.sin(angle / 2) * n
    cycles = [np.eye(2, dtype=complex), c, c @ c]
    return tuple(p @ r for r in cycles for p in paulis)


#: Element ``k`` (0..11) of the twirl: Pauli ``k % 4`` (I, X, Y, Z) after rotation ``k // 4``.
TWIRL_UNITARIES: tuple[np.ndarray, ...] = _twirl_unitaries()


# Registers are plain numpy density matrices (qubit 0 the most significant): building
# qutip objects per operation cost more than the arithmetic on these few-qubit states.
Matrix = np.ndarray


def _tensor(rho: Matrix) -> tuple[np.ndarray, int]:
    n = rho.shape[0].bit_length() - 1
    return rho.reshape([2] * (2 * n)), n


def _matrix(tensor: np.ndarray, n: int) -> Matrix:
    return np.ascontiguousarray(tensor).reshape(2**n, 2**n)


def _kraus(rho: Matrix, kraus: np.ndarray, qubit: int) -> Matrix:
    """A single-qubit channel (Kraus array (k, 2, 2)) on one qubit."""
    return apply_kraus_array(rho, kraus, qubit)


def _gate(rho: Matrix, gate: np.ndarray, targets: list[int]) -> Matrix:
    """``U rho U^dagger`` for a unitary on ``targets`` (its own qubit order)."""
    t, n = _tensor(rho)
    m = len(targets)
    u = gate.reshape([2] * (2 * m))
    # rows: contract U's input axes with the targets' row axes, put the outputs back
    t = np.moveaxis(np.tensordot(u, t, axes=(list(range(m, 2 * m)), targets)), range(m), targets)
    cols = [n + q for q in targets]
    t = np.tensordot(t, u.conj(), axes=(cols, list(range(m, 2 * m))))
    return _matrix(np.moveaxis(t, range(2 * n - m, 2 * n), cols), n)


def _ptrace(rho: Matrix, keep: list[int]) -> Matrix:
    """The reduced state of the qubits ``keep`` (ascending order kept)."""
    t, n = _tensor(rho)
    m = n
    for q in sorted(set(range(n)) - set(keep), reverse=True):
        t = np.trace(t, axis1=q, axis2=q + m)
        m -= 1
    return _matrix(t, m)


def _permute(rho: Matrix, order: list[int]) -> Matrix:
    """Qubit ``order[i]`` becomes qubit ``i``."""
    t, n = _tensor(rho)
    return _matrix(np.transpose(t, order + [n + q for q in order]), n)


def _project(rho: Matrix, qubit: int, ket: np.ndarray) -> tuple[float, Matrix | None]:
    """Probability of finding ``qubit`` in ``ket``, and the rest's normalised state then
    (None when nothing is left or the outcome cannot occur)."""
    t, n = _tensor(rho)
    t = np.moveaxis(t, (qubit, n + qubit), (0, 1))
    side = 2 ** (n - 1)
    rest = np.einsum("a,abxy,b->xy", ket.conj(), t.reshape(2, 2, side, side), ket)
    p = float(np.real(np.trace(rest)))
    if n == 1 or p <= _NEGLIGIBLE:
        return max(p, 0.0), None
    return p, rest / p


def _bell_projector(bell: BellState) -> Matrix:
    amplitudes = bell_amplitudes(bell)
    return np.outer(amplitudes, amplitudes.conj())


def _bell_fidelity(rho: Matrix, bell: BellState) -> float:
    """<B|rho|B> of a two-qubit numpy density matrix (as ``states.bell_fidelity``)."""
    amplitudes = bell_amplitudes(bell)
    return float(np.real(amplitudes.conj() @ rho @ amplitudes))


#: Bell states' amplitudes |B> = sum M_ab |ab>.
_BELL_M = {name: bell_amplitudes(name).reshape(2, 2) for name in BELL_STATES}
_KETS = _BASIS_KET_ARRAYS
_ORTHOGONAL = {b: np.array([-k[1].conj(), k[0].conj()]) for b, k in _KETS.items()}
_CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)


def _bell_branches(rho: Matrix, q0: int, q1: int) -> list[tuple[float, Matrix | None]]:
    """Per Bell state (BELL_STATES order): its probability on qubits (q0, q1) and the
    rest's normalised state (None when nothing is left)."""
    t, n = _tensor(rho)
    t = np.moveaxis(t, (q0, q1, n + q0, n + q1), (0, 1, 2, 3))
    side = 2 ** (n - 2)
    t = t.reshape(2, 2, 2, 2, side, side)
    out = []
    for name in BELL_STATES:
        m = _BELL_M[name]
        rest = np.einsum("ab,abcdxy,cd->xy", m.conj(), t, m)
        p = max(float(np.real(np.trace(rest))), 0.0)
        out.append((p, rest / p if n > 2 and p > _NEGLIGIBLE else None))
    return out


@dataclass
class _Qubit:
    slot: Slot
    born_s: float  # when it started to be stored (its storage time counts from here)
    aged_s: float  # decoherence applied up to this time


@dataclass
class _Register:
    rho: Matrix
    qubits: list[_Qubit] = field(default_factory=list)

    def index(self, slot: Slot) -> int:
        return next(i for i, q in enumerate(self.qubits) if q.slot == slot)


@dataclass
class _Due:
    due_s: float
    serial: int
    ends: tuple[str, str]
    land: Callable[[bool], None]
    ok: bool = True


class Network:
    """The registers of every networked memory of one world."""

    def __init__(self) -> None:
        self._memories: dict[str, NetworkedMemory] = {}
        self._at: dict[Slot, _Register] = {}
        self._reserved: set[Slot] = set()
        # Stations' runs whose pair has not landed yet: (due time, serial, landing).
        self._due: list[_Due] = []
        self._serial = 0
        # The stations' present round (fast mode): runs commanded with nothing else
        # touching the memories or moving the clock in between start together.
        self._round_start_ps: int | None = None
        self._round_end_ps = 0

    # -- bookkeeping ---------------------------------------------------------------------

    def attach(self, memory: NetworkedMemory) -> None:
        """(Re)register a memory under its component name; forgets what it held."""
        for slot in [s for s in self._at if s[0] == memory.name]:
            self.discard(slot)
        self._reserved = {s for s in self._reserved if s[0] != memory.name}
        self._memories[memory.name] = memory

    def memory(self, name: str) -> NetworkedMemory:
        return self._memories[name]

    def reset(self) -> None:
        self._at.clear()
        self._reserved.clear()
        self._due.clear()
        self._round_start_ps = None

    # -- stations' runs in emulated time -----------------------------------------------

    def touch(self) -> None:
        """Something other than a station acted on a memory (a controller's command): the
        stations' round is over; the next run starts at the present."""
        self._round_start_ps = None

    def round_start_ps(self, now_ps: int) -> int:
        """Where a station's run commanded at ``now_ps`` starts (fast mode). Runs commanded
        while nothing but stations' result waits has happened since the round began (no
        memory touched, the clock moved only by those waits) start with the round: two
        stations commanded at the same emulated moment attempt over the same interval,
        whichever reads its result first. Otherwise a new round begins at ``now_ps``."""
        if self._round_start_ps is None or now_ps != self._round_end_ps:
            self._round_start_ps = now_ps
            self._round_end_ps = now_ps
        return self._round_start_ps

    def round_waited(self, now_ps: int) -> None:
        """A station's result wait has taken the clock to ``now_ps``."""
        if self._round_start_ps is not None:
            self._round_end_ps = max(self._round_end_ps, now_ps)

    def schedule(self, due_s: float, ends: tuple[str, str], land: Callable[[bool], None]) -> None:
        """``land(ok)`` puts a heralded pair into the memories ``ends`` once time reaches
        ``due_s``; ``ok`` False when an end was switched off meanwhile."""
        self._due.append(_Due(due_s, self._serial, ends, land))
        self._serial += 1
        self._due.sort(key=lambda d: (d.due_s, d.serial))

    def settle(self, t_s: float) -> None:
        """Every run due by ``t_s`` lands (in the order they fell due)."""
        while self._due and self._due[0].due_s <= t_s + 1e-12:
            due = self._due.pop(0)
            due.land(due.ok)

    def lose(self, memory: str) -> None:
        """``memory`` is switched off: runs not yet landed that end there fail."""
        for due in self._due:
            if memory in due.ends:
                due.ok = False

    def holds(self, slot: Slot) -> bool:
        return slot in self._at

    def busy(self, slot: Slot) -> bool:
        """Held by a register qubit or reserved by a station's attempts."""
        return slot in self._at or slot in self._reserved

    def slots_of(self, memory: str) -> list[Slot]:
        return [s for s in self._at if s[0] == memory]

    def born_s(self, slot: Slot) -> float:
        reg = self._at[slot]
        return reg.qubits[reg.index(slot)].born_s

    def reserve(self, slot: Slot) -> None:
        self._reserved.add(slot)

    def release(self, slot: Slot) -> None:
        self._reserved.discard(slot)

    def add_register(self, rho: Qobj | Matrix, slots: list[Slot], born_s: float) -> None:
        """A new register whose qubit ``i`` sits in ``slots[i]``, stored since ``born_s``."""
        if not isinstance(rho, np.ndarray):  # a qutip state
            rho = np.array(as_density_matrix(rho).full(), dtype=complex)
        if rho.shape != (2 ** len(slots), 2 ** len(slots)):
            raise ValueError(f"a register of shape {rho.shape} for {len(slots)} slot(s)")
        for slot in slots:
            if slot in self._at:
                raise QuantumMemoryError(f"{slot[0]} mode {slot[1]} already holds a qubit")
        reg = _Register(np.array(rho, dtype=complex), [_Qubit(s, born_s, born_s) for s in slots])
        for slot in slots:
            self._at[slot] = reg

    def state(self, slots: list[Slot], t_s: float) -> Qobj:
        """Reduced state of the qubits in ``slots`` (in that order) at ``t_s``, for tests and
        readbacks; touches nothing but the decoherence up to ``t_s``."""
        from ._qutip import Qobj

        n = len(slots)
        return Qobj(self.state_array(slots, t_s), dims=[[2] * n, [2] * n])

    def state_array(self, slots: list[Slot], t_s: float) -> Matrix:
        """:meth:`state` as a numpy density matrix (no qutip)."""
        reg = self._merged(slots, t_s)
        idx = [reg.index(s) for s in slots]
        order = sorted(idx)
        rho = _ptrace(reg.rho, order) if len(idx) < len(reg.qubits) else reg.rho
        if order != idx:
            rho = _permute(rho, [order.index(i) for i in idx])
        return rho

    def discard(self, slot: Slot) -> None:
        """The qubit in ``slot`` is lost (traced out); its partners keep their state."""
        reg = self._at.pop(slot, None)
        if reg is None:
            return
        i = reg.index(slot)
        del reg.qubits[i]
        if reg.qubits:
            reg.rho = _ptrace(reg.rho, [j for j in range(len(reg.qubits) + 1) if j != i])

    # -- the lazy decoherence ------------------------------------------------------------

    def _age(self, reg: _Register, t_s: float) -> None:
        for i, qb in enumerate(reg.qubits):
            dt = t_s - qb.aged_s
            if dt <= 0.0:
                continue
            p = self._memories[qb.slot[0]].params
            if math.isfinite(p.t1_s) or math.isfinite(p.t2_s):
                reg.rho = _kraus(reg.rho, t1t2_array(dt, p.t1_s, p.t2_s), i)
            qb.aged_s = t_s

    def _merged(self, slots: list[Slot], t_s: float) -> _Register:
        """One register holding every slot (merging registers by tensor product), aged to
        ``t_s``."""
        regs: list[_Register] = []
        for s in slots:
            if s not in self._at:
                raise QuantumMemoryError(f"{s[0]} mode {s[1]} holds no network qubit")
            if all(self._at[s] is not r for r in regs):
                regs.append(self._at[s])
        reg = regs[0]
        for other in regs[1:]:
            reg.rho = np.kron(reg.rho, other.rho)
            reg.qubits.extend(other.qubits)
            for qb in other.qubits:
                self._at[qb.slot] = reg
        self._age(reg, t_s)
        return reg

    def _remove(self, reg: _Register, i: int, rest: Matrix | None) -> None:
        """Qubit ``i`` has been measured: ``rest`` is the others' state."""
        qb = reg.qubits.pop(i)
        del self._at[qb.slot]
        if reg.qubits:
            assert rest is not None
            reg.rho = rest

    # -- operations ----------------------------------------------------------------------

    def measure(self, slot: Slot, basis: str, t_s: float, rng: np.random.Generator) -> int:
        """Projective measurement of the qubit in ``slot`` in Z/X/Y: 0 (H/D/R) or 1; the
        qubit leaves its register (read efficiency and read-out error: the caller's)."""
        reg = self._merged([slot], t_s)
        i = reg.index(slot)
        p0, rest0 = _project(reg.rho, i, _KETS[basis])
        if rng.random() < p0:
            self._remove(reg, i, rest0)
            return 0
        _, rest1 = _project(reg.rho, i, _ORTHOGONAL[basis])
        self._remove(reg, i, rest1)
        return 1

    def bell_measure(
        self, slot1: Slot, slot2: Slot, t_s: float, rng: np.random.Generator
    ) -> BellState:
        """Complete Bell-state measurement of two qubits; both leave the register."""
        reg = self._merged([slot1, slot2], t_s)
        i1, i2 = reg.index(slot1), reg.index(slot2)
        branches = _bell_branches(reg.rho, i1, i2)
        weights = np.array([p for p, _ in branches])
        pick = int(rng.choice(4, p=weights / weights.sum()))
        for i in sorted((i1, i2), reverse=True):
            del self._at[reg.qubits[i].slot]
            del reg.qubits[i]
        if reg.qubits:
            rest = branches[pick][1]
            assert rest is not None
            reg.rho = rest
        return BELL_STATES[pick]

    def apply(self, slot: Slot, gate: np.ndarray, t_s: float) -> None:
        """A single-qubit unitary on the qubit in ``slot``."""
        reg = self._merged([slot], t_s)
        reg.rho = _gate(reg.rho, gate, [reg.index(slot)])

    def pauli(self, slot: Slot, op: str, t_s: float) -> None:
        if op not in _PAULI_ARRAYS:
            raise ValueError(f"Pauli {op!r} is not one of {', '.join(_PAULI_ARRAYS)}")
        if op != "I":
            self.apply(slot, _PAULI_ARRAYS[op], t_s)

    def cnot(self, control: Slot, target: Slot, t_s: float) -> None:
        reg = self._merged([control, target], t_s)
        reg.rho = _gate(reg.rho, _CNOT, [reg.index(control), reg.index(target)])

    def add_input(self, slot: Slot, ket: np.ndarray, kraus: np.ndarray, t_s: float) -> None:
        """A prepared qubit (``ket``'s 2 amplitudes through the write channel ``kraus``) in
        ``slot``."""
        v = np.asarray(ket, dtype=complex).ravel()
        self.add_register(_kraus(np.outer(v, v.conj()), kraus, 0), [slot], t_s)


class NetworkedMemory(QuantumMemory):
    """A quantum memory whose modes may hold qubits of network registers, with a power
    switch. Its own store/retrieve physics is :class:`QuantumMemory`'s; operations on
    register qubits go through :class:`Network` with this memory's read efficiency,
    read-out error and generator."""

    def __init__(
        self, params: MemoryParameters, rng: np.random.Generator, network: Network, name: str
    ) -> None:
        super().__init__(params, rng)
        self.network = network
        self.name = name
        self.powered = True
        self._write_lost: set[int] = set()  # localised modes whose unheralded write had failed
        network.attach(self)

    # -- the modes the network holds -----------------------------------------------------

    def _slot(self, mode: int) -> Slot:
        return (self.name, int(mode))

    def _held(self, mode: int) -> bool:
        return self.network.holds(self._slot(mode))

    def _status_of(self, mode: int, t_now: float) -> ModeStatus:
        if self._held(mode):
            born = self.network.born_s(self._slot(mode))
            return ModeStatus(mode, ModeState.STORED, born, t_now - born)
        return super()._status_of(mode, t_now)

    def busy(self, mode: int) -> bool:
        """The mode holds a network qubit or a station has reserved it for its attempts."""
        return self.network.busy(self._slot(mode))

    def holds(self, mode: int, t_now: float) -> bool:
        """A qubit (stored or of a network register) is in ``mode`` at ``t_now``."""
        self._check_mode(mode)
        self._advance(t_now)
        return self._modes[mode] is not None or self._held(mode)

    def free_mode(self, t_now: float) -> int | None:
        """The lowest mode neither stored nor held nor reserved, at ``t_now``; None if full."""
        self._advance(t_now)
        for i in range(self.n_modes):
            if self._modes[i] is None and not self.network.busy(self._slot(i)):
                return i
        return None

    def _free_mode(self) -> int:
        for i in range(self.n_modes):
            if self._modes[i] is None and not self.network.busy(self._slot(i)):
                return i
        raise QuantumMemoryError(f"all {self.n_modes} mode(s) are occupied")

    def _advance(self, t_now: float) -> None:
        # Callers' clocks read the same picosecond as seconds in two roundings (ps * 1e-12,
        # ps / 1e12): within a picosecond of the last time seen is that time.
        if self._now - 1e-12 < t_now < self._now:
            t_now = self._now
        super()._advance(t_now)
        self.network.settle(t_now)  # stations' pairs heralded by now are here
        cutoff = self._params.cutoff_s
        for slot in self.network.slots_of(self.name):
            if t_now - self.network.born_s(slot) > cutoff:
                self.network.discard(slot)
                self._expired.add(slot[1])

    def store(
        self,
        state: Qobj | np.ndarray,
        t_now: float,
        *,
        mode: int | None = None,
        qubit: int | None = None,
    ) -> StoreResult:
        if not self.powered:
            raise QuantumMemoryError(f"memory {self.name} is switched off")
        if mode is not None:
            self._check_mode(mode)
            self._advance(t_now)
            if self.network.busy(self._slot(mode)):
                raise QuantumMemoryError(f"mode {mode} is occupied by a network qubit")
        return super().store(state, t_now, mode=mode, qubit=qubit)

    def _read(self, mode: int, t_now: float) -> Matrix | None:
        """A register qubit read out through the output: it leaves the register; the
        retrieved state is that qubit's (reduced) state."""
        self._check_mode(mode)
        self._advance(t_now)
        if not self._held(mode):
            return super()._read(mode, t_now)
        slot = self._slot(mode)
        storage = t_now - self.network.born_s(slot)
        if not self._read_ok(storage):
            self.network.discard(slot)
            self._last = RetrievalRecord(mode, t_now, RetrievalOutcome.READ_FAILED, storage, None)
            return None
        rho = _kraus(self.network.state_array([slot], t_now), self._readout_kraus(), 0)
        self.network.discard(slot)
        self._last = RetrievalRecord(mode, t_now, RetrievalOutcome.OK, storage, None)
        return rho

    def clear(self, mode: int | None = None) -> None:
        if mode is None:
            for slot in self.network.slots_of(self.name):
                self.network.discard(slot)
            self._write_lost.clear()
        else:
            self._check_mode(mode)
            self.network.discard(self._slot(mode))
            self._write_lost.discard(mode)
        super().clear(mode)

    def reset(self) -> None:
        self.clear()
        super().reset()

    def fidelity(self, mode: int, t_now: float) -> float | None:
        """For a register qubit of a pair: the pair's fidelity with its nearest Bell state."""
        self._check_mode(mode)
        self._advance(t_now)
        if not self._held(mode):
            return super().fidelity(mode, t_now)
        pair = self._pair_array(mode, t_now)
        return None if pair is None else max(_bell_fidelity(pair, b) for b in BELL_STATES)

    def pair_state(self, mode: int, t_now: float) -> Qobj | None:
        """The two-qubit register (this mode's qubit first) if the mode holds half a pair."""
        from .memory import _qobj

        pair = self._pair_array(mode, t_now)
        return None if pair is None else _qobj(pair)

    def _pair_array(self, mode: int, t_now: float) -> Matrix | None:
        slot = self._slot(mode)
        if not self.network.holds(slot):
            return None
        reg = self.network._merged([slot], t_now)
        if len(reg.qubits) != 2:
            return None
        other = next(q.slot for q in reg.qubits if q.slot != slot)
        return self.network.state_array([slot, other], t_now)

    # -- power ---------------------------------------------------------------------------

    def set_power(self, on: bool, t_now: float) -> None:
        """Off: every mode (stored or network) is lost; writes fail until it is on again."""
        self._advance(t_now)
        if not on:
            self.clear()
            self.network.lose(self.name)
        self.powered = bool(on)

    # -- operations on register qubits ---------------------------------------------------

    def _read_ok(self, storage_time: float) -> bool:
        return bool(self._rng.random() < self.read_efficiency(storage_time))

    def _flip(self) -> int:
        return int(self._rng.random() < self._params.readout_error)

    def _write_kraus(self) -> np.ndarray:
        """What writing does to a pure qubit: fidelity ``initial_fidelity`` left."""
        return depolarizing_array(2.0 * (1.0 - self._params.initial_fidelity))

    def _readout_kraus(self) -> np.ndarray:
        return np.asarray(
            MemoryParameters(readout_error=self._params.readout_error).storage_kraus(0)
        )

    def _missing(self, mode: int, t_now: float) -> None:
        why = RetrievalOutcome.EXPIRED if mode in self._expired else RetrievalOutcome.EMPTY
        if mode in self._write_lost:
            why = RetrievalOutcome.WRITE_LOST
        self._expired.discard(mode)
        self._write_lost.discard(mode)
        self._last = RetrievalRecord(mode, t_now, why, None, None)

    def _take(self, mode: int, t_now: float) -> float | None:
        """The storage time of a held qubit about to be read out, after the read efficiency
        draw; None (and the record says why) when nothing will come back."""
        if not self._held(mode):
            self._missing(mode, t_now)
            return None
        slot = self._slot(mode)
        storage = t_now - self.network.born_s(slot)
        if not self._read_ok(storage):
            self.network.discard(slot)
            self._last = RetrievalRecord(mode, t_now, RetrievalOutcome.READ_FAILED, storage, None)
            return None
        self._last = RetrievalRecord(mode, t_now, RetrievalOutcome.OK, storage, None)
        return storage

    def measure(self, mode: int, basis: str, t_now: float) -> int | None:
        """Destructive read-out in Z/X/Y: 0 (H/D/R), 1 (V/A/L); None when nothing came back
        (``last_retrieval`` says why). A mode holding a locally stored qubit is measured
        the same way."""
        self._check_mode(mode)
        self._advance(t_now)
        self._localise(mode, t_now)
        if self._take(mode, t_now) is None:
            return None
        return self.network.measure(self._slot(mode), basis, t_now, self._rng) ^ self._flip()

    def bell_measure(self, mode1: int, mode2: int, t_now: float) -> BellState | None:
        """Bell-state measurement of two modes (swapping); both emptied; None on failure."""
        self._check_two(mode1, mode2)
        self._advance(t_now)
        self._localise(mode1, t_now)
        self._localise(mode2, t_now)
        ok1 = self._take(mode1, t_now) is not None
        ok2 = self._take(mode2, t_now) is not None
        if not (ok1 and ok2):
            for m in (mode1, mode2):
                self.network.discard(self._slot(m))
            return None
        outcome = self.network.bell_measure(self._slot(mode1), self._slot(mode2), t_now, self._rng)
        return self._noisy_bell(outcome)

    def _noisy_bell(self, outcome: BellState) -> BellState:
        parity, phase = BELL_BITS[outcome]
        return _BELL_OF_BITS[(parity ^ self._flip(), phase ^ self._flip())]

    def pauli(self, mode: int, op: str, t_now: float) -> None:
        self._require(mode, t_now)
        self.network.pauli(self._slot(mode), op, t_now)

    def twirl(self, mode: int, element: int, t_now: float) -> None:
        if not 0 <= element < len(TWIRL_UNITARIES):
            raise QuantumMemoryError(f"twirl element {element} is not in 0..11")
        self._require(mode, t_now)
        self.network.apply(self._slot(mode), TWIRL_UNITARIES[element], t_now)

    def purify(self, keep: int, sacrifice: int, t_now: float) -> int | None:
        """CNOT keep -> sacrifice, Z read-out of sacrifice (emptied); None on failure."""
        self._check_two(keep, sacrifice)
        self._advance(t_now)
        self._localise(keep, t_now)
        self._localise(sacrifice, t_now)
        if not self._held(keep):
            self.network.discard(self._slot(sacrifice))
            super().clear(sacrifice)
            self._missing(keep, t_now)
            return None
        if not self._held(sacrifice):
            self._missing(sacrifice, t_now)
            return None
        self.network.cnot(self._slot(keep), self._slot(sacrifice), t_now)
        if self._take(sacrifice, t_now) is None:
            return None
        return self.network.measure(self._slot(sacrifice), "Z", t_now, self._rng) ^ self._flip()

    def teleport(
        self, mode: int, input_state: str | Qobj | np.ndarray, t_now: float
    ) -> BellState | None:
        """Bell-state measurement of a freshly prepared input qubit (H/V/D/A/R/L or a ket,
        written with this memory's write channel) with the qubit in ``mode``; the mode is
        emptied."""
        self._check_mode(mode)
        self._advance(t_now)
        self._localise(mode, t_now)
        if self._take(mode, t_now) is None:
            return None
        slot = self._slot(mode)
        scratch: Slot = (self.name, -1)  # the input qubit, for the instant of the measurement
        if isinstance(input_state, str):
            ket = _INPUT_KET_ARRAYS[input_state]
        elif isinstance(input_state, np.ndarray):
            ket = input_state
        else:
            ket = np.asarray(input_state.full(), dtype=complex).ravel()
        self.network.add_input(scratch, ket, self._write_kraus(), t_now)
        outcome = self.network.bell_measure(scratch, slot, t_now, self._rng)
        return self._noisy_bell(outcome)

    def _check_two(self, mode1: int, mode2: int) -> None:
        self._check_mode(mode1)
        self._check_mode(mode2)
        if mode1 == mode2:
            raise QuantumMemoryError(f"two different modes needed, got {mode1} twice")

    def _require(self, mode: int, t_now: float) -> None:
        self._check_mode(mode)
        self._advance(t_now)
        self._localise(mode, t_now)
        if not self._held(mode):
            raise QuantumMemoryError(f"mode {mode} of {self.name} is empty")

    def _localise(self, mode: int, t_now: float) -> None:
        """A qubit stored through the input (``STORe``) joins the network as a register of
        its own (its twin, for BELL, is not in any memory and is traced out), so the
        operations treat both kinds alike. Its storage channel so far is applied at once."""
        held = self._modes[mode]
        if held is None or self._held(mode):
            return
        self._modes[mode] = None
        if not held.written:  # an unheralded failed write: nothing there
            self._write_lost.add(mode)
            return
        rho = _kraus(held.original, self._write_kraus(), held.qubit)
        if rho.shape[0] > 2:
            rho = _ptrace(rho, [held.qubit])
        self.network.add_register(rho, [self._slot(mode)], held.stored_at)


# -- the heralding station ----------------------------------------------------------------


class StationError(QuantumMemoryError):
    """A station cannot start: ``reason`` is "no_free_mode" or "memory_off"; ``memory``
    names the end memory at fault."""

    def __init__(self, reason: str, memory: str) -> None:
        what = "has no free mode" if reason == "no_free_mode" else "is switched off"
        super().__init__(f"end memory {memory} {what}")
        self.reason = reason
        self.memory = memory


@dataclass(frozen=True)
class Attempts:
    """A run of attempts, decided when it starts: they end at ``done_s``."""

    success: bool
    attempts: int
    bell: BellState | None
    mode_a: int | None
    mode_b: int | None
    true_herald: bool
    born_s: float  # emission of the successful attempt (after its cycle time)
    done_s: float  # herald delivered / last attempt over
    elapsed_s: float


class HeraldingStation(Component):
    """Barrett-Kok heralding between two networked memories (docs/protocols/qhil-hsc.md).

    An attempt: both memories emit a photon entangled with a fresh memory qubit into
    their fibre to the station; the station's two-photon Bell-state measurement heralds
    psi+ or psi- (1/2 each). Per attempt a true herald has probability
    ``1/2 eta_a eta_b`` (``eta = emission * fibre transmission * detection``), a false one
    (a photon lost in one of the two rounds, a dark count instead) ``2 p_dark (eta_a +
    eta_b)``. A true herald leaves ``(1+V)/2 |psi+-><psi+-| + (1-V)/2 |psi-+><psi-+|``
    (``V`` the two-photon visibility), a false one ``(|01><01| + |10><10|)/2``.
    An attempt takes the round trip of the longer arm plus the station's cycle time;
    the successful attempt's qubits are stored from its emission (after the cycle time: the
    reset comes first), so they have been stored one round trip when the ends learn of it.
    """

    kind = "heralding_station"

    def __init__(
        self,
        name: str,
        node: str,
        cfg: Any,
        now_s: Callable[[], float],
        rng: np.random.Generator,
        network: Network,
        memory_a: str,
        memory_b: str,
        memory_of: Callable[[str], NetworkedMemory],
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        self.rng = rng
        self.network = network
        self.memory_a = memory_a
        self.memory_b = memory_b
        self.memory = memory_of  # an end memory by component name (the world's, built lazily)
        self._states: dict[tuple[Any, ...], Matrix] = {}
        self._landed: dict[Attempts, Attempts] = {}  # runs landed, until complete() reads them

    # -- the figures the configuration implies ------------------------------------------

    def side_efficiency(self, side: str) -> float:
        cfg = self.cfg
        length = cfg.length_a_km if side == "a" else cfg.length_b_km
        emit = cfg.emission_efficiency_a if side == "a" else cfg.emission_efficiency_b
        fibre = db_to_transmission(cfg.alpha_db_per_km * length)
        return float(emit * fibre * cfg.detection_efficiency)

    @property
    def true_probability(self) -> float:
        return 0.5 * self.side_efficiency("a") * self.side_efficiency("b")

    @property
    def false_probability(self) -> float:
        eta = self.side_efficiency("a") + self.side_efficiency("b")
        return min(2.0 * self.cfg.dark_count_probability * eta, 1.0 - self.true_probability)

    @property
    def success_probability(self) -> float:
        """Heralds per attempt, true and false."""
        return self.true_probability + self.false_probability

    @property
    def herald_delay_s(self) -> float:
        """From emission to the herald at the ends: the round trip of the longer arm."""
        longest = max(self.cfg.length_a_km, self.cfg.length_b_km)
        return 2.0 * longest * self.cfg.group_delay_us_per_km * 1e-6

    @property
    def period_s(self) -> float:
        return self.herald_delay_s + self.cfg.cycle_time_s

    def pair_state(self, bell: BellState, true_herald: bool = True) -> Qobj:
        """The heralded two-memory state (qubit 0 in memory_a), eavesdropper included."""
        from .memory import _qobj

        return _qobj(self.pair_array(bell, true_herald))

    def pair_array(self, bell: BellState, true_herald: bool = True) -> Matrix:
        """:meth:`pair_state` as a numpy density matrix (no qutip)."""
        other: BellState = "psi-" if bell == "psi+" else "psi+"
        if true_herald:
            v = self.cfg.visibility
            rho = (1 + v) / 2 * _bell_projector(bell) + (1 - v) / 2 * _bell_projector(other)
        else:
            rho = (_bell_projector("psi+") + _bell_projector("psi-")) / 2
        eve = self.cfg.eavesdropper
        if eve.fraction > 0.0:
            f = eve.fraction
            kraus = np.stack(
                [
                    math.sqrt(1 - f / 2) * np.eye(2, dtype=complex),
                    math.sqrt(f / 4) * _PAULI_ARRAYS["Z"],
                    math.sqrt(f / 4) * _PAULI_ARRAYS["X"],
                ]
            ).astype(np.complex128)
            rho = apply_kraus_array(rho, kraus, 0 if eve.side == "a" else 1)
        return rho

    def expected_fidelity(self, bell: BellState = "psi+") -> float:
        """Bell fidelity of a heralded pair at generation (true and false heralds mixed)."""
        p_t, p_f = self.true_probability, self.false_probability
        if p_t + p_f <= 0.0:
            return math.nan
        f_t = _bell_fidelity(self.pair_array(bell, True), bell)
        f_f = _bell_fidelity(self.pair_array(bell, False), bell)
        return (p_t * f_t + p_f * f_f) / (p_t + p_f)

    # -- running attempts ----------------------------------------------------------------

    def begin(self, max_attempts: int, t_now: float, start_s: float | None = None) -> Attempts:
        """Reserve each end memory's lowest free mode (at ``t_now``) and decide the attempts
        (one geometric draw), run from ``start_s`` (default ``t_now``; a station commanded
        together with another may start before the present, docs/protocols/qhil-hsc.md).
        The pair lands in the memories when time reaches ``done_s``, whoever looks first.
        Raises StationError when an end is off or full."""
        ends = (self.memory(self.memory_a), self.memory(self.memory_b))
        for mem in ends:
            if not mem.powered:
                raise StationError("memory_off", mem.name)
        modes = [mem.free_mode(t_now) for mem in ends]
        for mem, mode in zip(ends, modes, strict=True):
            if mode is None:
                raise StationError("no_free_mode", mem.name)
        start = t_now if start_s is None else min(start_s, t_now)
        p = self.success_probability
        k = int(self.rng.geometric(p)) if p > 0.0 else max_attempts + 1
        period = self.period_s
        if k > max_attempts:
            elapsed = max_attempts * period
            return Attempts(
                False, max_attempts, None, None, None, False, start, start + elapsed, elapsed
            )
        true_herald = bool(self.rng.random() * p < self.true_probability)
        bell: BellState = "psi+" if self.rng.random() < 0.5 else "psi-"
        mode_a, mode_b = modes
        assert mode_a is not None and mode_b is not None
        self.network.reserve((self.memory_a, mode_a))
        self.network.reserve((self.memory_b, mode_b))
        born = start + (k - 1) * period + self.cfg.cycle_time_s
        elapsed = k * period
        run = Attempts(True, k, bell, mode_a, mode_b, true_herald, born, start + elapsed, elapsed)
        self.network.schedule(
            run.done_s, (self.memory_a, self.memory_b), lambda ok: self._land(run, ok)
        )
        return run

    def _land(self, run: Attempts, ok: bool) -> None:
        """The herald arrives: the pair goes into the reserved modes, stored since its
        emission (``born_s``), if both ends stayed on."""
        assert run.mode_a is not None and run.mode_b is not None and run.bell is not None
        slots = [(self.memory_a, run.mode_a), (self.memory_b, run.mode_b)]
        for slot in slots:
            self.network.release(slot)
        if not (ok and all(self.memory(s[0]).powered for s in slots)):
            self._landed[run] = replace(run, success=False, bell=None, mode_a=None, mode_b=None)
            return
        eve = self.cfg.eavesdropper
        key = (run.bell, run.true_herald, self.cfg.visibility, eve.side, eve.fraction)
        if key not in self._states:  # the configuration's state, built once
            self._states[key] = self.pair_array(run.bell, run.true_herald)
        self.network.add_register(self._states[key], slots, run.born_s)
        self._landed[run] = run

    def complete(self, run: Attempts, t_now: float) -> Attempts:
        """At ``t_now >= run.done_s``: the run as it ended (a success whose end was switched
        off meanwhile reads as a failure); the pair is in the memories."""
        if not run.success:
            return run
        for name in (self.memory_a, self.memory_b):
            self.memory(name)._advance(t_now)  # lands every run due by now
        return self._landed.pop(run, run)


__all__ = [
    "BASIS_KETS",
    "BELL_BITS",
    "INPUT_KETS",
    "TWIRL_UNITARIES",
    "Attempts",
    "HeraldingStation",
    "Network",
    "NetworkedMemory",
    "Slot",
    "StationError",
]
