"""Value types of command arguments and replies.

Each type works both ways, so one declaration serves the driver and the
emulator: ``format`` turns a Python value into wire text (after ``validate``)
and ``parse`` turns wire text back into a Python value. ``pattern`` is the
regular expression a command argument must match, used to derive an emulator's
matcher from the very template the driver renders; it is lenient (``MIN``, unit
letters) so that the emulator can answer a bad argument with the right error.
``reply_pattern`` is the strict form a reply must have (a bare number, say).

Numbers may carry a unit suffix (IEEE 488.2 7.7.3): a :class:`Float` lists the
suffixes it accepts, each with its factor onto the wire's base unit; any other
suffix is a :class:`SuffixError`. SCPI infinity and not-a-number (:class:`ScpiReal`)
and the NR3 reply form (:func:`nr3`) live here too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
# Keywords SCPI accepts in place of a number: MIN/MAX/DEF(ault).
_SPECIAL = r"MIN(?:imum)?|MAX(?:imum)?|DEF(?:ault)?"
_SPECIAL_WORD = re.compile(rf"\s*({_SPECIAL})\s*", re.IGNORECASE)
# A number, then optionally a unit suffix (letters), white space allowed between.
_NUMBER_SUFFIX = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]*)\s*")

#: Unit suffixes (IEEE 488.2 / SCPI spellings, upper case) and their factors onto the base unit.
LENGTH_SUFFIXES: Mapping[str, float] = {"M": 1.0, "MM": 1e-3, "UM": 1e-6, "NM": 1e-9, "PM": 1e-12}
#: ``MHZ`` is mega-hertz (488.2's exception to ``M`` = milli).
FREQUENCY_SUFFIXES: Mapping[str, float] = {
    "HZ": 1.0,
    "KHZ": 1e3,
    "MHZ": 1e6,
    "GHZ": 1e9,
    "THZ": 1e12,
}
POWER_SUFFIXES: Mapping[str, float] = {"W": 1.0, "MW": 1e-3, "UW": 1e-6, "NW": 1e-9, "PW": 1e-12}
DB_SUFFIXES: Mapping[str, float] = {"DB": 1.0}
TIME_SUFFIXES: Mapping[str, float] = {"S": 1.0, "MS": 1e-3, "US": 1e-6, "NS": 1e-9, "PS": 1e-12}

#: SCPI-99 (vol. 1, 7.2.1.5): positive infinity and not-a-number as sent on the wire.
SCPI_INFINITY = 9.9e37
SCPI_NAN = 9.91e37


class SuffixError(ValueError):
    """A number carries a unit suffix its value type does not accept.

    ``code``/``text`` are the SCPI error an instrument queues for it (SCPI-99 -131).
    """

    code = -131
    text = "Invalid suffix"

    def __init__(self, suffix: str, accepted: Mapping[str, float]) -> None:
        allowed = ", ".join(accepted) if accepted else "none"
        super().__init__(f"unit suffix {suffix!r} not accepted (accepted: {allowed})")
        self.suffix = suffix


def split_number(text: str) -> tuple[float, str]:
    """``" 1.5E-3 mW"`` -> ``(0.0015, "MW")``: the number and its unit suffix, upper case."""
    m = _NUMBER_SUFFIX.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a number")
    return float(m.group(1)), m.group(2).upper()


def special_word(text: str) -> str | None:
    """``"MAXimum"`` -> ``"MAX"``: which of MIN/MAX/DEF a numeric argument names, if any."""
    m = _SPECIAL_WORD.fullmatch(text)
    return None if m is None else m.group(1).upper()[:3]


def nr3(x: float) -> str:
    """``+2.50000000E+000``: sign, 8 decimals, 3-digit exponent (the HP/Santec NR3 form)."""
    mant, exp = f"{x:+.8E}".split("E")
    return f"{mant}E{int(exp):+04d}"


def scpi_special(x: float) -> float:
    """The wire number for ``x``: infinity and NaN as SCPI spells them, others unchanged."""
    if math.isnan(x):
        return SCPI_NAN
    if math.isinf(x):
        return SCPI_INFINITY if x > 0 else -SCPI_INFINITY
    return x


class ValueTypeError(ValueError):
    """A value failed validation; ``allowed`` says what would have been accepted."""

    def __init__(self, value: object, allowed: str) -> None:
        super().__init__(f"{value!r} not allowed ({allowed})")
        self.value = value
        self.allowed = allowed


class Value(Generic[T]):
    """Base of all value types."""

    pattern: str = r".+?"

    @property
    def reply_pattern(self) -> str:
        """What a reply holding this value must look like (default: as a command argument)."""
        return self.pattern

    def validate(self, value: Any) -> T:
        return value

    def format(self, value: Any) -> str:
        return str(self.validate(value))

    def parse(self, text: str) -> T:
        raise NotImplementedError

    def emit(self, value: Any) -> str:
        """Wire text for a reply value, without range checks (emulators use this)."""
        return self.format(value)

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Float(Value[float]):
    """A real number with an optional closed range, wire format and unit suffixes.

    ``scale`` converts between the Python value and the wire number
    (wire = value * scale), e.g. nm in Python and metres on the wire.
    ``suffixes`` are the unit suffixes a command may carry, with their factors onto
    the wire's base unit (``LENGTH_SUFFIXES``: ``1550NM`` = 1.55e-6 m); any other
    suffix is refused. ``suffix`` is appended when formatting and accepted as is.
    """

    min: float | None = None
    max: float | None = None
    fmt: str = "{:g}"
    suffix: str = ""
    scale: float = 1.0
    units: str = ""
    suffixes: Mapping[str, float] = field(default_factory=dict)

    @property
    def pattern(self) -> str:  # type: ignore[override]
        # Lenient on purpose: any letters, so that a bad suffix gets its own error.
        return rf"(?:{_NUMBER}|{_SPECIAL})(?:\s*[a-zA-Z]+)?"

    @property
    def reply_pattern(self) -> str:
        suffix = rf"\s*{re.escape(self.suffix)}" if self.suffix else ""
        return _NUMBER + suffix

    def validate(self, value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueTypeError(value, self.describe()) from None
        if (
            math.isnan(v)
            or (self.min is not None and v < self.min)
            or (self.max is not None and v > self.max)
        ):
            raise ValueTypeError(value, self.describe())
        return v

    def format(self, value: Any) -> str:
        return self.emit(self.validate(value))

    def emit(self, value: Any) -> str:
        return self.fmt.format(float(value) * self.scale) + self.suffix

    def factor(self, suffix: str) -> float:
        """The factor of a unit suffix onto the wire's base unit; SuffixError if not accepted."""
        if not suffix or (self.suffix and suffix.upper() == self.suffix.upper()):
            return 1.0
        for name, factor in self.suffixes.items():
            if name.upper() == suffix.upper():
                return factor
        raise SuffixError(suffix, self.suffixes)

    def parse(self, text: str) -> float:
        number, suffix = split_number(text)
        value = number * self.factor(suffix)
        if self.scale == 1.0:
            return value
        # Dividing by a decimal scale leaves binary noise (1.55e-6 / 1e-9 = 1549.9999999999998).
        return float(f"{value / self.scale:.15g}")

    def describe(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"a number in [{lo}, {hi}]{' ' + self.units if self.units else ''}"


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
        if re.fullmatch(r"INF(?:INITY)?", t, re.IGNORECASE):
            return math.inf
        v = super().parse(t) * self.scale  # the wire number, before unit scaling
        if abs(v) >= 9e37:  # no instrument quantity is this large: a special value
            if abs(v - SCPI_NAN) < abs(v - SCPI_INFINITY):
                return math.nan
            return math.inf if v > 0 else -math.inf
        return v / self.scale

    def describe(self) -> str:
        return super().describe() + (" or math.inf" if self.infinite else "")


@dataclass(frozen=True)
class Int(Value[int]):
    """An integer in an optional closed range, optionally on a step grid."""

    min: int | None = None
    max: int | None = None
    step: int = 1
    fmt: str = "{:d}"
    units: str = ""

    pattern: str = rf"[+-]?\d+|{_SPECIAL}"

    @property
    def reply_pattern(self) -> str:
        return r"[+-]?\d+"

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueTypeError(value, self.describe())
        v = int(value)
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            raise ValueTypeError(value, self.describe())
        if (v - (self.min or 0)) % self.step:
            raise ValueTypeError(value, self.describe())
        return v

    def format(self, value: Any) -> str:
        return self.fmt.format(self.validate(value))

    def emit(self, value: Any) -> str:
        return self.fmt.format(int(value))

    def parse(self, text: str) -> int:
        return int(float(text.strip()))

    def describe(self) -> str:
        lo = "-inf" if self.min is None else str(self.min)
        hi = "inf" if self.max is None else str(self.max)
        step = f" in steps of {self.step}" if self.step != 1 else ""
        return f"an integer in [{lo}, {hi}]{step}{' ' + self.units if self.units else ''}"


@dataclass(frozen=True)
class Bool(Value[bool]):
    """A boolean with its wire spellings; parsing also accepts ON/OFF."""

    true: str = "1"
    false: str = "0"

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return rf"{re.escape(self.true)}|{re.escape(self.false)}|ON|OFF|on|off|\+?1|\+?0"

    def validate(self, value: Any) -> bool:
        if value in (True, False, 0, 1):
            return bool(value)
        raise ValueTypeError(value, "True or False")

    def format(self, value: Any) -> str:
        return self.true if self.validate(value) else self.false

    def parse(self, text: str) -> bool:
        t = text.strip().lstrip("+")
        if t in (self.true, "1") or t.upper() == "ON":
            return True
        if t in (self.false, "0") or t.upper() == "OFF":
            return False
        raise ValueError(f"{text!r} is not {self.true!r} or {self.false!r}")

    def describe(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class Enum(Value[Any]):
    """A value from a fixed set, mapped to its wire spelling."""

    mapping: Mapping[Any, str] = field(default_factory=dict)

    @property
    def pattern(self) -> str:  # type: ignore[override]
        alts = "|".join(re.escape(v) for v in sorted(self.mapping.values(), key=len, reverse=True))
        # Numeric codes may come back signed or as decimals ("+1", "1.0").
        numeric = all(re.fullmatch(r"-?\d+", v) for v in self.mapping.values())
        return rf"[+]?(?:{alts})(?:\.0*)?" if numeric else alts

    def validate(self, value: Any) -> Any:
        if value not in self.mapping:
            raise ValueTypeError(value, self.describe())
        return value

    def format(self, value: Any) -> str:
        return self.mapping[self.validate(value)]

    def parse(self, text: str) -> Any:
        t = text.strip()
        for k, v in self.mapping.items():
            if v == t or v.upper() == t.upper():
                return k
        # Numeric wire values may come back as "+1" or "1.0".
        for k, v in self.mapping.items():
            try:
                if float(v) == float(t):
                    return k
            except ValueError:
                continue
        raise ValueError(f"{text!r} is not one of {list(self.mapping.values())}")

    def describe(self) -> str:
        return f"one of {list(self.mapping)}"


@dataclass(frozen=True)
class Str(Value[str]):
    """Free text (identities, names); ``pattern`` may restrict it."""

    regex: str = r".*?"

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return self.regex

    def validate(self, value: Any) -> str:
        v = str(value)
        if not re.fullmatch(self.regex, v):
            raise ValueTypeError(value, f"text matching {self.regex!r}")
        return v

    def parse(self, text: str) -> str:
        return text


@dataclass(frozen=True)
class Numbers(Value[list[float]]):
    """A separated list of numbers (counts, voltages per channel)."""

    sep: str = ","
    count: int | None = None
    item: Float = Float()
    integer: bool = False

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return rf"{_NUMBER}(?:\s*{re.escape(self.sep.strip()) or ' '}\s*{_NUMBER})*"

    def validate(self, value: Any) -> list[float]:
        if not isinstance(value, Sequence) or (self.count is not None and len(value) != self.count):
            raise ValueTypeError(value, f"{self.count or 'a list of'} numbers")
        return [self.item.validate(v) for v in value]

    def format(self, value: Any) -> str:
        return self.sep.join(self.item.format(v) for v in self.validate(value))

    def emit(self, value: Any) -> str:
        return self.sep.join(self.item.emit(v) for v in value)

    def parse(self, text: str) -> list[float]:
        parts = text.split(self.sep) if self.sep.strip() else text.split()
        vals = [float(p) for p in parts if p.strip()]
        if self.integer:
            return [int(v) for v in vals]
        return vals


@dataclass(frozen=True)
class Keyword(Value[Any]):
    """An SCPI keyword parameter (``MINimum``), short or long form, mapped to Python values."""

    mapping: Mapping[Any, str] = field(default_factory=dict)

    @property
    def pattern(self) -> str:  # type: ignore[override]
        from qhil.drivers.declarations import scpi_keyword_regex

        return "|".join(f"(?i:{scpi_keyword_regex(k)})" for k in self.mapping.values())

    def validate(self, value: Any) -> Any:
        if value not in self.mapping:
            raise ValueTypeError(value, f"one of {list(self.mapping)}")
        return value

    def format(self, value: Any) -> str:
        return self.mapping[self.validate(value)]

    def parse(self, text: str) -> Any:
        from qhil.drivers.declarations import scpi_keyword_regex

        for k, v in self.mapping.items():
            if re.fullmatch(scpi_keyword_regex(v), text.strip(), re.IGNORECASE):
                return k
        raise ValueError(f"{text!r} is not one of {list(self.mapping.values())}")


@dataclass(frozen=True)
class ChannelList(Value[list[int]]):
    """Per-channel integers printed as ``CH1 +2200  CH2 +5000  ...`` (OZ Optics style)."""

    count: int = 4
    fmt: str = "{:+d}"
    sep: str = "  "
    label: str = "CH"

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return r"\s*".join(rf"{self.label}{i + 1}\s*[+-]?\d+" for i in range(self.count))

    def emit(self, value: Any) -> str:
        return self.sep.join(
            f"{self.label}{i + 1} {self.fmt.format(int(v))}" for i, v in enumerate(value)
        )

    def format(self, value: Any) -> str:
        return self.emit(value)

    def parse(self, text: str) -> list[int]:
        vals = [int(v) for v in re.findall(rf"{self.label}\d+\s*([+-]?\d+)", text)]
        if len(vals) != self.count:
            raise ValueError(f"{text!r} does not list {self.count} channels")
        return vals


@dataclass(frozen=True)
class NumericSuffix(Int):
    """A numeric suffix inside an SCPI header (``OUTPut{channel}`` -> ``OUTPut2``).

    SCPI lets a client leave the suffix out (``OUTP`` = ``OUTP1``), and a field in an
    optional node (``[SOURce{channel}:]``) may be left out altogether: both parse as
    ``default``. ``pattern`` may narrow the accepted digits (``[12]?``).
    """

    default: int = 1
    pattern: str = r"\d*"

    def parse(self, text: str) -> int:
        return self.default if not text.strip() else int(text)
