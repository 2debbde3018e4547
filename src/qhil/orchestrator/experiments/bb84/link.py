"""A party's end of the classical channel, speaking typed BB84 messages.

The experiment uses an opened :class:`~qhil.orchestrator.channel.AuthenticatedChannel`
(in-process or TCP) through the two coroutines of :class:`MessageChannel`.
:class:`PeerLink` turns every way an exchange can fail into a
:class:`BB84Aborted` with its reason: an authentication failure (the channel
raised :class:`~qhil.orchestrator.channel.AuthenticationError`), a timeout or a
closed channel, a malformed or out-of-order message, or an ``Abort`` the peer
sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, Protocol, TypeVar, overload

from qhil.orchestrator.channel import (
    AuthenticationError,
    ChannelClosedError,
    ChannelError,
    ChannelTimeoutError,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted, ProtocolViolation
from qhil.orchestrator.experiments.bb84.messages import (
    Abort,
    Message,
    from_payload,
    kind_of,
    to_payload,
)

log = logging.getLogger(__name__)

_ABORT_KIND = kind_of(Abort)

M = TypeVar("M", bound=Message)
N = TypeVar("N", bound=Message)

#: How the last failed exchange failed, for the commit rules (see ``alice.py``):
#: nothing came in time, a frame failed authentication (it was altered: the peer did
#: send something), the channel closed (the peer's end failed or it stopped), an
#: authentic message that does not fit, or the peer's own Abort.
Failure = Literal["timeout", "authentication", "closed", "protocol", "peer_abort"]


class Received(Protocol):
    """What the channel's ``recv`` returns (its ``Message``)."""

    @property
    def kind(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class MessageChannel(Protocol):
    """One party's end of an opened authenticated channel (``AuthenticatedChannel``)."""

    async def send(self, kind: str, payload: Mapping[str, Any] | None = None) -> int: ...

    async def recv(self, kind: str | None = None, *, timeout_s: float | None = None) -> Any: ...


async def abort_before_close(channel: MessageChannel, timeout_s: float) -> BB84Aborted | None:
    """After a send failed because the peer's end closed: the last ``Abort`` the peer sent
    before closing (its orderly stop, e.g. ``Abort(stopped)`` from a continuous run told
    SIGTERM), as a :class:`BB84Aborted` from the peer; None if it sent none.

    A party that stops tells us, lingers a while, then closes; with the pipeline we may
    be busy (an acquisition, a block's processing) past its linger and only notice at our
    next send. What it sent before closing is still queued at our end, in order, ahead of
    the close: read it all (what the stop made moot is dropped; the last Abort is why it
    closed). ``timeout_s`` only bounds each wait for a frame or the close our end has seen.
    """
    told: BB84Aborted | None = None
    while True:
        try:
            got: Received = await channel.recv(timeout_s=timeout_s)
        except Exception:  # the close itself (or a timeout, an altered frame): no more
            return told
        if got.kind != _ABORT_KIND:
            continue
        try:
            msg = from_payload(got.kind, got.payload)
        except ProtocolViolation:
            continue
        assert isinstance(msg, Abort)
        told = peer_abort(msg)


def peer_abort(msg: Abort) -> BB84Aborted:
    """The peer's ``Abort`` as ours to raise (a reason we do not know: a protocol error)."""
    try:
        reason = AbortReason(msg.reason)
    except ValueError:
        reason = AbortReason.PROTOCOL_ERROR
    return BB84Aborted(reason, msg.detail, from_peer=True)


class PeerLink:
    """Typed send/expect over a :class:`MessageChannel`, with timeouts and abort handling."""

    def __init__(self, channel: MessageChannel, party: str, peer: str, timeout_s: float) -> None:
        self._channel = channel
        self.party = party
        self.peer = peer
        self.timeout_s = timeout_s
        self._broken = False  # the channel failed: do not try to send an Abort through it
        self.failure: Failure | None = None

    @property
    def channel(self) -> MessageChannel:
        return self._channel

    @property
    def broken(self) -> bool:
        """The channel failed (nothing more can be sent through it)."""
        return self._broken

    async def send(self, msg: Message) -> None:
        kind, payload = to_payload(msg)
        try:
            await self._channel.send(kind, payload)
        except AuthenticationError as exc:
            self._broken = True
            raise BB84Aborted(AbortReason.AUTHENTICATION_FAILED, str(exc)) from exc
        except (ChannelError, ConnectionError) as exc:
            self._broken = True
            told = None
            if isinstance(exc, ChannelClosedError | ConnectionError):  # the peer may have said why
                told = await abort_before_close(self._channel, self.timeout_s)
            if told is not None:
                self.failure = "peer_abort"
                raise told from exc
            raise BB84Aborted(
                AbortReason.CHANNEL_FAILED,
                f"{self.party}: sending {type(msg).__name__} to {self.peer} failed: {exc}",
            ) from exc

    @overload
    async def expect(
        self, t1: type[M], /, *, timeout_s: float | None = None, block: int | None = None
    ) -> M: ...

    @overload
    async def expect(
        self,
        t1: type[M],
        t2: type[N],
        /,
        *,
        timeout_s: float | None = None,
        block: int | None = None,
    ) -> M | N: ...

    async def expect(
        self, *types: type[Message], timeout_s: float | None = None, block: int | None = None
    ) -> Message:
        """The next message, which must be one of ``types`` (or the peer's Abort), and, when
        ``block`` is given, name that block (the pipelined blocks' order, README "Pipeline").

        Waits ``timeout_s`` (default: the link's). On failure raises :class:`BB84Aborted`
        and sets :attr:`failure` to how it failed.
        """
        names = " or ".join(t.__name__ for t in types)
        if block is not None:
            names += f" for block {block}"
        wait = self.timeout_s if timeout_s is None else timeout_s
        self.failure = None
        try:
            got: Received = await self._channel.recv(timeout_s=wait)
        except AuthenticationError as exc:
            self._broken = True
            self.failure = "authentication"
            raise BB84Aborted(AbortReason.AUTHENTICATION_FAILED, str(exc)) from exc
        except ChannelTimeoutError as exc:
            self.failure = "timeout"
            raise BB84Aborted(
                AbortReason.CHANNEL_FAILED,
                f"{self.party}: no {names} from {self.peer} within {wait:g} s",
            ) from exc
        except (ChannelError, ConnectionError) as exc:
            self._broken = True
            self.failure = "closed"
            raise BB84Aborted(
                AbortReason.CHANNEL_FAILED,
                f"{self.party}: channel failed while waiting for {names}: {exc}",
            ) from exc
        try:
            msg = from_payload(got.kind, got.payload)
        except ProtocolViolation as exc:
            self.failure = "protocol"
            raise BB84Aborted(AbortReason.PROTOCOL_ERROR, f"{self.party}: {exc}") from exc
        if isinstance(msg, Abort):
            self.failure = "peer_abort"
            raise peer_abort(msg)
        got_block = getattr(msg, "block", None)
        if not isinstance(msg, types) or (block is not None and got_block != block):
            self.failure = "protocol"
            what = type(msg).__name__ + ("" if got_block is None else f" for block {got_block}")
            raise BB84Aborted(
                AbortReason.PROTOCOL_ERROR,
                f"{self.party}: expected {names} from {self.peer}, got {what} (out of order)",
            )
        return msg

    async def tell_abort(self, exc: BB84Aborted) -> None:
        """Best effort: pass our abort on, so the peer stops too (never raises)."""
        if exc.from_peer or self._broken:
            return
        kind, payload = to_payload(Abort(exc.reason.value, exc.detail))
        try:
            await self._channel.send(kind, payload)
        except Exception as err:  # the peer may be gone; our own abort stands regardless
            log.debug("%s: could not tell %s about the abort: %s", self.party, self.peer, err)
