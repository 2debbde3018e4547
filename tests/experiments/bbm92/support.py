"""The emulated entanglement bench as the BBM92 tests use it."""

from __future__ import annotations

from typing import Any

from qhil.orchestrator.profile import load_profile

from ..entanglement.support import PROFILE

Z999 = 3.29  # two-sided 99.9 %


def overrides(*extra: str) -> list[str]:
    """The fibres' polarization the identity and still (a lab compensates and tracks them;
    the Ma-Fung-Lo prediction has no term for drift), and each mount's zero where its plate
    really sits (what the mount-zero calibration finds)."""
    out = []
    for link in ("source-alice", "source-bob"):
        out.append(f'world.links.{link}.initial_polarization="identity"')
        out.append(f"world.links.{link}.polarization_drift_rad_per_sqrt_s=0.0")
    # Nothing for bob's controller to undo: no compensation step (tests/.../test_shipped.py
    # runs the bench as shipped, which compensates).
    out.append("experiments.bbm92.compensate_polarization=false")
    return [*out, *mount_zeros(), *extra]


def mount_zeros() -> list[str]:
    """``experiments.bbm92.<node>_mount_zero_deg`` where each plate really sits."""
    world: Any = load_profile(PROFILE, []).world
    out = []
    for node in ("alice", "bob"):
        hwp = world["nodes"][node]["components"].get("hwp", {})
        offset = float(hwp.get("zero_offset_deg", 0.0))
        out.append(f"experiments.bbm92.{node}_mount_zero_deg={-offset!r}")
    return out
