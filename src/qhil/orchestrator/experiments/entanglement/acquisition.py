"""The shared two-node acquisition of entangled pairs (visibility, CHSH, BBM92, calibrations).

Only roles are used: the source site's :class:`EntangledPhotonSource` (pump on/off), each
node's :class:`TimeTagger` and, when the bench has them, each node's
:class:`RotationMount` (a half-wave plate in front of the analyser). One acquisition:

1. both taggers stream the same interval (started together: one stream each, one
   timebase each, read concurrently);
2. the clock model between them is found on these very streams with clock sync's
   no-prior acquisition (``clock_sync.acquisition.acquire``: +-``uncertainty_s``,
   +-``max_frequency_offset_ppm``). A stored clock-sync correction's offset cannot be
   reused as such: each TDC1 resets its counter at every stream start, so every new
   stream has a new offset; its frequency can (``prior``: the scan then covers only
   +-``prior_frequency_ppm`` around it, ~40x less work);
3. bob's tags are mapped onto alice's timebase and the coincidences counted
   (:func:`qhil.numerics.entanglement.cross_node_coincidences`: window from the fitted
   peak, accidentals from displaced windows, reported, never subtracted).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.drivers.roles import EntangledPhotonSource, RotationMount, TimeTagger
from qhil.errors import TransportError
from qhil.numerics.entanglement import (
    CrossNodeCoincidences,
    NoCoincidencePeakError,
    cross_node_coincidences,
)
from qhil.numerics.timing import ClockModel
from qhil.orchestrator.experiments.clock_sync.acquisition import acquire
from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted
from qhil.orchestrator.experiments.entanglement.errors import (
    EntanglementAborted,
    EntanglementAbortReason,
)

I64 = npt.NDArray[np.int64]
PS_PER_S = 10**12
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoincidenceOptions:
    """How one acquisition finds its clock model and its coincidences."""

    n_sigma: float = 3.0  # window: +-n_sigma of the fitted peak's rms width
    window_ps: int | None = None  # a fixed full width instead
    uncertainty_s: float = 0.5  # the clock model's offset search, no prior
    max_frequency_offset_ppm: float = 100.0
    min_significance: float = 6.0
    prior_frequency_ppm: float = 1.0  # with a prior: the scan's half range around its drift
    chunk_s: float = 0.5  # stream blocks
    stream_attempts: int = 3  # a stream failing in transport is read again (both anew)


@dataclass
class EntanglementNodes:
    """The instruments one acquisition uses (roles), and the taggers' inputs H, V, D, A."""

    alice_tagger: TimeTagger
    bob_tagger: TimeTagger
    source: EntangledPhotonSource | None = None
    alice_mount: RotationMount | None = None
    bob_mount: RotationMount | None = None
    alice_channels: tuple[int, int, int, int] = (1, 2, 3, 4)
    bob_channels: tuple[int, int, int, int] = (1, 2, 3, 4)

    async def pump_on(
        self, pump_current_ma: float, crystal_temperature_c: float | None = None
    ) -> None:
        """The source's pump on at ``pump_current_ma`` (its crystal at the set point first)."""
        if self.source is None:
            return
        if crystal_temperature_c is not None:
            await self.source.set_crystal_temperature_c(crystal_temperature_c)
        await self.source.set_output(True)
        await self.source.set_pump_current_ma(pump_current_ma)
        now = await self.source.pump_current_ma()
        if pump_current_ma > 0 and not now > 0:
            raise EntanglementAborted(
                EntanglementAbortReason.NO_LIGHT,
                f"the pair source {self.source.name} reports a pump current of {now:g} mA "
                f"after being set to {pump_current_ma:g} mA: check its laser interlock, "
                "current limit and supply",
            )

    async def pump_off(self) -> None:
        if self.source is not None:
            await self.source.set_output(False)

    async def set_angles(self, alice_deg: float | None, bob_deg: float | None) -> None:
        """Move the mounts (None: leave that one); both move at once, each returns when done."""
        moves = []
        for mount, angle, node in (
            (self.alice_mount, alice_deg, "alice"),
            (self.bob_mount, bob_deg, "bob"),
        ):
            if angle is None:
                continue
            if mount is None:
                raise ValueError(f"{node} has no rotation mount to set to {angle:g} deg")
            moves.append(mount.move_to_deg(float(angle)))
        await asyncio.gather(*moves)


@dataclass(frozen=True)
class PairAcquisition:
    """One acquisition of both nodes: its clock model and its coincidences.

    ``coincidences`` holds the 4 x 4 ``matrix`` (alice H, V, D, A x bob's; raw, accidentals
    included), ``accidentals`` (same shape, expected in the window, from displaced
    windows), the singles, and per coincidence both times and outcomes
    (``alice_t_ps``/``alice_outcome``, ``bob_t_ps`` on alice's timebase/``bob_outcome``).
    The ``*_all_*`` arrays are the whole streams of the analysers' inputs (bob's mapped
    onto alice's timebase, both sorted), for anyone histogramming further.
    """

    model: ClockModel
    model_stderr_ps: float
    duration_s: float
    coincidences: CrossNodeCoincidences
    alice_angle_deg: float | None = None
    bob_angle_deg: float | None = None
    alice_all_t_ps: I64 = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    alice_all_ch: I64 = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    bob_all_t_ps: I64 = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    bob_all_ch: I64 = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))

    @property
    def matrix(self) -> I64:
        return self.coincidences.matrix

    @property
    def accidentals(self) -> npt.NDArray[np.float64]:
        return self.coincidences.accidentals

    @property
    def window_ps(self) -> int:
        return self.coincidences.window_ps

    def to_results(self, prefix: str = "") -> dict[str, Any]:
        """Scalars for a run record."""
        c = self.coincidences
        t = max(self.duration_s, 1e-12)
        return {
            f"{prefix}clock_offset_ps": self.model.offset_ps,
            f"{prefix}clock_drift_ppb": self.model.drift * 1e9,
            f"{prefix}window_ps": c.window_ps,
            f"{prefix}peak_delay_ps": c.delay_ps,
            f"{prefix}peak_sigma_ps": c.sigma_ps,
            f"{prefix}coincidences": c.coincidences,
            f"{prefix}accidentals": c.accidentals_total,
            f"{prefix}accidentals_std": float(np.sqrt((c.accidentals_std**2).sum())),
            f"{prefix}accidentals_predicted": c.predicted_accidentals(),
            f"{prefix}singles_a_hz": float(c.singles_a.sum()) / t,
            f"{prefix}singles_b_hz": float(c.singles_b.sum()) / t,
            f"{prefix}coincidence_rate_hz": c.coincidences / t,
        }


async def _read(
    tagger: TimeTagger, node: str, duration_s: float, chunk_s: float
) -> tuple[list[I64], list[npt.NDArray[Any]]]:
    times: list[I64] = []
    chans: list[npt.NDArray[Any]] = []
    blocks = tagger.stream(duration_s, min(chunk_s, duration_s))
    try:
        async for block in blocks:
            if block.lost:
                raise EntanglementAborted(
                    EntanglementAbortReason.BUFFER_OVERFLOW,
                    f"{node}'s tagger {tagger.name} lost {block.lost} events (its buffer "
                    "overflowed): lower the pump current or read shorter chunks",
                )
            times.append(np.asarray(block.timestamps_ps, dtype=np.int64))
            chans.append(np.asarray(block.channels))
    finally:
        aclose = getattr(blocks, "aclose", None)
        if aclose is not None:
            await aclose()
    return times, chans


async def _both_streams(
    nodes: EntanglementNodes, duration_s: float, opts: CoincidenceOptions
) -> tuple[tuple[list[I64], list[npt.NDArray[Any]]], tuple[list[I64], list[npt.NDArray[Any]]]]:
    """Both taggers over the same interval. A stream that fails in transport (words lost
    on a loaded host: the TDC1 driver says "restart the stream") is read again, both
    streams anew, up to ``stream_attempts`` times in all; then its error propagates."""
    for attempt in range(1, opts.stream_attempts + 1):
        got = await _both(
            _read(nodes.alice_tagger, "alice", duration_s, opts.chunk_s),
            _read(nodes.bob_tagger, "bob", duration_s, opts.chunk_s),
        )
        errors = [g for g in got if isinstance(g, BaseException)]
        if not errors:
            a, b = got
            return a, b
        hard = [e for e in errors if not isinstance(e, TransportError)]
        if hard or attempt == opts.stream_attempts:
            raise (hard or errors)[0]
        # Words lost on a loaded host happen: routine, so a plain line (the error at debug).
        log.debug("pair acquisition: stream error: %s", errors[0])
        log.warning(
            "pair acquisition: retrying both taggers' streams (attempt %d of %d)",
            attempt + 1,
            opts.stream_attempts,
        )
    raise AssertionError("unreachable")


async def _both(*reads: Coroutine[Any, Any, Any]) -> list[Any]:
    """The reads' results or exceptions (as ``gather(return_exceptions=True)``). Cancelled,
    the reads are cancelled and awaited, then the very CancelledError re-raised: a gather
    whose last read ended in an error made up a bare one, and the cancel's reason ("terminated
    by signal (SIGTERM)", recorded with the run) was lost."""
    tasks = [asyncio.ensure_future(r) for r in reads]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
        for t in tasks:  # retrieved: the cancel is what the caller hears of
            if not t.cancelled():
                t.exception()
        raise
    return [
        asyncio.CancelledError() if t.cancelled() else (t.exception() or t.result()) for t in tasks
    ]


def _joined(times: list[I64], chans: list[npt.NDArray[Any]]) -> tuple[I64, I64]:
    if not times:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    t = np.concatenate(times)
    c = np.concatenate(chans).astype(np.int64)
    if t.size > 1 and bool(np.any(t[1:] < t[:-1])):
        order = np.argsort(t, kind="stable")
        t, c = t[order], c[order]
    return t, c


def clock_model(
    a: I64, b: I64, duration_s: float, options: CoincidenceOptions, prior: ClockModel | None
) -> tuple[ClockModel, float]:
    """B's stream against A's (offset, frequency) from these streams; see the module doc."""
    span = duration_s * PS_PER_S
    try:
        if prior is None:
            acq = acquire(
                a,
                b,
                uncertainty_s=options.uncertainty_s,
                max_frequency_offset_ppm=options.max_frequency_offset_ppm,
                min_significance=options.min_significance,
                duration_ps=span,
            )
            return acq.model, acq.offset_stderr_ps
        t_ref = int(a[0]) if a.size else 0
        pre = ClockModel(0.0, prior.drift, t_ref)
        acq = acquire(
            a,
            pre.map_b_to_a(b),
            uncertainty_s=options.uncertainty_s,
            max_frequency_offset_ppm=options.prior_frequency_ppm,
            min_significance=options.min_significance,
            duration_ps=span,
        )
        m = acq.model.with_reference(t_ref)
        return pre.compose(m.offset_ps, m.drift), acq.offset_stderr_ps
    except ClockSyncAborted as exc:
        raise EntanglementAborted(EntanglementAbortReason.NO_PEAK, exc.detail) from None


async def acquire_pairs(
    nodes: EntanglementNodes,
    duration_s: float,
    options: CoincidenceOptions | None = None,
    *,
    prior: ClockModel | None = None,
    keep_streams: bool = False,
) -> PairAcquisition:
    """Both taggers over the same ``duration_s``, their clock model, their coincidences.

    ``keep_streams``: keep the whole streams (``*_all_*``) in the result.
    """
    opts = options or CoincidenceOptions()
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s: must be > 0 (got {duration_s!r})")
    try:
        return await _acquire_once(nodes, duration_s, opts, prior, keep_streams)
    except EntanglementAborted as exc:
        # With a prior the peak was there a moment ago: one more pair of streams before
        # giving up (on a loaded host a stream has come back with most words silently
        # missing: alice at 7.8e3/s instead of 3.9e4/s, no peak).
        if prior is None or exc.reason is not EntanglementAbortReason.NO_PEAK:
            raise
        log.warning("pair acquisition: %s; acquiring once more", exc)
        return await _acquire_once(nodes, duration_s, opts, prior, keep_streams)


async def _acquire_once(
    nodes: EntanglementNodes,
    duration_s: float,
    opts: CoincidenceOptions,
    prior: ClockModel | None,
    keep_streams: bool,
) -> PairAcquisition:
    (ta, ca), (tb, cb) = await _both_streams(nodes, duration_s, opts)
    a_t, a_c = _joined(ta, ca)
    b_t, b_c = _joined(tb, cb)
    a_sel = np.isin(a_c, nodes.alice_channels)
    b_sel = np.isin(b_c, nodes.bob_channels)
    a_t, a_c, b_t, b_c = a_t[a_sel], a_c[a_sel], b_t[b_sel], b_c[b_sel]
    model, model_std = await asyncio.to_thread(clock_model, a_t, b_t, duration_s, opts, prior)
    try:
        coinc = await asyncio.to_thread(
            cross_node_coincidences,
            a_t,
            a_c,
            b_t,
            b_c,
            model,
            a_inputs=nodes.alice_channels,
            b_inputs=nodes.bob_channels,
            n_sigma=opts.n_sigma,
            window_ps=opts.window_ps,
            duration_ps=duration_s * PS_PER_S,
        )
    except NoCoincidencePeakError as exc:
        raise EntanglementAborted(EntanglementAbortReason.NO_PEAK, str(exc)) from None
    acq = PairAcquisition(model, model_std, duration_s, coinc)
    if keep_streams:
        acq = replace(
            acq,
            alice_all_t_ps=a_t,
            alice_all_ch=a_c,
            bob_all_t_ps=model.map_b_to_a(b_t),
            bob_all_ch=b_c,
        )
    return acq
