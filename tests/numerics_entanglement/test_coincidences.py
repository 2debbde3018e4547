"""Cross-node coincidences on synthetic streams with a known clock model and known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhil.numerics.entanglement import (
    EntanglementInputError,
    NoCoincidencePeakError,
    cross_node_coincidences,
    fit_peak,
    outcome_index,
)
from qhil.numerics.timing import ClockModel

PS = 10**12
Z999 = 3.29  # two-sided 99.9 %

# Joint outcome probabilities of a pair (rows alice H, V, D, A; columns bob's): phi+ with
# visibility 0.9 on passive analysers (each basis 1/2).
V = 0.9
_SAME = np.array([[1 + V, 1 - V], [1 - V, 1 + V]]) / 4
P = np.full((4, 4), 1 / 16)  # different bases: uncorrelated
P[:2, :2] = P[2:, 2:] = _SAME / 4  # both H/V or both D/A (probability 1/4 each)


def _streams(
    seed: int,
    *,
    duration_s: float = 1.0,
    pairs_hz: float = 4000.0,
    bg_a_hz: float = 3e4,
    bg_b_hz: float = 2e4,
    jitter_ps: float = 300.0,
    model: ClockModel,
    delay_ps: float = 44_100_000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    span = int(duration_s * PS)
    n = rng.poisson(pairs_hz * duration_s)
    t0 = rng.integers(0, span, n)
    joint = rng.choice(16, size=n, p=P.ravel())
    ta = t0 + rng.normal(0, jitter_ps, n)
    tb_true = t0 + delay_ps + rng.normal(0, jitter_ps, n)
    na, nb = rng.poisson(bg_a_hz * duration_s), rng.poisson(bg_b_hz * duration_s)
    a_t = np.concatenate([ta, rng.integers(0, span, na)]).astype(np.int64)
    a_c = np.concatenate([joint // 4 + 1, rng.integers(1, 5, na)])
    b_true = np.concatenate([tb_true, rng.integers(0, span, nb)])
    b_t = np.rint(model.b_from_a(np.rint(b_true).astype(np.int64))).astype(np.int64)
    b_c = np.concatenate([joint % 4 + 1, rng.integers(1, 5, nb)])
    oa, ob = np.argsort(a_t, kind="stable"), np.argsort(b_t, kind="stable")
    return a_t[oa], a_c[oa], b_t[ob], b_c[ob], n


@pytest.mark.parametrize("seed", [1, 2])
def test_pairs_window_and_accidentals_agree_with_the_truth(seed: int) -> None:
    # B = A + 0.3 s (+ the 44.1 us path difference) at -39 ppm: the model includes the path.
    clock = ClockModel(0.3 * PS, -39e-6, 0)
    a_t, a_c, b_t, b_c, n = _streams(seed, model=clock)
    # The path difference ticks on bob's clock too: (1 + drift) of it.
    model = ClockModel(0.3 * PS + 44_100_000.0 * (1 - 39e-6), -39e-6, 0)
    res = cross_node_coincidences(a_t, a_c, b_t, b_c, model, duration_ps=PS)
    sigma_rel = math.sqrt(2) * 300.0
    # The rms of a Gaussian clipped at +-3 sigma is 0.9865 sigma; statistical error ~1 %.
    assert 0.95 * sigma_rel < res.sigma_ps < 1.02 * sigma_rel
    assert abs(res.delay_ps) < 50  # the model already carries the path difference
    assert res.window_ps == math.ceil(6 * res.sigma_ps)
    # Accidentals from the displaced windows against S_A S_B w T (PHYSICS.md case 3).
    pred = res.predicted_accidentals()
    acc = res.accidentals_total
    acc_std = float(np.sqrt((res.accidentals_std**2).sum()))
    assert abs(acc - pred) < Z999 * acc_std, (acc, pred, acc_std)
    # Pairs captured by a window of +-(w/2)/sigma_rel, plus the accidentals.
    capture = math.erf(res.window_ps / 2 / (math.sqrt(2) * sigma_rel))
    expected = n * capture + pred
    assert abs(res.coincidences - expected) < Z999 * math.sqrt(expected)
    # The per-outcome matrix follows the pairs' joint probabilities.
    pairs = res.matrix - res.accidentals
    frac = pairs / pairs.sum()
    assert np.all(np.abs(frac - P) < Z999 * np.sqrt(P * (1 - P) / pairs.sum()) + 1e-3)
    # Per coincidence: the outcomes reproduce the matrix, bob's times are within the window.
    assert np.array_equal(
        np.bincount(res.alice_outcome * 4 + res.bob_outcome, minlength=16).reshape(4, 4),
        res.matrix,
    )
    d = res.bob_t_ps - res.alice_t_ps - res.delay_ps
    assert np.all((d >= -(res.window_ps // 2)) & (d < res.window_ps - res.window_ps // 2))


def test_a_wrong_clock_model_finds_no_peak() -> None:
    clock = ClockModel(0.3 * PS, -39e-6, 0)
    a_t, a_c, b_t, b_c, _ = _streams(3, model=clock, bg_a_hz=0.0, bg_b_hz=0.0)
    wrong = ClockModel(0.3 * PS + 44_100_000.0 + 5e6, -39e-6, 0)  # 5 us off
    with pytest.raises(NoCoincidencePeakError, match="no coincidence peak"):
        cross_node_coincidences(a_t, a_c, b_t, b_c, wrong)


def test_fixed_window_and_other_inputs_are_ignored() -> None:
    clock = ClockModel(0.0, 0.0, 0)
    a_t, a_c, b_t, b_c, _ = _streams(4, model=clock, delay_ps=0.0, bg_a_hz=0, bg_b_hz=0)
    a_c = a_c.copy()
    a_c[::10] = 7  # another input: not part of the analyser
    res = cross_node_coincidences(a_t, a_c, b_t, b_c, clock, window_ps=4000)
    assert res.window_ps == 4000
    assert res.singles_a.sum() == np.count_nonzero(a_c != 7)


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(EntanglementInputError, match="a_inputs"):
        outcome_index([1, 2], (1, 2, 2, 3), "a_inputs")
    with pytest.raises(EntanglementInputError, match="n_sigma"):
        cross_node_coincidences([1], [1], [1], [1], ClockModel(0.0), n_sigma=0)
    with pytest.raises(EntanglementInputError, match="window_ps"):
        cross_node_coincidences(
            np.arange(0, 10**6, 10**3),
            np.ones(1000, int),
            np.arange(0, 10**6, 10**3),
            np.ones(1000, int),
            ClockModel(0.0),
            window_ps=-5,
        )
    with pytest.raises(NoCoincidencePeakError):
        fit_peak([1e6, 2e6])
