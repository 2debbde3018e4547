"""Bob's per-block processing: tags -> clicks -> pattern positions -> squashed detections.

Alignment is found from the data only (:mod:`qhil.numerics.timing.pulse_alignment`):
the pulse grid from Bob's click times, then the integer offset by correlating
his (basis, bit) with Alice's revealed subset. Alice's pattern repeats with
period ``L`` (the generator plays ``pattern[k % L]``) and Bob records one
period, so what is found is each click's *pattern position* ``k mod L``; the
offset search covers all ``L`` positions, against Alice's revealed subset laid
out over a few periods.

Counting window: the statistics use only the pulses strictly between the block's
first and last aligned click (a run of consecutive pattern positions). Given
where the first and last clicks fell, the pulses between them are untouched
Bernoulli trials, so gains from that window are unbiased whatever the tagger's
real acquisition window was (a TDC1 gates in whole ms, say); counting from the
nominal window instead would bias the gains by the part of the period the tagger
did not record.

Diagnosis: a block that cannot be aligned raises :class:`BlockAlignmentError`, whose
message ends with its likely cause (one of :data:`CAUSES`): no light (too few clicks
to align even a perfect link), clicks not on the pulse grid (dark counts only, or a
wrong rate), a clock drift beyond ``max_drift_ppm``, or the polarization not
compensated (enough clicks, on the pulse grid, but the revealed bits agree about half
the time at every offset, a QBER near 50 %, or are inverted at one, a QBER near 100 %). Bob's ``BlockDiscarded`` detail carries it to Alice, and
:class:`DiscardDiagnosis` (a progress hook) turns the blocks' causes into the one
line the abort message ends with when no block could be aligned.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.drivers.roles import TagBlock
from qhil.numerics.qkd import Detections
from qhil.numerics.qkd.sifting import squash_sorted
from qhil.numerics.timing import AlignmentError, TimingInputError
from qhil.numerics.timing.errors import PeakNotFoundError
from qhil.numerics.timing.pulse_alignment import (
    OffsetNotFoundError,
    PatternOffset,
    PulseAlignment,
    estimate_pulse_grid,
    pattern_offset,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.result import BB84Progress
from qhil.orchestrator.experiments.bb84.stages import stage

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]

log = logging.getLogger("qhil.orchestrator.experiments.bb84")

#: Likely causes of a block that cannot be aligned (the phrases travel in the
#: ``BlockDiscarded`` detail to Alice, so both parties can name the cause).
NO_LIGHT = "no light: is the source/shutter/detector on?"
OFF_GRID = (
    "clicks not on the pulse grid: only dark counts or background "
    "(is the source/shutter on?), or a wrong rep_rate_hz"
)
DRIFT = "clock drift beyond max_drift_ppm"
POLARIZATION = "polarization not compensated?"
_COMPENSATE = "experiments.bb84.calibrate_polarization = true compensates it"
#: Bob's own detail for a block whose tagger lost tags (bob.py) starts with this.
LOST_TAGS = "the tagger lost"
CAUSES = (POLARIZATION, NO_LIGHT, OFF_GRID, DRIFT, LOST_TAGS)
#: Fewest clicks a pulse grid is fitted to.
MIN_GRID_CLICKS = 16
#: Widest drift tried when the grid is not found within max_drift (to name a drift).
WIDE_DRIFT = 5e-3
#: Half-width, in pulses, of the narrow offset search around a tracked prediction
#: (:class:`OffsetTracker`): ~12.8 us at 80 MHz of error in the predicted phase.
TRACK_WINDOW_PULSES = 1024
#: Pulses per correlation segment in the narrow search: the peak usually passes the
#: search's stop significance within the first segment.
TRACK_BLOCK_PULSES = 1 << 16
#: Most clicks the pulse grid is fitted to, taken evenly over the block: the grid's
#: phase error over a block is far below the period already with these (8192 clicks with
#: 50 ps of jitter over 100 ms: ~2 ps of drift-induced phase error at the block's end,
#: against 12.5 ns at 80 MHz), and the fit's cost grows with every click.
GRID_CLICKS = 1 << 13


class BlockAlignmentError(AlignmentError):
    """A block could not be aligned; ``cause`` is its likely cause (one of :data:`CAUSES`)."""

    def __init__(self, exc: PeakNotFoundError | None, cause: str, evidence: str) -> None:
        self.cause = cause
        if exc is None:
            super().__init__("pulse grid", 0.0, 0.0, problem=evidence)
        else:
            what = str(exc).removeprefix(f"{exc.stage}: ")
            super().__init__(exc.stage, exc.significance, exc.threshold, problem=what)
        self.args = (f"{self.args[0]}; likely cause: {cause}" + (f" ({evidence})" if exc else ""),)


def _diagnose_offset(exc: OffsetNotFoundError) -> BlockAlignmentError:
    """The grid was found, no offset correlates: too little light or scrambled polarization."""
    # At the right offset the peak stands about sqrt(n) (1 - 2 QBER) over the others: with
    # sqrt(n) >= 2 x the threshold any QBER below 25 % would have been found.
    if math.sqrt(exc.compared) < 2 * exc.threshold:
        return BlockAlignmentError(
            exc, NO_LIGHT, f"{exc.compared} revealed clicks to compare: too little light"
        )
    if exc.anti_significance >= exc.threshold:
        # A rotated link can invert one basis's bits (or a swapped channel_map both).
        return BlockAlignmentError(
            exc,
            POLARIZATION,
            f"the correlation dips {exc.anti_significance:.1f} sigma at one offset: bits "
            f"inverted there, a QBER near 100 %, or channel_map swapped; {_COMPENSATE}",
        )
    return BlockAlignmentError(
        exc,
        POLARIZATION,
        f"{exc.compared} revealed clicks agree {100 * exc.agreement:.1f} % at the best offset, "
        f"enough to find any QBER below 25 %: a QBER near 50 %; {_COMPENSATE}",
    )


def _diagnose_grid(
    exc: PeakNotFoundError, rel: I64, period_ps: float, max_drift: float
) -> BlockAlignmentError:
    """No pulse grid within ``max_drift``: is there one at a larger drift?"""
    wide = max(WIDE_DRIFT, 10 * max_drift)
    if wide < 1e-2:
        try:
            grid = estimate_pulse_grid(rel, period_ps, max_drift=wide)
        except (AlignmentError, TimingInputError):
            pass
        else:
            if abs(grid.drift) > max_drift:
                return BlockAlignmentError(
                    exc,
                    DRIFT,
                    f"the clicks show a pulse grid at {grid.drift * 1e6:+.1f} ppm, "
                    f"max_drift_ppm is {max_drift * 1e6:g}",
                )
    return BlockAlignmentError(exc, OFF_GRID, f"{rel.size} clicks show no pulse grid")


@dataclass(frozen=True)
class Clicks:
    """Bob's clicks on the four receiver detectors, in time order."""

    timestamps_ps: I64
    basis: U8
    bit: U8
    per_detector: I64  # tags per detector H, V, D, A

    @property
    def n(self) -> int:
        return int(self.timestamps_ps.size)


def clicks_from_tags(block: TagBlock, detector_of_channel: dict[int, tuple[int, int]]) -> Clicks:
    """Keep the tags of the mapped channels and label each with (basis, bit)."""
    ts = np.asarray(block.timestamps_ps, dtype=np.int64)
    ch = np.asarray(block.channels)
    if ch.size and int(ch.min()) < 0:
        raise ValueError(f"tag block: negative channel {int(ch.min())}")
    lut_size = max(max(detector_of_channel) + 1, int(ch.max()) + 1 if ch.size else 0)
    lut = np.full(lut_size, 255, dtype=np.uint8)  # 2 * basis + bit, 255 for other channels
    for channel, (basis, bit) in detector_of_channel.items():
        lut[channel] = 2 * basis + bit
    c = lut[ch] if ch.size else np.zeros(0, dtype=np.uint8)
    per_detector = np.bincount(c, minlength=256)[:4].astype(np.int64)
    if int(per_detector.sum()) != c.size:  # tags of unmapped channels: dropped
        keep = np.flatnonzero(c != 255)
        ts, c = ts[keep], c[keep]
    if ts.size > 1 and bool(np.any(ts[1:] < ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts, c = ts[order], c[order]
    c_basis: U8 = np.right_shift(c, np.uint8(1))
    c_bit: U8 = np.bitwise_and(c, np.uint8(1))
    return Clicks(ts, c_basis, c_bit, per_detector)


@dataclass(frozen=True)
class BlockAlignment:
    """Pattern position of every click (``-1``: beyond one pattern period from the first),
    and the counting window: ``window_pulses`` consecutive positions from ``window_start``
    (modulo the pattern length), strictly between the first and last click."""

    positions: I64
    interior: NDArray[np.bool_]  # the click lies inside the counting window
    window_start: int
    window_pulses: int
    alignment: PulseAlignment
    tracked: bool = False  # found by the narrow search around the tracker's prediction
    # Per click what Alice revealed at its position (revealed_codes: 0 nothing, else
    # 1 + 2 basis + bit; 0 outside the clicks given positions); None: not looked up.
    revealed_code: U8 | None = None
    # Clicks in time order, so in pulse order: those with positions are the run
    # [inside[0], inside[1]), those in the counting window the run [window[0], window[1]).
    inside: tuple[int, int] = (0, 0)
    window: tuple[int, int] = (0, 0)

    @property
    def first_position(self) -> int:
        """Pattern position given to the block's first click."""
        return int(self.positions[0]) if self.positions.size else -1


def align_clicks(
    clicks: Clicks,
    pattern_length: int,
    rep_rate_hz: float,
    revealed: I64,
    revealed_bases: U8,
    revealed_bits: U8,
    *,
    max_drift: float,
    min_significance: float,
    predicted_first: int | Sequence[int] | None = None,
) -> BlockAlignment:
    """Pattern position of each click, from the pulse grid and Alice's revealed subset.

    ``predicted_first``: the pattern position(s) the block's first click is expected at
    (:meth:`OffsetTracker.predictions`); the offset is then searched within
    :data:`TRACK_WINDOW_PULSES` of each in turn, and over the whole pattern only when no
    narrow search finds a significant peak (README "Alignment, tracked"). The full search
    is one circular correlation of the pattern's length over all clicks (Alice's
    generator plays the pattern periodically, so Bob's pulse numbers count modulo it).

    Raises :class:`~qhil.numerics.timing.AlignmentError` if no significant grid or
    offset is found (too few clicks or revealed pulses, or the wrong rate).
    """
    n_len = int(pattern_length)
    if clicks.n < MIN_GRID_CLICKS:
        raise BlockAlignmentError(
            None, NO_LIGHT, f"only {clicks.n} clicks (at least {MIN_GRID_CLICKS} needed)"
        )
    # Timestamps relative to the first click: grid numbers then start near 0.
    rel = clicks.timestamps_ps - clicks.timestamps_ps[0]
    if bool(np.any(rel[1:] < rel[:-1])):
        raise TimingInputError("clicks: timestamps must be in time order (clicks_from_tags)")
    period_ps = 1e12 / rep_rate_hz
    stride = max(1, -(-rel.size // GRID_CLICKS))
    try:
        grid = estimate_pulse_grid(rel[::stride], period_ps, max_drift=max_drift)
    except TimingInputError as exc:
        raise AlignmentError("pulse grid", 0.0, min_significance, str(exc)) from exc
    except AlignmentError as exc:
        raise _diagnose_grid(exc, rel, period_ps, max_drift) from exc
    numbers = grid.pulse_numbers(rel)
    revealed = np.asarray(revealed, dtype=np.int64)

    half_width = min(TRACK_WINDOW_PULSES, n_len // 8)  # a narrow search: < 1/4 of the pattern

    def search(guess: int | None) -> PatternOffset:
        return pattern_offset(
            numbers,
            clicks.basis,
            clicks.bit,
            n_len,
            revealed,
            revealed_bases,
            revealed_bits,
            guess=guess,
            max_pulse_offset=half_width,
            block_pulses=min(TRACK_BLOCK_PULSES, n_len // 2),
        )

    if predicted_first is None:
        guesses: list[int] = []
    elif isinstance(predicted_first, int | np.integer):
        guesses = [int(predicted_first)]
    else:
        guesses = [int(g) for g in predicted_first]
    found: PatternOffset | None = None
    missed: list[str] = []
    for first in guesses:
        # Offset K: pattern position = (grid number + K) mod L; the first click's is predicted.
        with stage("alignment_narrow"):
            found = search(first - int(numbers[0]))
        if found.significance >= min_significance:
            break
        missed.append(f"{first} ({found.significance:.1f} sigma)")
        found = None  # this prediction missed: try the next one, then every offset
    tracked = found is not None
    if found is None:
        if missed:
            log.info(
                "bb84 bob: the tracked offset missed (predicted first click at %s, +-%d "
                "pulses): full search over %d positions",
                ", ".join(missed),
                half_width,
                n_len,
            )
        with stage("alignment_full"):
            found = search(None)
    k = found.offset
    idx = numbers + k
    # One pattern period from the first click: later clicks would see symbols again.
    # Grid numbers follow the (sorted) times: the clicks within one period of the first
    # are a run from the first.
    end = int(np.searchsorted(idx, int(idx[0]) + n_len))
    positions = _positions(idx, 0, end, n_len)
    code, agree, compared = _revealed_lookup(
        positions[:end], clicks, revealed, revealed_bases, revealed_bits, n_len
    )
    if not found.significance >= min_significance:
        not_found = OffsetNotFoundError(
            found.significance,
            min_significance,
            f"searched all {n_len} pattern positions with {clicks.n} clicks and "
            f"{revealed.size} revealed pulses; at the best offset {compared} revealed clicks "
            f"agree {100 * agree:.1f} %",
            compared=compared,
            agreement=agree,
            anti_significance=found.anti_significance,
        )
        raise _diagnose_offset(not_found) from not_found
    res = PulseAlignment(idx, grid, k, found.significance, agree, compared)
    return _block_alignment(res, 0, end, n_len, tracked, code, positions)


def revealed_codes(positions: I64, revealed: I64, bases: U8, bits: U8, length: int) -> U8:
    """Per pattern position in ``positions`` (each in ``[0, length)``) what Alice revealed
    there: 0 nothing, else ``1 + 2 * basis + bit``.

    Through a table of the pattern's length (one byte per position, the block's only
    full-length temporary): a lookup per click costs ~10x less than a binary search of the
    reveal (0.7 vs 7 ms for 250 k clicks against 400 k revealed positions)."""
    table = np.zeros(length, dtype=np.uint8)
    table[revealed] = 1 + 2 * np.asarray(bases, dtype=np.uint8) + np.asarray(bits, dtype=np.uint8)
    out: U8 = table[positions]
    return out


def _revealed_lookup(
    positions: I64, clicks: Clicks, revealed: I64, bases: U8, bits: U8, length: int
) -> tuple[U8, float, int]:
    """Per click what Alice revealed at its position (:func:`revealed_codes`), and the
    fraction of basis-matched revealed clicks whose bits agree, and their number."""
    code = revealed_codes(positions, revealed, bases, bits, length)
    matched = (code != 0) & (((code - 1) >> 1) == clicks.basis[: code.size])
    compared = int(np.count_nonzero(matched))
    agree = (
        float(
            np.count_nonzero(((code[matched] - 1) & 1) == clicks.bit[: code.size][matched])
            / compared
        )
        if compared
        else float("nan")
    )
    return code, agree, compared


def _positions(idx: I64, lo: int, hi: int, n_len: int) -> I64:
    """Pattern positions of the clicks ``lo:hi`` (pulse indices nondecreasing, spanning
    less than ``n_len``), -1 for the others; without an int64 modulo per click (at most one
    multiple of the pattern length lies inside)."""
    positions = np.full(idx.size, -1, dtype=np.int64)
    m0 = int(idx[lo]) // n_len
    wrap = lo + int(np.searchsorted(idx[lo:hi], (m0 + 1) * n_len))
    np.subtract(idx[lo:wrap], m0 * n_len, out=positions[lo:wrap])
    np.subtract(idx[wrap:hi], (m0 + 1) * n_len, out=positions[wrap:hi])
    return positions


def _block_alignment(
    res: PulseAlignment,
    lo: int,
    hi: int,
    n_len: int,
    tracked: bool,
    revealed_code: U8 | None,
    positions: I64 | None = None,
) -> BlockAlignment:
    """The clicks ``lo:hi`` (pulse indices nondecreasing, spanning less than ``n_len``) with
    their pattern positions (the others -1; ``positions`` when already computed so), and
    the counting window strictly between the first and last of them."""
    idx = res.pulse_index
    first, last = int(idx[lo]), int(idx[hi - 1])
    if positions is None:
        positions = _positions(idx, lo, hi, n_len)
    w0 = lo + int(np.searchsorted(idx[lo:hi], first, side="right"))
    w1 = lo + int(np.searchsorted(idx[lo:hi], last, side="left"))
    w1 = max(w0, w1)
    interior = np.zeros(idx.size, dtype=bool)
    interior[w0:w1] = True
    if revealed_code is not None:  # per click of lo:hi, or of a run starting at 0 (align)
        code = np.zeros(idx.size, dtype=np.uint8)
        code[lo:hi] = revealed_code[lo:hi]
        revealed_code = code
    window = max(0, last - first - 1)
    return BlockAlignment(
        positions,
        interior,
        (first + 1) % n_len,
        window,
        res,
        tracked,
        revealed_code,
        (lo, hi),
        (w0, w1),
    )


class OffsetTracker:
    """Predicts where in the pattern a block's first click falls, from the blocks before.

    Bob's tagger times each block from its own acquisition start, and how much time
    passes between acquisitions is not in his data. The pattern position at that instant
    (the block's *phase*: first click's position minus its time over the pulse period)
    moves from block to block by however many pulses pass between acquisition starts,
    modulo the pattern length: a constant step when the generator and the tagger are
    started on a fixed schedule, but a one-off jump when one start is late (the first
    block of a run, a re-compensation, a slow upload). The predictions, tried in turn:
    the last phase plus the last step between the last two aligned blocks, then the last
    phase alone (no step; the only one after the first block). So a one-off jump costs
    one full search (the block that jumped), not two; a phase that moves at random costs
    a full search every block, as without tracking.
    """

    def __init__(self, pattern_length: int) -> None:
        self.pattern_length = int(pattern_length)
        self._phases: list[float] = []
        self._period_ps = 0.0

    def predict(self, clicks: Clicks) -> tuple[int, ...] | None:
        """Predicted pattern positions of ``clicks``' first click, the likelier first;
        None before any block."""
        if not self._phases or clicks.n == 0:
            return None
        n_len = self.pattern_length
        phases = [self._phases[-1]]
        if len(self._phases) > 1:
            step = (self._phases[-1] - self._phases[-2] + n_len / 2) % n_len - n_len / 2
            if abs(step) > TRACK_WINDOW_PULSES / 2:  # else the last phase's search covers it
                phases.insert(0, self._phases[-1] + step)
        elapsed = float(clicks.timestamps_ps[0]) / self._period_ps
        return tuple(round(p + elapsed) % n_len for p in phases)

    def update(self, clicks: Clicks, aligned: BlockAlignment) -> None:
        """Take a block's alignment (its first click's index and the pulse period)."""
        res = aligned.alignment
        self._period_ps = float(res.grid.period_ps)
        first = float(res.pulse_index[0]) - float(clicks.timestamps_ps[0]) / self._period_ps
        phase = first % self.pattern_length
        self._phases = [*self._phases[-1:], phase]


def revealed_counts(clicks: Clicks, aligned: BlockAlignment) -> tuple[I64, I64]:
    """Bob's clicks (with positions) on revealed positions in the revealed basis: (count,
    errors) per basis (index 0 = Z, 1 = X), from the alignment's revealed lookup.

    What ``tracking.revealed_errors(clicks, aligned.positions, rev)`` computes, without its
    binary search of the reveal per click (~25 ms per 1 M clicks, ~2 ms here)."""
    code = aligned.revealed_code
    if code is None:
        raise ValueError("revealed_counts: the alignment carries no revealed lookup")
    j = np.flatnonzero((code != 0) & (((code - 1) >> 1) == clicks.basis))
    wrong = ((code[j] - 1) & 1) != clicks.bit[j]
    counts = np.bincount(2 * clicks.basis[j].astype(np.intp) + wrong, minlength=4)[:4]
    n = (counts[0::2] + counts[1::2]).astype(np.int64)
    k = counts[1::2].astype(np.int64)
    return n, k


def clicks_from(
    clicks: Clicks, aligned: BlockAlignment, start_ps: int, pattern_length: int
) -> BlockAlignment:
    """The alignment without the clicks earlier than ``start_ps`` after the block's first
    click (another pattern's light, Bob's README "Settling"); the counting window shrinks to
    the clicks kept. Raises AlignmentError when none is left."""
    if start_ps <= 0:
        return aligned
    lo, hi = aligned.inside
    t = clicks.timestamps_ps
    lo = max(lo, int(np.searchsorted(t, int(t[0]) + start_ps)))
    if lo >= hi:
        raise AlignmentError(
            "settling",
            0.0,
            0.0,
            problem=f"no click later than {start_ps * 1e-6:.1f} us into the block",
        )
    positions = aligned.positions.copy()
    positions[:lo] = -1
    return _block_alignment(
        aligned.alignment,
        lo,
        hi,
        int(pattern_length),
        aligned.tracked,
        aligned.revealed_code,
        positions,
    )


def detections_for_block(
    clicks: Clicks,
    aligned: BlockAlignment,
    pattern_length: int,
    revealed: I64,
    rng: np.random.Generator,
) -> Detections:
    """Squash the counting window's clicks to one outcome per pattern position; drop
    revealed positions (their clicks, before squashing: every click of a pulse shares
    its position).

    One pass in pulse order: the window's clicks are a run of clicks in time order, so in
    order of their pulse index (not of their position, which wraps once at the pattern's
    end); the squashed outcomes are put in position order by one rotation at the wrap."""
    n_len = int(pattern_length)
    w0, w1 = aligned.window
    if aligned.revealed_code is not None:
        sel = np.flatnonzero(aligned.revealed_code[w0:w1] == 0) + w0
    else:
        pos = aligned.positions[w0:w1]
        sel = np.arange(w0, w1)
        if revealed.size and pos.size:
            at = np.searchsorted(revealed, pos).clip(0, revealed.size - 1)
            sel = sel[revealed[at] != pos]
    det = squash_sorted(aligned.alignment.pulse_index[sel], clicks.basis[sel], clicks.bit[sel], rng)
    # The window holds fewer than L pulses: positions increase but for one wrap.
    base = int(det.pulse_index[0]) if det.pulse_index.size else 0
    cycle = base - base % n_len  # pulse index of the position 0 before the window
    wrap = int(np.searchsorted(det.pulse_index, cycle + n_len))
    pos = det.pulse_index - cycle
    pos[wrap:] -= n_len
    if wrap == pos.size:
        return Detections(pos, det.basis, det.bit, det.multi_click)

    def rotated(a: Any) -> Any:
        return np.concatenate([a[wrap:], a[:wrap]])

    return Detections(rotated(pos), rotated(det.basis), rotated(det.bit), rotated(det.multi_click))


def cause_of(detail: str) -> str | None:
    """The likely cause named in a discarded block's detail, if any."""
    return next((c for c in CAUSES if c in detail), None)


class DiscardDiagnosis:
    """A progress hook that keeps why blocks were discarded, to explain a ``no_data`` abort.

    Wraps ``progress`` (called as before). Both parties see every discard (Bob's reason
    reaches Alice in ``BlockDiscarded``), so each can say the same likely cause.
    """

    def __init__(self, progress: Callable[[BB84Progress], Any] | None = None) -> None:
        self._progress = progress
        self._details: dict[int, str] = {}  # block -> detail (both parties of one process)

    def __call__(self, event: BB84Progress) -> Any:
        if event.stage == "block" and event.detail.startswith("discarded"):
            self._details[event.block] = event.detail
        return None if self._progress is None else self._progress(event)

    def likely_cause(self) -> tuple[str, int, int] | None:
        """The most frequent cause, the blocks that gave it, and the blocks discarded."""
        causes = Counter(c for c in map(cause_of, self._details.values()) if c is not None)
        if not causes:
            return None
        cause, n = causes.most_common(1)[0]
        return cause, n, len(self._details)

    def explain(self, exc: BB84Aborted) -> str:
        """The abort's message, ending with the likely cause when no block could be aligned
        (and what the last block with that cause showed)."""
        found = self.likely_cause() if exc.reason is AbortReason.NO_DATA else None
        if found is None:
            return str(exc)
        cause, n, total = found
        last = [d for d in self._details.values() if cause_of(d) == cause][-1]
        shown = last.partition(f"likely cause: {cause}")[2].strip()
        return f"{exc}; likely cause ({n} of {total} discarded blocks): {cause}" + (
            f" {shown}" if shown else ""
        )
