"""Bob's per-block chain after the alignment (issue 12, made single-pass): the squashed
detections of a block equal those computed click by click from their definition, also when
the block's window wraps past the pattern's end, and the tally counts them in one pass."""

from __future__ import annotations

import numpy as np
import pytest

from qhil.numerics.qkd import squash_clicks
from qhil.orchestrator.experiments.bb84.detection import (
    OffsetTracker,
    align_clicks,
    clicks_from,
    detections_for_block,
    revealed_counts,
)
from qhil.orchestrator.experiments.bb84.messages import AlignmentReveal
from qhil.orchestrator.experiments.bb84.statistics import Tally
from qhil.orchestrator.experiments.bb84.tracking import revealed_errors

from .test_alignment_tracking import L, _block


def _reference(clicks, aligned, revealed):  # type: ignore[no-untyped-def]
    """Per position of the counting window (not revealed): the set of (basis, bit) clicked."""
    out: dict[int, set[tuple[int, int]]] = {}
    shown = set(revealed.tolist())
    for j in np.flatnonzero(aligned.interior):
        p = int(aligned.positions[j])
        if p not in shown:
            out.setdefault(p, set()).add((int(clicks.basis[j]), int(clicks.bit[j])))
    return out


# The tagger starts at pattern position ``phase``: the window wraps past position L - 1
# after L - phase pulses (at 1000: near its end; at L - 3000: 37.5 us in, before settle_ps).
@pytest.mark.parametrize("phase", [0, 1000, L - 3000])
@pytest.mark.parametrize("settle_ps", [0, 40_000_000])
def test_detections_are_the_squashed_window_clicks(phase: int, settle_ps: int) -> None:
    rng = np.random.default_rng(phase)
    clicks, _pos, rev, rb, rbit = _block(rng, phase, n_clicks=6000)
    # A few double clicks: the next click put on the same pulse (other detector).
    dup = np.sort(rng.choice(np.arange(10, clicks.n - 10), 200, replace=False))
    clicks = type(clicks)(
        np.sort(np.r_[clicks.timestamps_ps, clicks.timestamps_ps[dup] + 7]),
        np.insert(clicks.basis, dup + 1, 1 - clicks.basis[dup]),
        np.insert(clicks.bit, dup + 1, rng.integers(0, 2, dup.size).astype(np.uint8)),
        clicks.per_detector,
    )
    aligned = align_clicks(clicks, L, 80e6, rev, rb, rbit, max_drift=1e-4, min_significance=6.0)
    aligned = clicks_from(clicks, aligned, settle_ps, L)
    det = detections_for_block(clicks, aligned, L, rev, np.random.default_rng(1))
    ref = _reference(clicks, aligned, rev)
    assert det.pulse_index.tolist() == sorted(ref)  # sorted, unique, none revealed
    wraps = bool(np.any(np.diff(aligned.positions[aligned.interior]) < 0))
    assert wraps == (phase == 1000 or (phase > 0 and settle_ps == 0))
    for p, b, v, multi in zip(det.pulse_index, det.basis, det.bit, det.multi_click, strict=True):
        seen = ref[int(p)]
        if len(seen) == 1:
            assert (int(b), int(v)) == next(iter(seen)) and not multi
        else:  # squashed: a random basis among those clicked, then a bit of it
            assert multi and int(b) in {s[0] for s in seen}
    # The same without the alignment's revealed lookup (the binary-search path).
    plain = type(aligned)(**{**aligned.__dict__, "revealed_code": None})
    again = detections_for_block(clicks, plain, L, rev, np.random.default_rng(1))
    np.testing.assert_array_equal(again.pulse_index, det.pulse_index)
    np.testing.assert_array_equal(again.bit, det.bit)


def test_presorted_squash_equals_the_sorting_one() -> None:
    rng = np.random.default_rng(9)
    idx = np.sort(rng.integers(0, 5000, 4000))
    basis = rng.integers(0, 2, idx.size).astype(np.uint8)
    bit = rng.integers(0, 2, idx.size).astype(np.uint8)
    a = squash_clicks(idx, basis, bit, np.random.default_rng(3), presorted=True)
    order = rng.permutation(idx.size)
    shuffled = (idx[order], basis[order], bit[order])
    # Unsorted input: sorted stably first, so the clicks of a pulse meet in the same order
    # only if their order is kept; compare outcomes where one click made the pulse.
    b = squash_clicks(*shuffled, np.random.default_rng(3))
    np.testing.assert_array_equal(a.pulse_index, b.pulse_index)
    single = ~a.multi_click
    np.testing.assert_array_equal(a.basis[single], b.basis[single])
    np.testing.assert_array_equal(a.bit[single], b.bit[single])
    np.testing.assert_array_equal(a.multi_click, b.multi_click)
    # presorted=True on unsorted input is caught and sorted, not trusted.
    c = squash_clicks(*shuffled, np.random.default_rng(3), presorted=True)
    np.testing.assert_array_equal(c.pulse_index, b.pulse_index)


def test_tally_counts_intensity_match_and_basis_in_one_pass() -> None:
    rng = np.random.default_rng(2)
    n = 10_000
    inten = rng.integers(0, 3, n).astype(np.uint8)
    match = rng.random(n) < 0.5
    bases = rng.integers(0, 2, n).astype(np.uint8)
    t = Tally((0.5, 0.1, 0.0))
    t.add_block(
        duration_s=0.1,
        pulses_sent=n,
        window_pulses=n,
        pulses=np.full(3, n, dtype=np.int64),
        detected_intensity=inten,
        match=match,
        bases=bases,
        test_errors=np.zeros(3, dtype=np.int64),
    )
    for k in range(3):
        assert t.detections[k] == np.count_nonzero(inten == k)
        assert t.key_sifted[k] == np.count_nonzero((inten == k) & match & (bases == 0))
        assert t.test_sifted[k] == np.count_nonzero((inten == k) & match & (bases == 1))


def test_tracker_predictions_are_positions_of_the_first_click() -> None:
    tracker = OffsetTracker(L)
    rng = np.random.default_rng(4)
    clicks, _pos, rev, rb, rbit = _block(rng, 12_345)
    assert tracker.predict(clicks) is None
    tracker.update(
        clicks, align_clicks(clicks, L, 80e6, rev, rb, rbit, max_drift=1e-4, min_significance=6)
    )
    clicks2, pos2, *_ = _block(rng, 12_345)
    pred = tracker.predict(clicks2)
    assert pred is not None and len(pred) == 1 and abs(pred[0] - int(pos2[0])) <= 2


def test_a_missed_prediction_says_so_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(8)
    clicks, pos, rev, rb, rbit = _block(rng, 20_000)
    with caplog.at_level("INFO", logger="qhil.orchestrator.experiments.bb84"):
        aligned = align_clicks(
            clicks,
            L,
            80e6,
            rev,
            rb,
            rbit,
            max_drift=1e-4,
            min_significance=6.0,
            predicted_first=(int(pos[0]) + 5000) % L,
        )
    np.testing.assert_array_equal(aligned.positions, pos)
    assert not aligned.tracked
    assert "the tracked offset missed" in caplog.text and "full search" in caplog.text


@pytest.mark.parametrize("settle_ps", [0, 40_000_000])
def test_revealed_counts_equal_the_trackings_binary_search(settle_ps: int) -> None:
    rng = np.random.default_rng(11)
    clicks, _pos, rev, rb, rbit = _block(rng, 30_000, n_clicks=20_000)
    aligned = align_clicks(clicks, L, 80e6, rev, rb, rbit, max_drift=1e-4, min_significance=6)
    aligned = clicks_from(clicks, aligned, settle_ps, L)
    n, k = revealed_counts(clicks, aligned)
    n_ref, k_ref = revealed_errors(clicks, aligned.positions, AlignmentReveal(0, rev, rb, rbit))
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_array_equal(k, k_ref)
    assert n.sum() > 100 and 0 < k.sum() < n.sum() // 10
