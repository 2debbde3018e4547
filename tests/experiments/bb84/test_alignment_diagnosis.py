"""A block that cannot be aligned names its likely cause, and a no_data abort says it.

Each case is a World whose light misses Bob in one way (a fibre turning H into D, no
light, a clock drifting beyond max_drift_ppm); both parties run over the in-process
channel, and the abort message (through :class:`DiscardDiagnosis`, as the jobs use it)
must name that cause and no other.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qhil.emulators.world import World, load_world_config
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.detection import (
    CAUSES,
    DRIFT,
    NO_LIGHT,
    OFF_GRID,
    POLARIZATION,
    DiscardDiagnosis,
    cause_of,
)

from .conftest import Runner
from .support import bb84_world, bb84_world_table, settings

# Long enough that ~450 revealed clicks are compared per block: a QBER up to 25 % would align.
L = 1 << 17


def turned_world(*angles_deg: float, waves: float = 0.5, seed: int = 3) -> World:
    """The test world with wave plates in Bob's path: an uncompensated fibre. A half-wave
    plate at 22.5 degrees turns H into D and D into H (both bases' QBER 50 %); two at 0
    and 45 degrees turn the linear polarization by 90 degrees (H -> V, D -> A: 100 %)."""
    table: dict[str, Any] = bb84_world_table(seed=seed)
    bob = table["nodes"]["bob"]["components"]
    names = [f"plate{i}" for i in range(len(angles_deg))]
    for name, angle in zip(names, angles_deg, strict=True):
        bob[name] = {"type": "waveplate", "angle_deg": angle, "retardance_waves": waves}
    tx = table["nodes"]["alice"]["components"]["tx"]
    tx["path"] = ["ab", *(f"bob.{n}" for n in names), "bob.rx"]
    return World(load_world_config(copy.deepcopy(table), "turned test world"), seed=seed)


async def _abort_message(run: Runner, world: World, **kw: Any) -> str:
    diagnosis = DiscardDiagnosis()
    with pytest.raises(BB84Aborted) as err:
        await run(world, settings(blocks=2, pattern_length=L, **kw), progress=diagnosis)
    assert err.value.reason is AbortReason.NO_DATA
    return diagnosis.explain(err.value)


def _causes_named(message: str) -> list[str]:
    return [c for c in CAUSES if c in message]


@pytest.mark.parametrize(
    ("angles_deg", "evidence"),
    [((22.5,), "a QBER near 50 %"), ((0.0, 45.0), "a QBER near 100 %")],
)
async def test_uncompensated_fibre_is_named_as_the_likely_cause(
    run: Runner, angles_deg: tuple[float, ...], evidence: str
) -> None:
    message = await _abort_message(run, turned_world(*angles_deg))
    assert "could be aligned" in message
    assert _causes_named(message) == [POLARIZATION]
    assert "(2 of 2 discarded blocks)" in message and evidence in message
    assert "calibrate_polarization = true" in message


async def test_without_the_turn_the_same_world_aligns(run: Runner) -> None:
    """Control: a full-wave plate turns nothing, and every block aligns (so the hint above
    comes from the rotation, not from the extra component). Two blocks are too few for a
    key: the run ends on the key length instead."""
    diagnosis = DiscardDiagnosis()
    with pytest.raises(BB84Aborted) as err:
        await run(
            turned_world(22.5, waves=1.0),
            settings(blocks=2, pattern_length=L),
            progress=diagnosis,
        )
    assert err.value.reason is AbortReason.NO_KEY
    assert err.value.result is not None and err.value.result.statistics.blocks_used == 2
    assert diagnosis.likely_cause() is None
    assert diagnosis.explain(err.value) == str(err.value)


async def test_no_light_is_named(run: Runner) -> None:
    message = await _abort_message(run, bb84_world(eta=1e-7, seed=9))
    assert _causes_named(message) == [NO_LIGHT]


async def test_drift_beyond_the_limit_is_named(run: Runner) -> None:
    # Bob's clock runs 800 ppm fast (a wrong reference, say); the search allows 50 ppm.
    world = bb84_world(bob_drift_ppm=800.0, seed=4)
    message = await _abort_message(run, world, max_drift_ppm=50.0)
    assert _causes_named(message) == [DRIFT]
    assert "at +800.0 ppm, max_drift_ppm is 50" in message


async def test_dark_counts_only_are_not_taken_for_light(run: Runner) -> None:
    # No light reaches Bob, but 50 kHz of dark counts per detector: clicks off the grid.
    message = await _abort_message(run, bb84_world(eta=1e-9, dark_hz=5e4, seed=5))
    assert _causes_named(message) == [OFF_GRID]


def test_cause_of_reads_bobs_lost_tags_detail() -> None:
    assert cause_of("the tagger lost 12 tags (buffer overflow)") is not None
    assert cause_of("something else") is None
