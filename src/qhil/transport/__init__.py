"""Async instrument transport over pyvisa and pyserial.

:class:`Session` is the one connection abstraction: a worker thread per
instrument, a per-instrument lock around whole transactions, typed timeouts,
bounded reconnects and an exchange log that replays as a byte-exact test.
"""

from qhil.transport.exchange_log import Exchange, ExchangeLog
from qhil.transport.framing import Framing, SerialSettings
from qhil.transport.replay import ProtocolMismatch, ReplayIO
from qhil.transport.session import ReconnectPolicy, Session, make_io

__all__ = [
    "Exchange",
    "ExchangeLog",
    "Framing",
    "ProtocolMismatch",
    "ReconnectPolicy",
    "ReplayIO",
    "SerialSettings",
    "Session",
    "make_io",
]
