"""A multimode quantum memory on the world's simulated clock.

Each mode holds one qubit. The qubit may be part of a larger register (half of
an entangled pair): the memory keeps the whole register and lets noise act on
the stored qubit only, so retrieving it returns the register as it now is.

Physics, per stored qubit, from write to retrieval after a storage time t:

1. writing succeeds with probability ``write_efficiency``; it leaves the qubit
   depolarized so that a pure single-qubit state keeps fidelity
   ``initial_fidelity`` (depolarizing p = 2 (1 - F0));
2. T1 amplitude damping and T2 dephasing act for t (see :mod:`.channels`);
3. a mode stored longer than ``cutoff_s`` is emptied (the stored excitation is
   discarded, as a controller with a storage cutoff does);
4. reading succeeds with probability
   ``read_efficiency * exp(-(t / efficiency_decay_time_s) ** efficiency_decay_shape)``;
5. the retrieved qubit suffers a bit flip with probability ``readout_error``.

Randomness comes only from the injected ``np.random.Generator``, one uniform
draw per store and per retrieval, so a run with the same seed is reproducible.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from qhil.errors import QhilError

from .channels import (
    KrausArray,
    KrausMap,
    apply_kraus,
    apply_kraus_array,
    bit_flip_array,
    check_t1_t2,
    compose_arrays,
    depolarizing_array,
    kraus_superoperator,
    t1t2_array,
    to_qobjs,
)
from .density import array_qubits, density_array, fidelity_arrays, state_fidelity

if TYPE_CHECKING:
    from ._qutip import Qobj


class QuantumMemoryError(QhilError, ValueError):
    """A memory operation that cannot be done: bad mode, busy mode, full memory, time reversed."""


@dataclass(frozen=True)
class MemoryParameters:
    """What characterises a quantum memory. Times in seconds; ``math.inf`` means "never"."""

    n_modes: int = 1
    write_efficiency: float = 1.0
    read_efficiency: float = 1.0
    efficiency_decay_time_s: float = math.inf
    # 1: exponential decay; 2: Gaussian, typical of inhomogeneously broadened ensembles.
    efficiency_decay_shape: float = 1.0
    t1_s: float = math.inf
    t2_s: float = math.inf
    initial_fidelity: float = 1.0
    cutoff_s: float = math.inf
    readout_error: float = 0.0
    # True: a failed write is known at once (heralded) and leaves the mode empty.
    # False: the failure shows only as a failed retrieval.
    heralded_write: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.n_modes, bool) or not isinstance(self.n_modes, int) or self.n_modes < 1:
            raise ValueError(f"n_modes must be an integer >= 1, got {self.n_modes!r}")
        for name in ("write_efficiency", "read_efficiency", "readout_error"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not (0.5 <= self.initial_fidelity <= 1.0):
            raise ValueError(
                f"initial_fidelity must be in [0.5, 1] (0.5 is a fully mixed qubit), "
                f"got {self.initial_fidelity!r}"
            )
        for name in ("efficiency_decay_time_s", "cutoff_s"):
            value = getattr(self, name)
            if not value > 0.0:
                raise ValueError(f"{name} must be > 0 s (math.inf for none), got {value!r}")
        if not (self.efficiency_decay_shape > 0.0 and math.isfinite(self.efficiency_decay_shape)):
            raise ValueError(
                f"efficiency_decay_shape must be a finite number > 0, "
                f"got {self.efficiency_decay_shape!r}"
            )
        check_t1_t2(self.t1_s, self.t2_s)

    def read_efficiency_after(self, storage_time: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Read efficiency after ``storage_time`` seconds (vectorised)."""
        t = np.asarray(storage_time, dtype=float)
        decay = np.exp(-((t / self.efficiency_decay_time_s) ** self.efficiency_decay_shape))
        return np.asarray(self.read_efficiency * decay, dtype=float)

    def retrieval_probability(self, storage_time: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Probability that a qubit offered for storage comes back after ``storage_time``.

        Write efficiency times read efficiency, zero beyond the cutoff. Vectorised, for
        samplers that handle many storage attempts per window.
        """
        t = np.asarray(storage_time, dtype=float)
        within = t <= self.cutoff_s
        return np.where(within, self.write_efficiency * self.read_efficiency_after(t), 0.0)

    def storage_kraus(self, storage_time: float) -> KrausArray:
        """Kraus array (k, 2, 2) from the qubit offered for storage to the qubit read out."""
        write = depolarizing_array(2.0 * (1.0 - self.initial_fidelity))
        decay = t1t2_array(storage_time, self.t1_s, self.t2_s)
        readout = bit_flip_array(self.readout_error)
        return compose_arrays(compose_arrays(write, decay), readout)

    def storage_channel(self, storage_time: float) -> KrausMap:
        """The storage channel for ``storage_time`` seconds as qutip Kraus operators."""
        return to_qobjs(self.storage_kraus(storage_time))

    def storage_superoperator(self, storage_time: float) -> Qobj:
        """The storage channel as a qutip superoperator."""
        return kraus_superoperator(self.storage_kraus(storage_time))

    def average_fidelity(self, storage_time: float) -> float:
        """Fidelity of a retrieved qubit with the stored one, averaged over the Bloch sphere.

        Exact: averaged over the six Pauli eigenstates, a spherical 2-design.
        """
        from .density import PAULI_EIGENKETS

        kraus = self.storage_kraus(storage_time)
        return float(np.mean([state_fidelity(k, apply_kraus(k, kraus)) for k in PAULI_EIGENKETS]))


class ModeState(enum.Enum):
    EMPTY = "EMPTY"
    STORED = "STORED"


@dataclass(frozen=True)
class ModeStatus:
    """One mode as the controller sees it (an unheralded failed write looks STORED)."""

    mode: int
    state: ModeState
    stored_at_s: float | None
    storage_time_s: float | None


class StoreResult(NamedTuple):
    """``success`` False only for a heralded failed write; ``mode`` is the mode now holding it."""

    success: bool
    mode: int | None


class Retrieval(NamedTuple):
    """A retrieval attempt: the retrieved register (density matrix) on success, else None."""

    success: bool
    state: Qobj | None


class RetrievalOutcome(enum.Enum):
    OK = "ok"
    EMPTY = "empty"  # nothing was stored
    EXPIRED = "expired"  # stored longer than the cutoff
    WRITE_LOST = "write_lost"  # an unheralded write had failed
    READ_FAILED = "read_failed"  # the read-efficiency draw failed


@dataclass(frozen=True)
class RetrievalRecord:
    """What the world knows about the last retrieval (for readbacks and tests)."""

    mode: int
    time_s: float
    outcome: RetrievalOutcome
    storage_time_s: float | None
    fidelity: float | None  # retrieved vs stored, on success


@dataclass
class _Stored:
    original: np.ndarray  # the register given to store, as a numpy density matrix
    qubit: int
    stored_at: float
    written: bool


def _qobj(rho: np.ndarray) -> Qobj:
    """A numpy density matrix of qubits as a qutip object (imports qutip)."""
    from ._qutip import Qobj

    n = array_qubits(rho)
    return Qobj(rho, dims=[[2] * n, [2] * n])


class QuantumMemory:
    """Stateful multimode memory driven by simulated time ``t_now`` (seconds)."""

    def __init__(self, params: MemoryParameters, rng: np.random.Generator) -> None:
        if not isinstance(params, MemoryParameters):
            raise TypeError(f"params must be MemoryParameters, got {type(params).__name__}")
        self._params = params
        self._rng = rng
        self._modes: list[_Stored | None] = [None] * params.n_modes
        self._now = -math.inf
        self._last: RetrievalRecord | None = None
        self._expired: set[int] = set()  # modes emptied by the cutoff since last touched

    # -- configuration and readbacks ------------------------------------------------

    @property
    def params(self) -> MemoryParameters:
        return self._params

    def reconfigure(self, **changes: Any) -> MemoryParameters:
        """Change parameters (validated); stored qubits stay, and age with the new ones."""
        known = {f.name for f in fields(MemoryParameters)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown memory parameter(s): {', '.join(unknown)}")
        new = replace(self._params, **changes)
        if new.n_modes < self._params.n_modes:
            busy = [i for i in range(new.n_modes, self._params.n_modes) if self._modes[i]]
            if busy:
                raise QuantumMemoryError(
                    f"cannot reduce n_modes to {new.n_modes}: mode(s) {busy} hold qubits"
                )
        self._modes = (self._modes + [None] * new.n_modes)[: new.n_modes]
        self._expired = {i for i in self._expired if i < new.n_modes}
        self._params = new
        return new

    @property
    def n_modes(self) -> int:
        return self._params.n_modes

    @property
    def write_efficiency(self) -> float:
        return self._params.write_efficiency

    def read_efficiency(self, storage_time: float = 0.0) -> float:
        """Read efficiency after ``storage_time`` seconds."""
        return float(self._params.read_efficiency_after(storage_time))

    @property
    def t1_s(self) -> float:
        return self._params.t1_s

    @property
    def t2_s(self) -> float:
        return self._params.t2_s

    @property
    def cutoff_s(self) -> float:
        return self._params.cutoff_s

    @property
    def last_retrieval(self) -> RetrievalRecord | None:
        return self._last

    # -- operations ----------------------------------------------------------------------

    def store(
        self,
        state: Qobj | np.ndarray,
        t_now: float,
        *,
        mode: int | None = None,
        qubit: int | None = None,
    ) -> StoreResult:
        """Write a qubit into ``mode`` (default: the lowest empty mode) at ``t_now``.

        ``state`` is a single-qubit state, or a register of which qubit ``qubit`` is
        the one written into the memory: a qutip Qobj, or numpy amplitudes or a density
        matrix (kept as numpy: storing, reading out and the fidelity need no qutip).
        """
        rho = density_array(state)
        n = array_qubits(rho)
        if qubit is None:
            if n != 1:
                raise ValueError(
                    f"state has {n} qubits: pass qubit= to say which one goes into the memory"
                )
            qubit = 0
        if not (0 <= qubit < n):
            raise ValueError(f"qubit {qubit} is not in the state's register of {n} qubit(s)")
        self._advance(t_now)
        if mode is None:
            mode = self._free_mode()
        else:
            self._check_mode(mode)
            held = self._modes[mode]
            if held is not None:
                raise QuantumMemoryError(
                    f"mode {mode} is occupied (stored at t={held.stored_at:g} s); "
                    "retrieve or clear it first"
                )
        written = bool(self._rng.random() < self._params.write_efficiency)
        if not written and self._params.heralded_write:
            return StoreResult(False, None)
        self._modes[mode] = _Stored(rho, qubit, float(t_now), written)
        self._expired.discard(mode)
        return StoreResult(True, mode)

    def retrieve(self, mode: int, t_now: float) -> Retrieval:
        """Read ``mode`` out at ``t_now``; the mode is empty afterwards whatever happens."""
        out = self._read(mode, t_now)
        return Retrieval(False, None) if out is None else Retrieval(True, _qobj(out))

    def read_out(self, mode: int, t_now: float) -> bool:
        """:meth:`retrieve` without making the retrieved state a qutip object: whether a
        qubit came back (``last_retrieval`` has the rest). What a controller answers."""
        return self._read(mode, t_now) is not None

    def _read(self, mode: int, t_now: float) -> np.ndarray | None:
        """The retrieval: the retrieved register (numpy), None if nothing came back."""
        self._check_mode(mode)
        self._advance(t_now)
        held = self._modes[mode]
        if held is None:
            why = RetrievalOutcome.EXPIRED if mode in self._expired else RetrievalOutcome.EMPTY
            self._expired.discard(mode)
            self._last = RetrievalRecord(mode, t_now, why, None, None)
            return None
        self._modes[mode] = None
        storage_time = t_now - held.stored_at
        read = bool(self._rng.random() < self.read_efficiency(storage_time))
        if not held.written:
            outcome = RetrievalOutcome.WRITE_LOST
        elif not read:
            outcome = RetrievalOutcome.READ_FAILED
        else:
            out = self._retrieved_state(held, storage_time)
            fid = fidelity_arrays(held.original, out)
            self._last = RetrievalRecord(mode, t_now, RetrievalOutcome.OK, storage_time, fid)
            return out
        self._last = RetrievalRecord(mode, t_now, outcome, storage_time, None)
        return None

    def clear(self, mode: int | None = None) -> None:
        """Empty one mode, or all of them."""
        if mode is None:
            self._modes = [None] * self.n_modes
            self._expired.clear()
        else:
            self._check_mode(mode)
            self._modes[mode] = None
            self._expired.discard(mode)

    def reset(self) -> None:
        """Power-on state: all modes empty, no retrieval record, clock forgotten."""
        self.clear()
        self._last = None
        self._now = -math.inf

    # -- queries -----------------------------------------------------------------------

    def status(self, t_now: float) -> tuple[ModeStatus, ...]:
        """Every mode's status at ``t_now`` (modes past the cutoff are emptied first)."""
        self._advance(t_now)
        return tuple(self._status_of(i, t_now) for i in range(self.n_modes))

    def mode_status(self, mode: int, t_now: float) -> ModeStatus:
        self._check_mode(mode)
        self._advance(t_now)
        return self._status_of(mode, t_now)

    def storage_time(self, mode: int, t_now: float) -> float | None:
        """How long ``mode`` has held its qubit at ``t_now``, None if empty."""
        return self.mode_status(mode, t_now).storage_time_s

    def fidelity(self, mode: int, t_now: float) -> float | None:
        """Fidelity with the stored register of what a successful retrieval at ``t_now``
        would return; None if the mode is empty."""
        self._check_mode(mode)
        self._advance(t_now)
        held = self._modes[mode]
        if held is None:
            return None
        out = self._retrieved_state(held, t_now - held.stored_at)
        return fidelity_arrays(held.original, out)

    # -- internals -----------------------------------------------------------------------

    def _retrieved_state(self, held: _Stored, storage_time: float) -> np.ndarray:
        kraus = self._params.storage_kraus(storage_time)
        return apply_kraus_array(held.original, kraus, held.qubit)

    def _status_of(self, mode: int, t_now: float) -> ModeStatus:
        held = self._modes[mode]
        if held is None:
            return ModeStatus(mode, ModeState.EMPTY, None, None)
        return ModeStatus(mode, ModeState.STORED, held.stored_at, t_now - held.stored_at)

    def _check_mode(self, mode: int) -> None:
        if isinstance(mode, bool) or not isinstance(mode, int | np.integer):
            raise QuantumMemoryError(f"mode must be an integer, got {mode!r}")
        if not (0 <= mode < self.n_modes):
            raise QuantumMemoryError(
                f"mode {mode} does not exist: this memory has modes 0..{self.n_modes - 1}"
            )

    def _free_mode(self) -> int:
        for i, held in enumerate(self._modes):
            if held is None:
                return i
        raise QuantumMemoryError(f"all {self.n_modes} mode(s) are occupied")

    def _advance(self, t_now: float) -> None:
        if not math.isfinite(t_now):
            raise QuantumMemoryError(f"t_now must be a finite time in seconds, got {t_now!r}")
        if t_now < self._now:
            raise QuantumMemoryError(
                f"t_now={t_now!r} s is earlier than the last time this memory saw ({self._now!r} s)"
            )
        self._now = float(t_now)
        cutoff_s = self._params.cutoff_s
        for i, held in enumerate(self._modes):
            if held is not None and t_now - held.stored_at > cutoff_s:
                self._modes[i] = None
                self._expired.add(i)
