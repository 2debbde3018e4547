"""A half-wave plate on a rotation mount in front of each analyser of an entangled pair.

A HWP whose fast axis is at theta from H, before an H/V analyser, measures linear
polarization along 2 theta; for phi+ with visibility V the probability that the two
nodes' outcomes agree (H/V basis, and D/A likewise) is (1 + V cos(4 (axis_a - axis_b)))/2,
axis = mount angle + the plate's unknown zero offset. Binomial intervals, 99.9 %, two-sided,
fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import binomial_interval, count_coincidences, make_world, spdc_profile

from qhil.emulators.world import World

VISIBILITY = 0.97
OFFSET_A, OFFSET_B = 1.5, -2.0  # how each plate sits in its mount (deg)


def hwp_world(seed: int = 3) -> World:
    table = spdc_profile(
        pairs_per_s=5e5,
        herald=0.8,
        eta=0.9,
        visibility=VISIBILITY,
        analyzers=True,
        jitter_ps=(50.0, 50.0),
    )
    comps = table["nodes"]["alice"]["components"]
    comps["hwp_a"] = {"type": "waveplate", "zero_offset_deg": OFFSET_A, "insertion_loss_db": 0.1}
    comps["hwp_b"] = {"type": "waveplate", "zero_offset_deg": OFFSET_B}
    comps["spdc"]["signal_path"] = ["alice.hwp_a", "alice.rx_a"]
    comps["spdc"]["idler_path"] = ["alice.hwp_b", "alice.rx_b"]
    return make_world(table, seed=seed)


def agreement(world: World, duration_s: float) -> dict[str, tuple[int, int]]:
    """(agreeing, all) coincidences per basis pair HV-HV and DA-DA."""
    block = world.tagger("alice.tagger").read(duration_s)
    delta = world.truth.expected_delta_ps("alice.spdc", "alice.ah", "alice.bh", 0.0)

    def ch(c: int) -> np.ndarray:
        return block.timestamps_ps[block.channels == c]

    out = {}
    for basis, (pa, ma, pb, mb) in {"HV": (1, 2, 5, 6), "DA": (3, 4, 7, 8)}.items():
        same = count_coincidences(ch(pa), ch(pb), delta, 400.0) + count_coincidences(
            ch(ma), ch(mb), delta, 400.0
        )
        diff = count_coincidences(ch(pa), ch(mb), delta, 400.0) + count_coincidences(
            ch(ma), ch(pb), delta, 400.0
        )
        out[basis] = (same, same + diff)
    return out


@pytest.mark.parametrize(
    ("mount_a", "mount_b"), [(0.0, 0.0), (22.5, 0.0), (11.25, 45.0), (30.0, 7.0)]
)
def test_hwp_rotates_the_measured_basis_by_twice_its_angle(mount_a: float, mount_b: float) -> None:
    world = hwp_world()
    world.waveplate("alice.hwp_a").angle_deg = mount_a
    world.waveplate("alice.hwp_b").angle_deg = mount_b
    assert world.waveplate("alice.hwp_a").axis_deg == pytest.approx(mount_a + OFFSET_A)
    axis_diff = math.radians((mount_a + OFFSET_A) - (mount_b + OFFSET_B))
    p_same = 0.5 * (1.0 + VISIBILITY * math.cos(4.0 * axis_diff))
    for basis, (same, total) in agreement(world, 0.1).items():
        assert total > 3000, (basis, total)
        lo, hi = binomial_interval(total, p_same)
        assert lo <= same <= hi, (basis, same, total, p_same)


def test_the_zero_offset_is_visible_and_the_plate_loses_light() -> None:
    """At mount angles 22.5 / 0 (orthogonal-looking settings) the offsets (3.5 deg apart)
    leave a correlation the plain angles would not (p_same 0.5 -> ~0.38); the signal arm's
    plate passes 10^-0.01 of its photons."""
    world = hwp_world(seed=4)
    world.waveplate("alice.hwp_a").angle_deg = 22.5
    same, total = agreement(world, 0.1)["HV"]
    lo, hi = binomial_interval(total, 0.5)
    assert not lo <= same <= hi
    signal = world.truth.path_transmission("alice.spdc", "alice.ah")
    idler = world.truth.path_transmission("alice.spdc", "alice.bh")
    assert signal == pytest.approx(idler * 10**-0.01)
