"""Emulated time is virtual in fast mode (issue 12; issue 9's "same interval").

An acquisition of T seconds advances the world by exactly T; followers (passive
readers, the Eos count stream's) never move it and never draw photons of their own.
The joined acquisitions of issue 9 are tested in
tests/integration/test_virtual_time_instruments.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_config
from qhil.orchestrator.profile import load_profile

BOB_DETS = ["bob.det_h", "bob.det_v", "bob.det_d", "bob.det_a"]


def _default_world(seed: int = 7) -> World:
    prof = load_profile()
    return World(load_world_config(prof.world, prof.source), seed=seed, mode="fast")


def test_passive_reader_follows_and_never_moves_time() -> None:
    world = _default_world()
    follower = world.counter(BOB_DETS, passive=True)
    active = world.counter(BOB_DETS)
    assert follower.read_ready(0.1) is None  # nothing acquired: no period has passed
    assert world.clock.now_s == 0.0 and world.generated_until_s == 0.0
    for _ in range(3):
        active.read(0.1)
    assert world.clock.now_s == pytest.approx(0.3, abs=1e-12)
    followed = []
    while (block := follower.read_ready(0.1)) is not None:
        followed.append(block)
    # The follower sees what the acquisitions generated (the last period may still wait
    # for the guard of later tags), and not a picosecond more.
    assert len(followed) in (2, 3)
    assert world.clock.now_s == pytest.approx(0.3, abs=1e-12)
    again = world.counter(BOB_DETS)  # a fresh acquisition starts where generation is
    assert again.cursor_s >= 0.3
    # Shared generation: the follower's counts are the active reader's, period by period.
    reference = _default_world()
    ref_active = reference.counter(BOB_DETS)
    ref_counts = [ref_active.read(0.1).counts for _ in range(3)]
    for block, ref in zip(followed, ref_counts, strict=False):
        np.testing.assert_array_equal(block.counts, ref)


def test_passive_reader_does_not_change_the_physics() -> None:
    """The same acquisitions give the same tags with or without a follower open."""
    blocks = []
    for with_follower in (False, True):
        world = _default_world()
        if with_follower:
            world.counter(BOB_DETS, passive=True)
        reader = world.tagger("bob.tagger").open_reader()
        world.advance_to(0.05)  # idle time before the acquisition: a cold start
        reader.seek_now()
        blocks.append(reader.read(0.02))
    np.testing.assert_array_equal(blocks[0].timestamps_ps, blocks[1].timestamps_ps)
    assert len(blocks[0]) > 1000
