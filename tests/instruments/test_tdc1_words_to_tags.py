"""TDC1 words -> tags in one pass (issue 12): the same tags, in the same order, as one
selection per channel bit followed by a stable sort by time (the former implementation)."""

from __future__ import annotations

import numpy as np

from qhil.drivers.sfifteen.tdc1 import N_CHANNELS, TICK_PS, words_to_tags


def _per_channel(ticks: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times, chans = [], []
    for bit in range(N_CHANNELS):
        hit = (flags & (1 << bit)) != 0
        times.append(ticks[hit] * TICK_PS)
        chans.append(np.full(int(hit.sum()), bit + 1, np.int16))
    t, c = np.concatenate(times), np.concatenate(chans)
    order = np.argsort(t, kind="stable")
    return t[order], c[order]


def test_tags_match_a_stable_sort_of_each_channels_selection() -> None:
    rng = np.random.default_rng(7)
    ticks = np.sort(rng.integers(0, 50_000, 20_000)).astype(np.int64)  # many shared ticks
    flags = rng.integers(0, 32, ticks.size).astype(np.uint8)  # multi-bit, dummy, empty words
    for t, f in [(ticks, flags), (ticks[:0], flags[:0]), (np.unique(ticks), (flags[:1] | 1))]:
        f = np.resize(f, t.size)
        got, want = words_to_tags(t, f), _per_channel(t, f)
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
        assert got[0].dtype == np.int64 and got[1].dtype == np.int16
    # One channel per word, strictly increasing ticks: the fast path.
    single = np.unique(ticks)
    bits = (1 << rng.integers(0, 4, single.size)).astype(np.uint8)
    got, want = words_to_tags(single, bits), _per_channel(single, bits)
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
