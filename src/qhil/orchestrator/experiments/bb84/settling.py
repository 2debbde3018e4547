"""Settling: where the previous pattern's light ends in Bob's block (README "Settling").

When Alice switches patterns, the photons already in the fibre (one link delay of them,
~4.9 us per km) still carry the previous pattern; Bob's clicks on them would be taken for
the new pattern's positions (clicks on vacuum pulses, errors at 1/2). Alice's revealed
symbols tell them apart: Bob's revealed, basis-matched clicks agree with them at the link's
error rate ``e`` for this pattern's light and at exactly 1/2 for the previous pattern's
(its symbols are independent of this pattern's revealed bits).

The rule (:class:`PreviousPattern`), decided in every block from that block's own clicks,
so it is right from the first block that carries old light:

1. The revealed, basis-matched clicks among the block's first half of clicks, in time
   order, each with its evidence ``log(1/2 / P(agreement | this pattern))`` (``e``
   estimated from the :data:`E_CLICKS` clicks after them). The prefix sums ``S(c)`` are the log-likelihood ratio of "the
   first ``c`` are old light" against "none is".
2. The cut is the **upper confidence bound** of the change point: the last ``c`` whose
   ``S(c)`` is within :data:`SETTLE_LLR` of the maximum; Bob drops every click before the
   ``c``-th revealed click (so the old light's unrevealed clicks after its last revealed
   one go too). Error rate: the cut falls before the end of the old light only if the
   old clicks' agreements, read backwards from the true change point, raise the evidence
   by :data:`SETTLE_LLR` against it; that sum is a martingale whatever ``e`` is (old clicks
   agree at exactly 1/2), so by Ville's inequality this happens in at most
   ``exp(-SETTLE_LLR)`` = 1e-3 of the blocks, at any distance, from the first block on.
   The price: ~11 of this pattern's revealed clicks past the change point (the evidence
   falls by ~0.64 per agreeing click), also when nothing was in flight: microseconds at
   0 km, ~0.3 ms at 61 km (25 us per revealed click there).
3. A floor, the **measured link delay**: the upper median of the last
   :data:`DELAY_BLOCKS` blocks' maximum-likelihood change points, a block whose evidence
   was not decisive (maximum ``S`` < :data:`DECISIVE_LLR`) counting 0. The cut is never
   below it, so once half the recent blocks showed the old light, a block whose own
   clicks mislead (or hold too few revealed ones) still loses the delay the link showed;
   a block after a dark spell then loses up to one delay for nothing. A false decisive
   block (a dark fibre reaches ``DECISIVE_LLR`` in ~1e-4 of blocks) does not persist.

Cost: a byte-table lookup of the first half's and :data:`E_CLICKS` more clicks' revealed
symbols (free when the alignment passes it), a cumulative sum over the first half's
revealed clicks: at 8 M pulses 1.0 ms per block of 250 k clicks, 1.8 ms of 1 M (0.13 and
0.48 ms with the alignment's ``revealed_code``); state: the last :data:`DELAY_BLOCKS`
delays (bounded over any run).
"""

from __future__ import annotations

import collections
import math

import numpy as np

from qhil.drivers.roles import TagBlock
from qhil.orchestrator.experiments.bb84.detection import Clicks
from qhil.orchestrator.experiments.bb84.messages import AlignmentReveal

#: Evidence (natural log) within which of its maximum the cut's change point may lie: the
#: cut falls before the end of the previous pattern's light in at most exp(-SETTLE_LLR) of
#: the blocks (Ville's inequality; module docstring).
SETTLE_LLR = math.log(1e3)
#: A block's change point counts towards the measured link delay when its evidence reaches
#: this (likelihood ratio 1e4 against a dark fibre); other blocks count 0.
DECISIVE_LLR = math.log(1e4)
#: Blocks whose change points make the measured link delay (their upper median).
DELAY_BLOCKS = 16
#: Error-rate estimate clipped to this range (an estimate of 0 would make one error
#: infinite evidence; above 0.45 old and new light are indistinguishable anyway).
E_RANGE = (1e-3, 0.45)
#: Clicks after the first half that estimate the error rate (~3,000 revealed, basis-matched).
E_CLICKS = 1 << 17


class PreviousPattern:
    """Where the previous pattern's light ends in Bob's blocks: the settling time, measured
    (the rule and its error rate: module docstring)."""

    def __init__(self) -> None:
        self.settle_ps = 0
        self._delays: collections.deque[int] = collections.deque(maxlen=DELAY_BLOCKS)

    @property
    def delay_ps(self) -> int:
        """The measured link delay: the upper median of the recent blocks' change points
        (0 for those without decisive evidence)."""
        return sorted(self._delays)[len(self._delays) // 2] if self._delays else 0

    def add(
        self,
        clicks: Clicks,
        positions: np.ndarray,
        rev: AlignmentReveal,
        revealed_code: np.ndarray | None = None,
    ) -> int:
        """Take a block (its clicks' pattern positions, -1 for none); return its settling
        time, ps after its first click (clicks before it are the previous pattern's).

        ``revealed_code``: per click what Alice revealed at its position
        (:func:`~.detection.revealed_codes`, as ``BlockAlignment.revealed_code``), when the
        alignment already looked it up."""
        rp = rev.positions
        if rp.size == 0 or clicks.n == 0:
            self.settle_ps = self.delay_ps
            return self.settle_ps
        # The change point is searched among the block's first half of clicks; the error
        # rate comes from the clicks after them, at most E_CLICKS (enough for e to
        # +-0.3 % at the default bench; the second half of a 1 M-click block is not read).
        a = clicks.n // 2
        b = min(clicks.n, a + E_CLICKS)
        pos = positions[:b]
        if revealed_code is None:
            # One table of the pattern's length plus a zero at its end, where position -1
            # (no position) reads: no mask over the clicks (revealed_codes' table, +1).
            length = max(int(rp[-1]), int(pos.max())) + 1
            table = np.zeros(length + 1, dtype=np.uint8)
            table[rp] = 1 + 2 * np.asarray(rev.bases, np.uint8) + np.asarray(rev.bits, np.uint8)
            code = table[pos]
        else:  # zero at position -1 already (BlockAlignment.revealed_code)
            code = np.asarray(revealed_code[:b], dtype=np.uint8)
        # Revealed, basis-matched clicks, in time order (code = 1 + 2 basis + bit; code - 1
        # wraps to 255 for unrevealed ones, whose basis 127 matches none).
        c1 = code - np.uint8(1)
        j = np.flatnonzero((c1 >> 1) == clicks.basis[:b])
        agree = (c1[j] & 1) == clicks.bit[j]
        half = int(np.searchsorted(j, a))
        if half == 0 or half == j.size:
            self.settle_ps = self.delay_ps
            return self.settle_ps
        late_errors = (agree.size - half) - int(np.count_nonzero(agree[half:]))
        e = (late_errors + 1) / (agree.size - half + 2)
        e = min(max(e, E_RANGE[0]), E_RANGE[1])
        llr = np.where(agree[:half], math.log(0.5 / (1.0 - e)), math.log(0.5 / e))
        prefix = np.empty(half + 1)
        prefix[0] = 0.0
        np.cumsum(llr, out=prefix[1:])
        m = int(np.argmax(prefix))
        top = float(prefix[m])
        c_up = int(np.flatnonzero(prefix >= top - SETTLE_LLR)[-1])
        t = clicks.timestamps_ps
        t0 = int(t[0])
        # This block's old light, if decisive: its end, for the link delay.
        self._delays.append(int(t[j[m]]) - t0 if top >= DECISIVE_LLR else 0)
        # Drop everything before the c_up-th revealed click (the first judged this pattern's).
        cut = int(t[j[c_up]]) - t0
        self.settle_ps = max(cut, self.delay_ps)
        return self.settle_ps


def settled(tags: TagBlock, settle_s: float) -> TagBlock:
    """The block without its first ``settle_s`` (from its first tag).

    When Alice switches to a new pattern, the photons already in the fibre still
    carry the old one; they arrive during the first fibre delay of Bob's window and
    would be taken for the new pattern's pulses (errors, and clicks on vacuum pulses).
    """
    if settle_s <= 0 or len(tags) == 0:
        return tags
    t = tags.timestamps_ps
    keep = t >= t.min() + round(settle_s * 1e12)
    return TagBlock(t[keep], tags.channels[keep], tags.lost, dict(tags.meta))
