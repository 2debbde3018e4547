"""The emulator host's temporary directory (pty links): made with its owner's pid, and
the ones of dead processes (kill -9 skips their cleanup) removed at the next start."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: Prefix of an emulator host's temporary directory, and its owner's pid file in it.
EMULATOR_DIR_PREFIX = "qhil-emu-"
OWNER_FILE = "owner.pid"


def make_emulator_dir() -> str:
    """A fresh directory marked with this process's pid, after removing stale ones."""
    remove_stale_emulator_dirs()
    directory = tempfile.mkdtemp(prefix=EMULATOR_DIR_PREFIX)
    _mark_owner(Path(directory))
    return directory


def _mark_owner(directory: Path) -> None:
    with contextlib.suppress(OSError):
        (directory / OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="ascii")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _is_stale(directory: Path) -> bool:
    """Its owning process is gone (pid file), or, without one, every pty link it holds
    points at a terminal that no longer exists (its server died with it)."""
    try:
        pid = int((directory / OWNER_FILE).read_text(encoding="ascii").strip())
    except FileNotFoundError:
        entries = list(directory.iterdir())
        return bool(entries) and all(e.is_symlink() and not e.exists() for e in entries)
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and not _alive(pid)


def remove_stale_emulator_dirs(tmp: str | Path | None = None) -> list[Path]:
    """Remove ``qhil-emu-*`` directories in the temp dir whose owner is gone; returns them."""
    base = Path(tmp) if tmp is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = sorted(base.glob(f"{EMULATOR_DIR_PREFIX}*"))
    except OSError:
        return removed
    for d in candidates:
        try:
            if (
                d.is_dir()
                and not d.is_symlink()
                and d.stat().st_uid == os.getuid()
                and _is_stale(d)
            ):
                shutil.rmtree(d)
                removed.append(d)
        except OSError:
            continue  # another process removed it first
    if removed:
        log.info("removed %d stale emulator directories: %s", len(removed), removed)
    return removed
