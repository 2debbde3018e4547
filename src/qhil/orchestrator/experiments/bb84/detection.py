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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qhil.drivers.roles import TagBlock
from qhil.numerics.qkd import Detections, squash_clicks
from qhil.numerics.timing import AlignmentError, TimingInputError
from qhil.numerics.timing.pulse_alignment import PulseAlignment, align_pulse_train

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]


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
    ch = np.asarray(block.channels, dtype=np.int64)
    lut_size = max(max(detector_of_channel) + 1, int(ch.max()) + 1 if ch.size else 0)
    code = np.full(lut_size, -1, dtype=np.int64)  # 2 * basis + bit, -1 for other channels
    for channel, (basis, bit) in detector_of_channel.items():
        code[channel] = 2 * basis + bit
    c = code[ch] if ch.size else np.zeros(0, dtype=np.int64)
    keep = c >= 0
    ts, c = ts[keep], c[keep]
    if ts.size > 1 and np.any(np.diff(ts) < 0):
        order = np.argsort(ts, kind="stable")
        ts, c = ts[order], c[order]
    per_detector = np.bincount(c, minlength=4)[:4].astype(np.int64)
    return Clicks(ts, (c >> 1).astype(np.uint8), (c & 1).astype(np.uint8), per_detector)


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
) -> BlockAlignment:
    """Pattern position of each click, from the pulse grid and Alice's revealed subset.

    Raises :class:`~qhil.numerics.timing.AlignmentError` if no significant grid or
    offset is found (too few clicks or revealed pulses, or the wrong rate).
    """
    n_len = int(pattern_length)
    if clicks.n < 16:
        raise AlignmentError("pulse grid", 0.0, min_significance, f"only {clicks.n} clicks")
    # Timestamps relative to the first click: grid numbers then start near 0, so the
    # offset is searched over one pattern period whatever Bob's clock reads.
    rel = clicks.timestamps_ps - clicks.timestamps_ps[0]
    shifts = np.arange(-1, 3, dtype=np.int64) * n_len
    a_idx = (revealed[None, :] + shifts[:, None]).ravel()
    a_basis = np.tile(revealed_bases, shifts.size)
    a_bit = np.tile(revealed_bits, shifts.size)
    try:
        res = align_pulse_train(
            rel,
            clicks.basis,
            clicks.bit,
            1e12 / rep_rate_hz,
            a_idx,
            a_basis,
            a_bit,
            max_pulse_offset=n_len // 2 + 2,
            pulse_offset_guess=n_len // 2,
            max_drift=max_drift,
            min_significance=min_significance,
            block_pulses=max(1 << 16, n_len // 4),
        )
    except TimingInputError as exc:
        raise AlignmentError("pulse grid", 0.0, min_significance, str(exc)) from exc
    idx = res.pulse_index
    first = int(idx.min())
    # One pattern period from the first click: later clicks would see symbols again.
    inside = (idx - first) < n_len
    last = int(idx[inside].max())
    interior = inside & (idx > first) & (idx < last)
    positions = np.where(inside, np.mod(idx, n_len), -1).astype(np.int64)
    window = max(0, last - first - 1)
    return BlockAlignment(positions, interior, (first + 1) % n_len, window, res)


def detections_for_block(
    clicks: Clicks,
    aligned: BlockAlignment,
    pattern_length: int,
    revealed: I64,
    rng: np.random.Generator,
) -> Detections:
    """Squash the counting window's clicks to one outcome per pattern position; drop
    revealed positions."""
    ok = aligned.interior
    det = squash_clicks(
        aligned.positions[ok], clicks.basis[ok], clicks.bit[ok], rng, n_pulses=pattern_length
    )
    if revealed.size and det.pulse_index.size:
        at = np.searchsorted(revealed, det.pulse_index).clip(0, revealed.size - 1)
        keep = revealed[at] != det.pulse_index
        det = Detections(
            det.pulse_index[keep], det.basis[keep], det.bit[keep], det.multi_click[keep]
        )
    return det
