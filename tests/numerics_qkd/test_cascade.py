"""Cascade reconciliation: corrects every error, counts leakage honestly, reaches f <= 1.08."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qhil.numerics.qkd.bits import random_bits
from qhil.numerics.qkd.cascade import (
    CascadeAlice,
    CascadeBob,
    CascadeSetup,
    ParityQuery,
    ParityReply,
    _bits_at,
    _inverse_permutation,
    _Layout,
    _PackedCount,
    default_block_sizes,
    reconcile,
)
from qhil.numerics.qkd.entropy import binary_entropy


def noisy_pair(
    rng: np.random.Generator, n: int, qber: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    alice = random_bits(rng, n)
    errors = (rng.random(n) < qber).astype(np.uint8)
    return alice, alice ^ errors, errors


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.05])
def test_reconciles_many_frames_exactly(qber: float) -> None:
    rng = np.random.default_rng(int(qber * 1000))
    n, frames = 10_000, 30
    alice, bob, errors = noisy_pair(rng, n * frames, qber)
    res = reconcile(alice, bob, qber, shuffle_seed=9, frame_bits=n)
    np.testing.assert_array_equal(res.corrected_key, alice)
    assert res.stats.corrected_bits == int(errors.sum())
    # Leakage can never be below the Shannon limit n h(e) for the actual errors.
    actual = errors.reshape(frames, n).mean(axis=1)
    assert res.leaked_bits > float(np.sum(n * binary_entropy(actual)))


def test_identical_keys_leak_only_block_parities() -> None:
    rng = np.random.default_rng(1)
    key = random_bits(rng, 10_000)
    res = reconcile(key, key.copy(), 0.02, shuffle_seed=3)
    np.testing.assert_array_equal(res.corrected_key, key)
    sizes = res.setup.block_sizes
    # Pass 1 asks every block; later passes infer the last block of the frame.
    expected = -(-10_000 // sizes[0]) + sum(-(-10_000 // k) - 1 for k in sizes[1:3])
    expected += len(sizes) - 3  # halving passes: one asked parity each
    assert res.leaked_bits == expected
    assert res.stats.corrected_bits == 0


def test_leakage_equals_bits_alice_sent() -> None:
    # Six frames at 4 %: frames progress independently, so some queries mix passes.
    rng = np.random.default_rng(3)
    alice_key, bob_key, _ = noisy_pair(rng, 60_000, 0.04)
    setup = CascadeSetup.for_qber(60_000, 0.04, shuffle_seed=5, frame_bits=10_000)
    alice = CascadeAlice(alice_key, setup)
    bob = CascadeBob(bob_key, setup)
    sent = mixed = 0
    while (q := bob.next_query()) is not None:
        # Round-trip every message through its wire encoding.
        q2 = ParityQuery.decode(q.encode())
        np.testing.assert_array_equal(q2.passes, q.passes)
        mixed += np.unique(q2.passes).size > 1
        reply = ParityReply.decode(alice.answer(q2).encode())
        sent += reply.count
        bob.receive(reply)
    assert bob.done
    assert mixed > 0
    np.testing.assert_array_equal(bob.key, alice_key)
    assert sent == alice.leaked_bits == bob.stats.leaked_bits
    assert alice.messages == bob.stats.queries


def test_ragged_last_frame_and_tiny_keys() -> None:
    rng = np.random.default_rng(3)
    for n, frame in [(25_003, 10_000), (7, 7), (1, 1), (300, 64), (50, 1), (31, 3)]:
        a, b, _ = noisy_pair(rng, n, 0.05)
        res = reconcile(a, b, 0.05, shuffle_seed=n, frame_bits=frame)
        np.testing.assert_array_equal(res.corrected_key, a)


def test_frames_are_independent_of_batching() -> None:
    # A frame reconciles to the same key whether alone or batched with others.
    rng = np.random.default_rng(4)
    a, b, _ = noisy_pair(rng, 30_000, 0.02)
    batched = reconcile(a, b, 0.02, frame_bits=10_000)
    for f in range(3):
        sl = slice(f * 10_000, (f + 1) * 10_000)
        np.testing.assert_array_equal(batched.corrected_key[sl], a[sl])


def test_block_sizes_follow_qber() -> None:
    assert default_block_sizes(0.02, 10_000) == (64, 256, 4096) + (5000,) * 13
    assert default_block_sizes(0.05, 100_000)[:3] == (16, 128, 4096)
    assert default_block_sizes(0.01, 100_000)[:3] == (128, 512, 4096)
    assert default_block_sizes(0.02, 100)[0] == 50  # capped at half a frame
    with pytest.raises(ValueError, match="qber"):
        default_block_sizes(0.6, 1000)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="keys differ in length"):
        reconcile(np.zeros(10, np.uint8), np.zeros(11, np.uint8), 0.02)
    setup = CascadeSetup.for_qber(100, 0.02, 0)
    with pytest.raises(ValueError, match="alice_key: has 99 bits"):
        CascadeAlice(np.zeros(99, np.uint8), setup)
    alice = CascadeAlice(np.zeros(100, np.uint8), setup)
    with pytest.raises(ValueError, match="ranges"):
        alice.answer(ParityQuery(np.array([0]), np.array([5]), np.array([5])))
    with pytest.raises(ValueError, match=r"ParityQuery\.passes: outside 0\.\.15"):
        alice.answer(ParityQuery(np.array([16]), np.array([0]), np.array([5])))
    with pytest.raises(ValueError, match=r"CascadeSetup\.block_sizes"):
        CascadeSetup(100, 100, (), 0)


def efficiency_sample(n: int, qber: float, frames: int, seed: int) -> np.ndarray:
    """Per-frame f = leaked / (n h(actual error fraction)), frames reconciled one by one."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        a, b, errors = noisy_pair(rng, n, qber)
        res = reconcile(a, b, qber, shuffle_seed=seed * 100_000 + i)
        np.testing.assert_array_equal(res.corrected_key, a)
        out.append(res.leaked_bits / (n * binary_entropy(errors.mean())))
    return np.array(out)


def test_efficiency_at_2_percent_is_below_1_08() -> None:
    # Mean f over 40 frames of 1e4 bits; the upper end of the 99.9 % t-interval
    # must stay below the 1.08 target, and f must exceed 1 (Shannon limit).
    f = efficiency_sample(10_000, 0.02, 40, seed=21)
    lo, hi = stats.t.interval(0.999, f.size - 1, loc=f.mean(), scale=stats.sem(f))
    assert hi < 1.08
    assert lo > 1.0


@pytest.mark.slow
@pytest.mark.parametrize("qber", [0.01, 0.02, 0.03, 0.05])
def test_efficiency_over_qber_range_slow(qber: float) -> None:
    f = efficiency_sample(10_000, qber, 100, seed=int(qber * 1e4))
    _, hi = stats.t.interval(0.999, f.size - 1, loc=f.mean(), scale=stats.sem(f))
    assert hi < (1.08 if qber <= 0.03 else 1.12)


@pytest.mark.slow
@pytest.mark.parametrize(("qber", "batches"), [(0.02, 60), (0.04, 40)])
def test_frame_error_rate_below_1e_3_slow(qber: float, batches: int) -> None:
    # 50 frames of 1e4 bits per batch. With FER <= 1e-3 the expected failures are
    # <= frames / 1000; we allow up to the Poisson 99.9 % quantile of that mean.
    rng = np.random.default_rng(99)
    n, per_batch = 10_000, 50
    failures = 0
    for i in range(batches):
        a, b, _ = noisy_pair(rng, n * per_batch, qber)
        res = reconcile(a, b, qber, shuffle_seed=i, frame_bits=n)
        wrong = np.any(res.corrected_key.reshape(per_batch, n) != a.reshape(per_batch, n), axis=1)
        failures += int(wrong.sum())
    assert failures <= stats.poisson.ppf(0.999, batches * per_batch / 1000)


# Key bits, frame bits, QBER, seed -> leaked bits, corrected bits, parities inferred
# instead of asked, first 16 hex digits of the SHA-256 of the corrected (packed) key.
# One frame: exactly what the implementation at commit 4350310 (one pass per query,
# one global choice of pass) gave. Several frames: that implementation drew a separate
# permutation per frame, this one shares one per pass (frames progress independently,
# so each frame's protocol is otherwise unchanged); pinned from this implementation.
PINNED_OUTCOMES = [
    (10000, 10000, 0.02, 13, 1502, 206, 78, "2d8a567e2371aa66"),
    (100000, 100000, 0.04, 14, 24961, 3967, 1546, "7aade86fac3a4039"),
    (65536, 65536, 0.03, 15, 12770, 1877, 369, "90566c54cd14fdda"),
    (9000, 10000, 0.03, 16, 1827, 268, 71, "573a87b2e13fb5a9"),
    (7, 7, 0.05, 9, 17, 0, 15, "36a9e7f1c95b82ff"),
    (30000, 10000, 0.02, 1, 4361, 581, 245, "b68a29d663d17b02"),
    (25003, 10000, 0.05, 2, 7449, 1232, 295, "9374a23e245a9e7c"),
    (200000, 10000, 0.01, 3, 16808, 1962, 997, "86c2cd5bb1531ad4"),
    (200000, 10000, 0.02, 4, 29004, 3890, 1658, "d04bfe32a042b3cd"),
    (200000, 10000, 0.03, 5, 40794, 6016, 1566, "412d49b439f119ba"),
    (200000, 10000, 0.04, 6, 50346, 7894, 3130, "8b3e644815fd8231"),
    (300000, 100000, 0.03, 7, 59828, 8874, 1820, "3e48c1e99532a1dc"),
    (300, 64, 0.05, 8, 136, 10, 75, "2df955e5d655bc4e"),
    (196625, 65536, 0.025, 10, 34656, 4926, 679, "8a1df27f7c5b6c36"),
    (40000, 10000, 0.1, 11, 19695, 3933, 1465, "08dca281f97c34e1"),
    (20000, 10000, 0.0, 12, 226, 0, 30, "dae9cc75cbb7fd00"),
]


@pytest.mark.parametrize(
    ("n", "frame", "qber", "seed", "leaked", "corrected", "inferred", "digest"),
    PINNED_OUTCOMES,
)
def test_pinned_leakage_and_key(
    n: int,
    frame: int,
    qber: float,
    seed: int,
    leaked: int,
    corrected: int,
    inferred: int,
    digest: str,
) -> None:
    rng = np.random.default_rng(seed)
    alice, bob, _ = noisy_pair(rng, n, qber)
    res = reconcile(alice, bob, max(qber, 0.01), shuffle_seed=seed * 7, frame_bits=frame)
    got = hashlib.sha256(np.packbits(res.corrected_key).tobytes()).hexdigest()[:16]
    assert (res.leaked_bits, res.stats.corrected_bits, res.stats.inferred_parities, got) == (
        leaked,
        corrected,
        inferred,
        digest,
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    frame=st.integers(1, 1200),
    qber=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_bob_flips_only_errors_and_stops_only_when_every_block_is_even(
    n: int, frame: int, qber: float, seed: int
) -> None:
    # Whatever the key, frames and error rate: every bit Bob flips was an error, both
    # sides count the same leakage, and if errors remain (a legitimate Cascade failure,
    # caught by verification) no block of any pass shows it: Bob never stops early.
    rng = np.random.default_rng(seed)
    alice, bob, errors = noisy_pair(rng, n, qber)
    res = reconcile(alice, bob, max(qber, 0.01), shuffle_seed=seed, frame_bits=frame)
    flipped = res.corrected_key ^ bob
    assert not np.any(flipped & (1 - errors))
    assert res.stats.corrected_bits == int(flipped.sum())
    if not np.array_equal(res.corrected_key, alice):
        lay = _Layout(res.setup)
        for p in range(len(res.setup.block_sizes)):
            lay.build_pass(p)
            np.testing.assert_array_equal(
                lay.block_parities(p, alice), lay.block_parities(p, res.corrected_key)
            )


@pytest.mark.parametrize("n", [1, 7, 8, 9, 63, 64, 65, 1000, 12_345])
def test_packed_running_count_matches_cumsum(n: int) -> None:
    # Counted per 64-bit word plus whole bytes and top bits of the last byte: every
    # prefix count equals the plain cumulative sum, at every bit and byte boundary.
    rng = np.random.default_rng(n)
    bits = random_bits(rng, n)
    count = _PackedCount(np.packbits(bits), n)
    expected = np.concatenate([[0], np.cumsum(bits)])
    np.testing.assert_array_equal(count.ones_before(np.arange(n + 1)), expected)
    assert count.total == int(bits.sum())
    idx = rng.integers(0, n, 50)
    np.testing.assert_array_equal(_bits_at(np.packbits(bits), idx), bits[idx])


def test_inverse_permutation() -> None:
    perm = np.random.default_rng(2).permutation(1000).astype(np.int32)
    inv = _inverse_permutation(perm)
    np.testing.assert_array_equal(inv[perm], np.arange(1000))
    np.testing.assert_array_equal(inv, np.argsort(perm))


@pytest.mark.parametrize(("n", "frame"), [(15_003, 5_000), (3_000, 4_096), (24_000, 6_000)])
def test_bob_bookkeeping_follows_his_key(n: int, frame: int) -> None:
    # Bob keeps his key in every shuffled pass's order and which blocks are odd, updated
    # by each correction (not recomputed): after every message they match what his
    # current key gives, in full frames, a shorter last frame and a single short frame.
    rng = np.random.default_rng(n)
    alice_key, bob_key, _ = noisy_pair(rng, n, 0.05)
    setup = CascadeSetup(n, frame, default_block_sizes(0.05, frame), 17)
    lay = _Layout(setup)
    for p in range(len(setup.block_sizes)):
        lay.build_pass(p)
    parities_a = np.concatenate([lay.block_parities(p, alice_key) for p in range(lay.n_passes)])
    alice = CascadeAlice(alice_key, setup)
    bob = CascadeBob(bob_key, setup)
    while (q := bob.next_query()) is not None:
        bob.receive(alice.answer(q))
        for p in np.flatnonzero(bob._kp_row >= 0).tolist():
            np.testing.assert_array_equal(bob._kp[bob._kp_row[p]], lay.shuffled_key(p, bob.key))
        parities_b = np.concatenate([lay.block_parities(p, bob.key) for p in range(lay.n_passes)])
        np.testing.assert_array_equal(bob._g_odd, parities_a ^ parities_b)
    assert not bob._g_odd.any()  # every block even at the end


def test_inconsistent_parities_stop_bob_with_an_error_not_a_loop() -> None:
    """A peer answering random parities: Bob raises after a bounded number of messages
    (before the guard he went on flipping bits for ever)."""
    from qhil.numerics.qkd.cascade import CascadeBob, CascadeSetup, ParityReply

    rng = np.random.default_rng(7)
    n = 4096
    bob = CascadeBob(rng.integers(0, 2, n, dtype=np.uint8), CascadeSetup(n, n, (64, 128, 256, 512), 1))
    with pytest.raises(ValueError, match="inconsistent"):
        for _ in range(20_000):
            query = bob.next_query()
            assert query is not None, "random parities ended Cascade: the test proves nothing"
            bits = rng.integers(0, 2, query.starts.size, dtype=np.uint8)
            bob.receive(ParityReply(bits.size, np.packbits(bits).tobytes()))
