"""qutip, imported once and quietly.

qutip warns at import when matplotlib is missing; the world never plots, so that
warning is noise in every test run and emulator log.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="matplotlib not found", category=UserWarning)
    import qutip as qt

Qobj = qt.Qobj

__all__ = ["Qobj", "qt"]
