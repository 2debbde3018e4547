"""Single Quantum Eos SNSPD controller ("Atlas driver", WebSQ TCP protocol).

Protocol: docs/protocols/singlequantum-eos.md. Two TCP ports on the controller:

* control (12000): the client sends bare JSON objects (``json.dumps`` text, no
  terminator); the server answers with JSON objects each ended by ``\\x17``. Settings
  are commands (``{"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value":
  [...]}``) that the server acknowledges by broadcasting the label's new value;
  values are read from the ``labelProps`` dump (one message per label). Errors come
  as messages whose label contains ``Error``.
* counts (12345): the server pushes one line ``t,c1,...,cN\\n`` per measurement
  period (``t`` a time stamp in ms).

The counts port is the control host at port 12345 unless ``counts_resource`` says
otherwise (an emulated bench serves it wherever its host put it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from qhil.drivers.declarations import Action, Control
from qhil.drivers.instrument import Instrument
from qhil.drivers.values import Bool, Float, Numbers
from qhil.errors import (
    InstrumentConnectionError,
    InstrumentError,
    ProtocolError,
    ValidationError,
)
from qhil.transport.framing import Framing
from qhil.transport.rawio import RawIO
from qhil.transport.session import Reader, Session

ETB = "\x17"
CONTROL_PORT = 12000
COUNTS_PORT = 12345
#: Measurement period limits in ms (vendor note: minimum 10 ms; maximum our choice).
PERIOD_MS = (10.0, 60_000.0)
#: Bias current range in uA (vendor doc of the IV scan: -90.9 < I < 90.9).
BIAS_UA = (-90.9, 90.9)
TRIGGER_MV = (-2000.0, 2000.0)
_SOCKET = re.compile(r"^(TCPIP\d*)::([^:]+)::(\d+)::SOCKET$", re.IGNORECASE)


def counts_resource_for(control_resource: str, port: int = COUNTS_PORT) -> str:
    """``TCPIP0::host::12000::SOCKET`` -> ``TCPIP0::host::12345::SOCKET``."""
    m = _SOCKET.match(control_resource)
    if not m:
        raise ValidationError(
            "counts_resource", control_resource, "a TCPIP::host::port::SOCKET control resource"
        )
    return f"{m.group(1)}::{m.group(2)}::{port}::SOCKET"


def _floats(lo: float, hi: float) -> Numbers:
    # repr() of a float is what json.dumps writes (12.0, not 12).
    return Numbers(sep=", ", item=Float(lo, hi, fmt="{!r}"))


@dataclass(frozen=True)
class CountRecord:
    """One line of the count stream: time stamp (ms) and counts per detector."""

    timestamp_ms: float
    counts: list[int]


def parse_count_line(line: str) -> CountRecord:
    values = [float(v) for v in line.strip().split(",")]
    if len(values) < 2:
        raise ValueError(f"{line!r} is not 't,c1,...'")
    return CountRecord(values[0], [int(v) for v in values[1:]])


class Eos(Instrument):
    """Single Quantum Eos SNSPD system (role: Detector, bias in uA)."""

    framing: ClassVar[Framing] = Framing("", ETB, encoding="utf-8")
    counts_framing: ClassVar[Framing] = Framing("", "\n", encoding="ascii")
    model: ClassVar[str] = "Eos"
    timeout_s: ClassVar[float] = 2.0

    label_props = Action(
        '{{"request": "labelProps", "value": "None"}}',
        doc="Ask for every label (one message each: {'label': L, 'value': {'value': v, ...}}).",
    )
    measurement_period_ms = Control(
        set='{{"command": "SetMeasurementPeriod", "label": "InptMeasurementPeriod", '
        '"value": {value}}}',
        value=Float(*PERIOD_MS, fmt="{:g}", units="ms"),
        doc="Integration time of each count-stream record.",
    )
    bias_currents_ua = Control(
        set='{{"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [{value}]}}',
        value=_floats(*BIAS_UA),
        doc="Bias current of every detector, uA.",
    )
    trigger_levels_mv = Control(
        set='{{"command": "SetAllTriggerLevels", "label": "TriggerLevel", "value": [{value}]}}',
        value=_floats(*TRIGGER_MV),
        doc="Counter trigger level of every detector, mV.",
    )
    detectors_enabled = Control(
        set='{{"command": "DetectorEnable", "label": "DetectorEnable", "value": {value}}}',
        value=Bool(true="true", false="false"),
        doc="Bias the detectors (True) or switch their bias off.",
    )
    request_bias_voltage = Action(
        '{{"request": "BiasVoltage"}}', doc="Ask for the measured bias voltages (mV)."
    )
    dark_count_targets = Control(
        set='{{"command": "DarkCountsAutoIV", "label": "DarkCountsAutoIV", "value": [{value}]}}',
        value=_floats(0.0, 1e7),
        doc="Dark-count rates (per second) the automatic bias search aims for.",
    )
    start_auto_calibration = Action(
        '{{"command": "AutoCaliBiasCurrents", "value": true}}',
        doc="Search each detector's bias current for its dark-count target (no light!).",
    )
    request_auto_iv_state = Action(
        '{{"request": "StartAutoIV"}}', doc="Ask whether the automatic bias search is running."
    )

    def __init__(self, session: Session, *, name: str | None = None) -> None:
        super().__init__(session, name=name)
        self.counts_session: Session | None = None
        self.labels: dict[str, Any] = {}
        self.n_detectors = 0
        self.period_ms = 0.0

    @classmethod
    def open(
        cls,
        resource: str,
        *,
        counts_resource: str | None = None,
        counts_io: RawIO | None = None,
        **kw: Any,
    ) -> Self:
        """A driver on the control port; the count stream at ``counts_resource``.

        ``kw`` are :meth:`Instrument.open`'s options; both sessions share them.
        """
        drv = super().open(resource, **kw)
        if counts_resource is None and counts_io is None:
            try:
                counts_resource = counts_resource_for(resource)
            except ValidationError:
                if kw.get("io") is None:
                    raise
                return drv  # an injected control transport alone: no count stream
        session_kw = {k: v for k, v in kw.items() if k not in ("name", "io", "exchange_log")}
        session_kw["timeout_s"] = session_kw.get("timeout_s") or cls.timeout_s
        drv.counts_session = Session(
            counts_resource or f"{resource}#counts",
            cls.counts_framing,
            io=counts_io,
            **session_kw,
        )
        return drv

    # --- the control channel: JSON out, ETB-terminated JSON messages back ---

    def _read_until(
        self, r: Reader, done: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        """Messages up to the one that completes ``done`` (or an error message).

        A pure function of the received bytes: the protocol has no end-of-reply
        marker, so replies are recognised by their labels, never by silence.
        """
        out: list[dict[str, Any]] = []
        while True:
            msgs = self._decode(r.line())
            out.extend(msgs)
            if any(_is_error(m) for m in msgs) or done(out):
                return out

    def _decode(self, text: str) -> list[dict[str, Any]]:
        # Messages may also be concatenated without ETB ("}{"): decode them one by one.
        dec = json.JSONDecoder()
        out: list[dict[str, Any]] = []
        i = 0
        text = text.strip()
        while i < len(text):
            try:
                obj, end = dec.raw_decode(text, i)
            except json.JSONDecodeError:
                raise ProtocolError(self.resource, None, text, "JSON objects") from None
            if isinstance(obj, dict):
                out.append(obj)
            i = end
            while i < len(text) and text[i].isspace():
                i += 1
        return out

    def _absorb(self, messages: list[dict[str, Any]], command: str | None) -> None:
        """Update the label cache (as the vendor client does); raise reported errors."""
        errors = []
        for m in messages:
            label = str(m.get("label", ""))
            if not label:
                continue
            if "Error" in label:
                errors.append(m)
                continue
            value = m.get("value")
            self.labels[label] = (
                value["value"] if isinstance(value, dict) and "value" in value else value
            )
        if errors:
            first = errors[0]
            text = " / ".join(str(e.get("value")) for e in errors)
            raise InstrumentError(self.resource, str(first.get("label")), text, command)

    async def _exchange(self, command: str, done: Callable[[list[dict[str, Any]]], bool]) -> None:
        def read(r: Reader) -> list[dict[str, Any]]:
            return self._read_until(r, done)

        messages = await self.session.transaction(command, read)
        assert messages is not None
        self._absorb(messages, command)

    async def command(self, command: str, *, check_errors: bool = True) -> None:
        """Send a setting; the server confirms by broadcasting the label's new value.

        The broadcast carries the bare value (``{"label": L, "value": v}``), which tells
        it from an entry of an earlier ``labelProps`` dump (``{"value": {"value": v}}``).
        """
        try:
            sent = json.loads(command)
        except json.JSONDecodeError:
            sent = {}
        label = sent.get("label")
        if label is None:  # nothing is broadcast for a bare command: send it alone
            await self.session.write(command)
            return
        await self._exchange(command, lambda ms: any(_is_update(m, label) for m in ms))

    async def request_label(self, label: str) -> Any:
        """A label's current value, from a fresh ``labelProps`` dump."""
        await self._exchange(
            _render(self, "label_props"), lambda ms: any(_is_entry(m, label) for m in ms)
        )
        if label not in self.labels:
            raise ProtocolError(self.resource, "labelProps", "", f"a message with label {label!r}")
        return self.labels[label]

    async def ask(self, command: str) -> str:
        raise NotImplementedError("the Eos has no line queries; use request_label()")

    async def identity(self) -> str:
        n = await self.request_label("NumberOfDetectors")
        return f"Single Quantum,Eos,{n} detectors,WebSQ"

    async def on_connect(self) -> None:
        await self._exchange(
            _render(self, "label_props"),
            lambda ms: all(any(_is_entry(m, k) for m in ms) for k in _CONNECT_LABELS),
        )
        self.n_detectors = int(self.labels["NumberOfDetectors"])
        self.period_ms = float(self.labels["InptMeasurementPeriod"])
        if self.counts_session is None:
            raise InstrumentConnectionError(self.resource, "no count-stream resource to open")
        await self.counts_session.open()

    async def close(self) -> None:
        if self.counts_session is not None:
            await self.counts_session.close()
            self.counts_session.shutdown()
        await super().close()

    # --- settings with per-detector lists ---

    def _per_detector(self, what: str, values: list[float]) -> list[float]:
        if len(values) != self.n_detectors:
            raise ValidationError(what, values, f"{self.n_detectors} values, one per detector")
        return [float(v) for v in values]

    async def set_bias_currents(self, ua: list[float]) -> None:
        await self.bias_currents_ua.set(self._per_detector("SetAllBiasCurrents", ua))

    async def bias_currents(self) -> list[float]:
        return [float(v) for v in await self.request_label("BiasCurrent")]

    async def set_trigger_levels(self, mv: list[float]) -> None:
        await self.trigger_levels_mv.set(self._per_detector("SetAllTriggerLevels", mv))

    async def trigger_levels(self) -> list[float]:
        return [float(v) for v in await self.request_label("TriggerLevel")]

    async def set_enabled(self, enabled: bool) -> None:
        await self.detectors_enabled.set(enabled)

    async def enabled(self) -> bool:
        return bool(await self.request_label("DetectorEnable"))

    async def set_measurement_period(self, ms: float) -> None:
        await self.measurement_period_ms.set(ms)
        self.period_ms = float(ms)

    async def bias_voltages(self) -> list[float]:
        await self._exchange(
            _render(self, "request_bias_voltage"),
            lambda ms: any(_is_entry(m, "BiasVoltage") for m in ms),
        )
        return [float(v) for v in self.labels["BiasVoltage"]]

    async def auto_calibration_running(self) -> bool:
        await self._exchange(
            _render(self, "request_auto_iv_state"),
            lambda ms: any(_is_entry(m, "StartAutoIV") for m in ms),
        )
        return bool(self.labels["StartAutoIV"])

    # --- Detector role ---

    async def set_bias(self, value: float) -> None:
        """Bias current (uA) of every detector."""
        await self.set_bias_currents([value] * self.n_detectors)

    async def bias(self) -> float:
        """Bias current (uA) of detector 1 (set_bias sets all detectors alike)."""
        return (await self.bias_currents())[0]

    async def records(self, n: int) -> list[CountRecord]:
        """The next ``n`` complete records of the stream.

        The stream is pushed whether or not anyone reads, so the count port is
        reconnected first: no record from before the call can be returned. The first
        record after that is dropped too (its period may have begun earlier).
        """
        if self.counts_session is None:
            raise RuntimeError("not opened through Eos.open()")
        period_s = max(self.period_ms, PERIOD_MS[0]) / 1000
        await self.counts_session.close()
        await self.counts_session.open()

        def read(r: Reader) -> list[str]:
            return [r.line() for _ in range(n + 1)][1:]

        lines = await self.counts_session.transaction(
            None, read, timeout_s=(n + 2) * period_s + self.timeout_s
        )
        assert lines is not None
        try:
            return [parse_count_line(line) for line in lines]
        except ValueError:
            raise ProtocolError(
                self.counts_session.resource, None, lines[0], "'t,c1,...'"
            ) from None

    async def counts(self, integration_s: float) -> list[int]:
        """Counts per detector over one measurement period of ``integration_s``."""
        ms = integration_s * 1000.0
        _render(self, "measurement_period_ms", value=ms)  # validate before sending
        if not math.isclose(ms, self.period_ms, rel_tol=1e-9):
            await self.set_measurement_period(ms)
        (record,) = await self.records(1)
        return record.counts


#: Labels the driver needs from the dump at connect.
_CONNECT_LABELS = (
    "NumberOfDetectors",
    "InptMeasurementPeriod",
    "BiasCurrent",
    "TriggerLevel",
    "DetectorEnable",
)


def _is_error(m: dict[str, Any]) -> bool:
    return "Error" in str(m.get("label", ""))


def _is_entry(m: dict[str, Any], label: str) -> bool:
    """A labelProps-style entry (or request reply): the value is a dict."""
    return m.get("label") == label and isinstance(m.get("value"), dict)


def _is_update(m: dict[str, Any], label: str) -> bool:
    """A broadcast after a change: the bare value."""
    return m.get("label") == label and not isinstance(m.get("value"), dict)


def _render(drv: Instrument, name: str, **values: Any) -> str:
    decl = getattr(type(drv), name)
    if isinstance(decl, Action):
        return decl.template.render(**values)
    assert decl.set_template is not None
    return str(decl.set_template.render(**values))
