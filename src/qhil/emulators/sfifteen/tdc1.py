"""Emulated S-Fifteen TDC1 timestamp unit (protocol: docs/protocols/s-fifteen-tdc1.md).

Bound to a world ``time_tagger`` component, whose channels 1..4 are the TDC1's
inputs: singles and pairs counts, and the binary timestamp stream, are made from
the tags the world delivers for the gate, converted to the TDC1's 2 ns clock.

The stream's timebase (docs/protocols/s-fifteen-tdc1.md, "Stream timebase"): the time
counter is reset to 0 when ``counts?`` starts timestamp mode (the vendor's recorded
output starts every acquisition near 0) and counts on the node's clock (the unit's
oscillator or its 10 MHz reference: offset, drift, wander); `stream_origin` records the
reset, `qhil.emulators.sfifteen.timebase` gives the truth in the client's terms. Words
leave in time order on that one clock, events and idle words alike.

Choices where the unit's behaviour is not documented (UNVERIFIED):

* The reset happens when the command is handled; the vendor's recording leaves up to
  ~1 ms between zero and the first recorded event, not modelled.
* A dummy word (bit 4 set, pattern 0) is sent every ``HEARTBEAT_S`` of stream time, so a
  quiet input never leaves a gap long enough to hide a 27-bit rollover.
  Events in the same 2 ns tick share one word (several pattern bits).
* Pairs mode counts an event on channel 1 or 2 as coincident with channel 3 or 4
  when one falls within ``coincidence_window_ps`` (full width) of the other.
* A timed gate (``time <ms>``) ends with a dummy word in its last tick, after the events
  of that tick: the stream's last word, so a client knows it is whole without waiting
  for a silence (the qhil driver uses it; a unit without it costs the driver a wait).
* Unknown commands and refused values are ignored silently (what S15lib's 10 ms
  reads tolerate); the input thresholds do not change what the world delivers.
* The unit reports no lost events; the world reader's overflow count is not shown.

Emulated time (not a property of the unit): in fast mode a timestamp stream started
while another tagger's stream is running covers the same interval of emulated time as
that stream, from its start (two clients started together see the same events; the
world README, "Acquisitions started together"); a timed stream that has run its course
is held, joinable, until the unit's next ``counts?``, a mode change, a reset or a
disconnect, so another unit's stream commanded together joins it whatever the wall-clock
order. ``abort`` does not end the hold: the driver sends it on the gate's closing word,
and it would race, on the wall clock, with the other unit's ``counts?``. An unlimited
stream (``time 0``) runs ahead until its ``abort`` arrives: in fast mode how far depends
on the host (a known limit; timed streams do not). A ``counts?`` window in singles or
pairs mode is one acquisition taken when the command is handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from qhil.drivers.sfifteen.tdc1 import (
    HEARTBEAT_TICKS,
    N_CHANNELS,
    TDC1,
    TICK_PS,
    encode_words,
)
from qhil.emulators.base import Raw, on
from qhil.emulators.sfifteen.common import S15Emulator

if TYPE_CHECKING:
    from qhil.emulators.server import ByteWriter
    from qhil.emulators.world.tagger import TagReader

IDENTITY = "S-Fifteen Instruments TDC1 timestamp unit, firmware 1.0 (emulated), serial TDC1-EMU"
#: Stream time generated and sent per chunk (fast mode: the fewer world reads the better).
STREAM_CHUNK_S = 0.05
#: ... and in realtime mode, where a chunk is also a wait on the wall clock: a real unit's
#: words reach the host within a few ms (USB bulk transfers), and a driver may take a
#: silence of tens of ms past the gate's end as the stream's end (the TDC1 driver: 20 ms).
REALTIME_CHUNK_S = 0.005
DUMMY_WORD_FLAGS = 0x10
#: Coincidence pairs of pairs mode, in reply order.
PAIRS = ((1, 3), (1, 4), (2, 3), (2, 4))
LEVELS = {"NIM": -0.5, "TTL": 1.6}  # GUI labels (tdc1_GUI)

I64 = npt.NDArray[np.int64]


def coincidences(t_a: I64, t_b: I64, window_ps: float) -> int:
    """Events of sorted ``t_a`` with at least one event of sorted ``t_b`` within +-window/2."""
    if t_a.size == 0 or t_b.size == 0:
        return 0
    half = window_ps / 2
    lo = np.searchsorted(t_b, t_a - half, side="left")
    hi = np.searchsorted(t_b, t_a + half, side="right")
    return int(np.count_nonzero(hi > lo))


#: Pattern bit of each channel number 1..4 (index 0 unused).
_CHANNEL_BIT = np.array([0, 1, 2, 4, 8], np.uint32)


def stream_words(rel_ps: I64, channels: npt.NDArray[Any], t0_ps: int, t1_ps: int) -> bytes:
    """Words for one chunk of the stream: events plus dummy heartbeats, in time order.

    The chunk covers [t0_ps, t1_ps) of the unit's own clock, counted from the stream start
    (the counter reset); ``rel_ps`` are its event times on the same scale (sorted),
    ``channels`` 1..4. A heartbeat is due at each multiple of ``HEARTBEAT_TICKS`` whose
    tick starts inside the chunk, so consecutive chunks never put a word behind another.
    """
    ticks = rel_ps // TICK_PS
    pats = _CHANNEL_BIT.take(channels)
    # Events of one tick share a word: OR each run of equal ticks into its first (runs are
    # rare, ~2 % of events at 10 MHz, and short), then keep the firsts.
    same = np.flatnonzero(ticks[1:] == ticks[:-1])
    if same.size:
        while True:
            merged = pats[same] | pats[same + 1]
            if np.array_equal(merged, pats[same]):
                break
            pats[same] = merged
        leads = np.ones(ticks.size, bool)
        leads[same + 1] = False
        ticks, pats = ticks[leads], pats[leads]
    first = max(1, -(-t0_ps // (HEARTBEAT_TICKS * TICK_PS))) * HEARTBEAT_TICKS
    hb = np.arange(first, -(-t1_ps // TICK_PS), HEARTBEAT_TICKS, dtype=np.int64)
    # The few heartbeats go in before the events of their tick (the order a stable sort of
    # [heartbeats, events] gives): an insertion, not a sort of every event (issue 12).
    at = np.searchsorted(ticks, hb, side="left")
    all_ticks = np.insert(ticks, at, hb)
    all_flags = np.insert(pats, at, np.full(hb.size, DUMMY_WORD_FLAGS, np.uint32))
    return encode_words(all_ticks, all_flags)


def closing_word(end_ps: int) -> bytes:
    """The dummy word that closes a timed gate of ``end_ps``: in its last tick, after every
    event (UNVERIFIED, like the idle words): the client knows the stream is whole."""
    return encode_words([end_ps // TICK_PS - 1], [DUMMY_WORD_FLAGS])


def _inputs(ts: I64, channels: npt.NDArray[Any]) -> tuple[I64, npt.NDArray[Any]]:
    """The tags on the unit's inputs 1..4 (the tagger may number more channels); no copy
    when every tag is on one (the usual case)."""
    if channels.size == 0 or (int(channels.min()) >= 1 and int(channels.max()) <= N_CHANNELS):
        return ts, channels
    keep = (channels >= 1) & (channels <= N_CHANNELS)
    return ts[keep], channels[keep]


@dataclass(frozen=True)
class StreamOrigin:
    """Where a timestamp stream's counter was reset: true time and the unit's clock reading.

    Stream time of an event = (node clock at the event) - ``node_ps``; ``true_ps`` is the
    world's true time of the reset (see `qhil.emulators.sfifteen.timebase`).
    """

    node: str
    true_ps: int
    node_ps: int


class TDC1Emulator(S15Emulator):
    driver = TDC1
    unknown_reply: ClassVar[str | None] = None
    refused_reply: ClassVar[bool] = False

    def __init__(
        self, *, identity: str = IDENTITY, coincidence_window_ps: float = 4000.0, **kw: Any
    ) -> None:
        self.identity = identity
        self.coincidence_window_ps = coincidence_window_ps
        self._writer: ByteWriter | None = None
        self._stream_task: asyncio.Task[None] | None = None
        #: The latest timestamp stream's counter reset (None before the first stream).
        self.stream_origin: StreamOrigin | None = None
        #: A finished timed stream's world reader, held until the unit is told to stop.
        self._held: TagReader | None = None
        super().__init__(**kw)

    def power_on_state(self) -> None:
        self._stop_stream()
        self.mode = "singles"
        self.time_ms = 1000
        self.threshold_v = LEVELS["NIM"]
        self.level_name = "NIM"
        self.refclk = 0

    # --- serving: the timestamp stream runs beside the command loop (for abort) ---

    async def serve(self, reader: asyncio.StreamReader, writer: ByteWriter) -> None:
        self._writer = writer
        try:
            await super().serve(reader, writer)
        finally:
            self._stop_stream()
            self._writer = None

    def _cancel_stream(self) -> None:
        """Stop a running stream (its world reader closes unless its gate is held)."""
        task, self._stream_task = getattr(self, "_stream_task", None), None
        if task is not None and not task.done():
            task.cancel()

    def _stop_stream(self) -> None:
        self._cancel_stream()
        held, self._held = getattr(self, "_held", None), None
        if held is not None:
            held.close()

    @property
    def streaming(self) -> bool:
        return self._stream_task is not None and not self._stream_task.done()

    # --- the world ---

    def _tagger(self) -> Any:
        if self.world is None or not self.component:
            return None
        return self.world.tagger(self.component)

    async def _window(self, seconds: float) -> tuple[I64, npt.NDArray[np.int32]]:
        """Tags on inputs 1..4 in the next ``seconds``: (ps from the window start, channel)."""
        tagger = self._tagger()
        if tagger is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        reader = tagger.open_reader()
        try:
            block = await reader.read_async(seconds)
        finally:
            reader.close()
        ts, ch = _inputs(block.timestamps_ps, block.channels)
        return ts - block.t_start_ps, ch

    async def _counts(self) -> list[int]:
        t, ch = await self._window(self.time_ms / 1000)
        singles = [int(np.count_nonzero(ch == c)) for c in range(1, N_CHANNELS + 1)]
        if self.mode == "singles":
            return singles
        pairs = [coincidences(t[ch == a], t[ch == b], self.coincidence_window_ps) for a, b in PAIRS]
        return singles + pairs

    async def _stream_chunks(self, duration_s: float | None) -> Any:
        """Yield the stream's bytes chunk by chunk (forever when ``duration_s`` is None).

        The counter is reset at the start (`stream_origin`); chunks are windows of
        ``STREAM_CHUNK_S`` of true time, each covering its interval of the node clock, so
        events and idle words are placed on the one scale, the unit's own clock. The gate
        is timed in true time (UNVERIFIED: the unit's own clock; they differ by the drift,
        <= 100 ppm), its words cut at ``duration_s`` of the unit's clock.
        """
        tagger = self._tagger()
        # join: a stream started while another tagger streams covers the same interval
        # (fast mode; see the world README, "Time and acquisition").
        reader = tagger.open_reader(join=True) if tagger is not None else None
        end_ps = None if duration_s is None else round(duration_s * 1e12) // TICK_PS * TICK_PS
        realtime = self.world is not None and self.world.clock.mode == "realtime"
        chunk_ps = round((REALTIME_CHUNK_S if realtime else STREAM_CHUNK_S) * 1e12)
        read_ps = 0  # true time read so far
        done = 0  # ps of the unit's clock covered so far
        origin: int | None = None  # node-clock ps of the counter reset
        try:
            while end_ps is None or read_ps < end_ps:
                step = chunk_ps if end_ps is None else min(chunk_ps, end_ps - read_ps)
                read_ps += step
                if reader is None:
                    rel, ch = np.zeros(0, np.int64), np.zeros(0, np.int32)
                    stop = read_ps
                else:
                    block = await reader.read_async(step / 1e12)
                    if origin is None:
                        origin = int(block.t_start_ps)
                        self.stream_origin = StreamOrigin(tagger.node, int(reader.start_ps), origin)
                    stop = int(block.t_stop_ps) - origin
                    rel, ch = _inputs(block.timestamps_ps, block.channels)
                    rel = rel - origin
                if end_ps is not None and stop > end_ps:
                    stop = end_ps
                    cut = int(np.searchsorted(rel, stop, side="left"))
                    rel, ch = rel[:cut], ch[:cut]
                words = stream_words(rel, ch, done, max(done, stop))
                done = max(done, stop)
                if end_ps is None or read_ps < end_ps:
                    yield words
                    continue
                if reader is not None and self._writer is not None:
                    # A timed stream that has run its course still counts as started
                    # until the unit's next acquisition (see _abort): another tagger's
                    # stream started meanwhile joins it, whatever the wall-clock order
                    # (fast mode, virtual time). Held before its last words leave, so
                    # an abort the client sends on them finds it held.
                    reader.hold()
                    self._held, reader = reader, None
                # The gate's last chunk ends with the word closing it.
                yield words + closing_word(end_ps)
        finally:
            if reader is not None:
                reader.close()

    async def _run_stream(self, writer: ByteWriter, duration_s: float | None) -> None:
        # aclosing: a stream cancelled mid-gate closes its world reader as its task ends,
        # not whenever asyncio's finalizer gets to the abandoned generator.
        async with contextlib.aclosing(self._stream_chunks(duration_s)) as chunks:
            async for data in chunks:
                if data:
                    writer.write(data)
                    await writer.drain()
                await asyncio.sleep(0)  # let the command loop see an abort

    # --- handlers ---

    @on("reset")
    def _rst(self) -> None:
        self.power_on_state()

    @on("mode.get")
    def _mode_q(self) -> str:
        return self.mode

    @on("mode.set")
    def _mode(self, value: str) -> None:
        self._stop_stream()
        self.mode = value

    @on("gate_ms.get")
    def _time_q(self) -> int:
        return self.time_ms

    @on("gate_ms.set")
    def _time(self, value: int) -> None:
        self.time_ms = value

    @on("nim_levels")
    def _nim(self) -> None:
        self.threshold_v, self.level_name = LEVELS["NIM"], "NIM"

    @on("ttl_levels")
    def _ttl(self) -> None:
        self.threshold_v, self.level_name = LEVELS["TTL"], "TTL"

    @on("negative_threshold_v.set")
    def _neg(self, value: float) -> None:
        self.threshold_v, self.level_name = value, "NEG"

    @on("positive_threshold_v.set")
    def _pos(self, value: float) -> None:
        self.threshold_v, self.level_name = value, "POS"

    @on("level.get")
    def _level(self) -> str:
        return f"{self.threshold_v:.3f} {self.level_name}"

    @on("reference_clock.get")
    def _refclk_q(self) -> str:
        # No external reference is ever present on the emulated bench.
        return f"{self.refclk} {'external' if self.refclk == 1 else 'internal'}"

    @on("reference_clock.set")
    def _refclk(self, value: str) -> None:
        self.refclk = int(TDC1.reference_clock.value.format(value))

    @on("external_clock.get")
    def _eclock(self) -> str:
        return "0"

    @on("input_packet")
    def _inpkt(self) -> None:
        pass

    @on("abort")
    def _abort(self) -> None:
        # Stops a running stream. A timed gate that has run its course stays held: the
        # client's abort on its closing word races, on the wall clock, with the other
        # tagger's ``counts?`` on another connection, so ending the hold here made the
        # other stream's interval depend on host scheduling. Its next ``counts?``, a mode
        # change, a reset or a disconnect ends it.
        self._cancel_stream()

    @on("counts.get")
    async def _counts_q(self) -> Any:
        if self.mode != "timestamp":
            return Raw(" ".join(str(c) for c in await self._counts()))
        self._stop_stream()
        duration = self.time_ms / 1000 if self.time_ms > 0 else None
        if self._writer is not None:
            self._stream_task = asyncio.create_task(self._run_stream(self._writer, duration))
            return b""
        if duration is None:  # no connection to stream an endless run to
            return b""
        # Not served (a direct respond()): the whole finite stream is the reply.
        return b"".join([chunk async for chunk in self._stream_chunks(duration)])
