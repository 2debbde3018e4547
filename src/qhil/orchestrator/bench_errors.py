"""Errors of a bench as a whole: every instrument's failure in one message.

Connecting, configuring or identifying a bench runs on all instruments at once.
When some fail, the physicist wants one message that lists each failing
instrument (``node.name``, catalogue model, resource, the typed error and its
text) and says which ones were fine, rather than the first error and a
traceback (the pattern of ophyd-async's ``NotConnectedError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qhil.errors import QhilError, TransportError


@dataclass(frozen=True)
class InstrumentFailure:
    """One instrument that failed, and how."""

    key: str  # "node.name"
    model: str  # catalogue model, e.g. "santec.tsl570"
    resource: str  # the address it was (to be) reached at
    error: BaseException

    def describe(self) -> str:
        text = str(self.error)
        detail = f": {text}" if text else ""
        return f"{self.key} ({self.model} at {self.resource}): {type(self.error).__name__}{detail}"


class BenchError(QhilError):
    """Some instruments of a bench failed an operation run on all of them.

    ``failures`` holds each failing instrument with its error; ``succeeded`` the
    ``node.name`` of the others.
    """

    #: What was being done, for the message ("connect", "apply their settings").
    action = "complete the operation"
    #: How to describe the instruments that did not fail.
    succeeded_label = "succeeded"

    def __init__(
        self,
        bench: str,
        source: str,
        failures: Sequence[InstrumentFailure],
        succeeded: Sequence[str],
    ) -> None:
        self.bench = bench
        self.source = source
        self.failures = list(failures)
        self.succeeded = list(succeeded)
        super().__init__(self._message())

    @property
    def errors(self) -> dict[str, BaseException]:
        """``node.name`` -> the error of each failing instrument."""
        return {f.key: f.error for f in self.failures}

    def _message(self) -> str:
        total = len(self.failures) + len(self.succeeded)
        where = f" ({self.source})" if self.source else ""
        lines = [
            f"bench {self.bench!r}{where}: {len(self.failures)} of {total} instruments "
            f"failed to {self.action}:"
        ]
        lines += [f"  {f.describe()}" for f in self.failures]
        if self.succeeded:
            lines.append(f"{self.succeeded_label}: {', '.join(self.succeeded)}")
        return "\n".join(lines)


class BenchConnectError(BenchError):
    """Some instruments could not be connected; the bench has been torn down."""

    action = "connect"
    succeeded_label = "connected (and closed again)"


class BenchConfigureError(BenchError):
    """Some instruments rejected their profile settings."""

    action = "apply their settings"
    succeeded_label = "configured"


class BenchIdentityError(BenchError):
    """Some instruments did not report their identity."""

    action = "report their identity"
    succeeded_label = "identified"


class ConnectTimeoutError(TransportError):
    """An instrument did not finish connecting (opening and its connect-time setup) in time."""

    def __init__(self, resource: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            resource, f"not connected within {timeout_s:g} s (open plus connect-time setup)"
        )


class BenchLookupError(QhilError, LookupError):
    """No such instrument, or no instrument playing the requested role."""
