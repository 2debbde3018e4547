"""qhil QMC-1 quantum-memory controller (qhil's own SCPI command set, TCP port 5031, ``\\n``).

Protocol: docs/protocols/qhil-qmc.md. Modes are numbered 0 .. N-1. A query with a
bad mode gets no reply (standard SCPI), so the driver reads N at connect and
refuses out-of-range modes before sending anything. ``RETRieve?`` may wait for a
programmed read-out (``READout:DELay``): its timeout is the usual one plus that delay.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import Bool, Enum, Int, Keyword, Numbers, ScpiReal, Str
from qhil.errors import InstrumentTimeoutError, ProtocolError, ValidationError
from qhil.transport.framing import Framing

#: Largest mode count the command set allows (modes 0..63).
MAX_MODES = 64
#: Longest programmed storage time.
MAX_READOUT_DELAY_S = 1000.0
_MODE = {"mode": Int(0, MAX_MODES - 1)}
_REAL = ScpiReal(fmt="{:.10g}")
_SECONDS = ScpiReal(fmt="{:.10g}", units="s")

#: Most store/retrieve cycles one ``CYCLe?`` runs.
MAX_CYCLES = 1_000_000
INPUTS = ("BELL", "H", "V", "D", "A", "R", "L")
#: Bases of the output's polarization analyser: Z (ports H, V), X (D, A), Y (R, L).
ANALYZER_BASES = ("Z", "X", "Y")
OUTCOMES = {
    "OK": "OK",
    "EMPTY": "EMPTy",
    "EXPIRED": "EXPired",
    "LOST": "LOST",
    "FAILED": "FAIL",
    "NONE": "NONE",
}


#: Bell states a Bell-state measurement reports, Python name -> wire keyword.
BELL_STATES = {"phi+": "PHI+", "phi-": "PHI-", "psi+": "PSI+", "psi-": "PSI-"}
#: Pauli operators of a Pauli-frame correction.
PAULIS = ("I", "X", "Y", "Z")
#: Elements of the twirling subgroup (docs/protocols/qhil-qmc.md: 0 .. 11).
TWIRL_ELEMENTS = 12
_BIT = Enum({0: "0", 1: "1", None: "NONE"})
_BELL = Enum({**BELL_STATES, None: "NONE"})


class CycleCounts(NamedTuple):
    """What ``CYCLe?`` counted: cycles run, writes heralded (all of them on an
    unheralded memory), and the retrieved photons detected at the analyser's port 0
    (H, D or R) and port 1 (V, A or L)."""

    cycles: int
    stored: int
    port0: int
    port1: int

    @property
    def retrieved(self) -> int:
        return self.port0 + self.port1


class QMC(ScpiInstrument):
    """qhil QMC-1 quantum-memory controller (role: QuantumMemory)."""

    framing: ClassVar[Framing] = Framing("\n", "\n")
    model: ClassVar[str] = "QMC-1"
    timeout_s: ClassVar[float] = 2.0

    mode_count = Measurement("QMEMory:MODE:COUNt?", value=Int(1, MAX_MODES), doc="Modes N.")
    input_state = Control(
        get="QMEMory:INPut?",
        set="QMEMory:INPut {value}",
        value=Keyword({**{s: s for s in INPUTS}, "BLOCH": "BLOCh"}),
        doc="What STORe writes: BELL (half of |Phi+>, twin kept), a prepared H/V/D/A/R/L, "
        "or BLOCH (the state at the INPut:BLOCh angles).",
    )
    input_bloch = Control(
        get="QMEMory:INPut:BLOCh?",
        set="QMEMory:INPut:BLOCh {value}",
        value=Numbers(count=2, item=ScpiReal(fmt="{:.10g}")),
        doc="Bloch angles (theta, phi) in rad of the prepared input; setting selects it.",
    )
    store_mode = Action(
        "QMEMory:STORe {mode}", args=_MODE, doc="Write the input qubit into a mode, now."
    )
    store_herald = Measurement(
        "QMEMory:STORe:HERald?",
        value=Bool(),
        doc="Whether the last write succeeded, as far as the herald tells.",
    )
    retrieve_mode = Measurement(
        "QMEMory:RETRieve? {mode}",
        args=_MODE,
        value=Bool(),
        doc="Read a mode out (now, or at its programmed time); True if a qubit came back.",
    )
    last_outcome = Measurement(
        "QMEMory:RETRieve:OUTCome?",
        value=Keyword(OUTCOMES),
        doc="Outcome of the last retrieval: OK, EMPTY, EXPIRED, LOST, FAILED or NONE.",
    )
    last_fidelity = Measurement(
        "QMEMory:RETRieve:FIDelity?",
        value=_REAL,
        doc="Fidelity of the last retrieved qubit (pair for BELL) with what was stored; NaN.",
    )
    last_storage_time_s = Measurement(
        "QMEMory:RETRieve:STIMe?", value=_SECONDS, doc="Storage time of the last retrieval."
    )
    readout_delay_s = Control(
        get="QMEMory:READout:DELay?",
        set="QMEMory:READout:DELay {value}",
        value=ScpiReal(0.0, MAX_READOUT_DELAY_S, fmt="{:.10g}", units="s"),
        doc="Programmed storage time: read-out this long after the write; 0 = on demand.",
    )
    mode_state = Measurement(
        "QMEMory:MODE:STATe? {mode}",
        args=_MODE,
        value=Keyword({"EMPTY": "EMPTy", "STORED": "STORed"}),
        doc="EMPTY or STORED.",
    )
    mode_storage_time_s = Measurement(
        "QMEMory:MODE:STIMe? {mode}",
        args=_MODE,
        value=_SECONDS,
        doc="How long the mode has held its qubit; NaN if empty.",
    )
    mode_fidelity = Measurement(
        "QMEMory:MODE:FIDelity? {mode}",
        args=_MODE,
        value=_REAL,
        doc="Fidelity a retrieval now would have; NaN if empty.",
    )
    status = Measurement(
        "QMEMory:STATus?", value=Str(), doc="Every mode's state, mode 0 first: STOR,EMPT,..."
    )
    clear_all = Action("QMEMory:CLEar", doc="Empty every mode.")
    clear_mode = Action("QMEMory:CLEar {mode}", args=_MODE, doc="Empty one mode.")
    efficiency_total = Measurement(
        "QMEMory:EFFiciency?", value=_REAL, doc="Write x read efficiency at zero storage time."
    )
    efficiency_write = Measurement(
        "QMEMory:EFFiciency:WRITe?", value=_REAL, doc="Write efficiency."
    )
    efficiency_read = Measurement(
        "QMEMory:EFFiciency:READ?", value=_REAL, doc="Read efficiency at zero storage time."
    )
    efficiency_decay_s = Measurement(
        "QMEMory:EFFiciency:DECay?", value=_SECONDS, doc="Decay time of the read efficiency."
    )
    t1_s = Measurement("QMEMory:COHerence:T1?", value=_SECONDS, doc="Amplitude-damping time.")
    t2_s = Measurement("QMEMory:COHerence:T2?", value=_SECONDS, doc="Coherence time.")
    initial_fidelity = Measurement(
        "QMEMory:FIDelity:INITial?", value=_REAL, doc="Fidelity of a freshly written qubit."
    )
    readout_error = Measurement(
        "QMEMory:READout:ERRor?", value=_REAL, doc="Bit-flip probability at read-out."
    )
    cutoff_s = Control(
        get="QMEMory:CUTOff?",
        set="QMEMory:CUTOff {value}",
        value=ScpiReal(1e-12, 1e6, fmt="{:.10g}", units="s", infinite=True),
        doc="Storage cutoff: a mode older than this is emptied; math.inf for none.",
    )

    analyzer_basis = Control(
        get="QMEMory:ANALyzer?",
        set="QMEMory:ANALyzer {value}",
        value=Keyword({b: b for b in ANALYZER_BASES}),
        doc="Basis of the polarization analyser after the memory's output: Z, X or Y.",
    )
    cycle_counts = Measurement(
        "QMEMory:CYCLe? {mode},{count}",
        args={"mode": Int(0, MAX_MODES - 1), "count": Int(1, MAX_CYCLES)},
        value=Numbers(count=3, integer=True),
        doc="Run count store/read-out cycles on a mode through the analyser: stored,port0,port1.",
    )

    # --- operations on stored qubits (repeater nodes, docs/protocols/qhil-qmc.md) ---

    measure_outcome = Measurement(
        "QMEMory:MEASure? {mode},{basis}",
        args={"mode": Int(0, MAX_MODES - 1), "basis": Keyword({b: b for b in ANALYZER_BASES})},
        value=_BIT,
        doc="Destructive read-out of a mode in Z/X/Y: 0 (H/D/R), 1 (V/A/L) or NONE.",
    )
    bell_outcome = Measurement(
        "QMEMory:BELL? {mode1},{mode2}",
        args={"mode1": Int(0, MAX_MODES - 1), "mode2": Int(0, MAX_MODES - 1)},
        value=_BELL,
        doc="Bell-state measurement of two modes (swapping): PHI+/PHI-/PSI+/PSI- or NONE.",
    )
    pauli_apply = Action(
        "QMEMory:PAULi {mode},{op}",
        args={"mode": Int(0, MAX_MODES - 1), "op": Keyword({p: p for p in PAULIS})},
        doc="Apply I/X/Y/Z to a stored qubit (Pauli-frame correction).",
    )
    purify_outcome = Measurement(
        "QMEMory:PURify? {keep},{sacrifice}",
        args={"keep": Int(0, MAX_MODES - 1), "sacrifice": Int(0, MAX_MODES - 1)},
        value=_BIT,
        doc="This node's half of a BBPSSW round: CNOT keep->sacrifice, Z read-out of sacrifice.",
    )
    twirl_apply = Action(
        "QMEMory:TWIRl {mode},{element}",
        args={"mode": Int(0, MAX_MODES - 1), "element": Int(0, TWIRL_ELEMENTS - 1)},
        doc="Apply element 0..11 of the twirling subgroup to a stored qubit.",
    )
    teleport_outcome = Measurement(
        "QMEMory:TELeport? {mode}",
        args=_MODE,
        value=_BELL,
        doc="Bell-state measurement of the prepared input qubit with a mode's qubit.",
    )
    power = Control(
        get="QMEMory:POWer?",
        set="QMEMory:POWer {value}",
        value=Bool(),
        doc="Memory powered; off loses every mode and makes writes fail.",
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._modes: int | None = None  # known after connect
        self._readout_delay = 0.0

    async def on_connect(self) -> None:
        self._modes = await self.mode_count.get()
        self._readout_delay = await self.readout_delay_s.get()

    def _check_mode(self, mode: int, command: str) -> None:
        if self._modes is not None and not (
            isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode < self._modes
        ):
            raise ValidationError(command, mode, f"a mode 0..{self._modes - 1}")

    async def set_readout_delay_s(self, seconds: float) -> None:
        await self.readout_delay_s.set(seconds)
        self._readout_delay = seconds

    async def cycle(self, mode: int, count: int) -> CycleCounts:
        """``count`` cycles: store the input into ``mode``, read it out after the read-out
        delay (at once if 0), analyse it in the analyser's basis; the clicks per port.

        The controller's sequencer runs them back to back, so the reply may take
        ``count`` times the read-out delay: the timeout allows for that.
        """
        self._check_mode(mode, "QMEMory:CYCLe?")
        decl = self.cycle_counts.decl
        assert decl.get_template is not None
        command = decl.get_template.render(mode=mode, count=count)
        try:
            reply = await self.session.query(
                command, timeout_s=self.session.timeout_s + count * self._readout_delay
            )
        except InstrumentTimeoutError:
            # A query in error answers nothing (e.g. +101, the mode holds a qubit): say so.
            await self.check_errors(command)
            raise
        parsed = decl.reply_template.parse(reply)
        if parsed is None or len(parsed["value"]) != 3:
            raise ProtocolError(self.resource, command, reply, "stored,port0,port1")
        stored, port0, port1 = (int(v) for v in parsed["value"])
        return CycleCounts(count, stored, port0, port1)

    async def set_input(self, state: str) -> None:
        await self.input_state.set(state)

    async def set_input_bloch(self, theta_rad: float, phi_rad: float) -> None:
        """Prepare the input cos(theta/2)|H> + exp(i phi) sin(theta/2)|V> and select it
        (``input_state`` then reads BLOCH); theta in [0, pi], phi in [0, 2 pi]."""
        for name, value, top in (("theta", theta_rad, math.pi), ("phi", phi_rad, 2 * math.pi)):
            if not (isinstance(value, int | float) and 0.0 <= value <= top):
                raise ValidationError("QMEMory:INPut:BLOCh", value, f"{name} in [0, {top:.6g}] rad")
        await self.input_bloch.set([float(theta_rad), float(phi_rad)])

    async def get_input(self) -> str:
        return str(await self.input_state.get())

    async def set_analyzer(self, basis: str) -> None:
        await self.analyzer_basis.set(basis)

    async def get_readout_delay_s(self) -> float:
        self._readout_delay = await self.readout_delay_s.get()
        return self._readout_delay

    async def set_cutoff_s(self, seconds: float) -> None:
        await self.cutoff_s.set(seconds)

    async def get_cutoff_s(self) -> float:
        return await self.cutoff_s.get()

    async def nominal_times_s(self) -> tuple[float, float, float]:
        """The medium's data-sheet times (efficiency decay, T1, T2) as the controller states
        them; ``math.inf`` for none."""
        return await self.efficiency_decay_s.get(), await self.t1_s.get(), await self.t2_s.get()

    async def measure(self, mode: int, basis: str) -> int | None:
        """Destructive read-out of ``mode`` in ``basis`` (Z/X/Y): 0 = H/D/R, 1 = V/A/L; None
        when no photon came back (``last_outcome`` tells why). The mode is empty after."""
        self._check_mode(mode, "QMEMory:MEASure?")
        value: int | None = await self.measure_outcome.get(mode=mode, basis=basis)
        return value

    async def bell_measure(self, mode1: int, mode2: int) -> str | None:
        """Bell-state measurement of two modes: "phi+", "phi-", "psi+", "psi-" or None on
        failure. Both modes are empty afterwards."""
        self._check_modes(mode1, mode2, "QMEMory:BELL?")
        value: str | None = await self.bell_outcome.get(mode1=mode1, mode2=mode2)
        return value

    async def pauli(self, mode: int, op: str) -> None:
        """Apply the Pauli ``op`` (I/X/Y/Z) to the qubit stored in ``mode``."""
        self._check_mode(mode, "QMEMory:PAULi")
        await self.pauli_apply(mode=mode, op=op)

    async def purify(self, keep: int, sacrifice: int) -> int | None:
        """This node's half of a BBPSSW round: CNOT ``keep`` -> ``sacrifice``, measure
        ``sacrifice`` in Z; the bit, or None on read failure. ``sacrifice`` is emptied."""
        self._check_modes(keep, sacrifice, "QMEMory:PURify?")
        value: int | None = await self.purify_outcome.get(keep=keep, sacrifice=sacrifice)
        return value

    async def twirl(self, mode: int, element: int) -> None:
        """Apply twirling element ``element`` (0..11) to the qubit in ``mode``; both nodes of
        a pair apply the same element."""
        self._check_mode(mode, "QMEMory:TWIRl")
        await self.twirl_apply(mode=mode, element=element)

    async def teleport(self, mode: int) -> str | None:
        """Bell-state measurement of the prepared input qubit (``input_state``) with the
        qubit in ``mode``; the outcome, or None on failure. The mode is emptied."""
        self._check_mode(mode, "QMEMory:TELeport?")
        value: str | None = await self.teleport_outcome.get(mode=mode)
        return value

    def _check_modes(self, mode1: int, mode2: int, command: str) -> None:
        self._check_mode(mode1, command)
        self._check_mode(mode2, command)
        if mode1 == mode2:
            raise ValidationError(command, mode2, "a mode other than the first")

    # --- QuantumMemory role ---

    async def store(self, mode: int) -> None:
        self._check_mode(mode, "QMEMory:STORe")
        await self.store_mode(mode=mode)

    async def retrieve(self, mode: int) -> bool:
        self._check_mode(mode, "QMEMory:RETRieve?")
        t = self.retrieve_mode.decl.get_template
        assert t is not None
        command = t.render(mode=mode)
        # A programmed read-out may be up to the read-out delay away.
        reply = await self.session.query(
            command, timeout_s=self.session.timeout_s + self._readout_delay
        )
        parsed = self.retrieve_mode.decl.reply_template.parse(reply)
        if parsed is None:
            raise ProtocolError(self.resource, command, reply, "1 or 0")
        return bool(parsed["value"])

    async def storage_time_s(self, mode: int) -> float:
        self._check_mode(mode, "QMEMory:MODE:STIMe?")
        return await self.mode_storage_time_s.get(mode=mode)

    async def efficiency(self) -> float:
        return await self.efficiency_total.get()

    async def coherence_times_s(self) -> tuple[float, float]:
        return await self.t1_s.get(), await self.t2_s.get()

    async def modes(self) -> int:
        self._modes = await self.mode_count.get()
        return self._modes


__all__ = [
    "ANALYZER_BASES",
    "BELL_STATES",
    "INPUTS",
    "MAX_CYCLES",
    "MAX_MODES",
    "OUTCOMES",
    "PAULIS",
    "QMC",
    "TWIRL_ELEMENTS",
    "CycleCounts",
]
