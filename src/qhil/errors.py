"""Typed errors shared by every part of qhil.

Each error carries the facts a physicist needs to act on it: which resource,
which command, what was awaited, and the instrument's own code and text.
"""

from __future__ import annotations


class QhilError(Exception):
    """Base of every error qhil raises on purpose."""


class ConfigError(QhilError):
    """A bench profile or configuration is malformed.

    The message names the file and the field path, e.g.
    ``hw_profiles/lab.toml: world.links.ab.length_km: must be >= 0 (got -3)``.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


class TransportError(QhilError):
    """Something went wrong talking to an instrument."""

    def __init__(self, resource: str, message: str) -> None:
        self.resource = resource
        super().__init__(f"{resource}: {message}")


class InstrumentConnectionError(TransportError):
    """The resource could not be opened (unknown address, refused, no such device)."""


class ConnectionLostError(TransportError):
    """The connection dropped during an exchange.

    ``reconnect_attempted`` tells whether the session tried to reconnect before
    giving up; the next exchange on the session reconnects by itself.
    """

    def __init__(
        self, resource: str, command: str | None, cause: str, reconnect_attempted: bool = False
    ) -> None:
        self.command = command
        self.cause = cause
        self.reconnect_attempted = reconnect_attempted
        what = f"while sending {command!r}" if command is not None else "while idle"
        tried = "; reconnect attempted and failed" if reconnect_attempted else ""
        super().__init__(resource, f"connection lost {what}: {cause}{tried}")


class InstrumentTimeoutError(TransportError):
    """No complete reply within the timeout.

    Names the resource, the command that was sent, the termination that was
    awaited and whatever partial bytes did arrive (a wrong termination shows up
    here as a complete-looking reply that never ended).
    """

    def __init__(
        self,
        resource: str,
        command: str | None,
        termination: str,
        timeout_s: float,
        partial: bytes = b"",
    ) -> None:
        self.command = command
        self.termination = termination
        self.timeout_s = timeout_s
        self.partial = partial
        sent = f"after sending {command!r}" if command is not None else "while reading"
        got = f"; received {partial!r} without it" if partial else "; nothing received"
        super().__init__(
            resource,
            f"timed out after {timeout_s:g} s {sent}, waiting for termination {termination!r}{got}",
        )


class InstrumentError(QhilError):
    """The instrument reported an error, in its own words.

    ``code`` is the instrument's own error code (SCPI ``-222`` or a vendor code),
    ``text`` its own message.
    """

    def __init__(self, resource: str, code: int | str, text: str, command: str | None = None):
        self.resource = resource
        self.code = code
        self.text = text
        self.command = command
        after = f" after {command!r}" if command else ""
        super().__init__(f"{resource}: instrument error {code}, {text!r}{after}")


class ValidationError(QhilError, ValueError):
    """A value given to a driver is out of range or not allowed; nothing was sent."""

    def __init__(self, command: str, value: object, allowed: str) -> None:
        self.command = command
        self.value = value
        self.allowed = allowed
        super().__init__(f"{command}: {value!r} is not allowed ({allowed}); nothing was sent")


class ProtocolError(QhilError):
    """A reply did not have the form the instrument's protocol promises."""

    def __init__(self, resource: str, command: str | None, reply: str, expected: str) -> None:
        self.resource = resource
        self.command = command
        self.reply = reply
        super().__init__(f"{resource}: reply {reply!r} to {command!r} is not {expected}")
