"""Sifting and squashing: vectorised, squashing statistics fair, sifted keys aligned."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qhil.numerics.qkd.bits import as_bits, random_bits, unpack_bits
from qhil.numerics.qkd.sifting import (
    AliceRecord,
    SiftAnnouncement,
    SiftReply,
    alice_sift,
    bob_announce,
    bob_sift,
    sift,
    squash_clicks,
)


def test_single_clicks_pass_through_sorted() -> None:
    rng = np.random.default_rng(0)
    det = squash_clicks([7, 2, 5], [1, 0, 1], [0, 1, 1], rng)
    np.testing.assert_array_equal(det.pulse_index, [2, 5, 7])
    np.testing.assert_array_equal(det.basis, [0, 1, 1])
    np.testing.assert_array_equal(det.bit, [1, 1, 0])
    assert not det.multi_click.any()


def test_repeated_click_of_one_detector_is_one_event() -> None:
    det = squash_clicks([3, 3, 3], [0, 0, 0], [1, 1, 1], np.random.default_rng(1))
    np.testing.assert_array_equal(det.pulse_index, [3])
    assert det.bit[0] == 1 and det.basis[0] == 0 and not det.multi_click[0]


def test_same_basis_double_clicks_get_fair_random_bits() -> None:
    n = 20_000
    idx = np.repeat(np.arange(n), 2)
    det = squash_clicks(idx, np.ones(2 * n, np.uint8), np.tile([0, 1], n), np.random.default_rng(2))
    assert det.pulse_index.size == n
    assert np.all(det.basis == 1) and det.multi_click.all()
    lo, hi = stats.binom.interval(0.999, n, 0.5)
    assert lo <= int(det.bit.sum()) <= hi


def test_cross_basis_clicks_get_random_basis_and_the_clicked_bit() -> None:
    n = 20_000
    idx = np.repeat(np.arange(n), 2)
    # Z detector "1" and X detector "0" both click on every pulse.
    det = squash_clicks(idx, np.tile([0, 1], n), np.tile([1, 0], n), np.random.default_rng(3))
    lo, hi = stats.binom.interval(0.999, n, 0.5)
    assert lo <= int(det.basis.sum()) <= hi
    np.testing.assert_array_equal(det.bit, 1 - det.basis)  # Z gives 1, X gives 0
    assert det.multi_click.all()


def test_sift_keeps_matching_bases_and_aligns_bits() -> None:
    rng = np.random.default_rng(4)
    n = 200_000
    record = AliceRecord.from_arrays(
        rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 3, n)
    )
    detected = np.sort(rng.choice(n, 20_000, replace=False))
    bob_basis = rng.integers(0, 2, detected.size).astype(np.uint8)
    same = bob_basis == record.bases[detected]
    bob_bit = np.where(same, record.bits[detected], rng.integers(0, 2, detected.size))
    det = squash_clicks(detected, bob_basis, bob_bit.astype(np.uint8), rng, n_pulses=n)
    alice, bob, reply = sift(record, det)
    np.testing.assert_array_equal(alice.pulse_index, detected[same])
    np.testing.assert_array_equal(alice.bits, bob.bits)
    np.testing.assert_array_equal(alice.intensity, record.intensities[detected[same]])
    np.testing.assert_array_equal(bob.intensity, alice.intensity)
    lo, hi = stats.binom.interval(0.999, detected.size, 0.5)
    assert lo <= alice.pulse_index.size <= hi
    assert reply.match.size == detected.size
    assert np.all(alice.select(1) == (alice.basis == 1))
    for basis in (0, 1):
        for k in (0, 1, 2):
            expected = (alice.basis == basis) & (alice.intensity == k)
            assert expected.any() and not expected.all()
            np.testing.assert_array_equal(alice.select(basis, k), expected)


def test_two_party_messages_round_trip() -> None:
    rng = np.random.default_rng(5)
    record = AliceRecord.from_arrays([0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 2, 0])
    det = squash_clicks([0, 2, 3], [0, 0, 1], [0, 1, 0], rng)
    reply, alice = alice_sift(record, bob_announce(det))
    bob = bob_sift(det, reply)
    np.testing.assert_array_equal(reply.match, [True, False, True])
    np.testing.assert_array_equal(alice.pulse_index, [0, 3])
    np.testing.assert_array_equal(bob.bits, [0, 0])
    with pytest.raises(ValueError, match="SiftReply: 1 flags for 3"):
        bob_sift(det, SiftReply(np.array([True]), np.array([0], np.uint8)))


def test_bad_input_is_named() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="beyond the 10 pulses"):
        squash_clicks([10], [0], [0], rng, n_pulses=10)
    with pytest.raises(ValueError, match=r"clicks\.basis: values must be 0 or 1"):
        squash_clicks([1], [2], [0], rng)
    with pytest.raises(ValueError, match="differ in length"):
        AliceRecord.from_arrays([0, 1], [0], [0, 0])


def test_one_click_and_no_click_edge_cases() -> None:
    rng = np.random.default_rng(8)
    one = squash_clicks(np.array([5]), [1], [0], rng)
    assert (one.pulse_index.tolist(), one.basis.tolist(), one.bit.tolist()) == ([5], [1], [0])
    assert one.multi_click.tolist() == [False]
    none = squash_clicks(np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint8), rng)
    for arr, dtype in [
        (none.pulse_index, np.int64),
        (none.basis, np.uint8),
        (none.bit, np.uint8),
        (none.multi_click, np.bool_),
    ]:
        assert arr.shape == (0,) and arr.dtype == dtype
    for args, match in [
        ((np.array([1.5]), [0], [0]), r"^clicks\.pulse_index: expected a 1-D integer array$"),
        ((np.array([[1]]), [0], [0]), r"^clicks\.pulse_index: expected a 1-D integer array$"),
        ((np.array([-1]), [0], [0]), r"^clicks\.pulse_index: negative pulse index$"),
        ((np.array([1, 2]), [0], [0, 1]), r"^clicks: pulse_index, basis, bit differ in length"),
        ((np.array([1]), [0], [2]), r"^clicks\.bit"),
    ]:
        with pytest.raises(ValueError, match=match):
            squash_clicks(*args, rng)


def test_announcement_outside_the_record_is_refused() -> None:
    record = AliceRecord.from_arrays([0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 2, 0])
    det = squash_clicks(np.array([4]), [0], [0], np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"^SiftAnnouncement\.pulse_index: must lie in \[0, 4\)"):
        alice_sift(record, bob_announce(det))
    for bad, match in [
        (([0, 1], [0, 1], [0, 256]), r"^AliceRecord\.intensities: indices must lie in 0\.\.255$"),
        (([0, 1], [0, 1], [0.0, 1.0]), r"^AliceRecord\.intensities: expected a 1-D integer"),
        (([0, 2], [0, 1], [0, 1]), r"^AliceRecord\.bits"),
        (([0, 1], [0, 2], [0, 1]), r"^AliceRecord\.bases"),
    ]:
        with pytest.raises(ValueError, match=match):
            AliceRecord.from_arrays(*bad)
    assert AliceRecord.from_arrays([0], [1], [255]).intensities.tolist() == [255]


def test_announcement_must_be_strictly_increasing() -> None:
    """A repeated or reordered pulse in Bob's announcement is refused (it would count one
    detection twice in the sifted key and the statistics)."""
    record = AliceRecord.from_arrays([0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 2, 0])
    for idx in ([2, 2], [3, 1], [0, 1, 1]):
        ann = SiftAnnouncement(np.array(idx, np.int64), np.zeros(len(idx), np.uint8))
        with pytest.raises(ValueError, match=r"^SiftAnnouncement\.pulse_index: must be strictly"):
            alice_sift(record, ann)
    ok = SiftAnnouncement(np.array([3], np.int64), np.zeros(1, np.uint8))
    assert alice_sift(record, ok)[0].match.tolist() == [False]


def test_random_bits_are_uniform_bytes() -> None:
    """Alice's pattern bits and every Toeplitz seed come from random_bits: its bytes are
    uniform on 0..255 (chi-square, and the all-zero byte two-sided, 99.9 %)."""
    rng = np.random.default_rng(44)
    assert random_bits(rng, 0).shape == (0,)
    assert random_bits(rng, 13).shape == (13,)
    n_bytes = 1 << 20
    b = np.packbits(random_bits(rng, 8 * n_bytes))
    counts = np.bincount(b, minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3
    lo, hi = stats.binom.interval(0.999, n_bytes, 1 / 256)
    assert lo <= counts[0] <= hi and lo <= counts[255] <= hi


def test_unpack_bits_refuses_counts_the_bytes_cannot_hold() -> None:
    """A bit count beyond the bytes (numpy would pad with zeros) or negative is refused;
    0 bits and exactly 8 per byte are fine."""
    assert unpack_bits(b"\xff", 0).shape == (0,)
    assert unpack_bits(b"\xff\x00", 16).tolist() == [1] * 8 + [0] * 8
    for n in (9, -1):
        with pytest.raises(ValueError, match=rf"^unpack_bits: {n} bits do not fit in 1 bytes$"):
            unpack_bits(b"\xff", n)
    with pytest.raises(ValueError, match=r"^key: expected a 1-D bit array \(got shape \(1, 1\)\)$"):
        as_bits([[1]], "key")


def test_alice_sift_of_every_pulse_equals_the_gathering_path() -> None:
    # An announcement of every pulse of the record (what Alice's record_at gives) is read
    # without a gather: the same reply and key as the same pulses inside a longer record.
    rng = np.random.default_rng(12)
    n = 2000
    bits, bases = rng.integers(0, 2, (2, n + 7)).astype(np.uint8)
    inten = rng.integers(0, 3, n + 7).astype(np.uint8)
    ann_basis = rng.integers(0, 2, n).astype(np.uint8)
    whole = AliceRecord.from_arrays(bits[:n], bases[:n], inten[:n])
    longer = AliceRecord.from_arrays(bits, bases, inten)
    ann = SiftAnnouncement(np.arange(n), ann_basis)
    (r1, k1), (r2, k2) = alice_sift(whole, ann), alice_sift(longer, ann)
    np.testing.assert_array_equal(r1.match, r2.match)
    np.testing.assert_array_equal(r1.intensity, r2.intensity)
    for a, b in zip(
        (k1.pulse_index, k1.basis, k1.intensity, k1.bits),
        (k2.pulse_index, k2.basis, k2.intensity, k2.bits),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert 0.4 < r1.match.mean() < 0.6
    np.testing.assert_array_equal(k1.bits, bits[:n][r1.match])
