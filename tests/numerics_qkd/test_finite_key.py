"""Finite-key length (Lim et al. 2014): reference value, limits and monotonicity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qhil.numerics.qkd.entropy import binary_entropy
from qhil.numerics.qkd.finite_key import FiniteKeyInput, gamma, secret_key_length

MU = (0.5, 0.1, 0.0002)
P_MU = (0.7, 0.2, 0.1)
P_KEY = 0.9  # both choose the key basis with this probability


def model_input(pulses: float, eps_sec: float = 1e-9, distance_km: float = 25.0) -> FiniteKeyInput:
    # Expected counts of a fibre link (Lim et al.'s example parameters: eta_Bob 0.1,
    # 0.2 dB/km, 6e-7 dark counts per detector, 0.5 % misalignment, f_EC 1.1).
    eta = 0.1 * 10 ** (-0.2 * distance_km / 10)
    y0, e_d = 1.2e-6, 0.005
    gain = np.array([1 - (1 - y0) * math.exp(-eta * m) for m in MU])
    qber = np.array(
        [(y0 / 2 + e_d * (1 - math.exp(-eta * m))) / q for m, q in zip(MU, gain, strict=False)]
    )
    n_key = pulses * np.array(P_MU) * P_KEY**2 * gain
    n_test = pulses * np.array(P_MU) * (1 - P_KEY) ** 2 * gain
    e_key = float((n_key * qber).sum() / n_key.sum())
    leak = 1.1 * n_key.sum() * binary_entropy(e_key)
    return FiniteKeyInput(MU, P_MU, n_key, n_test, n_test * qber, leak, eps_sec=eps_sec)


def reference_length(inp: FiniteKeyInput, fluctuations: bool = True) -> float:
    """Independent scalar transcription of Lim et al. Eqs. (1)-(2) (no flooring)."""
    mu1, mu2, mu3 = inp.mu
    p1, p2, p3 = inp.p_mu
    es = inp.eps_sec

    def tau(n: int) -> float:
        return sum(
            p * math.exp(-m) * m**n / math.factorial(n)
            for m, p in zip(inp.mu, inp.p_mu, strict=False)
        )

    def bounds(c: list[float]) -> tuple[float, float]:
        d = math.sqrt(sum(c) / 2 * math.log(21 / es)) if fluctuations else 0.0
        nm2 = math.exp(mu2) / p2 * (c[1] - d)
        np2 = math.exp(mu2) / p2 * (c[1] + d)
        nm3 = math.exp(mu3) / p3 * (c[2] - d)
        np3 = math.exp(mu3) / p3 * (c[2] + d)
        np1 = math.exp(mu1) / p1 * (c[0] + d)
        s0 = max(0.0, tau(0) * (mu2 * nm3 - mu3 * np2) / (mu2 - mu3))  # counts are >= 0
        s1 = (tau(1) * mu1 * (nm2 - np3 - (mu2**2 - mu3**2) / mu1**2 * (np1 - s0 / tau(0)))) / (
            mu1 * (mu2 - mu3) - mu2**2 + mu3**2
        )
        return s0, s1

    s0x, s1x = bounds(list(inp.n_key))
    _, s1z = bounds(list(inp.n_test))
    m = list(inp.m_test)
    dm = math.sqrt(sum(m) / 2 * math.log(21 / es)) if fluctuations else 0.0
    v1 = (
        tau(1) * (math.exp(mu2) / p2 * (m[1] + dm) - math.exp(mu3) / p3 * (m[2] - dm)) / (mu2 - mu3)
    )
    b = v1 / s1z
    g = 0.0
    if fluctuations:
        c, d = s1z, s1x
        g = math.sqrt(
            (c + d)
            * (1 - b)
            * b
            / (c * d * math.log(2))
            * math.log2((c + d) / (c * d * (1 - b) * b) * 21**2 / es**2)
        )
    phi = b + g
    h = -phi * math.log2(phi) - (1 - phi) * math.log2(1 - phi)
    corr = 6 * math.log2(21 / es) + math.log2(2 / inp.eps_cor) if fluctuations else 0.0
    return s0x + s1x * (1 - h) - inp.leak_ec - corr


@pytest.mark.parametrize("pulses", [1e10, 1e11, 1e12])
def test_matches_independent_transcription(pulses: float) -> None:
    inp = model_input(pulses)
    ref = reference_length(inp)
    res = secret_key_length(inp)
    assert ref > 0
    assert res.length == math.floor(ref)


def test_length_per_pulse_grows_with_block_and_reaches_the_asymptote() -> None:
    per_pulse = [
        secret_key_length(model_input(n)).length / n for n in (1e9, 1e10, 1e11, 1e12, 1e14)
    ]
    assert all(b > a for a, b in itertools.pairwise(per_pulse))
    limit = reference_length(model_input(1e16), fluctuations=False) / 1e16
    at_1e16 = secret_key_length(model_input(1e16)).length / 1e16
    assert at_1e16 < limit
    assert at_1e16 == pytest.approx(limit, rel=0.01)


def test_no_key_for_small_blocks() -> None:
    res = secret_key_length(model_input(1e8))
    assert res.length == 0


def test_stricter_security_costs_key() -> None:
    lengths = [secret_key_length(model_input(1e10, eps_sec=e)).length for e in (1e-6, 1e-9, 1e-15)]
    assert lengths[0] > lengths[1] > lengths[2] > 0


def test_leakage_is_subtracted_one_for_one() -> None:
    inp = model_input(1e11)
    base = secret_key_length(inp).length
    more = FiniteKeyInput(
        inp.mu, inp.p_mu, inp.n_key, inp.n_test, inp.m_test, inp.leak_ec + 1000, inp.eps_sec
    )
    assert base - secret_key_length(more).length in (999, 1000, 1001)


def test_rate_falls_with_distance() -> None:
    lengths = [secret_key_length(model_input(1e11, distance_km=d)).length for d in (0, 25, 50, 75)]
    assert all(b < a for a, b in itertools.pairwise(lengths))


def test_bad_input_named() -> None:
    inp = model_input(1e10)
    with pytest.raises(ValueError, match=r"FiniteKeyInput\.mu"):
        FiniteKeyInput((0.1, 0.2, 0.0), P_MU, inp.n_key, inp.n_test, inp.m_test, 0.0)
    with pytest.raises(ValueError, match=r"FiniteKeyInput\.p_mu"):
        FiniteKeyInput(MU, (0.5, 0.2, 0.2), inp.n_key, inp.n_test, inp.m_test, 0.0)
    with pytest.raises(ValueError, match=r"FiniteKeyInput\.m_test"):
        FiniteKeyInput(MU, P_MU, inp.n_key, inp.n_test, inp.n_test * 2, 0.0)


# Observed counts where every finite-size term is large (a few 1e6 key bits): the vacuum
# bound s0 is positive (it is 0 at the model counts above, which would hide it), the
# Hoeffding terms cost ~1.4 % of the decoy counts and gamma adds ~0.09 to the phase error.
PINNED = FiniteKeyInput(
    (0.5, 0.1, 0.0002),
    (0.5, 0.3, 0.2),
    np.array([4.0e6, 5.0e5, 6.0e4]),
    np.array([1.0e5, 1.25e4, 1.5e3]),
    np.array([2500.0, 500.0, 300.0]),
    7.0e5,
)


def test_finite_size_terms_pinned_where_they_dominate() -> None:
    """Every intermediate of Lim et al. at PINNED, frozen from `reference_length` (an
    independent transcription; the code and it agree to the floor of the length). A
    less conservative bound moves one of them by far more than the tolerance."""
    res = secret_key_length(PINNED)
    ref = reference_length(PINNED)
    assert res.length == math.floor(ref) == 487_870
    assert res.s0_key == pytest.approx(201_437.1627, rel=1e-9)
    assert res.s1_key == pytest.approx(2_150_740.298, rel=1e-9)
    assert res.s1_test == pytest.approx(33_967.81388, rel=1e-9)
    assert res.v1_test == pytest.approx(3_693.795040, rel=1e-9)
    assert res.phase_error == pytest.approx(0.1241709773, rel=1e-9)
    # 6 log2(21 / 1e-9) + log2(2 / 1e-15), by hand: 6 x 34.2899 + 50.8289.
    assert res.correction_bits == pytest.approx(256.5669431, rel=1e-9)
    # Without the statistical fluctuations the same counts would give 1.63e6 bits.
    assert reference_length(PINNED, fluctuations=False) > 3 * res.length


def test_leakage_is_subtracted_at_the_pinned_point() -> None:
    """The reconciliation leakage costs exactly its bits (a key that ignores it is too long)."""
    base = secret_key_length(PINNED).length
    free = FiniteKeyInput(PINNED.mu, PINNED.p_mu, PINNED.n_key, PINNED.n_test, PINNED.m_test, 0.0)
    assert secret_key_length(free).length - base == 700_000


def test_gamma_by_hand_and_at_its_edges() -> None:
    """gamma(a, b, c, d) of Lim et al. by hand at an interior point; its b -> 0 limit is 0;
    outside its domain (b >= 1, no single-photon counts) it is infinite (no key)."""
    # (c + d) / (c d (1 - b) b) 21^2 / a^2 = 1.1e5 / (1e9 x 0.09) x 441 / 1e-18 = 5.39e17,
    # log2 = 58.90306; sqrt(1.1e5 x 0.09 / (1e9 ln 2) x 58.90306) = 0.0290051.
    assert gamma(1e-9, 0.1, 1e4, 1e5) == pytest.approx(0.02900506252, rel=1e-9)
    assert gamma(1e-9, 0.1, 1.0, 10.0) == pytest.approx(3.21104003, rel=1e-8)
    assert gamma(1e-9, 0.1, 10.0, 1.0) == pytest.approx(3.21104003, rel=1e-8)
    assert gamma(1e-9, 0.0, 1e4, 1e5) == 0.0
    assert 0 < gamma(1e-9, 1e-12, 1e4, 1e5) < 1e-4
    for b, c, d in [(1.0, 1e4, 1e5), (1.5, 1e4, 1e5), (0.1, 0.0, 1e5), (0.1, 1e4, 0.0)]:
        assert gamma(1e-9, b, c, d) == math.inf


def test_no_test_errors_give_no_phase_error() -> None:
    """With no test-basis error at all, v1 = 0 and phi = 0 (Lim et al.'s bounds: the
    Hoeffding term of a zero total is 0): l = floor(s0 + s1 - leak - corrections) =
    floor(201437.1627 + 2150740.2982 - 700000 - 256.5669) = 1 651 920."""
    clean = FiniteKeyInput(
        PINNED.mu, PINNED.p_mu, PINNED.n_key, PINNED.n_test, np.zeros(3), PINNED.leak_ec
    )
    res = secret_key_length(clean)
    assert (res.v1_test, res.phase_error, res.length) == (0.0, 0.0, 1_651_920)


def with_counts(**kw: object) -> FiniteKeyInput:
    fields = {
        "mu": PINNED.mu,
        "p_mu": PINNED.p_mu,
        "n_key": PINNED.n_key,
        "n_test": PINNED.n_test,
        "m_test": PINNED.m_test,
        "leak_ec": PINNED.leak_ec,
    }
    fields.update(kw)
    return FiniteKeyInput(**fields)  # type: ignore[arg-type]


def test_phase_error_bound_is_capped_at_one_half() -> None:
    """A quarter of PINNED's test counts, half its error rate: v1/s1 = 0.431, gamma = 0.088,
    so phi is capped at 1/2 (h = 1: the single photons give nothing) and with no leakage
    l = floor(s0 - corrections) = floor(201437.1627 - 256.5669) = 201 180."""
    res = secret_key_length(
        with_counts(n_test=PINNED.n_test * 0.25, m_test=PINNED.m_test * 0.125, leak_ec=0.0)
    )
    assert 0.43 < res.v1_test / res.s1_test < 0.5 and res.s1_key > 2e6
    assert (res.phase_error, res.length) == (0.5, 201_180)
    many_errors = secret_key_length(
        with_counts(n_test=PINNED.n_test * 0.25, m_test=PINNED.m_test * 0.25, leak_ec=0.0)
    )
    assert many_errors.v1_test / many_errors.s1_test == pytest.approx(0.626, abs=1e-3)
    assert (many_errors.phase_error, many_errors.length) == (0.5, 201_180)


def test_no_single_photon_bound_in_one_basis_gives_no_key() -> None:
    """Key basis too small for a single-photon bound, test basis fine: no key, phi = 1/2,
    and the other estimates still reported."""
    res = secret_key_length(with_counts(n_key=np.array([1000.0, 100.0, 10.0]), leak_ec=0.0))
    assert (res.length, res.s0_key, res.s1_key, res.phase_error) == (0, 0.0, 0.0, 0.5)
    assert res.s1_test == pytest.approx(33_967.81388, rel=1e-9)
    assert res.v1_test == pytest.approx(3_693.795040, rel=1e-9)
    assert res.correction_bits == pytest.approx(256.5669431, rel=1e-9)
    # Test basis too small instead: no phase-error estimate, so no key at all (not even the
    # 201 180 bits that s0 alone would give).
    res = secret_key_length(
        with_counts(
            n_test=np.array([1000.0, 100.0, 10.0]), m_test=np.array([10.0, 2.0, 1.0]), leak_ec=0.0
        )
    )
    assert (res.length, res.s1_test, res.phase_error) == (0, 0.0, 0.5) and res.s0_key > 2e5
    # A positive bound that the leakage eats: length 0, never 1.
    assert secret_key_length(with_counts(leak_ec=1e7)).length == 0


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"mu": (0.75, 0.5, 0.25)}, "mu"),  # mu1 = mu2 + mu3 (exactly, in binary)
        ({"mu": (0.5, 0.1, 0.1)}, "mu"),  # mu2 = mu3
        ({"p_mu": (0.8, 0.2, 0.0)}, "p_mu"),
        ({"p_mu": (0.5, 0.3, 0.21)}, "p_mu"),
        ({"n_key": np.array([1.0, -1.0, 1.0])}, "n_key"),
        ({"n_test": np.array([1.0, 1.0])}, "n_test"),
        ({"leak_ec": -1.0}, "leak_ec"),
        ({"eps_sec": 0.0}, "eps_sec"),
        ({"eps_sec": 1.0}, "eps_sec"),
        ({"eps_cor": 1.0}, "eps_cor"),
    ],
)
def test_each_bad_input_is_named(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^FiniteKeyInput\.{field}: "):
        with_counts(**kw)


def test_edge_inputs_accepted() -> None:
    with_counts(mu=(0.31, 0.2, 0.1), p_mu=(0.4, 0.4, 0.2), m_test=PINNED.n_test)
    with_counts(mu=(0.5, 0.1, 0.0), eps_sec=1e-300, leak_ec=0.0)
