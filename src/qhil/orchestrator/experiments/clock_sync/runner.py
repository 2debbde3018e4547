"""The clock-sync protocol: two node routines over the authenticated channel.

* **bob** (`run_bob_sync`) reads his tagger chunk by chunk and sends each chunk's
  timestamps to alice (`wire.py`); he waits for her answer before the next, so a slow
  link holds his reading back instead of piling up data;
* **alice** (`run_alice_sync`) reads her tagger alike, acquires the clock model on the
  first ``acquisition_s`` of both streams (`acquisition.py`), then tracks it interval
  by interval (``qhil.numerics.timing.ClockTracker``: lock, loss, re-acquisition) and
  answers each chunk with the loop's state; at the end she sends bob the result.

`run_clock_sync` runs both in one process, with the pair sources switched on before
and off after. Nothing here asks whether the bench is emulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.drivers.roles import Attenuator, EntangledPhotonSource, TimeTagger
from qhil.numerics.timing import ClockModel
from qhil.numerics.timing.errors import RateTooLowError
from qhil.numerics.timing.tracking import (
    ClockOffsetResult,
    ClockTracker,
    OneWayMeasurement,
    TrackerConfig,
    TrackPoint,
    interval_wander_error_ps,
    max_interval_s,
    two_way_offset,
)
from qhil.orchestrator.channel import AuthenticationError, ChannelError
from qhil.orchestrator.experiments.clock_sync.acquisition import (
    Acquisition,
    acquire,
    second_peak,
)
from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted, SyncAbortReason
from qhil.orchestrator.experiments.clock_sync.settings import (
    AUTO_MAX_INTERVAL_S,
    AUTO_MIN_INTERVAL_S,
    AUTO_MIN_PAIRS,
    AUTO_RATIO,
    ClockSyncSettings,
)
from qhil.orchestrator.experiments.clock_sync.stream import Chunk, tag_chunks
from qhil.orchestrator.experiments.clock_sync.wire import pack_timestamps, unpack_timestamps

log = logging.getLogger(__name__)

PS_PER_S = 10**12
I64 = npt.NDArray[np.int64]

#: ``on_point(direction, row)``: one row per tracking interval (the run's arrays).
PointSink = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class SyncProgress:
    """What the run is doing: ``stage`` acquiring / tracking / lost / reacquired / done."""

    stage: str
    t_s: float
    duration_s: float
    locked: bool
    coincidences: int


@dataclass
class Direction:
    """One correlation tracked between the streams: ``one-way``, ``a_to_b`` or ``b_to_a``."""

    name: str
    acquisition: Acquisition
    tracker: ClockTracker
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: Intervals the loop took in lock (``locked`` rows).
    used: int = 0

    def add(self, p: TrackPoint) -> None:
        row = _row(p)
        self.used += bool(row["locked"])
        self.rows.append(row)

    @property
    def lost(self) -> int:
        return sum(1 for e in self.tracker.events if e.kind == "lost")

    @property
    def reacquired(self) -> int:
        return sum(1 for e in self.tracker.events if e.kind == "reacquired")


@dataclass(frozen=True)
class ClockSyncResult:
    """The run's result: B's stream timebase against A's (B = A + offset + drift (t_a - t_ref)).

    ``model`` maps bob's timestamps onto alice's (``model.a_from_b``): in one-way it
    includes the path-delay difference (what a coincidence search on the two streams
    needs); in two-way the path delay is cancelled and ``delay_ps`` is the fibre's.
    """

    method: str
    model: ClockModel
    offset_stderr_ps: float
    drift_stderr: float
    coincidences: int
    lock_losses: int
    reacquisitions: int
    duration_s: float
    sigma_rel_ps: float
    acquisition_significance: float
    delay_ps: float | None = None
    delay_stderr_ps: float | None = None
    valid_until_s: float = 0.0
    #: The interval the loop ran with, s (the setting, or the one ``auto`` chose).
    tracking_interval_s: float = 0.0
    #: Every direction's loop in lock at the end (a run ending unlocked is aborted, so a
    #: result says True; recorded so that the record shows it).
    locked_at_end: bool = True

    def to_results(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "offset_s": self.model.offset_ps / PS_PER_S,
            "offset_stderr_s": self.offset_stderr_ps / PS_PER_S,
            "offset_ps": self.model.offset_ps,
            "offset_stderr_ps": self.offset_stderr_ps,
            "frequency_offset_ppb": self.model.drift * 1e9,
            "frequency_offset_stderr_ppb": self.drift_stderr * 1e9,
            "t_ref_s": self.model.t_ref_ps / PS_PER_S,
            "coincidences": self.coincidences,
            "lock_losses": self.lock_losses,
            "reacquisitions": self.reacquisitions,
            "sigma_rel_ps": self.sigma_rel_ps,
            "acquisition_significance": self.acquisition_significance,
            "path_delay_s": None if self.delay_ps is None else self.delay_ps / PS_PER_S,
            "path_delay_stderr_s": None
            if self.delay_stderr_ps is None
            else self.delay_stderr_ps / PS_PER_S,
            "duration_s": self.duration_s,
            "tracking_interval_s": self.tracking_interval_s,
            "locked_at_end": self.locked_at_end,
        }

    def to_message(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "offset_ps": self.model.offset_ps,
            "drift": self.model.drift,
            "t_ref_ps": self.model.t_ref_ps,
            "offset_stderr_ps": self.offset_stderr_ps,
            "drift_stderr": self.drift_stderr,
            "coincidences": self.coincidences,
            "lock_losses": self.lock_losses,
            "reacquisitions": self.reacquisitions,
            "duration_s": self.duration_s,
            "sigma_rel_ps": self.sigma_rel_ps,
            "acquisition_significance": self.acquisition_significance,
            "delay_ps": self.delay_ps,
            "delay_stderr_ps": self.delay_stderr_ps,
            "tracking_interval_s": self.tracking_interval_s,
            "locked_at_end": self.locked_at_end,
        }

    @classmethod
    def from_message(cls, p: Mapping[str, Any]) -> ClockSyncResult:
        try:
            return cls(
                method=str(p["method"]),
                model=ClockModel(float(p["offset_ps"]), float(p["drift"]), int(p["t_ref_ps"])),
                offset_stderr_ps=float(p["offset_stderr_ps"]),
                drift_stderr=float(p["drift_stderr"]),
                coincidences=int(p["coincidences"]),
                lock_losses=int(p["lock_losses"]),
                reacquisitions=int(p["reacquisitions"]),
                duration_s=float(p["duration_s"]),
                sigma_rel_ps=float(p["sigma_rel_ps"]),
                acquisition_significance=float(p["acquisition_significance"]),
                delay_ps=None if p["delay_ps"] is None else float(p["delay_ps"]),
                delay_stderr_ps=None
                if p["delay_stderr_ps"] is None
                else float(p["delay_stderr_ps"]),
                tracking_interval_s=float(p["tracking_interval_s"]),
                locked_at_end=bool(p["locked_at_end"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ClockSyncAborted(
                SyncAbortReason.PEER_FAILED, f"malformed result from alice: {exc}"
            ) from None


async def _call(fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    out = fn(*args)
    if inspect.isawaitable(out):
        await out


def _channels(settings: ClockSyncSettings) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Alice's and bob's inputs that see any source's photons (None: all inputs)."""
    sides: list[tuple[int, ...] | None] = []
    for side in ("alice_channels", "bob_channels"):
        chans = [getattr(s, side) for s in settings.active_sources.values()]
        sides.append(None if any(c is None for c in chans) else tuple(sorted(set().union(*chans))))
    return sides[0], sides[1]


def tracking_interval(
    settings: ClockSyncSettings, found: list[Acquisition], span_s: float
) -> float:
    """The tracking interval, s: the setting, or for ``auto`` the longest one whose offset
    error the wander inside it keeps within ``AUTO_RATIO`` x sigma_rel/sqrt(N)
    (``max_interval_s``; the slowest direction's rate and widest sigma_rel of the
    acquisition, the loop's ``wander_ppb_per_sqrt_s``), clamped, and long enough for
    ``AUTO_MIN_PAIRS`` pairs (a peak to find)."""
    if settings.tracking_interval_s != "auto":
        return float(settings.tracking_interval_s)
    rate = min(q.fit.n_coincidences for q in found) / max(span_s, 1e-12)
    if not rate > 0:
        return AUTO_MAX_INTERVAL_S
    sigma = max(q.fit.sigma_rel_ps for q in found)
    longest = max_interval_s(sigma, rate, settings.wander_ppb_per_sqrt_s, ratio=AUTO_RATIO)
    shortest = max(AUTO_MIN_INTERVAL_S, AUTO_MIN_PAIRS / rate)
    # whole milliseconds, rounded down (a readable interval; shorter only helps precision)
    # (inf without wander: the upper bound)
    chosen = max(math.floor(min(longest, AUTO_MAX_INTERVAL_S) * 1e3) / 1e3, shortest)
    return float(min(chosen, AUTO_MAX_INTERVAL_S))


def _tracker_config(
    settings: ClockSyncSettings, acq: Acquisition, interval_s: float
) -> TrackerConfig:
    sigma = acq.fit.sigma_rel_ps
    return TrackerConfig(
        interval_ps=round(interval_s * PS_PER_S),
        # A few sigma_rel plus the model's own uncertainty over one interval.
        half_window_ps=max(6.0 * sigma, 1_000.0),
        wander_ppb_per_sqrt_s=settings.wander_ppb_per_sqrt_s,
        min_significance=settings.lock_significance,
        lost_after=settings.max_misses,
        full_search_ps=settings.uncertainty_s * PS_PER_S,
        reacquire_span_ps=round(settings.acquisition_s * PS_PER_S),
    )


def _row(p: TrackPoint) -> dict[str, Any]:
    return {
        "t_s": p.t_ps / PS_PER_S,
        "offset_tracked_ps": p.model.offset_ps,
        "offset_measured_ps": p.measured_offset_ps,
        "stderr_ps": p.measured_stderr_ps,
        "counts": p.counts,
        "significance": p.significance,
        # In lock for this interval: the loop was locked and took its measurement (a missed
        # interval, or one lost and re-acquired later, is False: a gap in the residual).
        "locked": bool(p.locked and p.used),
        "frequency_ppb": p.model.drift * 1e9,
    }


class _AliceLoop:
    """Alice's side: buffers the acquisition data, then feeds the tracker(s)."""

    def __init__(self, settings: ClockSyncSettings, on_point: PointSink | None) -> None:
        self.settings = settings
        self.on_point = on_point
        self.a_chunks: list[Chunk] = []
        self.b_chunks: list[tuple[I64, I64]] = []  # (timestamps, channels)
        self.directions: list[Direction] = []
        self.acquired = False
        self.interval_s = 0.0  # the tracking interval, known after the acquisition

    def _acquire(self) -> None:
        s = self.settings
        a = np.concatenate([c.timestamps_ps for c in self.a_chunks])
        b = np.concatenate([t for t, _ in self.b_chunks])
        span = float(self.a_chunks[-1].stop_ps - self.a_chunks[0].start_ps)
        first = acquire(
            a,
            b,
            uncertainty_s=s.uncertainty_s,
            max_frequency_offset_ppm=s.max_frequency_offset_ppm,
            min_significance=s.min_significance,
            duration_ps=span,
        )
        found = [first]
        if s.two_way:
            found.append(second_peak(a, b, first, min_significance=s.min_significance))
            found.sort(key=lambda q: q.model.offset_ps)
            names = ["b_to_a", "a_to_b"]  # the partner's fibre: earlier, then later peak
        else:
            names = ["one-way"]
        interval = self.interval_s = tracking_interval(s, found, span / PS_PER_S)
        if s.max_offset_stderr_ps is not None:
            for q in found:
                per_interval = q.fit.n_coincidences * interval / (span / PS_PER_S)
                _check_rates(q, s, per_interval, interval)
        start = self.a_chunks[0].start_ps
        for name, q in zip(names, found, strict=True):
            tracker = ClockTracker(
                q.model,
                _tracker_config(s, q, interval),
                offset_stderr_ps=q.offset_stderr_ps,
                drift_stderr=q.drift_stderr,
                start_ps=start,
                # the acquisition's line ignores the wander over its data; its pairs' width
                # seeds the loop's pooled width (A's notes)
                data_span_ps=round(span),
                sigma_rel_ps=q.fit.sigma_rel_ps,
            )
            self.directions.append(Direction(name, q, tracker))
        self.acquired = True
        for c, (bt, _) in zip(self.a_chunks, self.b_chunks, strict=True):
            self._feed(c.timestamps_ps, bt)
        self.a_chunks.clear()
        self.b_chunks.clear()

    def _feed(self, a: I64, b: I64) -> None:
        for d in self.directions:
            for p in d.tracker.feed(a, b):
                d.add(p)

    async def _emit(self) -> None:
        for d in self.directions:
            for row in d.rows:
                await _call(self.on_point, d.name, row)
            d.rows.clear()

    async def chunk(self, a: Chunk, b: tuple[I64, I64]) -> None:
        if not self.acquired:
            self.a_chunks.append(a)
            self.b_chunks.append(b)
            have = (a.stop_ps - self.a_chunks[0].start_ps) / PS_PER_S
            if have >= self.settings.acquisition_s - 1e-9:
                self._acquire()
        else:
            self._feed(a.timestamps_ps, b[0])
        await self._emit()

    async def finish(self, duration_s: float) -> ClockSyncResult:
        if not self.acquired:
            self._acquire()
        for d in self.directions:
            for p in d.tracker.flush():
                d.add(p)
        await self._emit()
        _check_locked(self.directions, self.interval_s)
        result = _result(self.settings, self.directions, duration_s, self.interval_s)
        _check_final_precision(self.settings, result)
        return result

    @property
    def locked(self) -> bool:
        return bool(self.directions) and all(d.tracker.locked for d in self.directions)

    @property
    def coincidences(self) -> int:
        return sum(d.tracker.coincidences for d in self.directions)


def _check_rates(
    q: Acquisition, settings: ClockSyncSettings, per_interval: float, interval_s: float
) -> None:
    """Up front: can an interval reach ``max_offset_stderr_ps``? sigma_rel/sqrt(N) alone
    (``rates_too_low``), then with the wander inside the interval added in quadrature
    (``precision_not_reached``): the final stated error includes it too."""
    from qhil.numerics.timing.tracking import check_precision

    precision_ps = settings.max_offset_stderr_ps
    assert precision_ps is not None
    sigma = q.fit.sigma_rel_ps
    rate = per_interval / interval_s
    best_s, best_ps = best_interval(sigma, rate, settings.wander_ppb_per_sqrt_s)
    if best_ps > precision_ps:
        # No interval does it: a longer one gathers pairs but lets the wander in.
        raise ClockSyncAborted(
            SyncAbortReason.RATES_TOO_LOW,
            f"no tracking interval reaches max_offset_stderr_ps = {precision_ps:g} at "
            f"{rate:.4g} pairs/s (sigma_rel {sigma:.1f} ps, clocks' wander "
            f"{settings.wander_ppb_per_sqrt_s:g} ppb/sqrt(s)): the best is {best_ps:.1f} ps "
            f"at {best_s:.3g} s; raise the pump current or relax the precision",
        )
    try:
        check_precision(sigma, precision_ps, int(per_interval), interval_s)
    except RateTooLowError as exc:
        raise ClockSyncAborted(
            SyncAbortReason.RATES_TOO_LOW,
            f"{exc} (max_offset_stderr_ps = {precision_ps:g}; coincidence rate "
            f"{per_interval / interval_s:.4g}/s, sigma_rel {sigma:.1f} ps): "
            "raise the pump current, lengthen tracking_interval_s or relax the precision",
        ) from None
    statistical = sigma / math.sqrt(max(per_interval, 1.0))
    wander = interval_wander_error_ps(settings.wander_ppb_per_sqrt_s, interval_s)
    if math.hypot(statistical, wander) > precision_ps:
        raise ClockSyncAborted(
            SyncAbortReason.PRECISION_NOT_REACHED,
            f"an interval of {interval_s:g} s gives {math.hypot(statistical, wander):.1f} ps "
            f"(sigma_rel/sqrt(N) {statistical:.1f} ps, the clocks' wander inside it "
            f"{wander:.1f} ps at {settings.wander_ppb_per_sqrt_s:g} ppb/sqrt(s)) > "
            f"max_offset_stderr_ps = {precision_ps:g}: shorten tracking_interval_s and raise "
            "the pump current, or relax the precision",
        )


def best_interval(
    sigma_rel_ps: float, rate_hz: float, wander_ppb_per_sqrt_s: float
) -> tuple[float, float]:
    """``(interval s, error ps)`` of the interval in [1 ms, 600 s] whose offset error,
    sigma_rel/sqrt(rate I) and the wander inside it in quadrature, is smallest."""
    grid = np.logspace(-3.0, math.log10(600.0), 600)
    wander = interval_wander_error_ps(wander_ppb_per_sqrt_s, 1.0) * grid**1.5
    err = np.hypot(sigma_rel_ps / np.sqrt(max(rate_hz, 1e-12) * grid), wander)
    k = int(np.argmin(err))
    return float(grid[k]), float(err[k])


def _check_locked(directions: list[Direction], interval_s: float) -> None:
    """Abort ``not_locked`` when a direction's loop took no interval in lock, or ended out
    of lock: its model would be the acquisition's (or a lost loop's) guess, not a track."""
    for d in directions:
        if d.used and d.tracker.locked:
            continue
        what = (
            f"tracked no interval of {interval_s:g} s in lock"
            if not d.used
            else f"ended with the lock lost ({d.lost} losses, {d.reacquired} re-acquisitions)"
        )
        raise ClockSyncAborted(
            SyncAbortReason.NOT_LOCKED,
            f"{d.name}: the loop {what} (acquired at {d.acquisition.significance:.1f} sigma; "
            "intervals need lock_significance): check the pair rate and the path, lower "
            "lock_significance, lengthen tracking_interval_s or the run; the stored "
            "correction is kept",
        )


def _check_final_precision(settings: ClockSyncSettings, result: ClockSyncResult) -> None:
    """The final stated offset error (wander included) against ``max_offset_stderr_ps``."""
    want = settings.max_offset_stderr_ps
    if want is not None and result.offset_stderr_ps > want:
        raise ClockSyncAborted(
            SyncAbortReason.PRECISION_NOT_REACHED,
            f"final offset error {result.offset_stderr_ps:.1f} ps > max_offset_stderr_ps "
            f"= {want:g} ps (interval {result.tracking_interval_s:g} s, sigma_rel "
            f"{result.sigma_rel_ps:.1f} ps, {result.coincidences} coincidences): raise the "
            "pump current, shorten tracking_interval_s (the wander inside it) or relax it",
        )


def _measurement(d: Direction) -> OneWayMeasurement:
    t = d.tracker
    return OneWayMeasurement.from_model(t.model, t.offset_stderr_ps, t.drift_stderr)


def _result(
    settings: ClockSyncSettings,
    directions: list[Direction],
    duration_s: float,
    interval_s: float,
) -> ClockSyncResult:
    lost = sum(d.lost for d in directions)
    reacq = sum(d.reacquired for d in directions)
    coinc = sum(d.tracker.coincidences for d in directions)
    sigma = float(np.mean([d.acquisition.fit.sigma_rel_ps for d in directions]))
    sig = min(d.acquisition.significance for d in directions)
    if len(directions) == 1:
        d = directions[0]
        t = d.tracker
        return ClockSyncResult(
            "one-way",
            t.model,
            t.offset_stderr_ps,
            t.drift_stderr,
            coinc,
            lost,
            reacq,
            duration_s,
            sigma,
            sig,
            tracking_interval_s=interval_s,
            locked_at_end=t.locked,
        )
    by = {d.name: _measurement(d) for d in directions}
    w: ClockOffsetResult = two_way_offset(by["a_to_b"], by["b_to_a"])
    return ClockSyncResult(
        "two-way",
        w.clock_model,
        w.clock_offset_stderr_ps,
        w.drift_stderr,
        coinc,
        lost,
        reacq,
        duration_s,
        sigma,
        sig,
        w.delay_ps,
        w.delay_stderr_ps,
        tracking_interval_s=interval_s,
        locked_at_end=all(d.tracker.locked for d in directions),
    )


def _wire_chunk(c: Chunk, channels: tuple[int, ...] | None) -> dict[str, Any]:
    keep = slice(None) if channels is None else np.isin(c.channels, np.asarray(channels))
    return {
        "index": c.index,
        "start_ps": c.start_ps,
        "stop_ps": c.stop_ps,
        "tags": pack_timestamps(c.timestamps_ps[keep]),
    }


async def run_bob_sync(
    settings: ClockSyncSettings,
    tagger: TimeTagger,
    channel: Any,
    *,
    progress: Callable[[SyncProgress], Any] | None = None,
) -> ClockSyncResult:
    """Bob's routine: stream his tagger to alice, chunk by chunk; receive the result."""
    timeout = settings.message_timeout_s
    _, bob_channels = _channels(settings)
    try:
        start = await _expect(channel, "start", timeout)
        differ = settings.differences(dict(start.get("settings") or {}))
        if differ:
            raise ClockSyncAborted(
                SyncAbortReason.SETTINGS_MISMATCH,
                "the parties' experiments.clock_sync settings differ: "
                + "; ".join(differ)
                + " (give both the same profile table and --duration)",
            )
        chunks = tag_chunks(tagger, settings.bob_node, settings.duration_s, settings.chunk_s)
        try:
            async for c in chunks:
                await channel.send("tags", _wire_chunk(c, bob_channels))
                state = await _expect(channel, "state", timeout)
                await _call(
                    progress,
                    SyncProgress(
                        str(state["stage"]),
                        float(state["t_s"]),
                        settings.duration_s,
                        bool(state["locked"]),
                        int(state["coincidences"]),
                    ),
                )
        finally:
            await chunks.aclose()
        await channel.send("done", {})
        msg = await _expect(channel, "result", timeout)
        return ClockSyncResult.from_message(msg)
    except BaseException as exc:
        failure = await _aborted(channel, "bob", exc)
        if failure is exc:
            raise
        raise failure from exc


async def _aborted(channel: Any, party: str, exc: BaseException) -> BaseException:
    """What a party's failure becomes: a channel failure is a typed abort; its own abort
    is told to the peer (unless the peer's abort is what it is); anything else as is."""
    if isinstance(exc, AuthenticationError):
        return ClockSyncAborted(SyncAbortReason.AUTHENTICATION_FAILED, str(exc))
    if isinstance(exc, ChannelError):  # its text already names the party
        return ClockSyncAborted(SyncAbortReason.CHANNEL_FAILED, str(exc))
    if isinstance(exc, ConnectionError):
        return ClockSyncAborted(SyncAbortReason.CHANNEL_FAILED, f"{party}: {exc}")
    if isinstance(exc, ClockSyncAborted) and not exc.from_peer:
        with contextlib.suppress(ChannelError, ConnectionError):
            await channel.send("abort", {"reason": exc.reason.value, "detail": exc.detail})
    return exc


async def _expect(channel: Any, kind: str, timeout_s: float) -> Mapping[str, Any]:
    """The next message, which must be ``kind``; the peer's abort is raised as ours."""
    msg = await channel.recv(timeout_s=timeout_s)
    if msg.kind == "abort":
        reason = str(msg.payload.get("reason", ""))
        detail = str(msg.payload.get("detail", ""))
        try:
            why = SyncAbortReason(reason)
        except ValueError:
            why = SyncAbortReason.PEER_FAILED
        raise ClockSyncAborted(why, f"{detail} (reported by {channel.peer})", from_peer=True)
    if msg.kind != kind:
        raise ClockSyncAborted(
            SyncAbortReason.PEER_FAILED, f"expected {kind!r} from {channel.peer}, got {msg.kind!r}"
        )
    payload: Mapping[str, Any] = msg.payload
    return payload


async def run_alice_sync(
    settings: ClockSyncSettings,
    tagger: TimeTagger,
    channel: Any,
    *,
    progress: Callable[[SyncProgress], Any] | None = None,
    on_point: PointSink | None = None,
) -> ClockSyncResult:
    """Alice's routine: her stream and bob's, acquisition, tracking; sends bob the result."""
    timeout = settings.message_timeout_s
    alice_channels, _ = _channels(settings)
    loop = _AliceLoop(settings, on_point)
    try:
        await channel.send("start", {"settings": settings.agreed()})
        chunks = tag_chunks(tagger, settings.alice_node, settings.duration_s, settings.chunk_s)
        try:
            async for c in chunks:
                msg = await _expect(channel, "tags", timeout)
                b = unpack_timestamps(msg["tags"])
                mine = Chunk(c.index, c.start_ps, c.stop_ps, c.on(alice_channels), c.channels[:0])
                was = loop.locked
                await loop.chunk(mine, (b, np.zeros(0, np.int64)))
                stage = "acquiring" if not loop.acquired else "tracking"
                if loop.acquired and was and not loop.locked:
                    stage = "lost"
                state = {
                    "stage": stage,
                    "t_s": c.stop_ps / PS_PER_S,
                    "locked": loop.locked,
                    "coincidences": loop.coincidences,
                }
                await channel.send("state", state)
                await _call(
                    progress,
                    SyncProgress(
                        stage,
                        c.stop_ps / PS_PER_S,
                        settings.duration_s,
                        loop.locked,
                        loop.coincidences,
                    ),
                )
        finally:
            await chunks.aclose()
        await _expect(channel, "done", timeout)
        result = await loop.finish(settings.duration_s)
        await channel.send("result", result.to_message())
        return result
    except BaseException as exc:
        failure = await _aborted(channel, "alice", exc)
        if failure is exc:
            raise
        raise failure from exc


async def switch_sources(
    settings: ClockSyncSettings, sources: Mapping[str, EntangledPhotonSource], on: bool
) -> None:
    """Pumps on (crystal setpoint first, when given) or off, through the source role."""
    for node, src in sources.items():
        cfg = settings.active_sources[node]
        if on:
            if cfg.crystal_temperature_c is not None:
                await src.set_crystal_temperature_c(cfg.crystal_temperature_c)
            await src.set_output(True)
            await src.set_pump_current_ma(cfg.pump_current_ma)
            now = await src.pump_current_ma()
            if cfg.pump_current_ma > 0 and not now > 0:
                raise ClockSyncAborted(
                    SyncAbortReason.NO_LIGHT,
                    f"{node}'s pair source {src.name} reports a pump current of {now:g} mA "
                    f"after being set to {cfg.pump_current_ma:g} mA: check its laser "
                    "interlock, current limit and supply",
                )
        else:
            await src.set_output(False)


async def close_shutters(shutters: Mapping[str, Attenuator]) -> None:
    """Close each attenuator's shutter (light that would reach the taggers' detectors
    besides the pairs); left closed after the run: re-opening light is the user's call."""
    for att in shutters.values():
        await att.set_output(False)


async def run_clock_sync(
    settings: ClockSyncSettings,
    alice_tagger: TimeTagger,
    bob_tagger: TimeTagger,
    alice_channel: Any,
    bob_channel: Any,
    sources: Mapping[str, EntangledPhotonSource],
    *,
    progress: Callable[[SyncProgress], Any] | None = None,
    on_point: PointSink | None = None,
) -> ClockSyncResult:
    """Both nodes in this process; the sources are on for the run and off after it."""
    try:
        await switch_sources(settings, sources, True)
        if settings.settle_s > 0:
            await asyncio.sleep(settings.settle_s)
        alice = asyncio.create_task(
            run_alice_sync(
                settings, alice_tagger, alice_channel, progress=progress, on_point=on_point
            )
        )
        bob = asyncio.create_task(run_bob_sync(settings, bob_tagger, bob_channel))
        try:
            done = await _first_failure(alice, bob)
        finally:
            for t in (alice, bob):
                t.cancel()
            await asyncio.gather(alice, bob, return_exceptions=True)
        return done
    finally:
        with contextlib.suppress(Exception):
            await switch_sources(settings, sources, False)


async def _first_failure(
    alice: asyncio.Task[ClockSyncResult], bob: asyncio.Task[ClockSyncResult]
) -> ClockSyncResult:
    """Alice's result; the first party's failure if one fails (its own error, not the echo)."""
    pending: set[asyncio.Task[ClockSyncResult]] = {alice, bob}
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
    return alice.result()
