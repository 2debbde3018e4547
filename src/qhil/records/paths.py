"""Where run records and keys live unless the caller says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "QHIL_DATA_DIR"


def default_data_dir() -> Path:
    """``$QHIL_DATA_DIR``, else ``$XDG_DATA_HOME/qhil``, else ``~/.local/share/qhil``."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "qhil"


def default_key_dir(data_dir: str | Path | None = None) -> Path:
    """The key store's default directory: ``keys/`` inside the data directory.

    ``data_dir`` is the run store's directory when the caller chose one (``--data-dir``):
    keys go next to the records they belong to, not to the home directory.
    """
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return base / "keys"
