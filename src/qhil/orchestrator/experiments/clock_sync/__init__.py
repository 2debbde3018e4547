"""Clock synchronisation of two nodes' taggers from photon-pair timestamps (README.md here)."""

from qhil.orchestrator.experiments.clock_sync.corrections import (
    ClockCorrection,
    correction_path,
    load_correction,
    save_correction,
)
from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted, SyncAbortReason
from qhil.orchestrator.experiments.clock_sync.runner import (
    ClockSyncResult,
    SyncProgress,
    run_alice_sync,
    run_bob_sync,
    run_clock_sync,
)
from qhil.orchestrator.experiments.clock_sync.settings import (
    ClockSyncSettings,
    PairSourceSettings,
)

__all__ = [
    "ClockCorrection",
    "ClockSyncAborted",
    "ClockSyncResult",
    "ClockSyncSettings",
    "PairSourceSettings",
    "SyncAbortReason",
    "SyncProgress",
    "correction_path",
    "load_correction",
    "run_alice_sync",
    "run_bob_sync",
    "run_clock_sync",
    "save_correction",
]
