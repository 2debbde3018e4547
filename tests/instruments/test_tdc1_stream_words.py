"""The emulated TDC1's stream words: heartbeats inserted among the sorted events (issue 12)
give the words a stable sort of [heartbeats, events] gave, ties included."""

from __future__ import annotations

import numpy as np

from qhil.drivers.sfifteen.tdc1 import HEARTBEAT_TICKS, TICK_PS, encode_words
from qhil.emulators.sfifteen.tdc1 import DUMMY_WORD_FLAGS, stream_words


def _sorted_words(rel_ps: np.ndarray, channels: np.ndarray, t0_ps: int, t1_ps: int) -> bytes:
    ticks = rel_ps // TICK_PS
    pats = (1 << (channels.astype(np.int64) - 1)).astype(np.uint32)
    if ticks.size:
        starts = np.flatnonzero(np.r_[True, np.diff(ticks) != 0])
        ticks, pats = ticks[starts], np.bitwise_or.reduceat(pats, starts)
    first = max(1, -(-t0_ps // (HEARTBEAT_TICKS * TICK_PS))) * HEARTBEAT_TICKS
    hb = np.arange(first, -(-t1_ps // TICK_PS), HEARTBEAT_TICKS, dtype=np.int64)
    all_ticks = np.concatenate([hb, ticks])
    all_flags = np.concatenate([np.full(hb.size, DUMMY_WORD_FLAGS, np.uint32), pats])
    order = np.argsort(all_ticks, kind="stable")
    return encode_words(all_ticks[order], all_flags[order])


def test_heartbeats_land_where_the_sort_put_them() -> None:
    rng = np.random.default_rng(12)
    hb_ps = HEARTBEAT_TICKS * TICK_PS
    t0, t1 = 0, 5 * hb_ps + 12345
    rel = np.sort(rng.integers(t0, t1, 20_000))
    rel[:4] = np.arange(1, 5) * hb_ps  # events on heartbeat ticks: ties
    rel = np.sort(rel)
    ch = rng.integers(1, 5, rel.size)
    assert stream_words(rel, ch, t0, t1) == _sorted_words(rel, ch, t0, t1)
    empty = np.zeros(0, np.int64)
    assert stream_words(empty, empty, hb_ps // 2, 3 * hb_ps) == _sorted_words(
        empty, empty, hb_ps // 2, 3 * hb_ps
    )


def test_runs_of_events_in_one_tick_share_a_word() -> None:
    """Dense events: runs of two to four channels (and repeats) in one 2 ns tick are ORed
    into one word, as the former reduceat over tick runs did."""
    rng = np.random.default_rng(5)
    rel = np.sort(rng.integers(0, 2_000 * TICK_PS, 6_000))  # ~3 events per tick
    ch = rng.integers(1, 5, rel.size)
    t1 = 4_000 * TICK_PS
    assert stream_words(rel, ch, 0, t1) == _sorted_words(rel, ch, 0, t1)
    one = np.full(4, 7 * TICK_PS + 1)
    assert stream_words(one, np.array([4, 2, 1, 3]), 0, t1) == _sorted_words(
        one, np.array([4, 2, 1, 3]), 0, t1
    )
