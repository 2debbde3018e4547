"""The authenticated classical channel between two named parties.

Every message is framed (``frames``), serialised without pickle (``codec``) and
tagged (``auth``). Binding, checked on every message by the tag itself:

* **session**: ``open()`` exchanges a fresh 16-byte nonce each way (hello
  messages, tagged under the session id); every later tag covers the session id
  and both nonces, so a frame recorded in another session never verifies, even
  with the same session id and key;
* **direction**: sender and receiver names, so a reflected frame fails;
* **order**: the receiver's expected sequence number (0 for hello, then 1, 2, ...),
  so a replayed, reordered or dropped-and-continued stream fails.

Any failure raises :class:`AuthenticationError` and closes the channel for good:
a QKD run must abort. Payload bytes, tags and keys never reach logs, reprs or
exception messages.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from qhil.orchestrator.channel import codec, frames
from qhil.orchestrator.channel.auth import Authenticator
from qhil.orchestrator.channel.errors import (
    AuthenticationError,
    ChannelClosedError,
    ChannelError,
    ChannelTimeoutError,
    CorruptStreamError,
    KeyPoolExhaustedError,
    MessageFormatError,
    UnexpectedMessageError,
)
from qhil.orchestrator.channel.tcp import DEFAULT_MAX_FRAME_BYTES, TcpListener, TcpTransport
from qhil.orchestrator.channel.transcript import TranscriptAuthenticator
from qhil.orchestrator.channel.transport import (
    FrameTransport,
    InProcessTransport,
    Tamper,
    TamperingTransport,
)

log = logging.getLogger("qhil.orchestrator.channel")

HELLO_KIND = "qhil.channel.hello"
PROTOCOL_VERSION = 1
_NONCE_BYTES = 16


@dataclass
class SharedHello:
    """The accepting party's one hello (nonce and tagged frame), sent to every connection
    it tries: a fresh one per stray connection would spend a Wegman-Carter pad each, and
    the real peer would then expect a pad already used. Reusing the nonce is safe: only
    one connection binds the session, and the peer's fresh nonce makes it unique."""

    nonce: bytes | None = None
    frame: bytes | None = None


@dataclass(frozen=True)
class Message:
    """An authentic message: its ``kind``, decoded ``payload``, sequence number and sender."""

    kind: str
    payload: dict[str, Any]
    seq: int
    sender: str


class AuthenticatedChannel:
    """Authenticated, ordered messages between ``local`` and ``peer`` over a transport.

    Use as ``async with AuthenticatedChannel(...) as ch:`` (opens and closes), or
    call :meth:`open` / :meth:`close`. ``timeout_s`` is the default wait for
    :meth:`open` and :meth:`recv`.
    """

    def __init__(
        self,
        transport: FrameTransport,
        *,
        local: str,
        peer: str,
        authenticator: Authenticator,
        session_id: str,
        timeout_s: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if not local or not peer or local == peer:
            raise ValueError(
                f"AuthenticatedChannel: need two different party names (got {local!r}, {peer!r})"
            )
        if not session_id:
            raise ValueError("AuthenticatedChannel: session_id must be a non-empty string")
        self._t = transport
        self._local = local
        self._peer = peer
        self._auth = authenticator
        self._session = session_id
        self._timeout = timeout_s
        self._max = max_message_bytes
        self._context = b""
        self._send_seq = 0
        self._recv_seq = 0
        self._state = "new"  # new -> open -> closed | failed
        self._failure: str | None = None
        self._transport_closed = False
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()

    # ----------------------------------------------------------------- info
    @property
    def local(self) -> str:
        return self._local

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def session_id(self) -> str:
        return self._session

    @property
    def authenticator(self) -> Authenticator:
        return self._auth

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    @property
    def messages_sent(self) -> int:
        """Messages sent after the handshake."""
        return max(self._send_seq - 1, 0)

    @property
    def messages_received(self) -> int:
        return max(self._recv_seq - 1, 0)

    def __repr__(self) -> str:
        return (
            f"AuthenticatedChannel({self._local} <-> {self._peer}, session {self._session!r}, "
            f"{self._auth.name}, {self._state}, over {self._t.description})"
        )

    __str__ = __repr__

    # ----------------------------------------------------------- lifecycle
    async def open(
        self, timeout_s: float | None = None, *, hello: SharedHello | None = None
    ) -> None:
        """Exchange hello messages (fresh nonces) and bind the session.

        ``hello``: one hello for every connection an accepting party tries (see
        :class:`SharedHello`). Any failure (timeout, peer gone, bad hello) closes the
        channel for good.
        """
        if self._state != "new":
            raise ChannelError(f"{self._local}: channel to {self._peer} is already {self._state}")
        self._state = "opening"
        if hello is not None and hello.nonce is None:
            hello.nonce = secrets.token_bytes(_NONCE_BYTES)
        nonce = (
            hello.nonce if hello is not None and hello.nonce else secrets.token_bytes(_NONCE_BYTES)
        )
        self._context = b"hello:" + self._session.encode()
        payload = {
            "party": self._local,
            "nonce": nonce,
            "version": PROTOCOL_VERSION,
            "auth": self._auth.name,
        }
        try:
            if hello is not None and hello.frame is not None:
                await self._t.send_frame(hello.frame)  # the same tagged frame again
                self._send_seq = 1
            else:
                await self._send(HELLO_KIND, payload, keep=hello)
            msg = await self._recv(HELLO_KIND, timeout_s)
            peer_nonce = msg.payload.get("nonce")
            if not isinstance(peer_nonce, bytes) or len(peer_nonce) != _NONCE_BYTES:
                await self._fail(0, "hello without a valid nonce")
            party, version = msg.payload.get("party"), msg.payload.get("version")
            if party != self._peer or version != PROTOCOL_VERSION:
                await self._fail(0, f"hello from party {party!r}, protocol version {version!r}")
        except BaseException as exc:
            if self._state == "opening":
                await self._fail_closed(f"handshake failed: {type(exc).__name__}")
            raise
        first, second = (nonce, peer_nonce) if self._local < self._peer else (peer_nonce, nonce)
        self._context = b"session:" + self._session.encode() + b"\x00" + first + second
        self._state = "open"
        log.info(
            "%s: channel to %s open (session %r, %s)",
            self._local, self._peer, self._session, self._auth.name,
        )  # fmt: skip

    async def close(self) -> None:
        """Close the transport; the peer's pending ``recv`` gets ChannelClosedError.

        Safe to call more than once, and after the peer closed or a failure (it then
        releases this end's connection)."""
        if self._state != "failed":
            self._state = "closed"
        if self._transport_closed:
            return
        self._transport_closed = True
        await self._t.close()
        log.info("%s: channel to %s closed", self._local, self._peer)

    async def __aenter__(self) -> AuthenticatedChannel:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ messages
    async def send(self, kind: str, payload: Mapping[str, Any] | None = None) -> int:
        """Send an authenticated message; returns its sequence number."""
        if kind == HELLO_KIND:
            raise MessageFormatError(f"kind: {HELLO_KIND!r} is reserved for the handshake")
        self._require_open("send", kind)
        return await self._send(kind, payload or {})

    async def recv(self, kind: str | None = None, *, timeout_s: float | None = None) -> Message:
        """Receive the next message; with ``kind``, anything else raises UnexpectedMessageError."""
        self._require_open("receive", kind)
        return await self._recv(kind, timeout_s)

    def _require_open(self, action: str, kind: str | None) -> None:
        if self._state == "open":
            return
        what = f" {kind!r}" if kind else ""
        if self._state == "failed":
            raise ChannelClosedError(
                f"{self._local}: cannot {action}{what}: the channel to {self._peer} failed "
                f"({self._failure})"
            )
        if self._state == "closed":
            raise ChannelClosedError(
                f"{self._local}: cannot {action}{what}: the channel to {self._peer} is closed"
            )
        raise ChannelError(
            f"{self._local}: cannot {action}{what}: open() the channel to {self._peer} first"
        )

    async def _send(
        self, kind: str, payload: Mapping[str, Any], *, keep: SharedHello | None = None
    ) -> int:
        header, buffers = codec.encode(kind, payload)
        async with self._send_lock:
            seq = self._send_seq
            framed, body_len = frames.build(seq, header, buffers)
            size = len(framed) + self._auth.tag_size
            if size > self._max:
                raise MessageFormatError(
                    f"{kind}: message of {size} bytes exceeds the {self._max}-byte limit"
                )
            data = frames.mac_input(self._context, self._local, self._peer, seq, framed)
            direction = (self._local, self._peer)
            if isinstance(self._auth, TranscriptAuthenticator):  # tags at checkpoints only
                due = kind == HELLO_KIND or self._auth.checkpoint_due(direction, kind, len(data))
                framed += self._auth.seal(direction, data, checkpoint=due)
            else:
                framed += self._auth.tag(direction, data)
            if keep is not None:  # tagged once: its key material is spent now
                keep.frame = bytes(framed)
            try:
                await self._t.send_frame(bytes(framed))
            except ChannelClosedError as exc:
                raise ChannelClosedError(
                    f"{self._local}: cannot send {kind!r} (#{seq}) to {self._peer}: {exc}"
                ) from None
            self._send_seq = seq + 1
        log.debug(
            "%s -> %s #%d %r (%d bytes, body %d)",
            self._local,
            self._peer,
            seq,
            kind,
            size,
            body_len,
        )
        return seq

    async def _recv(self, kind: str | None, timeout_s: float | None) -> Message:
        timeout = self._timeout if timeout_s is None else timeout_s
        async with self._recv_lock:
            seq = self._recv_seq
            what = f"message #{seq}" + (f" ({kind!r})" if kind else "")
            try:
                frame = await asyncio.wait_for(self._t.recv_frame(), timeout)
            except TimeoutError:
                raise ChannelTimeoutError(
                    f"{self._local}: timed out after {timeout:g} s waiting for {what} from {self._peer}"
                ) from None
            except CorruptStreamError as exc:
                await self._fail(seq, str(exc))
            except ChannelClosedError as exc:
                if self._state in ("open", "opening"):
                    self._state = "closed"
                raise ChannelClosedError(
                    f"{self._local}: {self._peer} closed the channel while {self._local} awaited "
                    f"{what} ({exc})"
                ) from None
            parsed = frames.parse(frame, self._auth.tag_size)
            if isinstance(parsed, str):
                await self._fail(seq, f"malformed frame: {parsed}")
            assert isinstance(parsed, frames.ParsedFrame)
            data = frames.mac_input(
                self._context, self._peer, self._local, seq, parsed.authenticated_part
            )
            verdict = self._check(data, parsed.tag, hello=kind == HELLO_KIND)
            if verdict == "deferred" and parsed.seq != seq:
                verdict = "failed"  # not authenticated yet, but certainly not the frame due
            if verdict == "failed":
                if parsed.seq != seq:
                    reason = (
                        f"frame claims sequence number {parsed.seq} where {seq} was due "
                        f"(replayed, reordered or dropped message)"
                    )
                else:
                    reason = "tag mismatch (tampered, reflected, other session, or wrong key)"
                await self._fail(seq, reason, tag_mismatch=True)
            self._recv_seq = seq + 1
        try:
            got_kind, payload = codec.decode(parsed.header, parsed.body)
        except MessageFormatError as exc:
            if verdict == "deferred":  # unverified: most likely altered on the way
                await self._fail(seq, f"unverified frame does not decode ({exc})")
            await self._fail_closed(f"authentic {what} does not decode: {exc}")
            raise
        if verdict == "deferred" and (
            got_kind == HELLO_KIND or got_kind in getattr(self._auth, "checkpoint_kinds", ())
        ):
            await self._fail(seq, f"{got_kind!r} arrived without the checkpoint tag it must carry")
        if kind is not None and got_kind != kind:
            exc2 = UnexpectedMessageError(self._local, self._peer, seq, kind, got_kind)
            await self._fail_closed(str(exc2))
            raise exc2
        log.debug("%s <- %s #%d %r (%d bytes)", self._local, self._peer, seq, got_kind, len(frame))
        return Message(got_kind, payload, seq, self._peer)

    def _check(self, data: bytes, tag: bytes, *, hello: bool) -> str:
        """The verdict on a frame: verified, failed, or deferred (transcript authentication:
        checked at the next checkpoint; a hello never is)."""
        direction = (self._peer, self._local)
        if isinstance(self._auth, TranscriptAuthenticator):
            return self._auth.check(direction, data, tag, checkpoint=hello)
        return "verified" if self._auth.verify(direction, data, tag) else "failed"

    async def _fail_closed(self, why: str) -> None:
        self._state = "failed"
        self._failure = why
        if not self._transport_closed:
            self._transport_closed = True
            await self._t.close()

    async def _fail(self, seq: int, reason: str, *, tag_mismatch: bool = False) -> NoReturn:
        """Log, close for good and raise AuthenticationError."""
        log.warning(
            "%s: authentication failure on message #%d from %s: %s",
            self._local,
            seq,
            self._peer,
            reason,
        )
        await self._fail_closed(f"authentication failure on message #{seq}: {reason}")
        raise AuthenticationError(self._local, self._peer, seq, reason, tag_mismatch=tag_mismatch)


def in_process_channels(
    auth_a: Authenticator,
    auth_b: Authenticator,
    *,
    names: tuple[str, str] = ("alice", "bob"),
    session_id: str = "in-process",
    tamper_a_to_b: Tamper | None = None,
    tamper_b_to_a: Tamper | None = None,
    timeout_s: float = 30.0,
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    """Two unopened channels over an in-memory pipe; optional man-in-the-middle hooks."""
    a, b = names
    ta, tb = InProcessTransport.pair(a, b)
    ta_t: FrameTransport = TamperingTransport(ta, tamper_a_to_b) if tamper_a_to_b else ta
    tb_t: FrameTransport = TamperingTransport(tb, tamper_b_to_a) if tamper_b_to_a else tb
    return (
        AuthenticatedChannel(
            ta_t, local=a, peer=b, authenticator=auth_a, session_id=session_id, timeout_s=timeout_s
        ),
        AuthenticatedChannel(
            tb_t, local=b, peer=a, authenticator=auth_b, session_id=session_id, timeout_s=timeout_s
        ),
    )


async def connect_channel(
    host: str,
    port: int,
    *,
    local: str,
    peer: str,
    authenticator: Authenticator,
    session_id: str,
    timeout_s: float = 30.0,
    tamper: Tamper | None = None,
) -> AuthenticatedChannel:
    """Connect to ``peer`` at ``host:port`` over TCP and open the channel."""
    t: FrameTransport = await TcpTransport.connect(
        host, port, local=local, peer=peer, timeout_s=timeout_s, tag_size=authenticator.tag_size
    )
    return await _open_over(t, local, peer, authenticator, session_id, timeout_s, tamper)


async def accept_channel(
    listener: TcpListener,
    *,
    local: str,
    peer: str,
    authenticator: Authenticator,
    session_id: str,
    timeout_s: float = 30.0,
    tamper: Tamper | None = None,
    accept_timeout_s: float | None = None,
    handshake_timeout_s: float = 10.0,
) -> AuthenticatedChannel:
    """Accept ``peer``'s TCP connection on ``listener`` and open the channel.

    Anyone who can reach the port can connect, so a connection whose handshake fails
    (garbage, a hello failing authentication, another session, closed early, or silent
    for ``handshake_timeout_s``) is logged as a warning naming its address and the
    reason, closed, and listening goes on. Handshakes run concurrently: a silent
    connection cannot hold the port. The first peer whose hello authenticates binds the
    session; the listener then stops accepting. Gives up after ``accept_timeout_s``
    (default ``timeout_s``): with ``AuthenticationError`` if some hello failed
    authentication (e.g. a wrong pre-shared key), else ``ChannelTimeoutError``.
    ``timeout_s`` stays the open channel's wait for each message.
    """
    loop = asyncio.get_running_loop()
    wait_s = timeout_s if accept_timeout_s is None else accept_timeout_s
    deadline = loop.time() + wait_s
    per_handshake = min(handshake_timeout_s, timeout_s)
    accepting: asyncio.Task[TcpTransport] | None = None
    handshakes: set[asyncio.Task[AuthenticatedChannel]] = set()
    failures: list[tuple[str, Exception]] = []
    hello = SharedHello()

    async def handshake(t: TcpTransport) -> AuthenticatedChannel:
        try:
            return await asyncio.wait_for(
                _open_over(t, local, peer, authenticator, session_id, timeout_s, tamper, hello),
                per_handshake,
            )
        except KeyPoolExhaustedError:
            raise  # our own key material ran out: no other connection can succeed
        except (ChannelError, TimeoutError) as exc:
            await t.close()
            why = f"silent for {per_handshake:g} s" if type(exc) is TimeoutError else str(exc)
            log.warning(
                "%s: handshake with %s at %s failed, connection closed, still listening: %s",
                local, peer, t.address, why,
            )  # fmt: skip
            failures.append((t.address, exc))
            raise

    try:
        while (remaining := deadline - loop.time()) > 0:
            if accepting is None:
                accepting = asyncio.create_task(
                    listener.accept(peer=peer, timeout_s=remaining, tag_size=authenticator.tag_size)
                )
            done, _ = await asyncio.wait(
                {accepting, *handshakes}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is accepting:
                    if accepting.exception() is None:
                        handshakes.add(asyncio.create_task(handshake(accepting.result())))
                    accepting = None  # else its own timeout: the deadline check ends the loop
                    continue
                won = next(h for h in handshakes if h is task)
                handshakes.discard(won)
                exc = won.exception()
                if exc is None:
                    listener.stop_accepting()
                    return won.result()
                if isinstance(exc, KeyPoolExhaustedError) or not isinstance(
                    exc, (ChannelError, TimeoutError)
                ):
                    raise exc
    finally:
        await _drop_handshakes(accepting, handshakes)
    host, port = listener.address
    tried = ""
    if failures:
        where, last = failures[-1]
        # its reason alone: the whole message would repeat "local: ... the channel is closed"
        why = last.reason if isinstance(last, AuthenticationError) else str(last)
        tried = (
            f"; {len(failures)} connection(s) failed the handshake, the last from {where}: {why}"
        )
    if any(isinstance(exc, AuthenticationError) and exc.tag_mismatch for _, exc in failures):
        raise AuthenticationError(
            local,
            peer,
            0,
            f"no connection authenticated as {peer} on {host}:{port} within {wait_s:g} s{tried}",
        )
    raise ChannelTimeoutError(
        f"{local}: no connection from {peer} on {host}:{port} within {wait_s:g} s{tried}"
    )


async def _drop_handshakes(
    accepting: asyncio.Task[TcpTransport] | None,
    handshakes: set[asyncio.Task[AuthenticatedChannel]],
) -> None:
    """Cancel what ``accept_channel`` left running and close what it will not use."""
    tasks: list[asyncio.Task[Any]] = [*handshakes, *([accepting] if accepting else [])]
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, (AuthenticatedChannel, TcpTransport)):  # finished alongside
            await result.close()


async def _open_over(
    t: FrameTransport,
    local: str,
    peer: str,
    authenticator: Authenticator,
    session_id: str,
    timeout_s: float,
    tamper: Tamper | None,
    hello: SharedHello | None = None,
) -> AuthenticatedChannel:
    """Open the channel over a fresh TCP transport; close the transport if that fails."""
    if tamper is not None:
        t = TamperingTransport(t, tamper)
    ch = AuthenticatedChannel(
        t,
        local=local,
        peer=peer,
        authenticator=authenticator,
        session_id=session_id,
        timeout_s=timeout_s,
    )
    try:
        await ch.open(hello=hello)
    except BaseException:
        await t.close()
        raise
    return ch
