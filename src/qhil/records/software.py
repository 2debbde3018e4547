"""What software produced a run: qhil, Python, key dependencies, the git commit."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import qhil

KEY_DEPENDENCIES = (
    "numpy",
    "scipy",
    "qutip",
    "pydantic",
    "h5py",
    "pyvisa",
    "pyvisa-py",
    "pyserial",
)


@functools.cache
def software_info() -> dict[str, Any]:
    """Versions that matter for reproducing a run; computed once per process."""
    packages: dict[str, str | None] = {}
    for name in KEY_DEPENDENCIES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        import h5py

        packages["hdf5"] = h5py.version.hdf5_version
    except ImportError:  # h5py is a dependency, but the record must not fail on it
        packages["hdf5"] = None
    return {
        "qhil": qhil.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": packages,
        "git": git_revision(Path(qhil.__file__).resolve().parent),
    }


def git_revision(start: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the checkout that holds ``start``; None outside a checkout."""
    root = next((p for p in (start, *start.parents) if (p / ".git").exists()), None)
    if root is None:
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed), "checkout": str(root)}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return done.stdout.strip()
