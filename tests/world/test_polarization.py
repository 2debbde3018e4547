"""Polarization: controller voltages -> unitary, compensation of the fibre, drift statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import Z999, bb84_events, bb84_profile, binomial_interval, make_world
from scipy import stats

from qhil.emulators.world.polarization import STOKES_D, STOKES_H, jones_to_quat, rotvec_of_quat
from qhil.errors import ConfigError


def waveplate_jones(theta: float, delta: float) -> np.ndarray:
    """Textbook waveplate: fast axis at theta, retardance delta."""
    r = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    return r.T @ np.diag([np.exp(-0.5j * delta), np.exp(0.5j * delta)]) @ r


def same_up_to_phase(u: np.ndarray, v: np.ndarray) -> bool:
    phase = np.vdot(v.ravel(), u.ravel())
    return bool(np.allclose(u, v * phase / abs(phase), atol=1e-12))


def test_controller_unitary_is_the_product_of_its_squeezers() -> None:
    world = make_world(bb84_profile())
    pc = world.polarization_controller("bob.pc")
    rng = np.random.default_rng(0)
    volts = rng.uniform(-5000, 5000, 4)
    pc.set_voltages(volts)
    expected = np.eye(2)
    for i, v in enumerate(volts):
        theta = 0.0 if i % 2 == 0 else math.pi / 4  # EPC-400 axes 0, 45, 0, 45 deg
        expected = waveplate_jones(theta, math.pi * v / 2000.0) @ expected
    assert same_up_to_phase(pc.unitary, expected)
    # One channel at the half-wave voltage (axis 0 deg): H stays, D -> A.
    pc.set_voltages([2000.0, 0, 0, 0])
    assert np.allclose(pc.rotation @ STOKES_H, STOKES_H)
    assert np.allclose(pc.rotation @ STOKES_D, -STOKES_D)
    with pytest.raises(ValueError, match="voltages_mv"):
        pc.set_voltage(2, 6000.0)


def test_each_squeezer_has_its_own_half_wave_voltage() -> None:
    profile = bb84_profile()
    halves = [1800.0, 2000.0, 2100.0, 2200.0]
    profile["nodes"]["bob"]["components"]["pc"]["half_wave_voltage_mv"] = halves
    pc = make_world(profile).polarization_controller("bob.pc")
    volts = np.array([700.0, -1300.0, 2500.0, 900.0])
    pc.set_voltages(volts)
    expected = np.eye(2)
    for i, (v, half) in enumerate(zip(volts, halves, strict=True)):
        expected = (
            waveplate_jones(0.0 if i % 2 == 0 else math.pi / 4, math.pi * v / half) @ expected
        )
    assert same_up_to_phase(pc.unitary, expected)
    profile["nodes"]["bob"]["components"]["pc"]["half_wave_voltage_mv"] = halves[:3]
    with pytest.raises(ConfigError, match=r"bob\.components\.pc: half_wave_voltage_mv has 3"):
        make_world(profile)


def qber(world: object, duration: float) -> tuple[int, int]:
    block = world.tagger("bob.tagger").read(duration)  # type: ignore[attr-defined]
    ev = bb84_events(world, block)  # type: ignore[arg-type]
    sym = ev["symbol"]
    sift = ev["bob_basis"] == ((sym >> 1) & 1)
    errors = int((sift & (ev["bob_bit"] != (sym & 1))).sum())
    return errors, int(sift.sum())


def test_compensating_voltages_undo_a_random_fibre() -> None:
    e_d = 0.01
    world = make_world(bb84_profile(length_km=5.0, eta=0.2, e_d=e_d, initial_polarization="random"))
    errors, sifted = qber(world, 0.01)
    lo, hi = binomial_interval(sifted, e_d)
    assert errors > hi  # the uncompensated fibre scrambles the states
    volts = world.truth.compensating_voltages("bob.pc", "alice.tx")
    world.polarization_controller("bob.pc").set_voltages(volts)
    assert np.allclose(world.truth.path_rotation("alice.tx"), np.eye(3), atol=1e-6)
    errors, sifted = qber(world, 0.02)
    lo, hi = binomial_interval(sifted, e_d)
    assert lo <= errors <= hi


def test_fibre_drift_is_a_random_walk_on_the_sphere() -> None:
    sigma = 0.5  # rad / sqrt(s)
    world = make_world(bb84_profile(drift=sigma))
    step = 1e-3
    quats = [jones_to_quat(world.truth.fibre_unitary("ab", j * step)) for j in range(2001)]
    inc = np.array([rotvec_of_quat(_qmul(quats[j + 1], _qinv(quats[j]))) for j in range(2000)])
    # Each step rotates by a Gaussian rotation vector, per-axis variance sigma^2 * step.
    scale = sigma * math.sqrt(step)
    for axis in range(3):
        assert stats.kstest(inc[:, axis], "norm", args=(0.0, scale)).pvalue > 1e-3
    var_lo, var_hi = stats.chi2.interval(0.999, inc.size)
    assert var_lo <= (inc**2).sum() / scale**2 <= var_hi
    # Increments are independent: lag-1 correlation within 3.3 / sqrt(n).
    r = np.corrcoef(inc[:-1, 0], inc[1:, 0])[0, 1]
    assert abs(r) < Z999 / math.sqrt(inc.shape[0])


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from qhil.emulators.world.polarization import quat_mul

    return quat_mul(a, b)


def _qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def test_drift_does_not_depend_on_how_time_is_read() -> None:
    a = make_world(bb84_profile(drift=0.3))
    b = make_world(bb84_profile(drift=0.3))
    a.tagger("bob.tagger").read(0.3)
    for _ in range(30):
        b.tagger("bob.tagger").read(0.01)
    np.testing.assert_array_equal(
        a.truth.fibre_unitary("ab", 0.25), b.truth.fibre_unitary("ab", 0.25)
    )


def test_malus_law_through_a_rotatable_linear_analyzer() -> None:
    table = bb84_profile(mu=1.0, length_km=0.0, eta=0.5)
    bob = table["nodes"]["bob"]["components"]
    bob["rx"]["bases"] = [{"angle_deg": 0.0, "plus": "h"}]
    world = make_world(table)
    world.transmitter("alice.tx").set_pattern(np.zeros(16, np.uint8))  # all H
    world.analyzer("bob.rx").set_basis_angle(0, 30.0)
    assert world.channel_map("bob.rx")["30"].detector == "bob.h"
    n = round(0.005 * 80e6)
    hits = world.tagger("bob.tagger").read(0.005).timestamps_ps.size
    lo, hi = binomial_interval(n, 1 - math.exp(-1.0 * 0.5 * math.cos(math.radians(30)) ** 2))
    assert lo - 1 <= hits <= hi + 1


def test_half_wave_plate_turns_h_into_d() -> None:
    table = bb84_profile(mu=1.0, length_km=0.0, eta=0.5)
    table["nodes"]["alice"]["components"]["hwp"] = {"type": "waveplate", "angle_deg": 22.5}
    table["nodes"]["alice"]["components"]["tx"]["path"] = ["alice.hwp", "ab", "bob.pc", "bob.rx"]
    world = make_world(table)
    rot = world.truth.path_rotation("alice.tx")
    assert np.allclose(rot @ STOKES_H, STOKES_D, atol=1e-12)
    world.waveplate("alice.hwp").angle_deg = 0.0
    assert np.allclose(world.truth.path_rotation("alice.tx") @ STOKES_H, STOKES_H, atol=1e-12)


def test_a_controller_change_reaches_photons_already_in_the_fibre() -> None:
    """Bob's controller acts when a photon passes it, not when the photon left Alice: after
    a change, the very next clicks (well within one fibre delay, 122 us at 25 km) already
    show the new rotation. A half-wave plate at 45 deg swaps H and V: HV-basis errors jump
    from ~0 to ~100 %, DA stays right (binomial intervals, 99.9 %)."""
    world = make_world(bb84_profile(length_km=25.0, eta=0.8, e_d=0.01))
    tagger = world.tagger("bob.tagger")
    tagger.read(0.001)  # photons in flight, steady state
    world.polarization_controller("bob.pc").set_voltages([0.0, 2000.0, 0.0, 0.0])
    block = tagger.read(60e-6)  # half a fibre delay: all emitted before the change
    ev = bb84_events(world, block)
    sym = ev["symbol"]
    basis = (sym >> 1) & 1
    sifted = ev["bob_basis"] == basis
    wrong = sifted & (ev["bob_bit"] != (sym & 1))
    for b, p_wrong in ((0, 0.99), (1, 0.01)):  # HV flipped, DA untouched (e_d = 1 %)
        n = int((sifted & (basis == b)).sum())
        assert n > 100, n
        lo, hi = binomial_interval(n, p_wrong)
        assert lo <= int((wrong & (basis == b)).sum()) <= hi, (b, n)
