"""One declaration per command: template, value types, units and docstring together.

A declaration lives on the driver class. The driver *renders* its templates
into bytes; the emulator *matches* incoming lines against the very same
templates; protocol tests take their expected bytes from them. Command strings
are therefore written exactly once.

Templates use ``str.format`` fields typed by :mod:`qhil.drivers.values`::

    wavelength = Control(
        get=":WAVelength?", set=":WAVelength {value}",
        value=Float(1480, 1640, units="nm"), doc="Output wavelength setpoint.",
    )

For SCPI instruments the header keywords follow SCPI notation (upper-case
letters are the short form), from which the emulator's matcher accepts the
short and long forms case-insensitively; ``[:NODe]`` is an optional node and a
field may sit inside the header as a numeric suffix (``SOURce{channel}:FUNCtion``).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from qhil.drivers.values import Value, ValueTypeError
from qhil.errors import ProtocolError, ValidationError

if TYPE_CHECKING:
    from qhil.drivers.instrument import Instrument

T = TypeVar("T")

_FORMATTER = string.Formatter()


def scpi_keyword_regex(keyword: str) -> str:
    """``WAVelength`` -> ``WAV(?:ELENGTH)?``; ``*IDN`` -> ``\\*IDN``.

    SCPI accepts exactly the short form (the upper-case letters) or the long form.
    A trailing digit suffix (``OUTPut2``) is kept literal.
    """
    m = re.fullmatch(r"([A-Z*]*)([a-z]*)(\d*)", keyword)
    if not m or not keyword:
        return re.escape(keyword)
    short, rest, suffix = m.groups()
    out = re.escape(short)
    if rest:
        out += f"(?:{re.escape(rest.upper())})?"
    return out + suffix


class _Redacted:
    """Stands in for a sensitive value in error messages."""

    def __repr__(self) -> str:
        return SENSITIVE


#: How sensitive commands, values and replies are shown (as the session shows them).
SENSITIVE = "<sensitive>"
REDACTED = _Redacted()

# Tokens of an SCPI header: optional-node brackets, node separators, the query mark,
# fields ({channel}) and keywords (WAVelength, *IDN, OUTPut2).
_HEADER_TOKEN = re.compile(r"\[|\]|:|\?|\{(\w+)\}|[A-Za-z*][A-Za-z]*\d*")


@dataclass
class _Segment:
    """A run of header nodes, optional (``[:SOURce{channel}]``) or not; each node a regex."""

    optional: bool
    nodes: list[str] = field(default_factory=list)


def _split_header(text: str) -> tuple[str, str]:
    """``:WAV:FREQ? {which}`` -> (``:WAV:FREQ?``, ``{which}``); the header ends at a blank."""
    i = text.find(" ")
    return (text, "") if i < 0 else (text[:i], text[i + 1 :])


def _header_segments(
    template: str, header: str, field_regex: Callable[[str], str]
) -> tuple[list[_Segment], bool]:
    """Parse an SCPI header into segments of nodes; also whether it is a query."""

    def bad(why: str) -> TypeError:
        return TypeError(f"SCPI template {template!r}: {why}")

    segments = [_Segment(False)]
    node = ""
    query = False
    pos = 0

    def close_node() -> None:
        nonlocal node
        if node:
            segments[-1].nodes.append(node)
            node = ""

    while pos < len(header):
        m = _HEADER_TOKEN.match(header, pos)
        if m is None:
            raise bad(f"unexpected {header[pos]!r} in the header")
        tok, pos = m.group(0), m.end()
        if query:
            raise bad("'?' must end the header")
        if tok == "[":
            if segments[-1].optional:
                raise bad("optional nodes cannot be nested")
            close_node()
            segments.append(_Segment(True))
        elif tok == "]":
            if not segments[-1].optional:
                raise bad("']' without '['")
            close_node()
            segments.append(_Segment(False))
        elif tok == ":":
            close_node()
        elif tok == "?":
            close_node()
            query = True
        elif m.group(1) is not None:  # a field inside the header: a numeric suffix, say
            node += field_regex(m.group(1))
        else:
            node += scpi_keyword_regex(tok)
    if segments[-1].optional:
        raise bad("'[' without ']'")
    close_node()
    return [s for s in segments if s.nodes], query


def _scpi_header_regex(template: str, header: str, field_regex: Callable[[str], str]) -> str:
    """The regex of an SCPI header, from its nodes.

    Nodes are joined by ``:``; an optional node carries its own separator (before it
    once a node precedes it, after it while none does), and the root colon is a
    separate optional prefix: ``[:WAVelength]:FREQuency?`` accepts ``FREQ?``,
    ``:FREQ?``, ``WAV:FREQ?`` and ``:WAVELENGTH:FREQUENCY?``.
    """
    segments, query = _header_segments(template, header, field_regex)
    out = []
    started = False  # a node precedes the current one
    for seg in segments:
        body = ":".join(seg.nodes)
        if not seg.optional:
            out.append((":" if started else "") + body)
            started = True
        elif started:
            out.append(f"(?::{body})?")
        elif seg is segments[-1]:
            out.append(f"(?:{body})?")
        else:
            out.append(f"(?:{body}:)?")
    # Common commands (*IDN?) are not part of the header tree: no root colon.
    root = "" if header.startswith("*") else ":?"
    return root + "".join(out) + ("\\?" if query else "")


def _parameters_regex(text: str, field_regex: Callable[[str], str]) -> str:
    """Regex of the parameter part: blanks and commas with any white space around them."""
    parts = []
    for literal, name, _, _ in _FORMATTER.parse(text):
        for c in literal:
            parts.append(r"\s+" if c == " " else r"\s*,\s*" if c == "," else re.escape(c))
        if name:
            parts.append(field_regex(name))
    return "".join(parts)


@dataclass(frozen=True, eq=False)
class Template:
    """A wire message with typed fields, rendered by drivers and matched by emulators.

    With ``scpi`` the header is in SCPI notation: short/long keyword forms,
    ``[optional]`` nodes and fields inside the header (``SOURce{channel}:FUNCtion``).
    An optional node is sent when it carries a field (the driver always names the
    channel) and left out otherwise. ``reply`` marks a template that parses replies:
    its fields take the values' strict reply patterns (a bare number, no ``MIN``).
    ``sensitive`` keeps its values out of error messages (key material).
    """

    text: str
    fields: Mapping[str, Value[Any]] = field(default_factory=dict)
    scpi: bool = False
    reply: bool = False
    sensitive: bool = False

    def __post_init__(self) -> None:
        names = [f for _, f, _, _ in _FORMATTER.parse(self.text) if f]
        missing = [n for n in names if n not in self.fields]
        if missing:
            raise TypeError(f"template {self.text!r}: no value type for field(s) {missing}")

    @property
    def field_names(self) -> list[str]:
        return [f for _, f, _, _ in _FORMATTER.parse(self.text) if f]

    def render(self, **values: Any) -> str:
        """Validate and format every field; raises ValidationError before any byte is sent."""
        formatted = {}
        for name in self.field_names:
            if name not in values:
                raise ValidationError(self.form, None, f"missing argument {name!r}")
            try:
                formatted[name] = self.fields[name].format(values[name])
            except ValueTypeError as exc:
                shown = REDACTED if self.sensitive else exc.value
                raise ValidationError(self.form, shown, f"{name} must be {exc.allowed}") from None
        return self._wire_text().format(**formatted)

    @property
    def form(self) -> str:
        """The command as a manual writes it, for messages: ``LCURRENT <value>`` (a raw
        ``{value}`` reads as a bug in the message)."""
        return re.sub(r"\{(\w+)[^}]*\}", r"<\1>", self.text)

    def _wire_text(self) -> str:
        if not self.scpi:
            return self.text
        # Optional nodes with a field are sent; optional nodes without one are not.
        return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1) if "{" in m.group(1) else "", self.text)

    def emit(self, **values: Any) -> str:
        """Render without range checks: an emulator's reply (a reading may exceed a set range)."""
        return self.text.format(**{n: self.fields[n].emit(values[n]) for n in self.field_names})

    @functools.cached_property
    def compiled(self) -> re.Pattern[str]:
        return self.regex()

    def _field_regex(self, name: str) -> str:
        value = self.fields[name]
        return f"(?P<{name}>{value.reply_pattern if self.reply else value.pattern})"

    def regex(self) -> re.Pattern[str]:
        if not self.scpi:
            parts = []
            for literal, name, _, _ in _FORMATTER.parse(self.text):
                parts.append(re.escape(literal))
                if name:
                    parts.append(self._field_regex(name))
            return re.compile("".join(parts))
        header, params = _split_header(self.text)
        body = _scpi_header_regex(self.text, header, self._field_regex)
        if params:
            body += r"\s+" + _parameters_regex(params, self._field_regex)
        return re.compile(rf"\s*{body}\s*", re.IGNORECASE)

    def match(self, line: str) -> dict[str, str] | None:
        """The raw text of each field if ``line`` is an instance of this template.

        A field in an optional node the line leaves out comes back as ``""`` (its
        value type gives the default, e.g. channel 1).
        """
        m = self.compiled.fullmatch(line)
        return None if m is None else m.groupdict(default="")

    def parse(self, line: str) -> dict[str, Any] | None:
        raw = self.match(line)
        if raw is None:
            return None
        return {k: self.fields[k].parse(v) for k, v in raw.items()}


class Declaration:
    """Base of Control, Measurement and Action: a named, documented command.

    A ``sensitive`` declaration carries key material: its exchanges are kept out of
    logs (the exchange log records a length-only placeholder) and its values and
    replies out of error messages.
    """

    name: str = ""
    owner: type | None = None
    doc: str = ""
    sensitive: bool = False

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner

    def templates(self) -> list[Template]:
        raise NotImplementedError


def _scpi_of(owner: type | None) -> bool:
    return bool(getattr(owner, "scpi", False))


class Control(Declaration, Generic[T]):
    """A readable and/or settable instrument parameter.

    ``get``/``set`` are templates; ``value`` types the ``{value}`` field and, unless
    ``reply`` says otherwise, the reply. ``args`` types extra fields such as a
    channel number. ``reply`` may be a Value (one line holds the value) or a
    template string whose ``{value}`` field holds it (``"Set CH{channel} at: {value}mV"``).
    """

    def __init__(
        self,
        *,
        get: str | None = None,
        set: str | None = None,
        value: Value[T],
        doc: str,
        reply: Value[Any] | str | None = None,
        reply_value: Value[Any] | None = None,
        args: Mapping[str, Value[Any]] | None = None,
        check_errors: bool = True,
        sensitive: bool = False,
    ) -> None:
        if get is None and set is None:
            raise TypeError("a Control needs get and/or set")
        self.sensitive = sensitive
        self.get_text, self.set_text = get, set
        self.value = value
        self.reply_spec = reply
        self.reply_value = reply_value
        self.args: dict[str, Value[Any]] = dict(args or {})
        self.doc = doc
        self.__doc__ = doc
        self.check_errors = check_errors

    def _fields(self, with_value: bool) -> dict[str, Value[Any]]:
        f = dict(self.args)
        if with_value:
            f["value"] = self.value
        return f

    @functools.cached_property
    def get_template(self) -> Template | None:
        if self.get_text is None:
            return None
        return Template(
            self.get_text, self._fields(False), _scpi_of(self.owner), sensitive=self.sensitive
        )

    @functools.cached_property
    def set_template(self) -> Template | None:
        if self.set_text is None:
            return None
        return Template(
            self.set_text, self._fields(True), _scpi_of(self.owner), sensitive=self.sensitive
        )

    @functools.cached_property
    def reply_template(self) -> Template:
        """How the reply line to ``get`` looks (the emulator renders it, the driver parses it)."""
        spec = self.reply_spec
        if isinstance(spec, str):
            fields = self._fields(True)
            if self.reply_value is not None:
                fields["value"] = self.reply_value
            return Template(spec, fields, reply=True)
        return Template("{value}", {"value": spec or self.value}, reply=True)

    def templates(self) -> list[Template]:
        return [t for t in (self.get_template, self.set_template) if t is not None]

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Control[T]: ...
    @overload
    def __get__(self, obj: Instrument, objtype: type | None = None) -> BoundControl[T]: ...
    def __get__(self, obj: Instrument | None, objtype: type | None = None) -> Any:
        return self if obj is None else BoundControl(obj, self)


class BoundControl(Generic[T]):
    """A Control on one instrument: ``await x.get()``, ``await x.set(v)``."""

    def __init__(self, instrument: Instrument, decl: Control[T]) -> None:
        self.instrument = instrument
        self.decl = decl
        self.__doc__ = decl.doc

    def __repr__(self) -> str:
        return f"<{type(self.instrument).__name__}.{self.decl.name}>"

    async def get(self, **args: Any) -> T:
        t = self.decl.get_template
        if t is None:
            raise TypeError(f"{self.decl.name} is write-only")
        command = t.render(**args)
        sensitive = self.decl.sensitive
        ask = self.instrument.ask_sensitive if sensitive else self.instrument.ask
        reply = await ask(command)
        template = self.decl.reply_template
        try:
            parsed = template.parse(reply)
        except ValueError:  # matched the form, but a value does not parse
            parsed = None
        if parsed is None or "value" not in parsed:
            expected = f"of the form {template.text!r} ({template.fields['value'].describe()})"
            raise ProtocolError(
                self.instrument.resource,
                t.text if sensitive else command,
                SENSITIVE if sensitive else reply,
                expected,
            ) from None
        return parsed["value"]

    async def set(self, value: T, **args: Any) -> None:
        t = self.decl.set_template
        if t is None:
            raise TypeError(f"{self.decl.name} is read-only")
        command = t.render(value=value, **args)
        send = self.instrument.command_sensitive if self.decl.sensitive else self.instrument.command
        await send(command, check_errors=self.decl.check_errors)


class Measurement(Control[T]):
    """A read-only Control (a measured quantity)."""

    def __init__(
        self,
        get: str,
        *,
        value: Value[T],
        doc: str,
        reply: Value[Any] | str | None = None,
        args: Mapping[str, Value[Any]] | None = None,
        sensitive: bool = False,
    ) -> None:
        super().__init__(
            get=get,
            value=value,
            doc=doc,
            reply=reply,
            args=args,
            check_errors=False,
            sensitive=sensitive,
        )


class Action(Declaration):
    """A command that does something and returns no value (``*RST``, ``SAVE``)."""

    def __init__(
        self,
        command: str,
        *,
        doc: str,
        args: Mapping[str, Value[Any]] | None = None,
        check_errors: bool = True,
        sensitive: bool = False,
    ) -> None:
        self.text = command
        self.sensitive = sensitive
        self.args: dict[str, Value[Any]] = dict(args or {})
        self.doc = doc
        self.__doc__ = doc
        self.check_errors = check_errors

    @functools.cached_property
    def template(self) -> Template:
        return Template(self.text, self.args, _scpi_of(self.owner), sensitive=self.sensitive)

    def templates(self) -> list[Template]:
        return [self.template]

    def __get__(self, obj: Instrument | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        decl = self

        async def call(**args: Any) -> None:
            send = obj.command_sensitive if decl.sensitive else obj.command
            await send(decl.template.render(**args), check_errors=decl.check_errors)

        call.__doc__ = self.doc
        return call


def methods_needed(decl: Declaration) -> tuple[str, ...]:
    """The instrument methods a declaration's exchanges go through (``ask``, ``command``;
    ``ask_sensitive``, ``command_sensitive`` when it is sensitive)."""
    if isinstance(decl, Control):
        return tuple(
            m for m, t in (("ask", decl.get_text), ("command", decl.set_text)) if t is not None
        )
    return ("command",)


def declarations(cls: type) -> dict[str, Declaration]:
    """Every declaration of an instrument class, including inherited ones."""
    out: dict[str, Declaration] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            if isinstance(attr, Declaration):
                out[name] = attr
    return out


Handler = Callable[..., Any]
