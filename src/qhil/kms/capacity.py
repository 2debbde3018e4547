"""How many keys a node's KME holds, for producers such as ``qhil run bb84 --continuous``
that must pause when it is full. Reads the key store and the KME's ledger cursor
(no running KME needed; a read while a KME runs sees its last fsync'd state)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qhil.kms.config import DEFAULT_KEY_SIZE, DEFAULT_MAX_KEY_COUNT
from qhil.kms.ledger import LEDGER, LedgerState
from qhil.kms.material import Material, available_bits


@dataclass(frozen=True)
class Capacity:
    stored_key_count: int
    max_key_count: int

    @property
    def full(self) -> bool:
        return self.stored_key_count >= self.max_key_count


def ledger_cursor(key_dir: str | Path, node: str) -> dict[str, int]:
    """The KME's cursor from its ledger, read-only (a torn last line is skipped)."""
    path = Path(key_dir) / f"kme-{node}" / LEDGER
    state = LedgerState()
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                state.apply(json.loads(line))
            except ValueError:
                break
    return state.cursor


def key_capacity(
    key_dir: str | Path,
    node: str,
    *,
    key_size: int = DEFAULT_KEY_SIZE,
    max_key_count: int = DEFAULT_MAX_KEY_COUNT,
) -> Capacity:
    """``stored_key_count`` as the KME of ``node`` reports it (not capped), and the maximum."""
    bits = available_bits(Material(key_dir, node).files(), ledger_cursor(key_dir, node))
    return Capacity(bits // key_size, max_key_count)
