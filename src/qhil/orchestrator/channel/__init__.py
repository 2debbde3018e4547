"""Authenticated classical channel between two QKD parties (see README.md here).

``AuthenticatedChannel`` over an in-process pipe or TCP; HMAC-SHA256 or
Wegman-Carter (GF(2^127 - 1) polynomial hash + one-time pads) tags; session,
direction and sequence binding; typed errors; no key bytes in logs or reprs.
"""

from qhil.orchestrator.channel.auth import (
    Authenticator,
    HmacSha256Authenticator,
    WegmanCarterAuthenticator,
    poly1271,
)
from qhil.orchestrator.channel.channel import (
    AuthenticatedChannel,
    Message,
    accept_channel,
    connect_channel,
    in_process_channels,
)
from qhil.orchestrator.channel.errors import (
    AuthenticationError,
    ChannelClosedError,
    ChannelConnectionError,
    ChannelError,
    ChannelTimeoutError,
    CorruptStreamError,
    KeyPoolExhaustedError,
    MessageFormatError,
    UnexpectedMessageError,
)
from qhil.orchestrator.channel.keys import AuthKey, KeyPool
from qhil.orchestrator.channel.tcp import TcpListener, TcpTransport
from qhil.orchestrator.channel.transcript import TranscriptAuthenticator
from qhil.orchestrator.channel.transport import (
    FrameTransport,
    InProcessTransport,
    Tamper,
    TamperingTransport,
    flip_byte,
)

__all__ = [
    "AuthKey",
    "AuthenticatedChannel",
    "AuthenticationError",
    "Authenticator",
    "ChannelClosedError",
    "ChannelConnectionError",
    "ChannelError",
    "ChannelTimeoutError",
    "CorruptStreamError",
    "FrameTransport",
    "HmacSha256Authenticator",
    "InProcessTransport",
    "KeyPool",
    "KeyPoolExhaustedError",
    "Message",
    "MessageFormatError",
    "Tamper",
    "TamperingTransport",
    "TcpListener",
    "TcpTransport",
    "TranscriptAuthenticator",
    "UnexpectedMessageError",
    "WegmanCarterAuthenticator",
    "accept_channel",
    "connect_channel",
    "flip_byte",
    "in_process_channels",
    "poly1271",
]
