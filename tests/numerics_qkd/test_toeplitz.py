"""Toeplitz hashing: bit-exact against the explicit matrix; universality; verification."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats
from scipy.linalg import toeplitz

from qhil.numerics.qkd import toeplitz as toeplitz_module
from qhil.numerics.qkd.bits import pack_bits, random_bits, unpack_bits
from qhil.numerics.qkd.toeplitz import (
    fft_backend,
    new_seed,
    privacy_amplification,
    set_fft_backend,
    toeplitz_hash,
    toeplitz_hash_direct,
    toeplitz_rows_direct,
)
from qhil.numerics.qkd.verification import (
    VerificationError,
    alice_verification,
    bob_verification,
    tag_bits_for,
    verify_keys,
)

BACKENDS = ["scipy"] + (["fftw"] if toeplitz_module._HAVE_FFTW else [])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once per available FFT library (pocketfft always, FFTW if installed)."""
    before = fft_backend()
    set_fft_backend(request.param)
    # Small inputs normally bypass FFTW; force it so its path is checked too.
    old_min = toeplitz_module._FFTW_MIN_LEN
    toeplitz_module._FFTW_MIN_LEN = 1
    yield request.param
    toeplitz_module._FFTW_MIN_LEN = old_min
    set_fft_backend(before)


def scipy_toeplitz_product(x: np.ndarray, seed: np.ndarray, m: int) -> np.ndarray:
    # Independent construction: first column seed[n-1:], first row seed[n-1::-1].
    n = x.size
    matrix = toeplitz(seed[n - 1 : n - 1 + m], seed[n - 1 :: -1]).astype(np.int64)
    return (matrix @ x.astype(np.int64)) % 2


@pytest.mark.parametrize(
    ("n", "m"), [(1, 1), (2, 1), (7, 3), (64, 64), (100, 37), (257, 300), (1000, 999), (4096, 17)]
)
def test_fft_hash_bit_exact_against_matrix(n: int, m: int, backend: str) -> None:
    rng = np.random.default_rng(n * 1000 + m)
    for _ in range(5):
        x = random_bits(rng, n)
        seed = new_seed(rng, n, m)
        expected = scipy_toeplitz_product(x, seed, m)
        np.testing.assert_array_equal(toeplitz_hash(x, seed, m), expected)
        np.testing.assert_array_equal(toeplitz_hash_direct(x, seed, m), expected)


@pytest.mark.parametrize("max_fft_len", [2, 5, 16, 100])
def test_block_split_path_is_bit_exact(max_fft_len: int, backend: str) -> None:
    rng = np.random.default_rng(max_fft_len)
    for n, m in [(50, 20), (31, 77), (200, 199)]:
        x = random_bits(rng, n)
        seed = new_seed(rng, n, m)
        np.testing.assert_array_equal(
            toeplitz_hash(x, seed, m, max_fft_len=max_fft_len),
            scipy_toeplitz_product(x, seed, m),
        )


def test_large_hash_exact_on_sampled_rows(backend: str) -> None:
    # n ~ 1e6: FFT result checked against exact integer dot products on 300 rows.
    rng = np.random.default_rng(2024)
    n, m = 1_000_000, 600_000
    x = random_bits(rng, n)
    seed = new_seed(rng, n, m)
    y = privacy_amplification(x, seed, m)
    rows = np.concatenate([[0, 1, m - 2, m - 1], rng.choice(m, 296, replace=False)])
    np.testing.assert_array_equal(y[rows], toeplitz_rows_direct(x, seed, m, rows))
    # The split path (forced small FFTs) is exact too, on a 200k -> 100k sub-problem.
    sub_x, sub_seed = x[:200_000], seed[600_000 : 600_000 + 299_999]
    y_split = toeplitz_hash(sub_x, sub_seed, 100_000, max_fft_len=1 << 16)
    rows2 = rng.choice(100_000, 100, replace=False)
    np.testing.assert_array_equal(
        y_split[rows2], toeplitz_rows_direct(sub_x, sub_seed, 100_000, rows2)
    )


def test_output_bits_are_balanced_and_key_dependent() -> None:
    # Hash of a fixed key over random seeds: each output bit is fair (binomial, 99.9 %).
    rng = np.random.default_rng(7)
    n, m, trials = 300, 40, 2000
    x = random_bits(rng, n)
    ones = np.zeros(m, dtype=np.int64)
    for _ in range(trials):
        ones += toeplitz_hash(x, new_seed(rng, n, m), m)
    total = int(ones.sum())
    lo, hi = stats.binom.interval(0.999, trials * m, 0.5)
    assert lo <= total <= hi


def test_collision_rate_for_close_keys_matches_two_to_minus_m() -> None:
    # Universal family: keys differing in one bit collide with probability 2^-m.
    rng = np.random.default_rng(11)
    n, m, trials = 500, 4, 4000
    x = random_bits(rng, n)
    x2 = x.copy()
    x2[123] ^= 1
    hits = 0
    for _ in range(trials):
        seed = new_seed(rng, n, m)
        hits += int(np.array_equal(toeplitz_hash(x, seed, m), toeplitz_hash(x2, seed, m)))
    lo, hi = stats.binom.interval(0.999, trials, 2.0**-m)
    assert lo <= hits <= hi


def test_seed_length_checked() -> None:
    with pytest.raises(ValueError, match="seed: expected 14 bits"):
        toeplitz_hash(np.ones(10, np.uint8), np.ones(13, np.uint8), 5)
    with pytest.raises(ValueError, match="bits: values must be 0 or 1"):
        toeplitz_hash(np.full(10, 2, np.uint8), np.ones(14, np.uint8), 5)


def test_pack_roundtrip() -> None:
    rng = np.random.default_rng(3)
    bits = random_bits(rng, 1001)
    np.testing.assert_array_equal(unpack_bits(pack_bits(bits), 1001), bits)


def test_verification_accepts_equal_and_rejects_different_keys() -> None:
    rng = np.random.default_rng(5)
    key = random_bits(rng, 10_000)
    msg = alice_verification(key, rng, tag_bits=64)
    assert msg.collision_probability == 2.0**-64
    assert bob_verification(key.copy(), msg)
    bad = key.copy()
    bad[9_999] ^= 1
    assert not bob_verification(bad, msg)
    with pytest.raises(VerificationError, match="tags differ"):
        verify_keys(key, bad, rng)
    verify_keys(key, key.copy(), rng)
    with pytest.raises(ValueError, match="bob_key: has 9999 bits"):
        bob_verification(key[:-1], msg)


def test_tag_bits_for_eps() -> None:
    assert tag_bits_for(1e-12) == 40
    assert tag_bits_for(2.0**-64) == 64
    with pytest.raises(ValueError, match="eps_ver"):
        tag_bits_for(0.0)
    with pytest.raises(ValueError, match="eps_ver"):
        tag_bits_for(1.0)
    assert tag_bits_for(0.5) == 1


def test_verification_tag_lengths_and_bad_input() -> None:
    """The default tag is 64 bits (eps_cor = 2^-64); a requested length is honoured, also
    by verify_keys (a 1-bit tag misses half the errors: over 200 tries, 78-122 misses
    at 99.9 %)."""
    rng = np.random.default_rng(6)
    key = random_bits(rng, 1_000)
    assert alice_verification(key, rng).tag_bits == 64
    assert alice_verification(key, rng, 1).collision_probability == 0.5
    bad = key.copy()
    bad[0] ^= 1
    missed = 0
    for _ in range(200):
        try:
            verify_keys(key, bad, rng, tag_bits=1)
            missed += 1
        except VerificationError:
            pass
    assert 78 <= missed <= 122
    with pytest.raises(ValueError, match="^alice_key: cannot verify an empty key$"):
        alice_verification(np.zeros(0, np.uint8), rng)
    assert alice_verification(key[:1], rng).n_key_bits == 1
    with pytest.raises(ValueError, match=r"^tag_bits must be >= 1 \(got 0\)$"):
        alice_verification(key, rng, 0)
    with pytest.raises(ValueError, match="^alice_key: "):
        alice_verification(np.array([0, 2]), rng)
    with pytest.raises(ValueError, match="^bob_key: "):
        bob_verification(np.array([0, 2]), alice_verification(np.array([0, 1]), rng))


def test_backend_choice_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown fft backend"):
        set_fft_backend("fftpack")
