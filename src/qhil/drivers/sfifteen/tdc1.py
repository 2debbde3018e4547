"""S-Fifteen Instruments TDC1 four-channel timestamp / coincidence unit.

Protocol: docs/protocols/s-fifteen-tdc1.md, from the vendor's S15lib
``TimestampTDC1``, its GUI and older sample code. Commands end with CR LF and may
be chained with ``;``; setters never answer (the board's error behaviour is not
observable in any client, so there is nothing to check after a setter).

Modes: singles (``counts?`` -> four counts after one gate), pairs (eight numbers:
four singles, then coincidences 1-3, 1-4, 2-3, 2-4) and timestamp, where
``counts?`` starts a raw binary stream of 32-bit little-endian words (see
:func:`encode_words`) lasting ``time`` ms (forever with ``time 0``) until it stops
or ``abort``.

The board has no input-delay setting: :meth:`TDC1.set_input_delay_ps` is applied
in software to the timestamps :meth:`TDC1.acquire` and :meth:`TDC1.stream` return.

Timebase: the 2 ns counter is reset when ``counts?`` starts timestamp mode, so each
acquisition (or stream) counts from its own start; :meth:`TDC1.stream` keeps one
stream (one reset) running and cuts it into blocks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.roles import TagBlock
from qhil.drivers.sfifteen.common import S15Instrument
from qhil.drivers.values import Enum, Float, Int, Numbers, Str
from qhil.errors import ProtocolError, TransportError, ValidationError
from qhil.transport.framing import Framing
from qhil.transport.rawio import ReadTimeout
from qhil.transport.session import Reader

log = logging.getLogger(__name__)

# --- the binary timestamp word (docs/protocols/s-fifteen-tdc1.md) ---

#: Time unit of a timestamp word: 2 ns.
TICK_PS = 2000
#: Bits 31..5 hold the time, so it wraps every 2**27 ticks (268.435456 ms).
TIME_SHIFT = 5
WRAP_TICKS = 1 << 27
#: Bit 4: dummy / rollover-marker word; bits 3..0: channel pattern (bit 0 = channel 1).
DUMMY_BIT = 0x10
PATTERN_MASK = 0x0F
N_CHANNELS = 4
#: Longest gap between words on an idle input (UNVERIFIED inference from the rollover
#: decoding; the emulator emits a dummy word every HEARTBEAT_S of stream time).
HEARTBEAT_S = 0.1
HEARTBEAT_TICKS = round(HEARTBEAT_S * 1e12) // TICK_PS
#: A step between words longer than this (134 ms, half the wrap) never happens in a healthy
#: stream; S15lib's high-count reader likewise treats big jumps as corrupt data.
GAP_LIMIT_TICKS = WRAP_TICKS // 2

#: Longest gate in the counting modes (16-bit register), ms.
MAX_GATE_MS = 65535
#: Extra time allowed beyond the gate for a count reply (S15lib: 0.1 s). A unit answers within
#: milliseconds; 2 s only delays the report of a dead one, and keeps an emulated unit on a
#: loaded host (CI runs tests in parallel) from timing out at 0.5 s.
COUNT_REPLY_MARGIN_S = 2.0
#: How long the stream may stay silent before it is taken to have ended.
STREAM_POLL_S = 0.05
#: Wall-clock allowance beyond the acquisition for a stream's first read.
STREAM_GRACE_S = 0.5
#: Silence that ends an acquisition once its words have reached the gate's last heartbeat
#: and the gate is over on this host's clock (the unit sends its last words as the gate
#: closes: what is left is USB and host latency). Waiting STREAM_POLL_S there, and again
#: for the drain after ``abort``, cost ~0.1 s of every 13 ms BB84 block. Only for a unit
#: that does not close its gates with a word (see CLOSING_WORD_WAIT_S).
FINAL_SILENCE_S = 0.02
#: A timed gate closes with a dummy word in its last tick (UNVERIFIED inference, like the
#: idle words; the emulator sends it): that word, the last one received, proves the stream
#: whole, with no wait at all. A unit not yet seen to send it is given this much silence,
#: after the gate's end on the host clock, before its stream is taken as ended without one
#: (from then on this driver waits FINAL_SILENCE_S, as S15lib's ``t_acq + 0.02 s`` read).
#: Long, so that a slow emulator on a loaded host is never cut short (issue 12: a seeded
#: fast-mode run must not depend on the host's load).
CLOSING_WORD_WAIT_S = 1.0
#: Wall-clock silence after which a continuous stream counts as stalled (the unit sends a
#: word at least every HEARTBEAT_S of its own time, so seconds of silence mean trouble).
STREAM_STALL_S = 5.0
#: Most bytes taken per poll (a poll returns with whatever has arrived).
_CHUNK = 1 << 20


class TimestampStreamError(TransportError):
    """A running timestamp stream failed; ``command`` started it."""

    def __init__(self, resource: str, command: str, what: str, advice: str) -> None:
        self.command = command
        super().__init__(resource, f"timestamp stream {what} (started by {command!r}); {advice}")


class TimestampStreamStalled(TimestampStreamError):
    """A running timestamp stream stopped delivering words before the stream time awaited."""

    def __init__(
        self, resource: str, command: str, timeout_s: float, awaited_s: float, reached_s: float
    ) -> None:
        self.timeout_s, self.awaited_s, self.reached_s = timeout_s, awaited_s, reached_s
        what = (
            f"stalled: no data for {timeout_s:g} s, waiting for words up to stream time "
            f"{awaited_s:.6f} s (last word at {reached_s:.6f} s)"
        )
        super().__init__(resource, command, what, "check the USB link, then restart the stream")


class TimestampStreamCorrupt(TimestampStreamError):
    """The stream broke its own rules: a gap no healthy stream leaves (lost or misaligned words)."""

    def __init__(self, resource: str, command: str, after_s: float, gap_s: float) -> None:
        self.after_s, self.gap_s = after_s, gap_s
        what = (
            f"corrupt: a gap of {gap_s * 1e3:.1f} ms after stream time {after_s:.6f} s, longer "
            f"than the unit ever leaves (a dummy word every {HEARTBEAT_S * 1e3:g} ms)"
        )
        advice = "words lost (host too slow, buffer overflow?) or misaligned; restart the stream"
        super().__init__(resource, command, what, advice)


class TimestampStreamBusy(TransportError):
    """An acquisition was asked for while this driver's timestamp stream is running."""

    def __init__(self, resource: str, wanted: str) -> None:
        super().__init__(
            resource,
            f"cannot start {wanted}: a timestamp stream is running on this unit; close it "
            "first (end the async for, or aclose() the stream)",
        )


def encode_words(ticks: npt.ArrayLike, patterns: npt.ArrayLike) -> bytes:
    """Timestamp words: time (ticks of 2 ns, taken modulo 2**27) << 5 | flags/pattern."""
    # & (2**27 - 1) is the residue mod 2**27 (two's complement), cheaper than %.
    words = np.bitwise_and(np.asarray(ticks, dtype=np.int64), WRAP_TICKS - 1).astype(np.uint32)
    words <<= TIME_SHIFT
    words |= np.asarray(patterns, np.uint32) & 0x1F
    return words.astype("<u4", copy=False).tobytes()


class TimestampDecoder:
    """Incremental decoder of the binary stream: unwraps the 27-bit time, vectorised per chunk.

    The time of the first word is counted from 0 (the stream start). Each step between
    consecutive words is taken modulo 2**27 ticks, which is exact as long as no gap in
    the stream exceeds 268 ms (the board's dummy words see to that).
    """

    def __init__(self) -> None:
        self._rest = b""
        self._last_raw = 0
        self._last_ticks = 0
        self._ticks: list[npt.NDArray[np.int64]] = []
        self._flags: list[npt.NDArray[np.uint8]] = []
        self.n_words = 0
        #: Low five bits of the latest word (0 before any).
        self.last_flags = 0
        #: (stream ticks before it, length in ticks) of the first gap longer than
        #: GAP_LIMIT_TICKS, or None: a healthy stream has a word every HEARTBEAT_S.
        self.first_gap: tuple[int, int] | None = None

    def feed(self, data: bytes) -> None:
        buf = self._rest + data
        n = len(buf) // 4
        self._rest = buf[4 * n :]
        if n == 0:
            return
        words = np.frombuffer(buf, dtype="<u4", count=n)
        raw = (words >> TIME_SHIFT).astype(np.int64)
        steps = np.diff(raw, prepend=self._last_raw) % WRAP_TICKS
        ticks = self._last_ticks + np.cumsum(steps)
        big = np.flatnonzero(steps > GAP_LIMIT_TICKS)
        if big.size and self.first_gap is None:
            i = int(big[0])
            self.first_gap = (int(ticks[i] - steps[i]), int(steps[i]))
        self._last_raw = int(raw[-1])
        self._last_ticks = int(ticks[-1])
        self.last_flags = int(words[-1]) & 0x1F
        self._ticks.append(ticks)
        self._flags.append((words & 0x1F).astype(np.uint8))
        self.n_words += n

    @property
    def coverage_ticks(self) -> int:
        """Stream time of the latest word."""
        return self._last_ticks

    def closed_gate(self, end_ticks: int) -> bool:
        """Whether the latest word is the dummy word closing a gate of ``end_ticks``: in its
        last tick (or later), so every word of the gate has arrived (time order)."""
        return self.last_flags == DUMMY_BIT and self._last_ticks >= end_ticks - 1

    def words(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """(unwrapped ticks, low five bits) of every complete word so far."""
        if not self._ticks:
            return np.zeros(0, np.int64), np.zeros(0, np.uint8)
        return np.concatenate(self._ticks), np.concatenate(self._flags)

    def take(self, until_ticks: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        """Remove and return the words before ``until_ticks`` (the stream is time-ordered)."""
        ticks, flags = self.words()
        cut = int(np.searchsorted(ticks, until_ticks, side="left"))
        self._ticks, self._flags = ([ticks[cut:]], [flags[cut:]]) if cut < ticks.size else ([], [])
        return ticks[:cut], flags[:cut]


#: Channels of each 4-bit pattern in ascending order (0 pads), and how many there are.
_PATTERN_CHANNELS = np.array(
    [[c + 1 for c in range(N_CHANNELS) if p >> c & 1] + [0] * (N_CHANNELS - p.bit_count())
     for p in range(1 << N_CHANNELS)],
    np.int16,
)  # fmt: skip
_PATTERN_BITS = np.count_nonzero(_PATTERN_CHANNELS, axis=1).astype(np.intp)


def words_to_tags(
    ticks: npt.NDArray[np.int64], flags: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
    """One tag per set pattern bit: (timestamps in ps, channels 1..4), time-ordered (tags
    of one time by channel). Each word gives its bits in channel order, one pass."""
    pattern = np.bitwise_and(flags, PATTERN_MASK)
    reps = _PATTERN_BITS.take(pattern)
    n = int(reps.sum())
    if n == reps.size:  # one channel per word (the usual case at 2 ns)
        t, c = ticks * TICK_PS, _PATTERN_CHANNELS[:, 0].take(pattern)
    else:
        t = np.repeat(ticks, reps)
        t *= TICK_PS
        # Flat index into the channel table: pattern row, plus the tag's rank in its word
        # (its index minus that of its word's first tag).
        row = pattern.astype(np.intp) * N_CHANNELS - (np.cumsum(reps) - reps)
        flat = np.repeat(row, reps)
        flat += np.arange(n)
        c = _PATTERN_CHANNELS.ravel().take(flat)
    if ticks.size > 1 and not np.all(ticks[1:] > ticks[:-1]):
        tagged = ticks[reps > 0]
        if not np.all(tagged[1:] > tagged[:-1]):
            # Several tagged words in one tick: order that tick's tags by channel.
            order = np.lexsort((c, t))
            t, c = t[order], c[order]
    return t, c


def serial_port_of(resource: str) -> str:
    """``ASRL/dev/ttyACM0::INSTR`` -> ``/dev/ttyACM0`` (``ASRL3::INSTR`` -> ``COM3`` on Windows).

    The timestamp stream is read in chunks whose partial last read must be kept, at up
    to MB/s. The TDC1 has always talked through pyserial for that; qhil's pyvisa path
    now keeps partial reads too (`transport.visa_io`) and reads pyvisa-py serial blocks
    through its pyserial port, so this is a choice, kept for the byte-exact tests that
    pin it. Resources that are not serial VISA strings pass through unchanged.
    """
    m = re.fullmatch(r"ASRL(.+?)(?:::INSTR)?", resource.strip(), re.IGNORECASE)
    if m is None:
        return resource
    port = m.group(1)
    if port.isdigit():
        return f"COM{port}" if sys.platform.startswith("win") else resource
    return port


class SignedWord(Int):
    """The TDC1 prints ``time?`` as a signed 16-bit number (40000 -> ``-25536``)."""

    def emit(self, value: Any) -> str:
        v = int(value) & 0xFFFF
        return str(v - 0x10000 if v & 0x8000 else v)

    def parse(self, text: str) -> int:
        v = int(float(text.strip()))
        return v + 0x10000 if v < 0 else v


class TDC1(S15Instrument):
    """S-Fifteen TDC1 timestamp unit (role: TimeTagger)."""

    framing: ClassVar[Framing] = Framing(write_termination="\r\n", read_termination="\n")
    model: ClassVar[str] = "S-Fifteen TDC1"
    channels: int = N_CHANNELS
    #: Role AcquisitionLimits: the gate is set in whole ms (``_gate``), at least 1 ms.
    min_acquisition_s: ClassVar[float] = 1e-3
    acquisition_step_s: ClassVar[float] = 1e-3

    idn = Measurement("*IDN?", value=Str(), doc="Identity; contains 'TDC1'.")
    help_text = Measurement("help", value=Str(), doc="Command summary (several lines).")
    reset = Action("*RST", doc="Reset the unit.")
    mode = Control(
        get="mode?",
        set="{value}",
        value=Enum({"singles": "singles", "pairs": "pairs", "timestamp": "timestamp"}),
        reply=Enum({"singles": "0", "pairs": "1", "timestamp": "3"}),
        doc="Acquisition mode: singles (0), pairs (1) or timestamp (3).",
    )
    gate_ms = Control(
        get="time?",
        set="time {value}",
        value=Int(0, MAX_GATE_MS, units="ms"),
        reply=SignedWord(),
        doc="Gate / acquisition time, ms (0 = unlimited, timestamp mode only).",
    )
    nim_levels = Action("NIM", doc="Input threshold preset for NIM pulses (-0.5 V).")
    ttl_levels = Action("TTL", doc="Input threshold preset for TTL pulses.")
    negative_threshold_v = Control(
        set="NEG {value}", value=Float(-3.3, 0.0, fmt="{!r}", units="V"), doc="Custom threshold."
    )
    positive_threshold_v = Control(
        set="POS {value}", value=Float(0.0, 3.3, fmt="{!r}", units="V"), doc="Custom threshold."
    )
    level = Measurement(
        "level?", value=Str(), doc="Threshold line; its first token is the threshold in volts."
    )
    reference_clock = Control(
        get="REFCLK?",
        set="REFCLK {value}",
        value=Enum({"auto": "0", "external": "1", "internal": "2"}),
        reply=Str(),
        doc="Reference clock: auto-select, force external, force internal 10 MHz.",
    )
    external_clock = Measurement("ECLOCK?", value=Str(), doc="External clock present.")
    input_packet = Action("INPKT", doc="Sent before timestamp runs (meaning UNVERIFIED).")
    abort = Action("abort", doc="Stop a running timestamp stream.")
    #: A unit left streaming (its client killed mid-stream) streams until told ``abort``:
    #: a connect that finds the line busy sends it (Session._drain_stale).
    quiesce_command: ClassVar[str | None] = abort.template.render()
    counts = Measurement(
        "counts?",
        value=Numbers(sep=" ", integer=True),
        doc="Counts (singles: 4, pairs: 8 numbers); in timestamp mode, starts the stream.",
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.input_delays_ps: dict[int, int] = {}
        self._streaming = False
        #: Whether this unit ends a timed gate with a closing word (None: not seen yet).
        self._closes_gates: bool | None = None

    @classmethod
    def open(cls, resource: str, **kw: Any) -> Self:
        """Like :meth:`Instrument.open`, but a serial VISA resource goes through pyserial."""
        port = resource if kw.get("io") is not None else serial_port_of(resource)
        return super().open(port, **kw)

    @staticmethod
    def _chain(*commands: str) -> str:
        return ";".join(commands)

    @staticmethod
    def _get(decl: Control[Any]) -> str:
        assert decl.get_template is not None
        return decl.get_template.render()

    @staticmethod
    def _set(decl: Control[Any], value: Any) -> str:
        assert decl.set_template is not None
        return decl.set_template.render(value=value)

    def _gate(self, integration_s: float, *, allow_long: bool = False) -> int:
        ms = round(integration_s * 1000)
        if not math.isfinite(integration_s) or ms < 1 or (ms > MAX_GATE_MS and not allow_long):
            limit = "" if allow_long else f", at most {MAX_GATE_MS / 1000:g} s"
            raise ValidationError(
                "time", integration_s, f"a duration of at least 1 ms in whole ms{limit}"
            )
        return int(ms)

    async def identity(self) -> str:
        return await self.idn.get()

    async def help(self) -> list[str]:
        return await self.read_multiline(type(self).help_text)

    async def threshold_v(self) -> float:
        line = await self.level.get()
        try:
            return float(line.split()[0])
        except (IndexError, ValueError):
            raise ProtocolError(self.resource, "level?", line, "a threshold in volts") from None

    async def set_threshold_v(self, volts: float) -> None:
        if volts < 0:
            await self.negative_threshold_v.set(volts)
        else:
            await self.positive_threshold_v.set(volts)

    def _not_streaming(self, wanted: str) -> None:
        if self._streaming:
            raise TimestampStreamBusy(self.resource, wanted)

    async def _count(self, mode: str, integration_s: float, expect: int) -> list[int]:
        cls = type(self)
        self._not_streaming(f"a {mode} count")
        ms = self._gate(integration_s)
        query = self._chain(self._set(cls.mode, mode), self._get(cls.counts))
        async with self.session.locked():
            await self.gate_ms.set(ms)
            reply = await self.ask(query, timeout_s=ms / 1000 + COUNT_REPLY_MARGIN_S)
        try:
            values = [int(v) for v in cls.counts.reply_template.parse(reply)["value"]]  # type: ignore[index]
        except (TypeError, ValueError):
            values = []
        if len(values) != expect:
            raise ProtocolError(self.resource, query, reply, f"{expect} space-separated counts")
        return values

    async def singles(self, integration_s: float) -> list[int]:
        """Counts on channels 1..4 in one gate."""
        return await self._count("singles", integration_s, 4)

    async def pairs(self, integration_s: float) -> tuple[list[int], list[int]]:
        """(singles 1..4, coincidences 1-3, 1-4, 2-3, 2-4) in one gate."""
        values = await self._count("pairs", integration_s, 8)
        return values[:4], values[4:]

    async def set_input_delay_ps(self, channel: int, delay_ps: int) -> None:
        """Software delay added to the channel's timestamps (the TDC1 has no delay setting)."""
        if not 1 <= channel <= N_CHANNELS:
            raise ValidationError("input delay", channel, f"a channel in 1..{N_CHANNELS}")
        self.input_delays_ps[channel] = int(delay_ps)

    def _tags(
        self, ticks: npt.NDArray[np.int64], flags: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16]]:
        """Tags of decoded words, with the software input delays applied (time-ordered)."""
        t_ps, channels = words_to_tags(ticks, flags)
        if any(self.input_delays_ps.values()):
            t_ps = (
                t_ps
                + np.array([0] + [self.input_delays_ps.get(c, 0) for c in (1, 2, 3, 4)])[channels]
            )
            order = np.argsort(t_ps, kind="stable")
            t_ps, channels = t_ps[order], channels[order]
        return t_ps, channels

    def _stalled(
        self, command: str, timeout_s: float, awaited_ticks: int, decoder: TimestampDecoder
    ) -> TimestampStreamStalled:
        """The error for a stream silent ``timeout_s`` before its words reached ``awaited_ticks``."""
        reached_s = decoder.coverage_ticks * TICK_PS / 1e12
        return TimestampStreamStalled(
            self.resource, command, timeout_s, awaited_ticks * TICK_PS / 1e12, reached_s
        )

    async def acquire(self, duration_s: float) -> TagBlock:
        """Stream timestamps for ``duration_s`` (whole ms) and return them in ps from the start.

        Up to 65.535 s the unit stops by itself (``time <ms>``); longer runs use
        ``time 0`` and ``abort``. A timed stream is complete when the word closing the
        gate arrives (a dummy word in its last tick, the last word: no wait at all). A
        unit not seen to send it: when the line is silent after the gate's end on the host
        clock and the words reach the gate's last heartbeat (CLOSING_WORD_WAIT_S of
        silence until the unit has once ended a gate without it, FINAL_SILENCE_S after).
        An unlimited one: when its words reach the window's end (then ``abort``). Words
        that stop short of the gate's last heartbeat for STREAM_STALL_S raise
        TimestampStreamStalled: a gate is never returned short because its peer was slow
        (a seeded fast-mode run must not depend on the host's load).
        """
        cls = type(self)
        self._not_streaming("an acquisition")
        ms = self._gate(duration_s, allow_long=True)
        limited = ms <= MAX_GATE_MS
        start = self._chain(
            cls.input_packet.template.render(),
            self._set(cls.gate_ms, ms if limited else 0),
            self._set(cls.mode, "timestamp"),
            self._get(cls.counts),
        )
        end_ticks = ms * 1_000_000_000 // TICK_PS
        # Words (events or the idle heartbeat) must reach this far before silence means "done".
        # For gates shorter than the heartbeat period the last word can be up to half the
        # window early; without the cap an empty first poll would end the stream at once.
        complete_ticks = end_ticks - min(HEARTBEAT_TICKS, end_ticks // 2)
        decoder = TimestampDecoder()
        # Wait for the closing word unless this unit has been seen to close gates without it.
        closing = limited and self._closes_gates is not False

        stalled = False  # the words never reached the gate's last heartbeat

        def stream(r: Reader) -> bool:
            """Read the gate's words; True once the closing word proves them whole."""
            nonlocal stalled
            gate_end = time.monotonic() + ms / 1000  # the gate's end on this host's clock
            last = time.monotonic()  # when data last arrived
            for data, idle in _polls(r, max(FINAL_SILENCE_S, min(ms / 1000, STREAM_POLL_S))):
                now = time.monotonic()
                if data:
                    decoder.feed(data)
                    last = now
                if limited and decoder.closed_gate(end_ticks):
                    return True
                if not limited and decoder.coverage_ticks >= end_ticks:
                    return False
                # Fallbacks, on a silence after the gate's end on this host's clock: a unit
                # whose words reached the gate's last heartbeat (a short silence, or a long
                # one while a closing word may still come), or one that never got that far:
                # stalled after STREAM_STALL_S (an error, never a short block: a slow peer,
                # e.g. an emulator on a loaded host, must not shorten a seeded run's gate).
                quiet = now - last
                if idle and now >= gate_end:
                    if decoder.coverage_ticks >= complete_ticks:
                        if not closing or quiet >= CLOSING_WORD_WAIT_S:
                            return False
                    elif quiet >= STREAM_STALL_S:
                        stalled = True
                        return False
                r.timeout_s = max(FINAL_SILENCE_S, min(gate_end - now, STREAM_POLL_S))
            return False  # pragma: no cover (_polls never ends)

        def drain(r: Reader) -> None:
            for data, idle in _polls(r, FINAL_SILENCE_S):
                decoder.feed(data)
                if idle:
                    return

        async with self.session.locked():
            whole = await self.session.transaction(
                start, stream, timeout_s=ms / 1000 + STREAM_GRACE_S
            )
            if whole:
                # The unit has stopped: nothing is left in flight. ``abort`` still tells it
                # (and an emulator) that the run is over, as S15lib does; no drain needed.
                self._closes_gates = True
                await self.session.transaction(cls.abort.template.render())
            else:
                if closing and decoder.coverage_ticks >= complete_ticks:
                    self._closes_gates = False  # a whole stream ended without one
                await self.session.transaction(cls.abort.template.render(), drain)
        if stalled:
            raise self._stalled(start, STREAM_STALL_S, complete_ticks, decoder)
        ticks, flags = decoder.words()
        keep = int(np.searchsorted(ticks, end_ticks, side="left"))  # the words are in order
        t_ps, channels = self._tags(ticks[:keep], flags[:keep])
        return TagBlock(
            t_ps,
            channels,
            lost=0,  # the TDC1 does not report lost events
            meta={"duration_s": ms / 1000, "resolution_ps": float(TICK_PS)},
        )

    async def stream(
        self,
        duration_s: float | None,
        chunk_s: float,
        *,
        stall_timeout_s: float = STREAM_STALL_S,
    ) -> AsyncIterator[TagBlock]:
        """One continuous timestamp stream, cut into blocks of ``chunk_s`` of stream time.

        The unit's counter is reset once, when ``counts?`` starts the stream: every block
        is on that one timebase (ps from the reset), block ``k`` holding the tags whose
        words fall in [k chunk_s, (k+1) chunk_s) (the last one shorter if ``duration_s``
        is not a multiple; software input delays are added after the cut).
        ``duration_s`` None streams until the consumer stops; close the iterator
        (``contextlib.aclosing``, or let the ``async for`` end) so ``abort`` is sent. While the stream runs this driver refuses other acquisitions
        (:class:`TimestampStreamBusy`); a cancelled consumer still gets the stream stopped.

        ``meta``: ``t_start_ps``/``t_stop_ps`` (the block's edges, stream time),
        ``chunk`` (index), ``resolution_ps``, and ``host_start_s``: this host's clock
        (``time.time()``) when ``counts?`` was sent, the reference S-Fifteen's own stack
        adds to relate streams to absolute time (``readevents -A``). ``lost`` is always 0:
        the TDC1 reports no dropped events. No data for ``stall_timeout_s`` (wall clock)
        raises :class:`TimestampStreamStalled`; a gap between words that the unit never
        leaves (lost or misaligned words) raises :class:`TimestampStreamCorrupt`.
        """
        cls = type(self)
        chunk_ticks = round(chunk_s * 1e12) // TICK_PS if math.isfinite(chunk_s) else 0
        if chunk_ticks < 1 or chunk_s > 3600:
            raise ValidationError("chunk_s", chunk_s, "a stream time of 2 ns to 3600 s per block")
        if not (math.isfinite(stall_timeout_s) and stall_timeout_s > 0):
            raise ValidationError("stall_timeout_s", stall_timeout_s, "a positive number of s")
        end_ticks = None
        # A known duration up to the 16-bit gate runs on the unit's own gate (``time <ms>``), as
        # acquire() does: the unit stops at its end, not when our ``abort`` happens to arrive,
        # so how far the stream ran does not depend on the host's timing (an emulator in fast
        # mode would otherwise stream on until the abort, moving every later acquisition).
        gate_ms = 0
        complete_ticks = None
        if duration_s is not None:
            ms = self._gate(duration_s, allow_long=True)
            end_ticks = ms * 1_000_000_000 // TICK_PS
            if ms <= MAX_GATE_MS:
                gate_ms = ms
                complete_ticks = end_ticks - min(HEARTBEAT_TICKS, end_ticks // 2)
        start = self._chain(
            cls.input_packet.template.render(),
            self._set(cls.gate_ms, gate_ms),
            self._set(cls.mode, "timestamp"),
            self._get(cls.counts),
        )
        decoder = TimestampDecoder()

        self._not_streaming("a timestamp stream")
        # The stream holds the unit between blocks by this flag, not by the session lock: a
        # consumer may step the iterator from several tasks (wait_for, gather) and close it
        # from another. Each block is one transaction, shielded so a cancelled consumer
        # never leaves half a read behind (the abort below then goes out cleanly).
        self._streaming = True
        host_start_s = time.time()
        command: str | None = start
        k = 0
        try:
            while end_ticks is None or k * chunk_ticks < end_ticks:
                lo = k * chunk_ticks
                hi = lo + chunk_ticks if end_ticks is None else min(lo + chunk_ticks, end_ticks)
                # Past the gate's last heartbeat: whole on the closing word (or a silence).
                if complete_ticks is not None and end_ticks is not None and hi > complete_ticks:
                    # The gate's closing word ends it at once; a silence only where none
                    # comes (waited long while this unit may still send one).
                    quiet = FINAL_SILENCE_S if self._closes_gates is False else CLOSING_WORD_WAIT_S
                    reader = _reader_to(
                        decoder, complete_ticks, stall_timeout_s, until_quiet_s=quiet,
                        closing_end=end_ticks,
                    )  # fmt: skip
                else:
                    reader = _reader_to(decoder, hi, stall_timeout_s)
                read = self.session.transaction(command, reader)
                command = None  # sent (or about to be): from here on the stream must be stopped
                if not await asyncio.shield(read):
                    raise self._stalled(start, stall_timeout_s, hi, decoder)
                if complete_ticks is not None and end_ticks is not None and hi >= end_ticks:
                    self._closes_gates = decoder.closed_gate(end_ticks)
                if decoder.first_gap is not None and decoder.first_gap[0] < hi:
                    at, gap = decoder.first_gap  # blocks before the gap are whole: sent
                    raise TimestampStreamCorrupt(
                        self.resource, start, at * TICK_PS / 1e12, gap * TICK_PS / 1e12
                    )
                t_ps, channels = self._tags(*decoder.take(hi))
                yield TagBlock(
                    t_ps,
                    channels,
                    lost=0,  # the TDC1 does not report lost events
                    meta={
                        "t_start_ps": float(lo * TICK_PS),
                        "t_stop_ps": float(hi * TICK_PS),
                        "chunk": float(k),
                        "resolution_ps": float(TICK_PS),
                        "host_start_s": host_start_s,
                    },
                )
                k += 1
        finally:
            failing = sys.exc_info()[1]  # what ends the stream (None: its duration)
            try:
                if command is None:  # the stream was started: stop it, drop what is in flight
                    abort = cls.abort.template.render()
                    await asyncio.shield(self.session.transaction(abort, _drain))
            except TransportError as exc:
                if failing is None or isinstance(failing, GeneratorExit):
                    raise
                # Do not hide the error that ended the stream behind the failed abort.
                log.warning("%s: abort after a failed stream also failed: %s", self.resource, exc)
            finally:
                self._streaming = False


def _reader_to(
    decoder: TimestampDecoder,
    edge: int,
    stall_s: float,
    until_quiet_s: float | None = None,
    closing_end: int | None = None,
) -> Any:
    """A transaction reader: feed the stream until a word at or past ``edge`` arrived
    (every earlier word is then in: the stream is time-ordered); ``until_quiet_s``: and the
    line has been quiet that long (a gated stream's end), unless the word closing a gate
    of ``closing_end`` ticks came. False if it stalls."""

    def read(r: Reader) -> bool:
        last = time.monotonic()
        for data, idle in _polls(r, min(STREAM_POLL_S, until_quiet_s or STREAM_POLL_S)):
            if data:
                decoder.feed(data)
                last = time.monotonic()
            if closing_end is not None and decoder.closed_gate(closing_end):
                return True
            quiet = time.monotonic() - last
            if decoder.coverage_ticks >= edge and (
                until_quiet_s is None or (idle and quiet >= until_quiet_s)
            ):
                return True
            if idle and quiet >= stall_s and decoder.coverage_ticks < edge:
                return False
        return False  # pragma: no cover (_polls never ends)

    return read


def _drain(r: Reader) -> None:
    """Read and drop bytes until the line falls quiet."""
    for _, idle in _polls(r):
        if idle:
            return


def _polls(r: Reader, timeout_s: float = STREAM_POLL_S) -> Iterator[tuple[bytes, bool]]:
    """Read the stream in chunks; yields (bytes, idle), idle when a poll brought nothing
    within ``r.timeout_s`` (``timeout_s`` at first; the consumer may change it)."""
    r.timeout_s = timeout_s
    while True:
        try:
            data = r.some(_CHUNK)
        except ReadTimeout as exc:
            data = bytes(exc.partial)
            r.received += data
        yield data, not data
