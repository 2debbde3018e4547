"""SCPI templates whose header holds a channel suffix: ``[SOURce{channel}:]FUNCtion {value}``.

Multi-channel SCPI instruments put the channel into the header (``SOUR2:FUNC``,
``OUTP2:LOAD``). The foundation's :class:`~qhil.drivers.declarations.Template`
leaves header mode at the first field, so the keywords after a header field
would only match in their long form, and it drops every ``[optional]`` node on
the wire. Here a field inside the header keeps header matching (short and long
forms of the later keywords), and an optional node that carries a field is sent
(``SOURce1:FUNCtion ARB``) but may be left out by a client (``FUNC ARB`` =
channel 1). The declarations stay one per command; only the template class differs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from qhil.drivers.declarations import (
    _FORMATTER,
    Action,
    Control,
    Template,
    _scpi_literal_regex,
)
from qhil.drivers.values import Int

# An optional node that carries a field: "[SOURce{channel}:]".
_OPTIONAL_WITH_FIELD = re.compile(r"\[([^\]]*\{[^\]]*)\]")


@dataclass(frozen=True)
class ChannelSuffix(Int):
    """A channel number written as a header suffix; absent on the wire means ``default``."""

    default: int = 1
    pattern: str = r"\d*"

    def parse(self, text: str) -> int:
        return self.default if not text else int(text)


def _segments(text: str) -> list[tuple[str, bool]]:
    """Split ``text`` into (segment, optional) at optional nodes that carry fields."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _OPTIONAL_WITH_FIELD.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(1), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


@dataclass(frozen=True, eq=False)
class ChannelTemplate(Template):
    """A :class:`Template` (SCPI notation) whose header may contain fields."""

    def _wire_text(self) -> str:
        # Optional nodes with a field are sent; optional nodes without one are not.
        return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1) if "{" in m.group(1) else "", self.text)

    def regex(self) -> re.Pattern[str]:
        parts: list[str] = []
        in_header = True
        for segment, optional in _segments(self.text):
            seg: list[str] = []
            for literal, name, _, _ in _FORMATTER.parse(segment):
                if literal:
                    rx, in_header = _scpi_literal_regex(literal, in_header)
                    seg.append(rx)
                if name:  # a field does not end the header: later keywords keep both forms
                    seg.append(f"(?P<{name}>{self.fields[name].pattern})")
            body = "".join(seg)
            parts.append(f"(?:{body})?" if optional else body)
        body = ":?" + "".join(parts).lstrip(":")
        return re.compile(rf"\s*{body}\s*", re.IGNORECASE)

    def match(self, line: str) -> dict[str, str] | None:
        m = self.compiled.fullmatch(line)
        # A left-out optional node gives "" for its fields (the channel default).
        return None if m is None else m.groupdict(default="")


class ChannelControl(Control[Any]):
    """A :class:`Control` whose templates may carry header fields (``OUTPut{channel}``)."""

    @functools.cached_property
    def get_template(self) -> Template | None:
        if self.get_text is None:
            return None
        return ChannelTemplate(self.get_text, self._fields(False), True)

    @functools.cached_property
    def set_template(self) -> Template | None:
        if self.set_text is None:
            return None
        return ChannelTemplate(self.set_text, self._fields(True), True)


class ChannelAction(Action):
    """An :class:`Action` whose template may carry header fields."""

    @functools.cached_property
    def template(self) -> Template:
        return ChannelTemplate(self.text, self.args, True)
