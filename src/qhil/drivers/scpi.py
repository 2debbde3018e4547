"""SCPI / IEEE 488.2 drivers: common commands and the ``SYST:ERR?`` error hook."""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.instrument import Instrument
from qhil.drivers.values import Int, Str
from qhil.errors import InstrumentConnectionError, InstrumentError, ProtocolError

log = logging.getLogger(__name__)

_ERROR_REPLY = re.compile(r'\s*([+-]?\d+)\s*,\s*"?(.*?)"?\s*')

#: How many queued errors are drained at most after one command.
_MAX_ERRORS = 32


def parse_scpi_error(reply: str) -> tuple[int, str]:
    """``-222,"Data out of range"`` -> ``(-222, "Data out of range")``."""
    m = _ERROR_REPLY.fullmatch(reply)
    if not m:
        raise ValueError(reply)
    return int(m.group(1)), m.group(2)


class ScpiInstrument(Instrument):
    """An instrument that speaks SCPI and IEEE 488.2 common commands."""

    scpi: ClassVar[bool] = True
    #: Errors found queued at connect (another client's), oldest first: reported, then cleared.
    stale_errors: tuple[tuple[int, str], ...] = ()

    idn = Measurement("*IDN?", value=Str(), doc="Identity: maker, model, serial, firmware.")
    operation_complete = Measurement(
        "*OPC?", value=Int(), doc="1 when pending operations are done."
    )
    event_status = Measurement(
        "*ESR?", value=Int(0, 255), doc="Standard event register (read clears)."
    )
    status_byte = Measurement("*STB?", value=Int(0, 255), doc="Status byte.")
    self_test = Measurement("*TST?", value=Int(), doc="Self-test result; 0 means passed.")
    next_error = Measurement(
        ":SYSTem:ERRor[:NEXT]?",
        value=Str(),
        doc='Oldest queued error, e.g. -222,"Data out of range".',
    )
    event_status_enable = Control(
        get="*ESE?", set="*ESE {value}", value=Int(0, 255), doc="Standard event status enable mask."
    )
    service_request_enable = Control(
        get="*SRE?", set="*SRE {value}", value=Int(0, 255), doc="Service request enable mask."
    )
    operation_complete_flag = Action("*OPC", doc="Set the OPC bit when pending operations end.")
    wait = Action("*WAI", doc="Wait for pending operations.", check_errors=False)
    reset = Action("*RST", doc="Reset to the power-on state.", check_errors=False)
    clear_status = Action(
        "*CLS", doc="Clear the error queue and event registers.", check_errors=False
    )

    async def identity(self) -> str:
        return await self.idn.get()

    async def start_clean(self) -> None:
        """Report and clear what other clients left queued, then ``*CLS``.

        Lab drivers start from a clean status (``*CLS``); the queue is read first so
        that errors another client left behind are reported as such (a warning, and
        :attr:`stale_errors`), not blamed on qhil's first command. ``*CLS`` then clears
        the event registers and whatever lay beyond the bound; the queue must then read
        ``0,...``.
        """
        stale, empty = await self._read_errors()
        async with self.session.locked():
            await self.clear_status()
            after, empty = await self._read_errors()
        if not empty:
            raise InstrumentConnectionError(
                self.resource,
                f"the error queue still did not read 0 after *CLS and {_MAX_ERRORS} "
                f"SYST:ERR? queries (last: {after[-1][0]},{after[-1][1]!r})",
            )
        self.stale_errors = (*stale, *after)
        if self.stale_errors:
            log.warning(
                "%s (%s): %d error(s) were already queued when qhil connected "
                "(left by another client; cleared, not caused by qhil): %s",
                self.name,
                self.resource,
                len(self.stale_errors),
                "; ".join(f"{code},{text!r}" for code, text in self.stale_errors),
            )

    async def _read_errors(self) -> tuple[list[tuple[int, str]], bool]:
        """Up to ``_MAX_ERRORS`` queued errors, oldest first; True if ``0,...`` ended them."""
        errors: list[tuple[int, str]] = []
        for _ in range(_MAX_ERRORS):
            reply = await self.next_error.get()
            try:
                code, text = parse_scpi_error(reply)
            except ValueError:
                raise ProtocolError(self.resource, ":SYSTem:ERRor?", reply, 'code,"text"') from None
            if code == 0:
                return errors, True
            errors.append((code, text))
        return errors, False

    async def check_errors(self, command: str | None = None) -> None:
        """Drain ``SYST:ERR?``; raise the first error with the instrument's code and text."""
        errors, _ = await self._read_errors()
        if errors:
            raise InstrumentError(self.resource, errors[0][0], errors[0][1], command)
