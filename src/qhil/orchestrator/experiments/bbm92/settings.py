"""``[experiments.bbm92]``, validated (errors name the file and the field).

The acquisition's fields are the entanglement experiments' (:class:`CompensatedSettings`:
nodes, instruments, the taggers' inputs for H, V, D, A, pump current, coincidence window,
clock-model search, and the fibres' compensation first, as visibility and CHSH do); the
mounts, when the bench has them, stay at their zero (``<node>_mount_zero_deg``: the H/V
analyser's own axes). The key's fields follow BB84's.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import ClassVar

from pydantic import Field

from qhil.numerics.qkd import tag_bits_for
from qhil.orchestrator.experiments.entanglement.settings import CompensatedSettings

#: Fields each node may choose for itself (left out of the digest the parties compare).
LOCAL_FIELDS = {
    "alice_node",
    "bob_node",
    "source_node",
    "source",
    "alice_tagger",
    "bob_tagger",
    "alice_mount",
    "bob_mount",
    "alice_channels",
    "bob_channels",
    "alice_mount_zero_deg",
    "bob_mount_zero_deg",
    "use_mount_zero_calibration",
    "message_timeout_s",
    "uncertainty_s",
    "max_frequency_offset_ppm",
    "min_significance",
    # Bob's compensation of the fibres is his own business (alice only heralds).
    "compensate_polarization",
    "polarization_controller",
    "compensation_integration_s",
    "compensation_verify_s",
    "compensation_target_error",
    "compensation_max_acquisitions",
    "polarization_max_age_s",
    "track_polarization",
    "tracking_significance",
}


class BBM92Settings(CompensatedSettings):
    """BBM92 on the entanglement bench (units in the names)."""

    TABLE: ClassVar[str] = "experiments.bbm92"

    duration_s: float = Field(20.0, gt=0.0, le=3600.0, description="Acquisition, s.")
    chunk_s: float = Field(
        2.0,
        gt=0.0,
        le=3600.0,
        description="Acquire in chunks of this length, s, each with its own clock model: the "
        "clocks' wander moves the coincidence peak by ns over ~10 s (a linear model over the "
        "whole run loses pairs).",
    )
    max_qber: float = Field(
        0.11,
        gt=0.0,
        lt=0.5,
        description="Abort above this QBER (test basis; key basis after Cascade).",
    )
    eps_sec: float = Field(1e-9, gt=0, lt=1, description="Secrecy (Tomamichel et al. 2012).")
    eps_cor: float = Field(1e-15, gt=0, lt=1, description="Correctness (verification tag).")
    frame_bits: int = Field(1 << 16, ge=256, description="Cascade frame size, bits.")
    message_timeout_s: float = Field(120.0, gt=0, description="Wait for the peer's message, s.")
    track_polarization: bool = Field(
        True,
        description="With compensate_polarization: test each chunk's D/A QBER against the "
        "compensation's verified level and re-compensate bob's controller between chunks "
        "when it rises beyond it (bbm92/tracking.py; one process only, not with --party).",
    )
    tracking_significance: float = Field(
        1e-3,
        gt=0,
        lt=0.5,
        description="Per-chunk false-alarm probability of the drift test.",
    )

    def instruments(self) -> list[tuple[str, str, str, str | None, bool]]:
        """As the acquisition's, but the mounts are optional: passive bases need none."""
        return [
            (f, n, r, name, req and r != "RotationMount")
            for f, n, r, name, req in super().instruments()
        ]

    def chunks(self) -> list[float]:
        """The acquisition's chunks, s: ``chunk_s`` each, the remainder last."""
        n = max(1, math.ceil(self.duration_s / self.chunk_s - 1e-9))
        return [self.chunk_s] * (n - 1) + [self.duration_s - self.chunk_s * (n - 1)]

    @property
    def n_blocks(self) -> int:
        """One acquisition per key (the post-processing counts its stages against it)."""
        return 1

    @property
    def tag_bits(self) -> int:
        """Verification tag length: collision probability <= eps_cor."""
        return tag_bits_for(self.eps_cor)

    def digest(self) -> bytes:
        """SHA-256 of the settings both parties must share (compared before sifting)."""
        shared = self.model_dump(mode="json", exclude=LOCAL_FIELDS)
        return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).digest()
