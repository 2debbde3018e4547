"""Teleportation protocol on a numpy fake of the end memories: the correction table, the
fidelity against (2F + 1)/3, failed Bell measurements."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from qhil.orchestrator.experiments.teleport.analysis import analyse, werner_teleportation_fidelity
from qhil.orchestrator.experiments.teleport.protocol import (
    BELL_STATES,
    CORRECTIONS,
    INPUTS,
    classical_channel,
    teleport_inputs,
)

from .fakes import FakeWorld, fake_link

Z99_9 = 3.2905  # two-sided 99.9 %


def _run(world: FakeWorld, shots: int, inputs: tuple[str, ...] = INPUTS) -> np.ndarray:
    async def go() -> np.ndarray:
        async with classical_channel("alice", "bob", "test") as (to_rx, at_rx):
            return await teleport_inputs(fake_link(world, to_rx, at_rx), inputs, shots)

    return asyncio.run(go())


def test_correction_table_complete_and_standard() -> None:
    assert len(CORRECTIONS) == 16
    # resource phi+: the textbook table (Y up to a phase is XZ)
    assert [CORRECTIONS[("phi+", m)] for m in BELL_STATES] == ["I", "Z", "X", "Y"]
    # the outcome equal to the resource needs no correction
    assert all(CORRECTIONS[(b, b)] == "I" for b in BELL_STATES)


@pytest.mark.parametrize("bell", BELL_STATES)
def test_perfect_pairs_teleport_perfectly(bell: str) -> None:
    """With F = 1 every shot measured in the input's own basis gives its eigenvalue: a
    wrong correction for any (resource, outcome) would flip some of them."""
    world = FakeWorld(1.0, np.random.default_rng(3), bells=(bell,))
    rows = _run(world, 30)
    axis = np.array([2, 2, 0, 0, 1, 1])[rows["input"]]  # H V D A R L: Z Z X X Y Y
    own = rows["basis"] == axis
    assert own.sum() == 60
    assert np.array_equal(rows["outcome"][own], rows["input"][own] % 2)
    a = analyse(rows, INPUTS)
    assert np.all(a.fidelity > 0.9)
    assert sorted(set(rows["bell_outcome"].tolist())) == [0, 1, 2, 3]


def test_average_fidelity_matches_werner_prediction() -> None:
    """F = 0.85 Werner pairs (psi+/psi- heralds): the measured six-input average agrees with
    (2F + 1)/3 = 0.9 within 99.9 % (two-sided, seed fixed); and it would reject F = 0.95's
    prediction."""
    world = FakeWorld(0.85, np.random.default_rng(7))
    a = analyse(_run(world, 150), INPUTS)
    avg, std = a.average
    assert a.predicted == pytest.approx(0.9)
    assert abs(avg - a.predicted) < Z99_9 * std
    assert abs(avg - werner_teleportation_fidelity(0.95)) > Z99_9 * std
    assert a.to_results()["average_z"] == pytest.approx((avg - 0.9) / std)


def test_failed_bell_measurement_frees_the_receiver_half_and_is_not_counted() -> None:
    world = FakeWorld(1.0, np.random.default_rng(1), fail_bell=0.3)
    rows = _run(world, 30, ("D",))
    failed = rows["bell_outcome"] < 0
    assert 0 < failed.sum() == world.released
    assert np.all(rows["outcome"][failed] == -1)
    a = analyse(rows, ("D",))
    assert a.measured == int((~failed).sum())
    assert np.all(rows["outcome"][(~failed) & (rows["basis"] == 0)] == 0)
    assert not math.isnan(a.pair_fidelity)
