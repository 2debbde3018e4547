"""SCPI numbers that may be infinite or not a number.

SCPI-99 (vol. 1, 7.2.1.5) sends positive infinity as ``9.9E+37`` and
not-a-number as ``9.91E+37``; a setting may take the keyword ``INFinity``.
:class:`ScpiReal` is a :class:`~qhil.drivers.values.Float` that knows both, so
a driver reads ``math.inf`` / ``math.nan`` and may send ``math.inf`` as ``INF``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qhil.drivers.values import Float

SCPI_INFINITY = 9.9e37
SCPI_NAN = 9.91e37


def scpi_special(x: float) -> float:
    """The wire number for ``x``: infinity and NaN as SCPI spells them, others unchanged."""
    if math.isnan(x):
        return SCPI_NAN
    if math.isinf(x):
        return SCPI_INFINITY if x > 0 else -SCPI_INFINITY
    return x


@dataclass(frozen=True)
class ScpiReal(Float):
    """A real number; ``INF`` (set) and 9.9E+37 / 9.91E+37 (read) stand for inf and NaN.

    ``infinite`` allows ``math.inf`` as a setting (sent ``INF``) beyond ``max``.
    """

    infinite: bool = False

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return rf"(?:{super().pattern})|(?i:INF(?:INITY)?)"

    def validate(self, value: Any) -> float:
        if self.infinite and isinstance(value, float | int) and value == math.inf:
            return math.inf
        return super().validate(value)

    def format(self, value: Any) -> str:
        v = self.validate(value)
        return "INF" if v == math.inf else self.emit(v)

    def emit(self, value: Any) -> str:
        return self.fmt.format(scpi_special(float(value)) * self.scale) + self.suffix

    def parse(self, text: str) -> float:
        t = text.strip()
        if t.upper().startswith("INF"):
            return math.inf
        v = super().parse(t) * self.scale  # the wire number, before unit scaling
        if abs(v) >= 9e37:  # no instrument quantity is this large: a special value
            if abs(v - SCPI_NAN) < abs(v - SCPI_INFINITY):
                return math.nan
            return math.inf if v > 0 else -math.inf
        return v / self.scale

    def describe(self) -> str:
        return super().describe() + (" or math.inf" if self.infinite else "")


__all__ = ["SCPI_INFINITY", "SCPI_NAN", "ScpiReal", "scpi_special"]
