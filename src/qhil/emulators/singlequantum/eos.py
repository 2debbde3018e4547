"""Emulated Single Quantum Eos SNSPD controller (protocol: docs/protocols/singlequantum-eos.md).

Two endpoints, as on the real controller: the control port (this emulator: bare
JSON objects in, ``\\x17``-terminated JSON messages out) and the count stream
(:attr:`EosEmulator.counts`, a second servable: one ``t,c1,...,cN`` line per
measurement period). Serve both: ``host.add(emu)`` and ``host.add(emu.counts)``.

Physics: bias currents (uA), trigger levels (mV) and the enable switch are written
to the world's detectors (``detectors`` option, one world detector per channel);
every count-stream line is one measurement period of those detectors' clicks.

Time of the count stream. Record k covers the world's period
``[t0 + k P, t0 + (k + 1) P)`` (``t0``: the world's present when the stream started,
``P``: the measurement period), time-stamped with its end; its counts are a function
of emulated time only. The stream is a push protocol and its clients take one
``recv`` for one record (the vendor's ``qcodes_contrib_drivers`` client parses only
the first line of each), so records are written one at a time, at most one per
``_PACE_S`` of wall time; the wall clock decides only when a record is delivered,
never what it contains. Who moves the world's time:

* realtime mode: the wall clock; a record is written when its period has passed.
* fast mode, detectors wired to a time tagger (the default bench): the stream is a
  follower. A record is produced once the world has generated its whole period
  because some instrument's acquisition (a tagger's, a counter's) advanced the world;
  its clicks are the ones the world generated for that acquisition (a passive reader:
  nothing is drawn twice, nothing is drawn ahead, time never moves for the stream).
  A client waiting for records while nothing acquires waits (the qhil driver's
  ``records`` times out, naming the count port).
* fast mode, detectors wired to no tagger: the stream is the bench's only
  acquisition, so it drives the world: every ``P`` of wall time it advances the world
  by one period and writes that period's record. How many periods pass between two
  commands then depends on the wall clock (a push stream's reading is invisible to
  the instrument), but each record is still the world's period ``k``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import datetime as _dt
import json
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from qhil.drivers.singlequantum.eos import (
    BIAS_UA,
    COUNTS_PORT,
    ETB,
    TRIGGER_MV,
    Eos,
)
from qhil.drivers.values import ValueTypeError
from qhil.emulators.base import Emulator, on
from qhil.emulators.framer import DEFAULT_INPUT_BUFFER, Overrun
from qhil.emulators.server import ByteWriter

#: A stream client more than this far behind gets no more records until it catches up.
_MAX_BACKLOG_BYTES = 1 << 20
#: Shortest wall-clock gap between two records (one record per client ``recv``).
_PACE_S = 0.01
#: Records a follower keeps for delivery; beyond it the oldest are dropped.
_MAX_PENDING_RECORDS = 10_000
#: Time stamps are ms since the Unix epoch: power-on is at this instant (reproducible).
DEFAULT_EPOCH_MS = 1_700_000_000_000
#: Series resistance seen below the switching current (mV per uA), from a real IV sweep.
_SERIES_MV_PER_UA = 0.00033


_WHITESPACE = b" \t\r\n\x17"
_IN_STRING = re.compile(rb'["\\]')
_IN_OBJECT = re.compile(rb'[{}"]')


class JsonObjectFramer:
    """Splits a stream of back-to-back JSON objects (no delimiter) into objects.

    The scan resumes where it stopped (a long object costs one pass), and an object that
    grows past ``max_bytes`` unfinished yields one :class:`Overrun`: its bytes are then
    dropped as they come, still scanned so that framing resumes after the object ends.
    """

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int = DEFAULT_INPUT_BUFFER) -> None:
        self.reader = reader
        self.buf = bytearray()
        self.max_bytes = max_bytes
        self._pos = 0
        self._depth = 0
        self._in_str = False
        self._esc = False
        self._discarding = False

    def _end_of_first(self) -> int | None:
        """End of the first message in ``buf`` (scan resumed at ``_pos``), or None."""
        buf, i, n = self.buf, self._pos, len(self.buf)
        while i < n:
            if self._esc:  # the character after a backslash, in a string
                self._esc = False
                i += 1
            elif self._in_str:
                m = _IN_STRING.search(buf, i)
                if m is None:
                    i = n
                elif buf[m.start()] == 0x5C:  # backslash
                    self._esc, i = True, m.start() + 1
                else:
                    self._in_str, i = False, m.start() + 1
            elif self._depth > 0:
                m = _IN_OBJECT.search(buf, i)
                if m is None:
                    i = n
                    break
                c, i = buf[m.start()], m.start() + 1
                if c == 0x22:
                    self._in_str = True
                elif c == 0x7B:
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 0:
                        return self._found(i)
            elif buf[i] in _WHITESPACE:
                i += 1
            elif buf[i] == 0x7B:
                self._depth, i = 1, i + 1
            elif buf[i] == 0x7D:  # a stray closing brace at depth 0: a message of its own
                return self._found(i + 1)
            else:
                # Not JSON: hand over everything up to the next object as one message.
                j = buf.find(b"{", i)
                return self._found(j if j > 0 else n)
        self._pos = n
        return None

    def _found(self, end: int) -> int:
        self._pos, self._depth, self._in_str, self._esc = 0, 0, False, False
        return end

    async def next(self) -> bytes | Overrun | None:
        while True:
            end = self._end_of_first()
            if end is not None:
                msg = bytes(self.buf[:end]).strip(_WHITESPACE)
                del self.buf[:end]
                if self._discarding:  # the rest of an overrun object
                    self._discarding = False
                    continue
                # It came whole, in one read, but did not fit either (separators before
                # it are not part of it).
                if len(msg) > self.max_bytes:
                    return Overrun("line", len(msg))
                if msg:
                    return msg
                continue
            if self._discarding or len(self.buf) > self.max_bytes:
                size = len(self.buf)
                self.buf.clear()
                self._pos = 0
                if not self._discarding:
                    self._discarding = True
                    return Overrun("line", size)
            chunk = await self.reader.read(1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def _num(x: float) -> float | int:
    """Whole numbers as JSON integers (a period of 20 ms reads back as 20)."""
    return int(x) if float(x).is_integer() else x


def message(label: str, value: Any) -> bytes:
    return (json.dumps({"label": label, "value": value}) + ETB).encode("utf-8")


class EosCountStream:
    """The count-stream endpoint of an :class:`EosEmulator` (port 12345 on the real one)."""

    transport = "tcp"
    default_port = COUNTS_PORT

    def __init__(self, emulator: EosEmulator) -> None:
        self.emulator = emulator

    @property
    def name(self) -> str:
        return f"{self.emulator.name}.counts"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": "Eos count stream", "transport": "tcp"}

    async def serve(self, reader: asyncio.StreamReader, writer: ByteWriter) -> None:
        emu = self.emulator
        emu.stream_writers.add(writer)
        emu.ensure_producer()
        try:
            while await reader.read(1 << 12):  # clients never write; wait for them to leave
                pass
        finally:
            emu.stream_writers.discard(writer)
            emu.stop_producer_if_idle()


class EosEmulator(Emulator):
    driver = Eos
    transport = "tcp"
    default_port = 12000
    # Clients send no terminator (the framer splits JSON objects); a stray ETB is skipped.
    input_terminators = ETB.encode()
    # Dump order (the real order is not documented): the labels a client needs most
    # come last, so a client that reads until it has them has read the whole dump.
    labels_exposed: ClassVar[tuple[str, ...]] = (
        "BiasVoltage",
        "StartAutoIV",
        "BiasCurrentAutoIV",
        "DarkCountsAutoIV",
        "IVScanEnable",
        "IVScanStart",
        "IVScanEnd",
        "IVScanIncrement",
        "iv_scan_history",
        "ic_scan_history",
        "temperature_long_memory",
        "InptMeasurementPeriod",
        "BiasCurrent",
        "TriggerLevel",
        "DetectorEnable",
        "NumberOfDetectors",
    )
    _units: ClassVar[dict[str, str]] = {
        "InptMeasurementPeriod": "ms",
        "BiasCurrent": "uA",
        "TriggerLevel": "mV",
        "BiasVoltage": "mV",
        "BiasCurrentAutoIV": "uA",
    }

    def __init__(
        self,
        *,
        detectors: Sequence[str] | None = None,
        n_detectors: int = 4,
        trigger_level_mv: float = 25.0,
        epoch_ms: int = DEFAULT_EPOCH_MS,
        **kw: Any,
    ) -> None:
        component = str(kw.get("component", ""))
        if detectors is None and component:
            detectors = [c.strip() for c in component.split(",") if c.strip()]
        self.detectors = list(detectors or [])
        self.n = len(self.detectors) or n_detectors
        self.power_on_trigger_mv = trigger_level_mv
        self.epoch_ms = epoch_ms
        self.stream_writers: set[ByteWriter] = set()
        self._control_writers: set[ByteWriter] = set()
        self._current: contextvars.ContextVar[ByteWriter | None] = contextvars.ContextVar(
            "eos_writer", default=None
        )
        self._producer: asyncio.Task[None] | None = None
        self._stream_reader: Any = None
        self._cursor_s = 0.0
        self._pending: collections.deque[str] = collections.deque(maxlen=_MAX_PENDING_RECORDS)
        self.counts = EosCountStream(self)
        super().__init__(**kw)

    def extra_endpoints(self) -> dict[str, Any]:
        """The count stream (port 12345 on the real controller) is a second endpoint."""
        return {"counts": self.counts}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["identity"] = f"Single Quantum,Eos,{self.n} detectors,emulated"
        return d

    def power_on_state(self) -> None:
        self.period_ms = 100.0
        self.bias_ua = [0.0] * self.n
        self.trigger_mv = [self.power_on_trigger_mv] * self.n
        self.enabled = False
        self.dark_targets = [100.0] * self.n
        self.auto_running = False
        self.auto_result: list[float] = [0.0] * self.n
        self.iv_scan = {"enable": False, "start": 0.0, "end": 30.0, "increment": 0.5}
        self.iv_history: list[dict[str, float]] = []
        self.ic_history: list[dict[str, float]] = []
        self._push_to_world()

    # --- world ---

    def _world_detectors(self) -> list[Any]:
        if self.world is None:
            return []
        return [self.world.detector(d) for d in self.detectors]

    def _push_to_world(self) -> None:
        if self.world is None:
            return
        for det, ua, mv in zip(self._world_detectors(), self.bias_ua, self.trigger_mv, strict=True):
            det.enabled = self.enabled
            det.bias = ua
            det.threshold_v = mv / 1000.0

    def _bias_voltages_mv(self) -> list[float]:
        out = []
        dets = self._world_detectors() or [None] * self.n
        for det, ua in zip(dets, self.bias_ua, strict=True):
            isw = getattr(det, "switching_current_ua", None)
            if self.enabled and isw is not None and abs(ua) >= isw:
                out.append(round(2.55 + 0.1 * (abs(ua) - isw), 3))  # latched (normal) state
            else:
                out.append(round(_SERIES_MV_PER_UA * ua if self.enabled else 0.0, 4))
        return out

    async def _period_counts(self, reader: Any, seconds: float) -> list[int]:
        """Counts of each detector over the next ``seconds`` of world time."""
        assert self.world is not None
        now = float(self.world.clock.now_s)
        if now - self._cursor_s > seconds:  # the world moved on without us: start from now
            reader.seek_now()
            self._cursor_s = now
        block = await reader.read_async(seconds)
        self._cursor_s += seconds
        return [int(c) for c in block.counts]

    # --- count stream ---

    def ensure_producer(self) -> None:
        if self._producer is None or self._producer.done():
            self._producer = asyncio.get_running_loop().create_task(self._produce())

    def stop_producer_if_idle(self) -> None:
        if not self.stream_writers and self._producer is not None:
            self._producer.cancel()
            self._producer = None
            self._close_stream_reader()

    def _close_stream_reader(self) -> None:
        if self._stream_reader is not None:
            self._stream_reader.close()
            self._stream_reader = None
        self._pending.clear()

    def follows_world(self) -> bool:
        """Fast mode with the detectors wired to a tagger: records follow the world's time."""
        if self.world is None or not self.detectors or self.world.clock.mode != "fast":
            return False
        return any(d.tagger is not None for d in self._world_detectors())

    async def _produce(self) -> None:
        while self.stream_writers:
            if self.follows_world():
                line = await self._next_followed_record()
            else:
                line = await self.next_record()
            self._write_record(line.encode("ascii"))
            await asyncio.sleep(_PACE_S if self.follows_world() else 0)

    def _write_record(self, line: bytes) -> None:
        for w in list(self.stream_writers):
            transport = getattr(w, "transport", None)
            if transport is not None and transport.get_write_buffer_size() > _MAX_BACKLOG_BYTES:
                continue
            try:
                w.write(line)
            except (ConnectionError, OSError, RuntimeError):
                self.stream_writers.discard(w)

    def _record(self, end_s: float, counts: list[int]) -> str:
        return ",".join([str(self.epoch_ms + round(end_s * 1000.0)), *map(str, counts)]) + "\n"

    def followed_records(self) -> list[str]:
        """Records of every period the world has generated since the last call (fast
        mode, follower; see the module doc). Opens the stream's reader on first use."""
        assert self.world is not None
        if self._stream_reader is None:
            self._stream_reader = self.world.counter(self.detectors, passive=True)
        out = []
        while (block := self._stream_reader.read_ready(self.period_ms / 1000.0)) is not None:
            out.append(self._record(self._stream_reader.cursor_s, [int(c) for c in block.counts]))
        return out

    async def _next_followed_record(self) -> str:
        # Polled: the wall clock decides when a record leaves, not what it holds.
        while not self._pending:
            self._pending.extend(self.followed_records())
            if not self._pending:
                await asyncio.sleep(_PACE_S)
        return self._pending.popleft()

    async def next_record(self) -> str:
        """Integrate one measurement period and format its stream line (the stream drives
        the world: realtime mode, or fast mode with no tagger on its detectors)."""
        seconds = self.period_ms / 1000.0
        if self.world is None or not self.detectors:
            await asyncio.sleep(seconds)
            counts = [0] * self.n
            now_s = 0.0
        else:
            if self._stream_reader is None:
                self._stream_reader = self.world.counter(self.detectors)
                self._stream_reader.seek_now()
                self._cursor_s = float(self.world.clock.now_s)
            if self.world.clock.mode == "fast":
                # Pace the push stream (clients read one record per recv); see module doc.
                await asyncio.sleep(seconds)
            counts = await self._period_counts(self._stream_reader, seconds)
            now_s = self._cursor_s
        return self._record(now_s, counts)

    # --- control channel ---

    def framer(self, reader: asyncio.StreamReader) -> JsonObjectFramer:  # type: ignore[override]
        return JsonObjectFramer(reader, self.input_buffer_bytes)

    async def serve(self, reader: asyncio.StreamReader, writer: ByteWriter) -> None:
        self._control_writers.add(writer)
        self._current.set(writer)
        try:
            await super().serve(reader, writer)
        finally:
            self._control_writers.discard(writer)

    def error_reply(self, message_: bytes, code: int | str, text: str) -> bytes:
        return message(str(code) if "Error" in str(code) else "Error", text)

    def _broadcast(self, data: bytes) -> bytes:
        """Send a label update to the other control clients too; return it for this one."""
        me = self._current.get()
        for w in list(self._control_writers):
            if w is not me:
                try:
                    w.write(data)
                except (ConnectionError, OSError, RuntimeError):
                    self._control_writers.discard(w)
        return data

    def _label_value(self, label: str) -> Any:
        values: dict[str, Any] = {
            "NumberOfDetectors": self.n,
            "InptMeasurementPeriod": _num(self.period_ms),
            "BiasCurrent": list(self.bias_ua),
            "TriggerLevel": list(self.trigger_mv),
            "BiasVoltage": self._bias_voltages_mv(),
            "DetectorEnable": self.enabled,
            "DarkCountsAutoIV": list(self.dark_targets),
            "StartAutoIV": self.auto_running,
            "BiasCurrentAutoIV": list(self.auto_result),
            "IVScanEnable": self.iv_scan["enable"],
            "IVScanStart": self.iv_scan["start"],
            "IVScanEnd": self.iv_scan["end"],
            "IVScanIncrement": self.iv_scan["increment"],
            "iv_scan_history": list(self.iv_history),
            "ic_scan_history": list(self.ic_history),
        }
        return values[label]

    def _props(self, label: str) -> dict[str, Any]:
        if label == "temperature_long_memory":
            return self._temperatures()
        props: dict[str, Any] = {"value": self._label_value(label)}
        if label in self._units:
            props["unit"] = self._units[label]
        return props

    def _temperatures(self) -> dict[str, Any]:
        # The cryostat is not modelled: steady stage temperatures over the last 200 samples.
        n = 200
        t0 = self.epoch_ms / 1000.0
        stamps = [
            _dt.datetime.fromtimestamp(t0 + i, _dt.UTC).strftime("%d-%b-%y %H:%M:%S.%f")
            for i in range(n)
        ]
        return {
            "T": [2.5] * n,
            "T2": [40.0] * n,
            "x": stamps,
            "V_avrg": [0.0] * n,
            "BoardTemp1": [30.0] * n,
            "BoardTemp2": [30.0] * n,
        }

    async def respond(self, message_: bytes) -> bytes:
        try:
            obj = json.loads(message_.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return message("Error", f"not a JSON object: {message_[:80]!r}")
        found = self.find_route(json.dumps(obj))
        if found is None:
            return await self._unrouted(obj)
        route, raw = found
        parsed = {}
        for k, v in raw.items():
            vt = route.decl.value if k == "value" else route.decl.args[k]  # type: ignore[attr-defined]
            try:
                parsed[k] = vt.validate(vt.parse(v))
            except (ValueTypeError, ValueError):
                return message("Error", f"{obj.get('command')}: value {v!r} not allowed")
        result = route.handler(self, **parsed)
        if asyncio.iscoroutine(result):
            result = await result
        return bytes(result or b"")

    async def _unrouted(self, obj: dict[str, Any]) -> bytes:
        """Messages that vary between clients or that qhil's driver does not send."""
        request, command, label = obj.get("request"), obj.get("command"), obj.get("label")
        if request == "IVHistory":
            return message("iv_scan_history", self._props("iv_scan_history")) + message(
                "ic_scan_history", self._props("ic_scan_history")
            )
        if request == "TemperatureHistory":
            return message("temperature_long_memory", self._temperatures())
        if isinstance(request, str) and request in self.labels_exposed:
            return message(request, self._props(request))
        if command == "DarkCountsAutoIV" and "value" in obj:  # the vendor client sends no label
            return self._set_dark_targets(obj["value"])
        if command == "IVScanEnable":
            return await self._iv_scan(bool(obj.get("value")))
        if command is None and label in ("IVScanStart", "IVScanEnd", "IVScanIncrement"):
            try:
                self.iv_scan[label[6:].lower()] = float(obj["value"])
            except (KeyError, TypeError, ValueError):
                return message("Error", f"{label}: bad value {obj.get('value')!r}")
            return self._broadcast(message(label, self._label_value(label)))
        return message("Error", f"unknown message {json.dumps(obj)[:120]}")

    # --- handlers ---

    @on("label_props")
    def _label_props(self) -> bytes:
        return b"".join(message(label, self._props(label)) for label in self.labels_exposed)

    def _list(self, what: str, values: list[float], lo: float, hi: float) -> list[float] | None:
        if len(values) != self.n or not all(lo <= v <= hi for v in values):
            return None
        return [float(v) for v in values]

    @on("measurement_period_ms.set")
    def _period(self, value: float) -> bytes:
        self.period_ms = float(value)
        return self._broadcast(message("InptMeasurementPeriod", _num(self.period_ms)))

    @on("bias_currents_ua.set")
    def _bias(self, value: list[float]) -> bytes:
        values = self._list("BiasCurrent", value, *BIAS_UA)
        if values is None:
            return message("Error", f"SetAllBiasCurrents needs {self.n} values in {BIAS_UA} uA")
        self.bias_ua = values
        self._push_to_world()
        return self._broadcast(message("BiasCurrent", self.bias_ua))

    @on("trigger_levels_mv.set")
    def _trigger(self, value: list[float]) -> bytes:
        values = self._list("TriggerLevel", value, *TRIGGER_MV)
        if values is None:
            return message("Error", f"SetAllTriggerLevels needs {self.n} values in mV")
        self.trigger_mv = values
        self._push_to_world()
        return self._broadcast(message("TriggerLevel", self.trigger_mv))

    @on("detectors_enabled.set")
    def _enable(self, value: bool) -> bytes:
        self.enabled = value
        self._push_to_world()
        return self._broadcast(message("DetectorEnable", self.enabled))

    @on("request_bias_voltage")
    def _bias_voltage(self) -> bytes:
        return message("BiasVoltage", self._props("BiasVoltage"))

    @on("dark_count_targets.set")
    def _dark(self, value: list[float]) -> bytes:
        return self._set_dark_targets(value)

    def _set_dark_targets(self, value: Any) -> bytes:
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            values = []
        if len(values) != self.n:
            return message("Error", f"DarkCountsAutoIV needs {self.n} values")
        self.dark_targets = values
        return self._broadcast(message("DarkCountsAutoIV", self.dark_targets))

    @on("request_auto_iv_state")
    def _auto_state(self) -> bytes:
        return message("StartAutoIV", self._props("StartAutoIV"))

    @on("start_auto_calibration")
    async def _auto_calibrate(self) -> bytes:
        out = self._broadcast(message("StartAutoIV", True))
        self.auto_running = True
        try:
            self.auto_result = await self._search_bias_for_dark_counts()
        finally:
            self.auto_running = False
        self.bias_ua = list(self.auto_result)
        self._push_to_world()
        out += self._broadcast(message("BiasCurrentAutoIV", self.auto_result))
        out += self._broadcast(message("BiasCurrent", self.bias_ua))
        out += self._broadcast(message("StartAutoIV", False))
        return out

    async def _search_bias_for_dark_counts(self) -> list[float]:
        """Bisect each detector's bias until its measured count rate meets its target.

        Like the instrument, it measures (the user keeps the light off); with no world
        wired it leaves the bias where it is.
        """
        if self.world is None or not self.detectors:
            return list(self.bias_ua)
        reader = self.world.counter(self.detectors)
        reader.seek_now()
        lo = [0.0] * self.n
        # Up to the controller's limit, or the detector's own where it is lower.
        hi = [min(BIAS_UA[1], d.cfg.max_bias) for d in self._world_detectors()]
        was_enabled, self.enabled = self.enabled, True
        seconds = 0.1
        try:
            for _ in range(14):
                self.bias_ua = [(a + b) / 2 for a, b in zip(lo, hi, strict=True)]
                self._push_to_world()
                block = await reader.read_async(seconds)
                rates = [int(c) / seconds for c in block.counts]
                for i, rate in enumerate(rates):
                    if rate > self.dark_targets[i]:
                        hi[i] = self.bias_ua[i]
                    else:
                        lo[i] = self.bias_ua[i]
        finally:
            self.enabled = was_enabled
            reader.close()  # an open reader would keep the world warm and buffer its tags
        return [round(v, 2) for v in lo]

    async def _iv_scan(self, start: bool) -> bytes:
        out = self._broadcast(message("IVScanEnable", start))
        if not start:
            self.iv_scan["enable"] = False
            return out
        a, b, step = self.iv_scan["start"], self.iv_scan["end"], self.iv_scan["increment"]
        if step <= 0 or b < a:
            return out + message("Error", "IV scan: end < start or increment <= 0")
        saved = list(self.bias_ua)
        self.iv_history, self.ic_history = [], []
        reader = self.world.counter(self.detectors) if self.world and self.detectors else None
        if reader is not None:
            reader.seek_now()
        n_steps = round((b - a) / step) + 1
        try:
            for k in range(n_steps):
                current = round(a + k * step, 6)
                self.bias_ua = [current] * self.n
                self._push_to_world()
                if reader is not None:
                    block = await reader.read_async(self.period_ms / 1000.0)
                    counts = [int(c) for c in block.counts]
                else:
                    counts = [0] * self.n
                volts = self._bias_voltages_mv()
                self.iv_history.append(
                    {"biasCurrent": current, **{f"v{i + 1}": v for i, v in enumerate(volts)}}
                )
                self.ic_history.append(
                    {"biasCurrent": current, **{f"y{i + 1}": c for i, c in enumerate(counts)}}
                )
        finally:
            if reader is not None:
                reader.close()
        self.bias_ua = saved
        self._push_to_world()
        self.iv_scan["enable"] = False
        return out + self._broadcast(message("IVScanEnable", False))
