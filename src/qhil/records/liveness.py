"""Is the process that owns a "running" run still alive?

On the owner's host the answer comes from the kernel: the owner holds an
exclusive ``flock`` on ``locks/<run_id>.lock`` for the whole run, and the kernel
drops it when the process dies, however it dies (SIGKILL included). A reader
asks for a shared lock without waiting: refused means the owner lives.

From another host (a data directory shared over the network, where ``flock`` is
not to be trusted) the owner's heartbeat decides: a thread in the owner stamps
``heartbeat_at`` every few seconds, and a stamp older than ``stale_after_s``
means the owner is gone.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def this_host() -> str:
    return socket.gethostname()


class OwnerLock:
    """The owning process's exclusive lock on a run; released by finish or by death."""

    def __init__(self, path: Path) -> None:
        """Create the lock file and lock it; FileExistsError if the file exists (an id clash)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._fd: int | None = os.open(path, flags, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(self._fd, f"{os.getpid()} {this_host()}\n".encode())
        except OSError:
            os.close(self._fd)
            self._fd = None
            path.unlink(missing_ok=True)
            raise

    def release(self) -> None:
        """Remove the lock file, then let go (the unlink first: see :func:`lock_is_held`)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def lock_is_held(path: Path) -> bool | None:
    """True if some process holds the run's lock, False if none does, None if unknowable.

    A missing file means the owner released it (finished) or never got that far;
    the caller re-reads the run's status before calling it incomplete.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except PermissionError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        return None
    finally:
        os.close(fd)  # closing also drops our shared lock
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


class Heartbeat:
    """A daemon thread calling ``beat()`` every ``interval_s`` until stopped."""

    def __init__(self, beat: Callable[[], None], interval_s: float, name: str) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._beat()
            except Exception as exc:  # a missed beat is not worth killing the run over
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
