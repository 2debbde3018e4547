"""qhil HSC-1 heralding station (qhil's own SCPI command set, TCP port 5032, ``\\n``).

Protocol: docs/protocols/qhil-hsc.md. The midpoint Bell-state measurement station of an
elementary link between two quantum memories: ``HERald:ENTangle <n>`` runs up to ``n``
heralded attempts (the station's sequencer fires both ends' emissions, one attempt per
period), ``HERald:RESult?`` answers once they are done. The attempts take up to ``n``
periods of bench time, so the result's timeout is the usual one plus that; an ``ENTangle``
the station refused (an end memory full or off) is reported from ``SYST:ERR?`` with the
station's own code and text.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from qhil.drivers.declarations import Action, Measurement
from qhil.drivers.roles import HeraldResult
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import Int, ScpiReal, Str, Value, ValueTypeError
from qhil.errors import ProtocolError
from qhil.transport.framing import Framing

#: Most attempts one ``ENTangle`` runs.
MAX_ATTEMPTS = 100_000_000
#: Heralded Bell states, Python name -> wire keyword.
HERALDED = {"psi+": "PSI+", "psi-": "PSI-"}

_RESULT = re.compile(
    r"\s*([01])\s*,\s*(\d+)\s*,\s*(PSI\+|PSI-|NONE)\s*,\s*(-1|\d+)\s*,\s*(-1|\d+)\s*,\s*(\S+)\s*",
    re.IGNORECASE,
)


class NamePair(Value[tuple[str, str]]):
    """Two component names separated by a comma: ``alice_memory,repeater_memory``."""

    pattern = r"[^,\s]+\s*,\s*[^,\s]+"

    def validate(self, value: Any) -> tuple[str, str]:
        if not (isinstance(value, tuple) and len(value) == 2):
            raise ValueTypeError(value, "two names")
        return (str(value[0]), str(value[1]))

    def format(self, value: Any) -> str:
        a, b = self.validate(value)
        return f"{a},{b}"

    def parse(self, text: str) -> tuple[str, str]:
        a, b = (p.strip() for p in text.split(","))
        return (a, b)


def parse_result(reply: str) -> HeraldResult | None:
    """``1,37,PSI+,0,1,+1.234000000E-03`` -> HeraldResult; None if it is not of that form."""
    m = _RESULT.fullmatch(reply)
    if m is None:
        return None
    ok, attempts, bell, a, b, elapsed = m.groups()
    try:
        elapsed_s = ScpiReal().parse(elapsed)
    except ValueError:
        return None
    success = ok == "1"
    if success != (bell.upper() != "NONE") or success != (a != "-1") or success != (b != "-1"):
        return None
    return HeraldResult(
        success=success,
        attempts=int(attempts),
        bell=bell.lower() if success else None,
        mode_a=int(a) if success else None,
        mode_b=int(b) if success else None,
        elapsed_s=elapsed_s,
    )


class HSC(ScpiInstrument):
    """qhil HSC-1 heralding station (role: HeraldingStation)."""

    framing: ClassVar[Framing] = Framing("\n", "\n")
    model: ClassVar[str] = "HSC-1"
    timeout_s: ClassVar[float] = 2.0

    entangle_start = Action(
        "HERald:ENTangle {count}",
        args={"count": Int(1, MAX_ATTEMPTS)},
        check_errors=False,  # checked after the result, which may take count periods
        doc="Run up to count heralded attempts (stops at the first success).",
    )
    result = Measurement(
        "HERald:RESult?",
        value=Str(_RESULT.pattern),
        doc="Result of the last ENTangle: success,attempts,bell,mode_a,mode_b,elapsed_s.",
    )
    attempt_period_s = Measurement(
        "HERald:PERiod?",
        value=ScpiReal(fmt="{:.10g}", units="s"),
        doc="Duration of one attempt: herald round trip plus the station's cycle time.",
    )
    success_probability = Measurement(
        "HERald:PROBability?",
        value=ScpiReal(fmt="{:.10g}"),
        doc="The station's stated success probability per attempt (from its configuration).",
    )
    ends = Measurement(
        "HERald:ENDS?",
        value=NamePair(),
        doc="Component names of the link's first and second end memory.",
    )

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._period_s = math.nan  # known after connect

    async def on_connect(self) -> None:
        self._period_s = await self.attempt_period_s.get()

    async def entangle(self, max_attempts: int) -> HeraldResult:
        """Up to ``max_attempts`` heralded attempts; the pair (if any) occupies the lowest
        free mode of each end memory. Raises InstrumentError (the station's code and text)
        when an end memory has no free mode or is switched off."""
        command = HSC.entangle_start.template.render(count=max_attempts)
        query = self.result.decl.get_template
        assert query is not None
        period = self._period_s if math.isfinite(self._period_s) else 0.0
        async with self.session.locked():
            await self.session.write(command)
            reply = await self.session.query(
                query.text, timeout_s=self.session.timeout_s + max_attempts * period
            )
            await self.check_errors(command)
        parsed = parse_result(reply)
        if parsed is None:
            raise ProtocolError(
                self.resource, query.text, reply, "success,attempts,bell,mode_a,mode_b,elapsed_s"
            )
        return parsed


__all__ = ["HERALDED", "HSC", "MAX_ATTEMPTS", "HeraldResult", "NamePair", "parse_result"]
