"""The pre-shared Wegman-Carter pool on disk, spent run by run and refilled from keys.

File layout: ``MAGIC`` (15 bytes), the two directions' 16-byte hash points, then pad
material; 0600, both parties hold identical copies. A run takes its budget (``pads``
16-byte pads per direction) from the front and rewrites the file WITHOUT it before the
channel opens, so a crash can never make a pad serve twice; what the run leaves unused
is dropped. The hash points are kept: with every tag one-time padded they can serve any
number of runs (Wegman & Carter 1981). A committed key's reserved tail (``replenish``)
is appended: both parties do it with the same bytes, so the copies stay identical.
Writes go through a temporary file and ``os.replace``.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from qhil.errors import ConfigError
from qhil.orchestrator.channel.auth import _PAD
from qhil.orchestrator.channel.keys import KeyPool
from qhil.orchestrator.channel.transcript import TranscriptAuthenticator

MAGIC = b"QHIL-WC-POOL-1\n"
HASH_KEY_BYTES = 2 * _PAD
#: Pads per direction a BB84 run may spend: hello, key confirmation, commit/finish or
#: abort (3), and up to 5 periodic checkpoints (one per 256 MiB or 65536 messages sent
#: in that direction); what is left is dropped. A run that needs more aborts
#: channel_failed (KeyPoolExhaustedError): give PoolRun more pads for such runs.
RUN_PADS = 8
#: Key bytes a committed key gives back to the pool: twice a run's budget, so it grows.
REPLENISH_BYTES = 4 * RUN_PADS * _PAD

_FIELD = "Wegman-Carter pool"


def run_budget_bits(pads: int = RUN_PADS) -> int:
    """Pool bits one run takes (both directions)."""
    return 2 * pads * _PAD * 8


def create_pool_file(path: str | Path, pad_bytes: int) -> None:
    """A fresh random pool (hash points + ``pad_bytes`` of pads) at ``path``, mode 0600;
    never overwrites. Copy it to the other party over a trusted path."""
    p = Path(path)
    body = secrets.token_bytes(HASH_KEY_BYTES + (pad_bytes // (2 * _PAD)) * 2 * _PAD)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(str(p), _FIELD, f"cannot create it: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(MAGIC + body)


def _read(p: Path) -> bytes:
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        content = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), _FIELD, f"cannot read it: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(str(p), _FIELD, f"is readable by others (mode {mode:o}); chmod 600 it")
    if not content.startswith(MAGIC):
        raise ConfigError(str(p), _FIELD, "not a pool file (made by `qhil auth new-pool`)")
    body = content[len(MAGIC) :]
    if len(body) < HASH_KEY_BYTES:
        raise ConfigError(str(p), _FIELD, f"truncated: {len(body)} bytes after the header")
    return body


def _write(p: Path, body: bytes) -> None:
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(MAGIC + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def pool_bits_left(path: str | Path) -> int:
    """Pad bits the file still holds (hash points not counted)."""
    return 8 * (len(_read(Path(path))) - HASH_KEY_BYTES)


def take_run_budget(path: str | Path, pads: int = RUN_PADS) -> KeyPool:
    """Remove one run's budget from the file (rewritten first) and return it, with the
    hash points, as the material of a ``TranscriptAuthenticator``."""
    p = Path(path)
    body = _read(p)
    need = 2 * pads * _PAD
    keys, rest = body[:HASH_KEY_BYTES], body[HASH_KEY_BYTES:]
    if len(rest) < need:
        raise ConfigError(
            str(p),
            _FIELD,
            f"exhausted: {8 * len(rest)} pad bits left, a run needs {8 * need} "
            "(provision a new pool on both sides)",
        )
    _write(p, keys + rest[need:])
    return KeyPool(keys + rest[:need])


def replenish_pool_file(path: str | Path, material: bytes) -> int:
    """Append fresh key material (whole 32-byte pairs of pads); returns the bits added."""
    p = Path(path)
    used = (len(material) // (2 * _PAD)) * 2 * _PAD
    if used:
        _write(p, _read(p) + bytes(material[:used]))
    return 8 * used


class PoolRun:
    """One run's use of a pool file: its budget (taken now), the parties' authenticators,
    then the report and the refill from the committed key."""

    __slots__ = ("_material", "budget_bits", "path")

    def __init__(self, path: str | Path, pads: int = RUN_PADS) -> None:
        self.path = Path(path)
        self._material = take_run_budget(self.path, pads)
        self.budget_bits = run_budget_bits(pads)

    def authenticator(
        self, *, local: str, peer: str, checkpoint_kinds: frozenset[str]
    ) -> TranscriptAuthenticator:
        """This run's authenticator for ``local`` (each party gets its own copy of the budget)."""
        copy = KeyPool(self._material.peek(self._material.remaining) or b"")
        return TranscriptAuthenticator(
            copy,
            local=local,
            peer=peer,
            checkpoint_kinds=checkpoint_kinds,
            replenish_bytes=REPLENISH_BYTES,
        )

    def finish(self, auth: TranscriptAuthenticator, *, committed: bool) -> dict[str, int]:
        """Refill the file from the key ``auth`` set aside (only if it was committed);
        the run's pad accounting for its summary and record."""
        staged = auth.take_staged()
        added = replenish_pool_file(self.path, staged) if committed else 0
        return {
            "auth_pad_bits_used": auth.pad_bits_used,
            "auth_pad_bits_budget": self.budget_bits,
            "auth_pool_refill_bits": added,
            "auth_pool_bits_left": pool_bits_left(self.path),
        }
