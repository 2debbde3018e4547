"""The KME's default store is sized for the default bench, not for a toy key rate.

A default `qhil run bb84` (0.5 s on hw_profiles/default.toml) commits ~485 kbit per node
(measured 2026-12-08, review of issue 12). With the former default of 4096 keys of 256 bits
(1 Mbit), two such runs filled the store and `qhil run bb84 --continuous` paused at once
("key store full") until an application drew keys.
"""

from __future__ import annotations

from pathlib import Path

from qhil.kms.config import DEFAULT_KEY_SIZE, DEFAULT_MAX_KEY_COUNT
from qhil.orchestrator.experiments.bb84.continuous import KmeCapacity

from .conftest import save_pair

DEFAULT_RUN_KEY_BITS = 485_000


def test_the_default_store_takes_more_keys_after_several_default_runs(tmp_path: Path) -> None:
    for seed in range(3):
        save_pair(tmp_path, DEFAULT_RUN_KEY_BITS, seed=seed)
    gate = KmeCapacity(str(tmp_path), "alice", DEFAULT_KEY_SIZE, DEFAULT_MAX_KEY_COUNT)
    assert gate.stored_key_count() == 3 * DEFAULT_RUN_KEY_BITS // DEFAULT_KEY_SIZE
    assert gate.room(DEFAULT_RUN_KEY_BITS)
    # About a minute of the default bench's key at ~1 Mbit/s.
    assert DEFAULT_MAX_KEY_COUNT * DEFAULT_KEY_SIZE >= 60 * 2 * DEFAULT_RUN_KEY_BITS
