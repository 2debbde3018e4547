"""HOM: PHYSICS.md case 6, coincidence probability (1 - V)/2 at a 50:50 splitter."""

from __future__ import annotations

import numpy as np
import pytest

from qhil.emulators.world.quantum import hom_coincidence_probability, hom_dip, hom_visibility
from qhil.emulators.world.quantum.hom import hom_coincidence_probability_fock


@pytest.mark.parametrize("v", [0.0, 0.3, 0.9, 1.0])
def test_balanced_splitter_gives_one_minus_v_over_two(v: float) -> None:
    assert hom_coincidence_probability(v) == pytest.approx((1 - v) / 2)
    assert hom_coincidence_probability_fock(v) == pytest.approx((1 - v) / 2, abs=1e-12)
    assert hom_visibility(v) == pytest.approx(v)


@pytest.mark.parametrize(("overlap", "r"), [(1.0, 0.3), (0.6, 0.3), (0.8, 0.9), (0.0, 0.7)])
def test_unbalanced_splitter_agrees_with_the_fock_space_model(overlap: float, r: float) -> None:
    p = hom_coincidence_probability(overlap, r)
    assert p == pytest.approx(hom_coincidence_probability_fock(overlap, r), abs=1e-12)
    assert p == pytest.approx(r**2 + (1 - r) ** 2 - 2 * r * (1 - r) * overlap)
    baseline = hom_coincidence_probability(0.0, r)
    assert hom_visibility(overlap, r) == pytest.approx(1 - p / baseline)


def test_dip_against_delay() -> None:
    sigma_w = 2 * np.pi * 100e9  # rad/s
    delays = np.array([0.0, 1 / sigma_w, 1e-9])
    p = hom_dip(delays, sigma_w, overlap_at_zero=0.95)
    np.testing.assert_allclose(
        p, (1 - 0.95 * np.exp(-np.array([0.0, 1.0, (sigma_w * 1e-9) ** 2]))) / 2
    )
    assert p[-1] == pytest.approx(0.5)  # far from the dip: distinguishable photons


def test_bad_hom_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="overlap must be in"):
        hom_coincidence_probability(1.2)
    with pytest.raises(ValueError, match="spectral_width"):
        hom_dip(0.0, 0.0)
