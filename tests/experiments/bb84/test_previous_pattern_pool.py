"""Bob's settling measurement keeps its pooled clicks sorted by merging each block in
(issue 12: re-sorting the whole pool every block grew with the square of the blocks); the
settling times must be those of the sort over all blocks, ties in block order."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from qhil.orchestrator.experiments.bb84 import bob
from qhil.orchestrator.experiments.bb84.detection import Clicks
from qhil.orchestrator.experiments.bb84.messages import AlignmentReveal


def _reference(blocks: list[tuple[np.ndarray, np.ndarray, int, int]]) -> int:
    """The former computation: concatenate every block's first half, stable sort."""
    t = np.concatenate([b[0] for b in blocks])
    agree = np.concatenate([b[1] for b in blocks])
    late, late_errors = sum(b[2] for b in blocks), sum(b[3] for b in blocks)
    if t.size == 0 or late == 0:
        return 0
    order = np.argsort(t, kind="stable")
    t, agree = t[order], agree[order]
    k, n = late_errors, late
    e = float(sps.beta.ppf(bob.ERROR_RATE_CONFIDENCE, k + 1, n - k)) if k < n else 0.5
    e = min(e, 0.45)
    llr = np.where(agree, math.log(0.5 / (1.0 - e)), math.log(0.5 / e))
    prefix = np.concatenate([[0.0], np.cumsum(llr)])
    m = int(np.argmax(prefix))
    if prefix[m] < bob.PREVIOUS_PATTERN_LLR:
        return 0
    return int(t[min(m + bob.SETTLE_MARGIN_REVEALED, t.size - 1)])


def test_pooled_settling_equals_the_sort_over_all_blocks() -> None:
    rng = np.random.default_rng(4)
    n_len, pp = 4096, bob.PreviousPattern()
    seen: list[tuple[np.ndarray, np.ndarray, int, int]] = []
    for _ in range(6):
        positions = np.sort(rng.choice(n_len, 600, replace=False)).astype(np.int64)
        # Coarse times (many ties within and across blocks); the first 40 clicks are the
        # previous pattern's light (bits at random), the rest agree but for 1 %.
        t = np.sort(rng.integers(0, 300, positions.size)).astype(np.int64) * 1000
        rev_pos = positions[rng.random(positions.size) < 0.5]
        rev_bases = rng.integers(0, 2, rev_pos.size).astype(np.uint8)
        rev_bits = rng.integers(0, 2, rev_pos.size).astype(np.uint8)
        at = np.searchsorted(rev_pos, positions).clip(0, rev_pos.size - 1)
        basis = np.where(rng.random(positions.size) < 0.8, rev_bases[at], 1 - rev_bases[at])
        bit = rev_bits[at] ^ (rng.random(positions.size) < 0.01)
        bit[:40] = rng.integers(0, 2, 40)
        clicks = Clicks(t, basis.astype(np.uint8), bit.astype(np.uint8), np.zeros(4, np.int64))
        rev = AlignmentReveal(0, rev_pos, rev_bases, rev_bits)
        got = pp.add(clicks, positions, rev)
        j = np.flatnonzero((rev_pos[at] == positions) & (rev_bases[at] == clicks.basis))
        agree = rev_bits[at[j]] == clicks.bit[j]
        half = j.size // 2
        seen.append(
            (t[j[:half]] - t[0], agree[:half], agree.size - half, int((~agree[half:]).sum()))
        )
        assert got == _reference(seen)
    assert got > 0  # the previous pattern's light was found
