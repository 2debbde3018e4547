"""The emulated entanglement bench for the visibility / CHSH tests."""

from __future__ import annotations

import math
from typing import Any

from qhil.orchestrator.profile import load_profile

PROFILE = "entanglement"
Z999 = 3.29  # two-sided 99.9 %


def overrides(seed: int | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """The bench with its fibres' starting polarization the identity (so the experiments'
    compensation is skipped: cheap; test_compensated.py runs it) and the mounts' zeros set to where
    the plates really sit (what the mount-zero calibration finds), for both experiments."""
    prof = load_profile(PROFILE, [])
    world: Any = prof.world
    out = [
        'world.links.source-alice.initial_polarization="identity"',
        'world.links.source-bob.initial_polarization="identity"',
        "experiments.visibility.compensate_polarization=false",
        "experiments.chsh.compensate_polarization=false",
    ]
    for node in ("alice", "bob"):
        offset = float(world["nodes"][node]["components"]["hwp"].get("zero_offset_deg", 0.0))
        for table in ("visibility", "chsh"):
            # The mount angle at which the plate's axis lies along H.
            out.append(f"experiments.{table}.{node}_mount_zero_deg={-offset!r}")
    if seed is not None:
        out.append(f"world.seed={seed}")
    return [*out, *extra]


def two_sided(value: float, truth: float, stderr: float, z: float = Z999) -> bool:
    return abs(value - truth) < z * stderr if stderr > 0 else math.isclose(value, truth)
