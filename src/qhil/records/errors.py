"""Errors raised by the run store and the key store."""

from __future__ import annotations

from qhil.errors import QhilError


class RecordError(QhilError):
    """Base of every run-record and key-store error."""


class RunNotFoundError(RecordError, KeyError):
    """No run with the given id (or id prefix) is in the store."""

    def __init__(self, run_id: str, db_path: str) -> None:
        self.run_id = run_id
        self.db_path = db_path
        super().__init__(f"no run {run_id!r} in {db_path}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class AmbiguousRunIdError(RecordError, KeyError):
    """A run-id prefix matches more than one run."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        shown = ", ".join(candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        super().__init__(f"run id prefix {prefix!r} matches {len(candidates)} runs: {shown}")

    def __str__(self) -> str:
        return str(self.args[0])


class RunStateError(RecordError):
    """An operation does not fit the run's state (e.g. writing to a finished run)."""


class RecordValueError(RecordError, ValueError):
    """A value given to a run record cannot be stored; the message names which one."""


class StoreVersionError(RecordError):
    """The run database was written by a newer qhil with an unknown schema."""


class StoreAccessError(RecordError, OSError):
    """The run store cannot be opened, read or written (missing, corrupt, read-only,
    not permitted); the message names the path. An OSError too, as what it replaces
    (``NotADirectoryError``, permission errors) was, so callers that catch those still do."""


class ArrayDataError(RecordError):
    """A run's array file is missing or does not hold what the index says."""


class KeyStoreError(RecordError):
    """Base of key-store errors. Messages never contain key bits."""


class KeyNotFoundError(KeyStoreError, KeyError):
    """No key with the given id in the key store."""

    def __init__(self, key_id: str, directory: str) -> None:
        self.key_id = key_id
        super().__init__(f"no key {key_id!r} in {directory}")

    def __str__(self) -> str:
        return str(self.args[0])


class KeyPermissionError(KeyStoreError, PermissionError):
    """A key file or the key directory is readable by others than its owner."""


class KeyIntegrityError(KeyStoreError):
    """A key file does not match its recorded length or SHA-256."""
