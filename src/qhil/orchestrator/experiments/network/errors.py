"""The typed errors of an entanglement request, after the link layer's error codes
(Dahlberg et al., SIGCOMM 2019; draft-dahlberg-ll-quantum: TIMEOUT, REJECTED / UNSUPP,
NORES, EXPIRE)."""

from __future__ import annotations

from typing import Any

from qhil.errors import QhilError


class EntanglementRequestError(QhilError):
    """A request that cannot be (or was not) met. ``code`` is the link layer's error code,
    ``request`` the request (None when raised outside one)."""

    code = "OTHER"

    def __init__(self, message: str, request: Any = None) -> None:
        self.request = request
        super().__init__(message)


class RequestTimeout(EntanglementRequestError):
    """The deadline (bench time) passed before the pairs were delivered."""

    code = "TIMEOUT"


class FidelityUnreachable(EntanglementRequestError):
    """Rejected before any attempt: the estimate from measured parameters cannot reach the
    minimum fidelity within the deadline."""

    code = "REJECTED"


class NoResources(EntanglementRequestError):
    """A memory of the route is switched off or has no free mode (the instrument's own
    code and text quoted when it said so)."""

    code = "NORES"


class ExpiredByCutoff(EntanglementRequestError):
    """Halves waiting for their partner link were emptied by the memories' cutoff, and no
    time was left to make new ones."""

    code = "EXPIRE"


__all__ = [
    "EntanglementRequestError",
    "ExpiredByCutoff",
    "FidelityUnreachable",
    "NoResources",
    "RequestTimeout",
]
