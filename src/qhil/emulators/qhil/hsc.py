"""Emulated qhil HSC-1 heralding station (protocol: docs/protocols/qhil-hsc.md).

Provisional skeleton: the network world behind it lands next.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qhil.drivers.qhil.hsc import HSC
from qhil.emulators.base import on
from qhil.emulators.scpi import ScpiEmulator, ScpiError


class HSCEmulator(ScpiEmulator):
    driver = HSC
    identity: ClassVar[tuple[str, str, str, str]] = ("QHIL", "HSC-1", "HSC00001", "1.0")
    default_port = 5032
    input_terminators = b"\n"

    @on(
        "entangle_start",
        "result.get",
        "attempt_period_s.get",
        "success_probability.get",
        "ends.get",
    )
    def _not_yet(self, **_: Any) -> None:
        raise ScpiError(-200, "Execution error;not implemented yet")


__all__ = ["HSCEmulator"]
