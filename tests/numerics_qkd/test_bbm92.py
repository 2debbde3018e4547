"""BBM92 numerics: squashing, sifting, Tomamichel et al. (2012) length, Ma-Fung-Lo (2007)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhil.numerics.qkd.bbm92 import (
    bbm92_key_length,
    cw_gain_qber,
    detector_basis_bit,
    intrinsic_error,
    ma_fung_lo,
    predict_cw,
    sift_match,
    squash_masks,
    tomamichel_mu,
)
from qhil.numerics.qkd.entropy import binary_entropy

# --- detections and sifting ---


def test_detector_basis_bit() -> None:
    basis, bit = detector_basis_bit(np.array([0, 1, 2, 3]))
    assert basis.tolist() == [0, 0, 1, 1]
    assert bit.tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="0..3"):
        detector_basis_bit(np.array([4]))


def test_squash_single_and_double_clicks() -> None:
    rng = np.random.default_rng(1)
    basis, bit = squash_masks(np.array([1, 2, 4, 8]), rng)
    assert basis.tolist() == [0, 0, 1, 1] and bit.tolist() == [0, 1, 0, 1]
    # both detectors of one basis: that basis, a fair random bit
    basis, bit = squash_masks(np.full(20000, 0b0011), rng)
    assert np.all(basis == 0)
    assert abs(bit.mean() - 0.5) < 3.29 * 0.5 / math.sqrt(20000)  # two-sided 99.9 %
    # clicks in both bases: a fair random basis, then that basis' own bit
    basis, bit = squash_masks(np.full(20000, 0b0101), rng)  # H and D
    assert abs(basis.mean() - 0.5) < 3.29 * 0.5 / math.sqrt(20000)
    assert np.all(bit == 0)
    with pytest.raises(ValueError, match="mask"):
        squash_masks(np.array([0]), rng)


def test_sift_match_compares_bases_only() -> None:
    m = sift_match(np.array([0, 0, 1, 1], np.uint8), np.array([0, 1, 1, 0], np.uint8))
    assert m.tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="alice"):
        sift_match(np.zeros(2, np.uint8), np.zeros(3, np.uint8))


# --- finite key (Tomamichel, Lim, Gisin, Renner 2012) ---


def test_key_length_hand_value() -> None:
    # n = 1e5 key bits, k = 1e5 test bits, 2 % errors, leak 16 kbit, eps_sec 1e-9, eps_cor 1e-15.
    n, k, q = 100_000, 100_000, 0.02
    mu = math.sqrt((n + k) / (n * k) * (k + 1) / k * math.log(2 / 1e-9))
    h = binary_entropy(q + mu)
    expect = math.floor(n * (1 - h) - 16_000 - math.log2(2 / (1e-18 * 1e-15)))
    fk = bbm92_key_length(n, k, 2000, 16_000, eps_sec=1e-9, eps_cor=1e-15)
    assert fk.length == expect
    assert fk.mu == pytest.approx(0.020696, abs=1e-6)  # sqrt(2e-5 * 1.00001 * ln(2e9))
    assert fk.correction_bits == pytest.approx(1 + 2 * 9 * math.log2(10) + 15 * math.log2(10))


def test_key_length_asymptotic_limit() -> None:
    # mu -> 0 as n, k grow: the length per bit tends to 1 - h(Q) - leak/n.
    n = k = 10**12
    fk = bbm92_key_length(n, k, int(0.03 * k), 0.2 * n)
    assert fk.length / n == pytest.approx(1 - binary_entropy(0.03) - 0.2, rel=1e-4)


def test_key_length_zero_for_small_samples_and_high_qber() -> None:
    assert bbm92_key_length(1000, 1000, 10, 150).length == 0  # mu ~ 0.21: 245 - 150 - 111
    # BB84's 11 % limit: 1 - 2 h(Q) < 0 even with a Shannon-limit reconciliation
    assert (
        bbm92_key_length(10**7, 10**7, int(0.12 * 10**7), 10**7 * binary_entropy(0.12)).length == 0
    )
    assert bbm92_key_length(0, 100, 0, 0).length == 0
    assert bbm92_key_length(100, 0, 0, 0).length == 0
    assert tomamichel_mu(0, 5, 1e-9) == math.inf


def test_key_length_monotone() -> None:
    base = bbm92_key_length(200_000, 200_000, 3000, 30_000).length
    assert base > 0
    assert bbm92_key_length(200_000, 200_000, 3500, 30_000).length < base
    assert bbm92_key_length(200_000, 200_000, 3000, 31_000).length == base - 1000
    assert bbm92_key_length(200_000, 200_000, 3000, 30_000, eps_sec=1e-12).length < base


def test_key_length_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="test_errors"):
        bbm92_key_length(10, 10, 11, 0)
    with pytest.raises(ValueError, match="eps_sec"):
        bbm92_key_length(10, 10, 1, 0, eps_sec=0.0)
    with pytest.raises(ValueError, match="leak_ec"):
        bbm92_key_length(10, 10, 1, -1)


# --- Ma, Fung, Lo (2007) ---


def test_mfl_lossless_noiseless_is_the_thermal_pair_distribution() -> None:
    # eta = 1, Y0 = 0: a coincidence whenever n >= 1 pairs, P(n) = (n+1) lam^n / (1+lam)^(n+2).
    # The n-pair state is sum_m |m H, (n-m) V>|m H, (n-m) V>: with probability 2/(n+1) all
    # photons share one polarization (single clicks, correlated, e_d = 0), else both detectors
    # of the basis click (squashed: error 1/2). Correlated: sum_n P(n) 2/(n+1) = 2 lam/(1+lam)^2.
    lam = np.array([0.01, 0.1, 0.5])
    gain, qber = ma_fung_lo(lam, 1.0, 1.0, 0.0, 0.0, 0.0)
    n = np.arange(1, 400)[:, None]
    p_n = (n + 1) * lam**n / (1 + lam) ** (n + 2)
    correlated = (p_n * 2 / (n + 1)).sum(axis=0)
    np.testing.assert_allclose(gain, p_n.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(qber * gain, 0.5 * (gain - correlated), rtol=1e-12)


def test_mfl_first_order() -> None:
    # Small lam: Q ~ 2 lam eta_A eta_B + Y0A Y0B + ..., E ~ e_d when pairs dominate.
    gain, qber = ma_fung_lo(1e-6, 0.2, 0.1, 0.0, 0.0, 0.02)
    assert float(gain) == pytest.approx(2e-6 * 0.02, rel=1e-5)
    assert float(qber) == pytest.approx(0.02, rel=1e-4)
    # darks only: Q = Y0A Y0B, error 1/2
    gain, qber = ma_fung_lo(0.0, 0.2, 0.1, 1e-3, 2e-3, 0.02)
    assert float(gain) == pytest.approx(2e-6, rel=1e-9)
    assert float(qber) == pytest.approx(0.5)


def test_cw_agrees_with_mfl_at_small_mean_pair_number() -> None:
    # The entanglement bench: ~2e-4 pairs per 1 ns window; thermal vs Poisson differ at O(mu^2).
    mu, ea, eb, ya, yb, ed = 2e-4, 0.19, 0.11, 6e-7, 9e-7, 0.016
    g_cw, q_cw = cw_gain_qber(mu, ea, eb, ya, yb, ed)
    g_t, q_t = ma_fung_lo(mu / 2, ea, eb, ya, yb, ed)
    assert g_cw == pytest.approx(float(g_t), rel=1e-3)
    assert q_cw == pytest.approx(float(q_t), rel=1e-3)


def test_cw_against_monte_carlo() -> None:
    # The stated model, sampled: Poisson pairs per window, independent arm losses and noise.
    rng = np.random.default_rng(20261207)
    n, mu, ea, eb, ya, yb, ed = 2_000_000, 0.5, 0.3, 0.2, 0.05, 0.08, 0.03
    k_ab = rng.poisson(mu * ea * eb, n)
    k_a = rng.poisson(mu * ea * (1 - eb), n)
    k_b = rng.poisson(mu * (1 - ea) * eb, n)
    dark_a, dark_b = rng.random(n) < ya, rng.random(n) < yb
    click = (k_ab + k_a + dark_a > 0) & (k_ab + k_b + dark_b > 0)
    single = (k_ab == 1) & (k_a == 0) & (k_b == 0) & ~dark_a & ~dark_b
    err = np.where(single, rng.random(n) < ed, rng.random(n) < 0.5) & click
    gain, qber = cw_gain_qber(mu, ea, eb, ya, yb, ed)
    c = int(click.sum())
    assert abs(c / n - gain) < 3.29 * math.sqrt(gain * (1 - gain) / n)  # two-sided 99.9 %
    q = err.sum() / c
    assert abs(q - qber) < 3.29 * math.sqrt(qber * (1 - qber) / c)


def test_predict_cw_entanglement_bench_numbers() -> None:
    # The bench's numbers (hw_profiles/entanglement.toml, world README): ~39 k/s singles at
    # alice, ~22.5 k/s at bob, ~4.1 k/s coincidences, accidentals S_A S_B w.
    det_a = np.mean([0.82, 0.79, 0.85, 0.80])
    det_b = np.mean([0.84, 0.78, 0.81, 0.83])
    eta_a = 0.35 * 10 ** (-0.07) * 10 ** (-0.1) * det_a
    eta_b = 0.33 * 10 ** (-0.3) * 10 ** (-0.1) * det_b
    noise_a, noise_b = 550 + 50, 610 + 300
    w = 1e-9
    p = predict_cw(2e5, eta_a, eta_b, noise_a, noise_b, intrinsic_error(0.97, 30.0), w)
    assert p.singles_a_hz == pytest.approx(39e3, rel=0.02)
    assert p.singles_b_hz == pytest.approx(22.5e3, rel=0.03)
    assert p.coincidence_rate_hz == pytest.approx(4.12e3, rel=0.02)
    assert p.accidental_rate_hz == pytest.approx(p.singles_a_hz * p.singles_b_hz * w, rel=0.01)
    assert p.sifted_rate_hz == pytest.approx(p.coincidence_rate_hz / 2)
    assert p.qber == pytest.approx(0.015 + 0.97 * 2 / 1001, abs=2e-4)


def test_intrinsic_error() -> None:
    assert intrinsic_error(1.0) == 0.0
    assert intrinsic_error(0.9) == pytest.approx(0.05)
    assert intrinsic_error(1.0, 20.0) == pytest.approx(0.5 * (1 - (1 - 2 / 101) ** 2))
    with pytest.raises(ValueError, match="visibility"):
        intrinsic_error(1.2)
