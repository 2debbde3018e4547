"""Trigonometric fits behind the polarization search."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qhil.calibration.trig_fit import (
    evaluate_trig_polynomial,
    fit_common_rate,
    fit_sinusoid,
    fit_sinusoid_rate,
    fit_trig_polynomial,
    fit_trig_polynomial_rates,
    minimize_trig_polynomial,
    trig_basis,
    wrap_phase,
)
from qhil.emulators.world.polarization import (
    quat_mul,
    quat_to_matrix,
    random_quaternion,
    waveplate_quat,
)

THIRDS = (0.0, 2 * math.pi / 3, -2 * math.pi / 3)


def test_basis_columns_are_products_of_one_cos_sin() -> None:
    x = np.array([[0.3, -1.1]])
    b = trig_basis(x)[0]
    one_cos_sin = [lambda t: 1.0, math.cos, math.sin]
    expected = [f(0.3) * g(-1.1) for f in one_cos_sin for g in one_cos_sin]
    assert b == pytest.approx(expected)


def test_grid_of_thirds_recovers_any_polynomial_exactly() -> None:
    rng = np.random.default_rng(1)
    for k in (1, 2, 3):
        coef = rng.normal(size=3**k)
        grid = np.array(list(itertools.product(THIRDS, repeat=k)))
        fitted = fit_trig_polynomial(grid, evaluate_trig_polynomial(coef, grid))
        assert fitted == pytest.approx(coef, abs=1e-10)


def test_fit_refuses_undetermined_phases() -> None:
    grid = np.array(list(itertools.product((0.0, 1.0), repeat=2)))  # 2 phases per axis
    with pytest.raises(ValueError, match="coefficients need"):
        fit_trig_polynomial(grid, np.zeros(len(grid)))
    grid = np.array([[a, 0.0] for a in np.linspace(0, 6, 12)])  # second axis never moves
    with pytest.raises(ValueError, match="3 distinct"):
        fit_trig_polynomial(grid, np.zeros(len(grid)))


def test_minimum_of_a_separable_polynomial() -> None:
    # f = sum_j (1 - cos(x_j - a_j)) is minimal (0) at x = a.
    a = np.array([0.7, -2.9, 2.0])
    grid = np.array(list(itertools.product(THIRDS, repeat=3)))
    values = np.sum(1 - np.cos(grid - a), axis=1)
    x, fmin = minimize_trig_polynomial(fit_trig_polynomial(grid, values), 3)
    assert wrap_phase(x - a) == pytest.approx(np.zeros(3), abs=1e-4)
    assert fmin == pytest.approx(0.0, abs=1e-8)


def test_three_retarders_undo_any_rotation() -> None:
    # The cost 1 - (R11 + R22) / 2 of three retarders (axes 0/45/0 deg) after a random
    # rotation is a degree-one polynomial in their phases; its minimum is the identity.
    axes = np.deg2rad([0.0, 45.0, 0.0])
    rng = np.random.default_rng(7)
    for _ in range(10):
        fibre = quat_to_matrix(random_quaternion(rng))

        def cost(phases: np.ndarray, fibre: np.ndarray = fibre) -> float:
            q = np.array([1.0, 0.0, 0.0, 0.0])
            for plate in waveplate_quat(axes, phases):
                q = quat_mul(plate, q)
            r = quat_to_matrix(q) @ fibre
            return 1 - (r[0, 0] + r[1, 1]) / 2

        grid = np.array(list(itertools.product(THIRDS, repeat=3)))
        coef = fit_trig_polynomial(grid, [cost(g) for g in grid])
        x, fmin = minimize_trig_polynomial(coef, 3)
        assert cost(x) == pytest.approx(0.0, abs=1e-7)
        assert fmin == pytest.approx(cost(x), abs=1e-7)


def test_known_rate_sinusoid() -> None:
    rate = math.pi / 1800
    v = np.array([-3000.0, -200.0, 1500.0, 4100.0])
    y = 0.4 + 0.3 * np.cos(rate * v - 1.2)
    fit = fit_sinusoid(v, y, rate)
    assert (fit.offset, fit.amplitude, fit.phase) == pytest.approx((0.4, 0.3, 1.2))
    assert fit.residual_rms == pytest.approx(0.0, abs=1e-12)
    minima = fit.minima_mv(-5000, 5000)
    assert np.all(np.abs(minima) <= 5000) and minima.size == 3  # period 3600 mV
    assert fit(minima) == pytest.approx(np.full(3, 0.1))


@pytest.mark.parametrize("half_wave_mv", [700.0, 1300.0, 2000.0, 3100.0, 4500.0])
def test_rate_found_from_a_noisy_irregular_scan(half_wave_mv: float) -> None:
    # 12 irregular voltages over +-4800 mV, noise 0.01 on a swing of 0.8: the half-wave
    # voltage comes back to 2 %; the scan's regular-grid alias (if any) is not chosen.
    # (Up to a half-wave voltage of 4800 mV the scan spans at least one period.)
    rng = np.random.default_rng(int(half_wave_mv))
    golden = (math.sqrt(5) - 1) / 2
    v = (np.sort((np.arange(11) * golden + 0.5) % 1.0) * 2 - 1) * 4800
    v = np.append(v, 0.0)
    rate = math.pi / half_wave_mv
    y = 0.5 + 0.4 * np.cos(rate * v - 0.3) + rng.normal(0, 0.01, v.size)
    fit = fit_sinusoid_rate(v, y, 625.0, 12500.0)
    assert fit.half_wave_voltage_mv == pytest.approx(half_wave_mv, rel=0.02)
    assert fit.amplitude == pytest.approx(0.4, abs=0.03)


def test_rate_fit_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match=">= 5"):
        fit_sinusoid_rate([1.0, 2.0], [0.0, 1.0], 100.0, 1000.0)
    with pytest.raises(ValueError, match="0 < min < max"):
        fit_sinusoid_rate(np.arange(6.0), np.zeros(6), 1000.0, 100.0)


def test_common_rate_of_several_series_one_of_them_flat() -> None:
    # Four series at five voltages (the line's design: start, +-2/3 V_pi, two far points);
    # one does not move at all, the others share the rate. Noise-free: exact.
    half_wave = 2300.0
    rate = math.pi / half_wave
    v = np.array([300.0, 300 + 1333.0, 300 - 1333.0, -4800.0, 4800.0])
    phases = np.array([0.4, -2.0, 1.1])
    amps = np.array([0.45, 0.2, 0.3])
    y = np.column_stack(
        [0.5 + a * np.cos(rate * v - p) for a, p in zip(amps, phases, strict=True)]
        + [np.full(v.size, 0.25)]
    )
    fit = fit_common_rate(v, y, 2000.0 / 1.4, 2000.0 * 1.4)
    assert fit.half_wave_voltage_mv == pytest.approx(half_wave, rel=1e-6)
    assert fit.amplitudes == pytest.approx([*amps, 0.0], abs=1e-6)
    assert fit.residual_rms == pytest.approx(0.0, abs=1e-9)


def test_common_rate_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        fit_common_rate(np.arange(5.0), np.zeros(5), 100.0, 1000.0)
    with pytest.raises(ValueError, match=">= 4 distinct"):
        fit_common_rate([0.0, 0.0, 1.0, 2.0], np.zeros((4, 2)), 100.0, 1000.0)
    with pytest.raises(ValueError, match="0 < min < max"):
        fit_common_rate(np.arange(6.0), np.zeros((6, 1)), 1000.0, 100.0)


def test_polynomial_rates_are_recovered_from_the_grid_and_its_lines() -> None:
    # Two axes with rates 8 % and -6 % off the starting guess: the 3x3 grid laid at the guess
    # plus two far points on each axis's line through the centre fix both rates (noise-free).
    rng = np.random.default_rng(3)
    guess = math.pi / 2000.0
    true = np.array([guess * 1.08, guess * 0.94])
    coef = rng.normal(size=(9, 2))
    g = 2 * math.pi / 3 / guess
    dv = [[a, b] for a in (0.0, g, -g) for b in (0.0, g, -g)]
    dv += [[x, 0.0] for x in (3900.0, -4700.0)] + [[0.0, x] for x in (-3900.0, 4500.0)]
    dv_arr = np.array(dv)
    values = trig_basis(dv_arr * true[None, :]) @ coef
    bounds = [(guess / 1.2, guess * 1.2)] * 2
    fit = fit_trig_polynomial_rates(dv_arr, values, np.array([guess, guess]), bounds)
    assert fit.rates_rad_per_mv == pytest.approx(true, rel=1e-5)
    assert fit.coef == pytest.approx(coef, abs=1e-4)
    # Rates held fixed (zero-width bounds): plain least squares at those rates.
    fixed = fit_trig_polynomial_rates(dv_arr, values, true, [(r, r) for r in true])
    assert fixed.rates_rad_per_mv == pytest.approx(true, rel=1e-12)
    assert fixed.residual_rms == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="within bounds"):
        fit_trig_polynomial_rates(dv_arr, values, true, [(guess, guess)] * 2)
