"""The parties' secret bits come from a cryptographic generator, not numpy's PCG64."""

from __future__ import annotations

import numpy as np
from randomgen import AESCounter
from scipy import stats

from qhil.numerics.qkd.randomness import secure_generator
from qhil.orchestrator.experiments.bb84.pattern import draw_pattern
from qhil.orchestrator.experiments.bbm92 import job as bbm92_job


def test_secure_generator_is_aes_counter_keyed_from_the_os() -> None:
    a, b = secure_generator(), secure_generator()
    assert isinstance(a.bit_generator, AESCounter)
    # two keys from the OS: the streams differ (equal 64-bit words by chance: 2^-256)
    assert not np.array_equal(a.bit_generator.random_raw(4), b.bit_generator.random_raw(4))


def test_bbm92_squashing_generators_are_cryptographic_without_a_test_seed() -> None:
    rngs = bbm92_job._rngs(None)
    assert rngs[:2] == [None, None]  # the parties make their own secure_generator()
    assert all(isinstance(r.bit_generator, AESCounter) for r in rngs[2:] if r is not None)


def test_alice_symbols_from_the_secure_generator_are_unbiased() -> None:
    # two-sided binomial test at 99.9 % on the key bits of one 2^20-symbol block
    pattern = draw_pattern(secure_generator(), 1 << 20, 0.5, (0.7, 0.2, 0.1), 0.01)
    ones = int(pattern.bits.sum())
    assert stats.binomtest(ones, pattern.n, 0.5).pvalue > 1e-3
