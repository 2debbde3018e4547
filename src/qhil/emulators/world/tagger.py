"""Time taggers and readers: detector pulses -> int64 picosecond timestamps in a node's clock.

A `TagPipeline` takes each batch's pulses (channel, true time), applies the
tagger's input delays, per-channel jitter and dead time, converts to the node's
clock (offset + drift) and floors to the bin width. Tags are *staged* until no
later batch can produce an earlier timestamp (jitter and negative input delays
bounded by a guard), then *committed* in time order to every open reader.

A `TagReader` keeps its own cursor on the simulated timeline and its own bounded
buffer: tags beyond ``buffer_size`` unread tags are dropped and counted in
``TagBlock.lost`` of its next read, as real taggers report lost tags.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .clock import PS_PER_S, NodeClock, SimClock, seconds_to_ps
from .component import Component
from .config import TimeTaggerConfig
from .deadtime import JointDeadTime
from .detector import JITTER_CLIP_SIGMAS
from .errors import WorldError
from .polarization import F64
from .rng import standard_normal

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
IntArr = npt.NDArray[np.intp]

# Sort keys: (timestamp - base) / bin << 16 | channel (channels 0..65535, read back as the
# low 16-bit word), base ~69 ms before the batch so negative input delays (>= -1 ms) and
# staged tags stay positive; 2^47 bins of range (a batch is at most 10 s).
_CH_BITS = 16
_KEY_MARGIN_PS = 1 << 36


@dataclass(frozen=True)
class TagBlock:
    """What a tagger delivers for one acquisition window."""

    timestamps_ps: I64
    channels: I32
    lost: int
    t_start_ps: int
    t_stop_ps: int

    @property
    def duration_s(self) -> float:
        return (self.t_stop_ps - self.t_start_ps) / PS_PER_S

    def __len__(self) -> int:
        return int(self.timestamps_ps.size)

    def counts(self, channels: list[int]) -> npt.NDArray[np.int64]:
        """Number of tags on each of ``channels``."""
        return np.array([int(np.count_nonzero(self.channels == c)) for c in channels], np.int64)


class _Timeline(Protocol):
    clock: SimClock

    def _generate_for(
        self, pipeline: TagPipeline, node_stop_ps: int, stop_ps: int | None = None
    ) -> None: ...

    def _start_ps(self) -> int: ...

    def _register(self, reader: TagReader) -> int: ...

    def _unregister(self, reader: TagReader) -> None: ...

    def _update_retention(self) -> None: ...


class TagPipeline:
    """Timestamps of one node clock from pulses on numbered channels."""

    def __init__(self, name: str, clock: NodeClock, rng: np.random.Generator) -> None:
        self.name = name
        self.clock = clock
        self.rng = rng
        self.bin_ps = 1
        self.jitter_ps = 0.0
        self.dead_time_ps = 0.0
        self.delays_ps: dict[int, float] = {}
        self.capacity = 1 << 24
        self.readers: list[TagReader] = []
        #: Keep committed tags for acquisitions that join a running one (`World` sets it).
        self.retain = False
        self.reset_state()

    def reset_state(self) -> None:
        self._staged_ts = np.zeros(0, np.int64)
        self._staged_ch = np.zeros(0, np.int32)
        self._last: dict[int, float] = {}
        self.committed_until = -(1 << 62)
        self.ingested_until: int | None = None
        self.clear_history()

    def clear_history(self) -> None:
        """Forget retained tags; what is committed from now on is retained (if ``retain``)."""
        self.history: deque[tuple[I64, I32]] = deque()
        self._history_size = 0
        self.history_complete_from = self.committed_until

    def _retain_tags(self, ts: I64, ch: I32) -> None:
        """Keep committed tags, at most ``capacity`` of them (the tagger's buffer): beyond it
        the oldest go and the history then starts after them."""
        self.history.append((ts, ch))
        self._history_size += ts.size
        while self._history_size > self.capacity and self.history:
            old, _ = self.history.popleft()
            self._history_size -= old.size
            self.history_complete_from = int(old[-1]) + 1

    def min_delay_ps(self) -> float:
        return min([0.0, *self.delays_ps.values()])

    def ingest(
        self,
        base_ps: int,
        length_ps: int,
        pulses: list[tuple[F64, IntArr]],
        guard_ps: float,
    ) -> None:
        """Add one batch's pulses (times in ps from ``base_ps``, and their channels; each
        part nearly sorted) and commit what is final."""
        # Sort (timestamp, channel) pairs as single int64 keys: bins from a base well before
        # this batch, shifted left by the channel bits. Cheaper than an argsort; nearly
        # sorted parts make it a single pass.
        clock, bin_ps = self.clock, self.bin_ps
        node_base = clock.node_of_true(base_ps)
        key_base = (math.floor(node_base) - _KEY_MARGIN_PS) // bin_ps * bin_ps
        # Bin of a pulse at true time base + rel: floor((node_base - key_base + rel rate) / bin),
        # positive, so a truncating cast floors it.
        offset = float(node_base - key_base)
        scale = clock.rate / bin_ps
        if self.ingested_until is not None and self.ingested_until != base_ps:
            # Batches went by without this pipeline (no reader): its dead-time carry and
            # staged tags belong to another time.
            self.reset_state()
        self.ingested_until = base_ps + length_ps
        parts = [(t, ch) for t, ch in pulses if t.size]
        if self.jitter_ps > 0:
            bound = JITTER_CLIP_SIGMAS * self.jitter_ps
            for i, (t, ch) in enumerate(parts):
                noise = standard_normal(self.rng, t.size, self.jitter_ps)
                np.clip(noise, -bound, bound, out=noise)
                parts[i] = (np.add(t, noise), ch)
        # One delay for every channel (the usual case) needs no per-pulse table look-up.
        same = not any(self.delays_ps.values())  # every input delay is zero
        top = (
            0
            if same and not self.dead_time_ps
            else max((int(c.max()) for _, c in parts), default=0)
        )
        delays = self._delay_table(top)
        if self.dead_time_ps > 0:
            parts = self._dead_time(parts, delays, length_ps)
        else:
            for c in self._last:
                self._last[c] -= length_ps
        # Keys written in place: staged ones first, then each part's.
        n_staged = self._staged_ts.size
        keys = np.empty(n_staged + sum(t.size for t, _ in parts), np.int64)
        if n_staged:
            staged = keys[:n_staged]
            np.floor_divide(self._staged_ts - key_base, bin_ps, out=staged)
            staged <<= _CH_BITS
            staged |= self._staged_ch
        at = n_staged
        x = np.empty(max([t.size for t, _ in parts], default=0))
        shift_of = (offset + delays * clock.rate) / bin_ps
        uniform = same or bool(np.all(shift_of == shift_of[0]))
        for t, ch in parts:
            k = keys[at : at + t.size]
            xs = np.multiply(t, scale, out=x[: t.size])
            xs += shift_of[0] if uniform else shift_of.take(ch)
            if clock.wanders:  # the wander's phase at the moment of tagging (input delay on)
                at_tag = t if same else t + delays.take(ch)
                xs += clock.wander_delta_ps(base_ps, at_tag) / bin_ps
            k[:] = xs  # floor: positive
            k <<= _CH_BITS
            k |= ch
            at += t.size
        keys.sort(kind="stable")
        # The channel is the low 16-bit word of each little-endian key.
        chs = keys.view(np.uint16)[:: 64 // _CH_BITS].astype(np.int32)
        keys >>= _CH_BITS
        if bin_ps != 1:
            keys *= bin_ps
        keys += key_base
        ts = keys
        if ts.size and ts[0] < self.committed_until:
            # Only a jitter beyond the guard (8 sigma, ~1e-15 per tag) gets here: keep the
            # committed stream ordered by clamping it to the commit boundary.
            np.maximum(ts, self.committed_until, out=ts)
        guard = math.ceil(guard_ps + max(0.0, -self.min_delay_ps())) + self.bin_ps
        limit = math.floor(self.clock.node_of_true(base_ps + length_ps)) - guard
        cut = int(np.searchsorted(ts, limit, side="left"))
        self._staged_ts, self._staged_ch = ts[cut:], chs[cut:]
        if cut:
            for r in self.readers:
                r._feed(ts[:cut], chs[:cut])
            if self.retain:
                self._retain_tags(ts[:cut], chs[:cut])
        self.committed_until = max(self.committed_until, limit)

    def _delay_table(self, max_ch: int) -> F64:
        """Input delay of each channel number 0..max_ch."""
        table = np.zeros(max(max_ch, *self.delays_ps.keys(), 0) + 1)
        for ch, delay in self.delays_ps.items():
            table[ch] = delay
        return table

    def _dead_time(
        self, parts: list[tuple[F64, IntArr]], delays: F64, length_ps: int
    ) -> list[tuple[F64, IntArr]]:
        """Each channel's non-paralysable dead time (on its input, before the delay)."""
        t = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        ch = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.intp)
        order = np.argsort(t, kind="stable")
        t, ch = t.take(order), ch.take(order)
        n_ch = delays.size
        tau_of = np.full(n_ch, self.dead_time_ps)
        last_of = np.full(n_ch, -math.inf)
        for c, last in self._last.items():
            if c < n_ch:
                last_of[c] = last - delays[c]
        jdt = JointDeadTime(t, ch.copy(), tau_of, last_of, float(length_ps) + 2 * tau_of[0] + 1)
        t, ch = t[jdt.keep], ch[jdt.keep]
        latest = np.full(n_ch, -math.inf)
        np.maximum.at(latest, ch, t)
        for c in range(n_ch):
            if math.isfinite(latest[c]):
                self._last[c] = float(latest[c]) + float(delays[c]) - length_ps
            elif c in self._last:
                self._last[c] -= length_ps
        for c in list(self._last):
            if c >= n_ch:
                self._last[c] -= length_ps
        return [(t, ch)]


class TagReader:
    """An independent cursor on a tag stream (a tagger's, or a set of detectors').

    ``passive``: a follower that reads only what other readers' acquisitions generated
    (`read_ready`); it never moves time nor generates, and does not keep the world warm.
    ``join``: a streaming acquisition; in fast mode one opened while streaming
    acquisitions on other taggers run starts where the earliest of them started (the
    package README, "Time and acquisition").
    """

    def __init__(
        self,
        timeline: _Timeline,
        pipeline: TagPipeline,
        capacity: int,
        *,
        passive: bool = False,
        join: bool = False,
    ) -> None:
        self._timeline = timeline
        self._pipeline = pipeline
        self.capacity = capacity
        self.passive = passive
        self.join = join
        self._chunks: deque[tuple[I64, I32]] = deque()
        self._unread = 0
        self._lost = 0
        self.closed = False
        #: A streaming acquisition that has read its window and waits to be closed (`hold`).
        self.held = False
        self.cursor_ps = timeline._register(self)
        #: Where this reader's acquisition started (true ps; moved by `seek_now`).
        self.start_ps = self.cursor_ps
        pipeline.readers.append(self)

    # -- feeding (by the pipeline) ---------------------------------------------------------

    def _feed(self, ts: I64, ch: I32) -> None:
        space = self.capacity - self._unread
        if ts.size > space:
            self._lost += ts.size - space
            ts, ch = ts[:space], ch[:space]
        if ts.size:
            self._chunks.append((ts, ch))
            self._unread += ts.size

    def _clear(self) -> None:
        self._chunks.clear()
        self._unread = 0

    # -- reading ---------------------------------------------------------------------------

    @property
    def cursor_s(self) -> float:
        return self.cursor_ps / PS_PER_S

    def _check(self) -> None:
        if self.closed:
            raise WorldError(f"reader on {self._pipeline.name} is closed")

    def read(self, duration_s: float) -> TagBlock:
        """Tags of the next ``duration_s`` of simulated time after the cursor.

        Fast mode: simulated time runs forward as needed. Realtime mode: the window
        must already be in the past (use `read_async`).
        """
        self._check()
        stop = self.cursor_ps + self._duration_ps(duration_s)
        self._timeline.clock.advance_to_ps(stop)
        return self._take(stop)

    async def read_async(self, duration_s: float) -> TagBlock:
        """Like `read`, but waits (asyncio) for the window to pass in realtime mode."""
        self._check()
        stop = self.cursor_ps + self._duration_ps(duration_s)
        await self._timeline.clock.wait_until_ps(stop)
        return self._take(stop)

    def read_ready(self, duration_s: float) -> TagBlock | None:
        """The next ``duration_s`` after the cursor if the world has already generated all of
        it (for the readers of other acquisitions), else None. Never moves time."""
        self._check()
        stop = self.cursor_ps + self._duration_ps(duration_s)
        if self._pipeline.committed_until < math.floor(self._pipeline.clock.node_of_true(stop)):
            return None
        return self._take(stop)

    def read_available(self) -> TagBlock:
        """Everything from the cursor up to the present."""
        self._check()
        return self._take(max(self.cursor_ps, self._timeline.clock.now_ps))

    def seek_now(self) -> None:
        """Drop buffered tags and restart the cursor at the present."""
        self._check()
        self._clear()
        self._lost = 0
        self.cursor_ps = max(self.cursor_ps, self._timeline._start_ps())
        self.start_ps = self.cursor_ps

    def hold(self) -> None:
        """End a streaming (``join``) acquisition's reading but keep it open, so that a stream
        another tagger starts before this one is stopped still joins it (fast mode: two
        streams started together cover the same interval however long one of them took to
        start, on the wall clock). It takes no more tags; `close` it when stopped. Its
        tagger keeps its tags from now on (retention), like one without a stream, so that
        its next stream can join one another tagger starts meanwhile."""
        self._check()
        self._clear()
        self.held = True
        if self in self._pipeline.readers:
            self._pipeline.readers.remove(self)
        self._timeline._update_retention()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._clear()
        if self in self._pipeline.readers:
            self._pipeline.readers.remove(self)
        self._timeline._unregister(self)

    @staticmethod
    def _duration_ps(duration_s: float) -> int:
        if not (math.isfinite(duration_s) and duration_s >= 0):
            raise WorldError(
                f"acquisition duration must be a finite number >= 0, got {duration_s!r}"
            )
        return seconds_to_ps(duration_s)

    def _take(self, stop_ps: int) -> TagBlock:
        clock = self._pipeline.clock
        node_start = math.floor(clock.node_of_true(self.cursor_ps))
        node_stop = math.floor(clock.node_of_true(stop_ps))
        self._timeline._generate_for(self._pipeline, node_stop, stop_ps)
        ts_out: list[I64] = []
        ch_out: list[I32] = []
        while self._chunks:
            ts, ch = self._chunks[0]
            if ts[-1] < node_stop:
                ts_out.append(ts)
                ch_out.append(ch)
                self._chunks.popleft()
                self._unread -= ts.size
                continue
            cut = int(np.searchsorted(ts, node_stop, side="left"))
            if cut:
                ts_out.append(ts[:cut])
                ch_out.append(ch[:cut])
                self._chunks[0] = (ts[cut:], ch[cut:])
                self._unread -= cut
            break
        if len(ts_out) == 1:  # the common case: one batch's commit, no copy
            ts_all, ch_all = ts_out[0], ch_out[0]
        else:
            ts_all = np.concatenate(ts_out) if ts_out else np.zeros(0, np.int64)
            ch_all = np.concatenate(ch_out) if ch_out else np.zeros(0, np.int32)
        if ts_all.size and ts_all[0] < node_start:
            first = int(np.searchsorted(ts_all, node_start, side="left"))
            ts_all, ch_all = ts_all[first:], ch_all[first:]
        lost, self._lost = self._lost, 0
        self.cursor_ps = stop_ps
        return TagBlock(ts_all, ch_all, lost, node_start, node_stop)


class TimeTagger(Component):
    """A time tagger: channels 1..n_channels, input delays, bin width, bounded buffer."""

    kind = "time_tagger"
    cfg: TimeTaggerConfig

    def __init__(
        self,
        name: str,
        node: str,
        cfg: TimeTaggerConfig,
        now_s: Callable[[], float],
        clock: NodeClock,
        rng: np.random.Generator,
        timeline: _Timeline,
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        self.pipeline = TagPipeline(name, clock, rng)
        self._timeline = timeline
        self._default: TagReader | None = None
        # channel -> what is wired to it (detector or sync source), filled by the world
        self.wiring: dict[int, str] = {}

    def reset(self) -> None:
        self._bin_ps = self.cfg.bin_width_ps
        self._delays = {ch: float(d) for ch, d in self.cfg.input_delays_ps.items()}
        self._buffer_size = self.cfg.buffer_size
        self._sync_pipeline()
        self.pipeline.reset_state()

    def _sync_pipeline(self) -> None:
        p = self.pipeline
        p.bin_ps = self._bin_ps
        p.delays_ps = dict(self._delays)
        p.jitter_ps = self.cfg.channel_jitter_ps
        p.dead_time_ps = self.cfg.channel_dead_time_ns * 1e3
        p.capacity = self._buffer_size
        for r in p.readers:
            r.capacity = self._buffer_size

    @property
    def clock(self) -> NodeClock:
        return self.pipeline.clock

    @property
    def n_channels(self) -> int:
        return self.cfg.n_channels

    @property
    def bin_width_ps(self) -> int:
        return self._bin_ps

    @bin_width_ps.setter
    def bin_width_ps(self, value: int) -> None:
        if not (isinstance(value, int | np.integer) and 1 <= value <= 1_000_000):
            raise self._bad("bin_width_ps", value, "an integer 1..1000000")
        self._bin_ps = int(value)
        self._sync_pipeline()

    @property
    def input_delays_ps(self) -> dict[int, float]:
        return {ch: self._delays.get(ch, 0.0) for ch in range(1, self.n_channels + 1)}

    def set_input_delay(self, channel: int, delay_ps: float) -> None:
        if not (isinstance(channel, int) and 1 <= channel <= self.n_channels):
            raise self._bad("channel", channel, f"an integer 1..{self.n_channels}")
        self._delays[channel] = self._finite(f"input_delays_ps[{channel}]", delay_ps, -1e9, 1e9)
        self._sync_pipeline()

    @property
    def buffer_size(self) -> int:
        return self._buffer_size

    @buffer_size.setter
    def buffer_size(self, value: int) -> None:
        if not (isinstance(value, int | np.integer) and value >= 1):
            raise self._bad("buffer_size", value, "an integer >= 1")
        self._buffer_size = int(value)
        self._sync_pipeline()

    # -- acquisition ---------------------------------------------------------------------

    def open_reader(self, *, join: bool = False) -> TagReader:
        """A new reader whose cursor starts at the present (``join``: see `TagReader`)."""
        return TagReader(self._timeline, self.pipeline, self._buffer_size, join=join)

    @property
    def default_reader(self) -> TagReader:
        if self._default is None or self._default.closed:
            self._default = self.open_reader()
        return self._default

    def read(self, duration_s: float) -> TagBlock:
        return self.default_reader.read(duration_s)

    async def read_async(self, duration_s: float) -> TagBlock:
        return await self.default_reader.read_async(duration_s)

    def close_readers(self) -> None:
        for r in list(self.pipeline.readers):
            r.close()
        self._default = None
