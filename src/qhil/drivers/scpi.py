"""SCPI / IEEE 488.2 drivers: common commands and the ``SYST:ERR?`` error hook."""

from __future__ import annotations

import re
from typing import ClassVar

from qhil.drivers.declarations import Action, Control, Measurement
from qhil.drivers.instrument import Instrument
from qhil.drivers.values import Int, Str
from qhil.errors import InstrumentError, ProtocolError

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

    async def check_errors(self, command: str | None = None) -> None:
        """Drain ``SYST:ERR?``; raise the first error with the instrument's code and text."""
        first: tuple[int, str] | None = None
        for _ in range(_MAX_ERRORS):
            reply = await self.next_error.get()
            try:
                code, text = parse_scpi_error(reply)
            except ValueError:
                raise ProtocolError(self.resource, ":SYSTem:ERRor?", reply, 'code,"text"') from None
            if code == 0:
                break
            first = first or (code, text)
        if first is not None:
            raise InstrumentError(self.resource, first[0], first[1], command)
