"""End to end on simulated decoy BB84 data: squash, sift, estimate, reconcile, verify, amplify."""

from __future__ import annotations

import math

import numpy as np

from qhil.numerics.qkd import (
    AliceRecord,
    DecoyCounts,
    FiniteKeyInput,
    alice_sift,
    alice_verification,
    bob_announce,
    bob_sift,
    bob_verification,
    new_seed,
    privacy_amplification,
    reconcile,
    secret_key_length,
    squash_clicks,
    vacuum_weak_decoy_bounds,
)
from qhil.numerics.qkd.bits import pack_bits, unpack_bits

MU = (0.5, 0.1, 0.0)
P_MU = (0.7, 0.2, 0.1)


def simulate(rng: np.random.Generator, pulses: int, eta: float, e_d: float, p_dark: float):
    bits = rng.integers(0, 2, pulses, dtype=np.uint8)
    bases = (rng.random(pulses) > 0.9).astype(np.uint8)  # 90 % Z (key basis)
    inten = rng.choice(3, pulses, p=P_MU).astype(np.uint8)
    mu = np.asarray(MU)[inten]
    signal = rng.random(pulses) < 1 - np.exp(-mu * eta)
    bob_basis = (rng.random(pulses) > 0.9).astype(np.uint8)  # passive choice, 90 % Z
    flip = rng.random(pulses) < e_d
    value = np.where(bob_basis == bases, bits ^ flip, rng.integers(0, 2, pulses)).astype(np.uint8)
    idx = [np.flatnonzero(signal)]
    b = [bob_basis[signal]]
    v = [value[signal]]
    for _ in range(4):  # dark counts in each of the four detectors
        dark = np.flatnonzero(rng.random(pulses) < p_dark)
        idx.append(dark)
        b.append(np.full(dark.size, _ // 2, np.uint8))
        v.append(np.full(dark.size, _ % 2, np.uint8))
    record = AliceRecord.from_arrays(bits, bases, inten)
    return record, np.concatenate(idx), np.concatenate(b), np.concatenate(v)


def test_pipeline_gives_equal_final_keys() -> None:
    rng = np.random.default_rng(2025)
    pulses = 2_000_000
    record, idx, basis, value = simulate(rng, pulses, eta=0.05, e_d=0.02, p_dark=2e-4)
    det = squash_clicks(idx, basis, value, rng, n_pulses=pulses)
    assert det.multi_click.any()  # dark counts produced double clicks
    reply, alice = alice_sift(record, bob_announce(det))
    bob = bob_sift(det, reply)

    # Test basis (X) fully disclosed: QBER and decoy statistics per intensity.
    test = alice.basis == 1
    err_test = alice.bits[test] != bob.bits[test]
    counts = DecoyCounts.from_data(
        MU, record.intensities, reply.intensity, alice.intensity[test], err_test
    )
    assert np.all(counts.gains[:2] > counts.gains[2])  # vacuum gain is the dark-count floor
    # True Y1 = eta + Y0 - eta Y0 with Y0 ~ 4 p_dark. The plain estimate sits near it
    # (counts of ~1e4-1e5: percent-level noise); the finite-size bound stays below.
    y1_true = 0.05 + 8e-4 - 0.05 * 8e-4
    plain = vacuum_weak_decoy_bounds(counts)
    finite = vacuum_weak_decoy_bounds(counts, eps=1e-10)
    assert 0.85 * y1_true < plain.y1_lower < 1.1 * y1_true
    assert 0.3 * y1_true < finite.y1_lower <= y1_true
    assert plain.e1_upper <= finite.e1_upper <= 0.5

    # Key basis (Z): reconcile with the test-basis QBER estimate, then verify.
    key = alice.basis == 0
    qber = float(err_test.mean())
    res = reconcile(alice.bits[key], bob.bits[key], qber, shuffle_seed=7, frame_bits=10_000)
    msg = alice_verification(alice.bits[key], rng)
    assert bob_verification(res.corrected_key, msg)

    # Finite-key length from the same counts: at 2e6 pulses there is no key, because the
    # Hoeffding term sqrt(n / 2 ln(21 / eps_sec)) (~600 over ~3e4 key bits) exceeds the
    # vacuum-intensity count, so no single-photon bound survives in either basis.
    n_key = np.bincount(alice.intensity[key], minlength=3).astype(float)
    n_test = np.bincount(alice.intensity[test], minlength=3).astype(float)
    m_test = np.bincount(alice.intensity[test][err_test], minlength=3).astype(float)
    fk = secret_key_length(
        FiniteKeyInput((0.5, 0.1, 0.0), P_MU, n_key, n_test, m_test, float(res.leaked_bits))
    )
    hoeffding = math.sqrt(n_key.sum() / 2 * math.log(21 / 1e-9))
    assert hoeffding > 500 and n_key[2] < 200
    assert (fk.length, fk.s1_key, fk.s1_test, fk.phase_error) == (0, 0.0, 0.0, 0.5)

    # Privacy amplification with Alice's seed sent packed; both sides agree.
    n = int(key.sum())
    m = fk.length or n // 4
    seed = new_seed(rng, n, m)
    wire = pack_bits(seed)
    final_alice = privacy_amplification(alice.bits[key], seed, m)
    final_bob = privacy_amplification(res.corrected_key, unpack_bits(wire, seed.size), m)
    np.testing.assert_array_equal(final_alice, final_bob)
