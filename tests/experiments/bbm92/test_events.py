"""Coincidences sharing an event become one (squashed), or are dropped when ambiguous."""

from __future__ import annotations

import numpy as np

from qhil.orchestrator.experiments.bbm92.events import (
    click_masks,
    group_pairs,
    masks_at_ticks,
    outcomes,
)


def test_single_coincidences_pass_unchanged() -> None:
    a, b = click_masks(
        np.array([10, 20, 30]), np.array([0, 3, 2]), np.array([11, 21, 31]), np.array([0, 3, 1])
    )
    assert a.tolist() == [1, 8, 4] and b.tolist() == [1, 8, 2]
    o = outcomes(a, np.random.default_rng(0))
    assert o.tolist() == [0, 3, 2]


def test_double_click_is_merged_and_a_shared_bob_event_dropped() -> None:
    # t=10: alice H and V at one tick (double click) with one bob event -> one coincidence;
    # t=20 and t=25: two alice events paired with the same bob event -> both dropped.
    a, b = click_masks(
        np.array([10, 10, 20, 25, 40]),
        np.array([0, 1, 2, 3, 0]),
        np.array([11, 11, 22, 22, 41]),
        np.array([0, 0, 2, 2, 0]),
    )
    assert a.tolist() == [0b0011, 0b0001]
    assert b.tolist() == [0b0001, 0b0001]
    o = outcomes(a, np.random.default_rng(1))
    assert o[0] in (0, 1) and o[1] == 0  # both H/V detectors: H/V basis, random bit


def test_bob_masks_from_his_own_stream_match_the_joint_ones() -> None:
    # What alice tells bob (group, his tick) gives him the masks the one-process path gives.
    at = np.array([10, 10, 20, 25, 40, 50])
    ao = np.array([0, 1, 2, 3, 0, 2])
    bt = np.array([11, 11, 22, 22, 41, 52])
    bo = np.array([0, 1, 2, 2, 0, 3])  # bob's double click at tick 11
    group, n = group_pairs(at, bt)
    _, joint_b = click_masks(at, ao, bt, bo)
    stream_t = np.array([5, 11, 11, 22, 41, 52, 60])  # bob's whole stream, sorted
    stream_o = np.array([3, 0, 1, 2, 0, 3, 1])
    sel = group >= 0
    mine = masks_at_ticks(stream_t, stream_o, group[sel], bt[sel], n)
    assert mine.tolist() == joint_b.tolist() == [0b0011, 0b0001, 0b1000]
