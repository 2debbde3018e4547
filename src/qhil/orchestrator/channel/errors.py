"""Errors of the authenticated classical channel.

Every message names the local party, the peer and what was awaited; none ever
contains key material, tags or payload bytes.
"""

from __future__ import annotations

from qhil.errors import QhilError


class ChannelError(QhilError):
    """Base of every classical-channel error. A QKD run aborts on any of them."""


class AuthenticationError(ChannelError):
    """A received message failed authentication: wrong tag, replayed, reordered,
    reflected, from another session, or a malformed/forged frame.

    ``local`` received it, ``peer`` supposedly sent it, ``seq`` is the sequence
    number that was expected, ``reason`` says what failed. ``tag_mismatch``: a
    well-formed frame whose tag did not verify (a wrong key or a forgery), as opposed
    to a stream that is not frames at all.
    """

    def __init__(
        self, local: str, peer: str, seq: int, reason: str, *, tag_mismatch: bool = False
    ) -> None:
        self.local = local
        self.peer = peer
        self.seq = seq
        self.reason = reason
        self.tag_mismatch = tag_mismatch
        super().__init__(
            f"{local}: message #{seq} from {peer} failed authentication: {reason}; "
            f"the channel is closed"
        )


class ChannelClosedError(ChannelError):
    """The peer closed the channel (or the connection dropped) while something was awaited."""


class ChannelTimeoutError(ChannelError, TimeoutError):
    """Nothing arrived in time; the message names the peer and what was awaited."""


class CorruptStreamError(ChannelError):
    """A transport could not cut its byte stream into frames (e.g. an absurd length
    prefix). The channel reports it as an :class:`AuthenticationError`."""


class ChannelConnectionError(ChannelError):
    """A TCP connection to the peer could not be made."""


class ChannelConnectTimeoutError(ChannelConnectionError, ChannelTimeoutError):
    """No TCP connection within the timeout (a silent or firewalled host): a connection
    that could not be made, so a caller waiting for its peer to appear tries again."""


class UnexpectedMessageError(ChannelError):
    """An authentic message of another kind than the protocol step expected."""

    def __init__(self, local: str, peer: str, seq: int, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"{local}: message #{seq} from {peer} is {got!r}, expected {expected!r}")


class MessageFormatError(ChannelError, TypeError):
    """A payload cannot be serialised (unsupported type, bad key), or an authentic
    frame does not decode (a peer speaking another version). Names the field path."""


class KeyPoolExhaustedError(ChannelError):
    """The pre-shared key pool for Wegman-Carter tags has run out in one direction."""
