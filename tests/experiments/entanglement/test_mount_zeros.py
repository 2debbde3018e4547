"""The experiments take the mounts' zeros from the newest mount-zero calibration of the same
instruments when there is one (``use_mount_zero_calibration``), else from their table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import qhil.calibration.mount_zero as mount_zero
from qhil.calibration.mount_zero import MountZeros
from qhil.orchestrator.experiments.entanglement.job import calibrated_zeros
from qhil.orchestrator.experiments.entanglement.settings import ChshSettings

IDS = {"alice.hwp": "ELL14 1", "bob.hwp": "ELL14 2"}


def _found(**zeros: float) -> MountZeros:
    return MountZeros("run-7", zeros, dict.fromkeys(zeros, 0.1), {}, "newest")


def test_a_calibration_of_these_instruments_gives_both_zeros(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Any] = []

    def latest(data_dir: Any, identities: dict[str, str], **kw: Any) -> MountZeros:
        seen.append((data_dir, identities))
        return _found(alice=3.5, bob=-1.25)

    monkeypatch.setattr(mount_zero, "latest_mount_zeros", latest)
    s = ChshSettings(alice_mount_zero_deg=9.0)
    used, source = calibrated_zeros(s, tmp_path, IDS)
    assert (used.alice_mount_zero_deg, used.bob_mount_zero_deg) == (3.5, -1.25)
    assert source == "calibration run-7" and seen == [(tmp_path, IDS)]
    assert isinstance(used, ChshSettings) and used.integration_s == s.integration_s


def test_without_a_calibration_or_when_told_not_to_the_table_gives_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(mount_zero, "latest_mount_zeros", lambda *a, **k: None)
    s = ChshSettings(alice_mount_zero_deg=9.0, bob_mount_zero_deg=1.0)
    used, source = calibrated_zeros(s, tmp_path, IDS)
    assert used is s and source.startswith("settings (no mount-zero calibration")
    monkeypatch.setattr(mount_zero, "latest_mount_zeros", lambda *a, **k: _found(alice=1.0))
    used, _ = calibrated_zeros(s, tmp_path, IDS)  # one node only: not this pair of mounts
    assert used is s
    off = s.model_copy(update={"use_mount_zero_calibration": False})
    monkeypatch.setattr(mount_zero, "latest_mount_zeros", lambda *a, **k: _found(alice=1, bob=2))
    assert calibrated_zeros(off, tmp_path, IDS) == (off, "settings")
