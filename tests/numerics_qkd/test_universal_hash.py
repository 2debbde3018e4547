"""Multiply-add-shift privacy amplification: strong universality over every seed, bit
conventions, a Python-int reference, and the family dispatch both parties use."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from qhil.numerics.qkd import toeplitz
from qhil.numerics.qkd.bits import random_bits, unpack_bits
from qhil.numerics.qkd.universal_hash import (
    MULTIPLY_ADD_SHIFT,
    PA_FAMILIES,
    PA_FAMILY,
    TOEPLITZ,
    amplify,
    bits_to_int,
    int_to_bits,
    mas_hash,
    new_pa_seed,
    new_seed,
    pa_seed_length,
    privacy_amplification,
    seed_length,
    word_bits,
)
from qhil.numerics.qkd.verification import alice_verification, bob_verification

IntHash = Callable[[int, int, int], int]  # (a, b, x) -> h


def _int(bits: np.ndarray) -> int:
    """Reference conversion, one bit at a time: bits[i] is the 2^i digit."""
    return sum(int(v) << i for i, v in enumerate(bits))


def _bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> i) & 1 for i in range(n)], dtype=np.uint8)


def _strongly_universal(table: np.ndarray, m: int) -> bool:
    """``table[s, x]`` = h_s(x) over every seed s: for every x != y, is (h(x), h(y))
    exactly uniform on [0, 2^m)^2 (each pair of outputs taken by the same number of seeds)?"""
    seeds, xs = table.shape
    cells = 1 << (2 * m)
    if seeds % cells:
        return False
    for x in range(xs):
        for y in range(x + 1, xs):
            joint = np.bincount((table[:, x] << m) | table[:, y], minlength=cells)
            if not np.all(joint == seeds // cells):
                return False
    return True


def _implemented_table(n: int, m: int) -> np.ndarray:
    """h_{a,b}(x) from :func:`mas_hash` itself, for every seed (a, b) and every key x."""
    w = word_bits(n, m)
    rows = []
    for a in range(1 << w):
        for b in range(1 << w):
            seed = np.concatenate([_bits(a, w), _bits(b, w)])
            rows.append([_int(mas_hash(_bits(x, n), seed, m)) for x in range(1 << n)])
    return np.array(rows, dtype=np.int64)


def _int_table(n: int, m: int, w: int, h: IntHash) -> np.ndarray:
    grid = np.arange(1 << w)
    return np.array(
        [[h(int(a), int(b), x) for x in range(1 << n)] for a in grid for b in grid], np.int64
    )


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (4, 2)])
def test_family_as_implemented_is_strongly_universal(n: int, m: int) -> None:
    # Every seed (a, b) of W = n + m - 1 bits each, every pair of keys: exact uniformity.
    assert _strongly_universal(_implemented_table(n, m), m)


@pytest.mark.parametrize(("n", "m"), [(2, 2), (3, 2), (4, 2)])
def test_uniformity_check_rejects_broken_variants(n: int, m: int) -> None:
    # The check above is not vacuous: a word one bit short, or a forgotten "+ b", fails it.
    w = n + m - 1

    def right(a: int, b: int, x: int) -> int:
        return ((a * x + b) % (1 << w)) >> (w - m)

    def short_word(a: int, b: int, x: int) -> int:
        return ((a * x + b) % (1 << (w - 1))) >> (w - 1 - m)

    def no_offset(a: int, b: int, x: int) -> int:
        return ((a * x) % (1 << w)) >> (w - m)

    assert _strongly_universal(_int_table(n, m, w, right), m)
    assert not _strongly_universal(_int_table(n, m, w - 1, short_word), m)
    assert not _strongly_universal(_int_table(n, m, w, no_offset), m)


def test_implementation_is_the_stated_formula_seed_for_seed() -> None:
    n, m = 3, 2
    w = n + m - 1
    want = _int_table(n, m, w, lambda a, b, x: ((a * x + b) % (1 << w)) >> (w - m))
    assert np.array_equal(_implemented_table(n, m), want)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (8, 8), (9, 3), (100, 37), (1000, 999), (4099, 64)])
def test_against_python_int_reference(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 7 + m)
    w = n + m - 1
    for _ in range(5):
        key = random_bits(rng, n)
        seed = new_seed(rng, n, m)
        a, b, x = _int(seed[:w]), _int(seed[w:]), _int(key)
        want = ((a * x + b) % (1 << w)) >> (w - m)
        assert np.array_equal(privacy_amplification(key, seed, m), _bits(want, m))


def test_bit_conventions() -> None:
    # bits[0] is the least significant bit, on the way in and on the way out; the seed
    # holds a then b. These are what both parties must agree on.
    assert int(bits_to_int(np.array([1, 0, 0, 1, 1, 0, 0, 0, 0, 1], np.uint8))) == 1 + 8 + 16 + 512
    assert np.array_equal(
        int_to_bits(bits_to_int(np.array([0, 1, 1], np.uint8)), 5), [0, 1, 1, 0, 0]
    )
    # n = 3, m = 2, W = 4: a = 1 (seed bit 0), b = 0: h(x) = x >> 2 = the key's bit 2
    seed = np.zeros(8, np.uint8)
    seed[0] = 1
    assert np.array_equal(mas_hash(np.array([0, 0, 1], np.uint8), seed, 2), [1, 0])
    # a = 0, b = 0b1000: h = b >> 2 = 2 -> bits [0, 1] whatever the key
    seed = np.zeros(8, np.uint8)
    seed[4 + 3] = 1
    assert np.array_equal(mas_hash(np.array([1, 1, 1], np.uint8), seed, 2), [0, 1])


def test_large_key_spot_check() -> None:
    # 2e5 bits: the FFT-multiplication path of GMP, against Python's own big integers
    rng = np.random.default_rng(11)
    n, m = 200_000, 90_001
    key, seed = random_bits(rng, n), new_seed(rng, n, m)
    w = n + m - 1
    pack = lambda v: int.from_bytes(np.packbits(v, bitorder="little").tobytes(), "little")  # noqa: E731
    a, b, x = pack(seed[:w]), pack(seed[w:]), pack(key)
    want = ((a * x + b) & ((1 << w) - 1)) >> (w - m)
    got = privacy_amplification(key, seed, m)
    assert pack(got) == want


def test_input_errors() -> None:
    rng = np.random.default_rng(0)
    key = random_bits(rng, 10)
    with pytest.raises(ValueError, match="seed: expected 30 bits"):
        mas_hash(key, np.zeros(29, np.uint8), 6)
    with pytest.raises(ValueError, match="final_length must be >= 1"):
        privacy_amplification(key, new_seed(rng, 10, 1), 0)
    with pytest.raises(ValueError, match="n_in >= 1"):
        seed_length(0, 3)
    with pytest.raises(ValueError, match="unknown hash family 'sha'"):
        amplify(key, new_seed(rng, 10, 4), 4, family="sha")
    with pytest.raises(ValueError, match="bits: values must be 0 or 1"):
        mas_hash(np.array([0, 2], np.uint8), np.zeros(4, np.uint8), 1)


def test_family_dispatch() -> None:
    rng = np.random.default_rng(5)
    n, m = 500, 200
    key = random_bits(rng, n)
    assert PA_FAMILY == MULTIPLY_ADD_SHIFT and set(PA_FAMILIES) == {MULTIPLY_ADD_SHIFT, TOEPLITZ}
    assert pa_seed_length(MULTIPLY_ADD_SHIFT, n, m) == 2 * (n + m - 1)
    assert pa_seed_length(TOEPLITZ, n, m) == n + m - 1
    s_mas = new_pa_seed(np.random.default_rng(1), n, m)
    s_toe = new_pa_seed(np.random.default_rng(1), n, m, TOEPLITZ)
    assert s_mas.size == 2 * (n + m - 1) and s_toe.size == n + m - 1
    assert np.array_equal(amplify(key, s_mas, m), mas_hash(key, s_mas, m))
    assert np.array_equal(amplify(key, s_toe, m, TOEPLITZ), toeplitz.toeplitz_hash(key, s_toe, m))


def test_verification_tags_are_multiply_add_shift() -> None:
    rng = np.random.default_rng(8)
    n, t = 3000, 64
    key = random_bits(rng, n)
    msg = alice_verification(key, rng, t)
    seed = unpack_bits(msg.seed, seed_length(n, t))
    assert len(msg.seed) == (2 * (n + t - 1) + 7) // 8
    assert np.array_equal(unpack_bits(msg.tag, t), mas_hash(key, seed, t))
    assert bob_verification(key.copy(), msg)
    bad = key.copy()
    bad[1234] ^= 1
    assert not bob_verification(bad, msg)
