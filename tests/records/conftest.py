from __future__ import annotations

from pathlib import Path

import pytest

from qhil.records import RunStore


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    # short beats so liveness tests need not wait long; nothing asserts durations
    return RunStore(tmp_path / "data", heartbeat_interval_s=0.05, stale_after_s=0.5)
