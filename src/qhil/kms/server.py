"""The KME over HTTPS with mutual TLS: Starlette routes served by uvicorn.

The caller's identity is the common name of its client certificate, verified against the
CA. Uvicorn does not pass the peer certificate to the application, so the protocol class
below reads it once per connection (after the TLS handshake) and adds it to each request's
ASGI scope as the ``tls`` extension (``client_cert_name``).

No certificate: 401 with the standard's error body. A certificate the CA did not sign (or
an expired one): the TLS handshake itself fails, before any HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from qhil.kms.config import KmsConfig
from qhil.kms.kme import PEER_PREFIX, Kme, KmeError, PeerError

log = logging.getLogger(__name__)

API = "/api/v1/keys"
PEER_TIMEOUT_S = 10.0


def _cert_name(transport: asyncio.Transport) -> str | None:
    ssl_object = transport.get_extra_info("ssl_object")
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                return str(value)
    return None


class _TlsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding the verified client certificate's CN to the scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        raw = transport.get_extra_info("socket")
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only on sockets created with proto=IPPROTO_TCP,
            # which socket.create_server's are not: Nagle then held each response's second
            # write for the client's delayed ACK, 40 ms a request
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        name = _cert_name(transport)
        app = self.app

        async def with_tls(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})["tls"] = {"client_cert_name": name}
            await app(scope, receive, send)

        self.app = with_tls

    def shutdown(self) -> None:
        """An idle keep-alive connection is aborted, not closed: a TLS close waits (30 s)
        for the client's close_notify, which an idle pooled client (the peer KME's) never
        sends. A request in progress still finishes first."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()


def _caller(request: Request) -> str | None:
    tls = request.scope.get("extensions", {}).get("tls", {})
    name = tls.get("client_cert_name")
    return str(name) if name is not None else None


def _error(exc: KmeError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise KmeError(400, "request body is not JSON") from None
    if not isinstance(body, dict):
        raise KmeError(400, "request body is not a JSON object")
    return body


def _int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise KmeError(400, f"{name} must be an integer (got {text!r})", [{name: text}]) from None


Handler = Callable[[Request], Awaitable[dict[str, Any]]]


def _route(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await handler(request))
        except KmeError as exc:
            return _error(exc)
        except (KeyError, TypeError, ValueError) as exc:
            return _error(KmeError(400, f"malformed request: {type(exc).__name__}: {exc}"))
        except Exception as exc:  # the standard's 503 body, not Starlette's plain-text 500
            log.exception("KME error on %s %s", request.method, request.url.path)
            return _error(KmeError(503, f"error on the KME's side: {type(exc).__name__}"))

    return endpoint


def build_app(kme: Kme) -> Starlette:
    """The ETSI GS QKD 014 routes and the KME-to-KME routes of one KME."""

    async def status(request: Request) -> dict[str, Any]:
        return kme.status(_caller(request), request.path_params["sae"])

    async def enc_keys(request: Request) -> dict[str, Any]:
        if request.method == "GET":
            body = {k: v for k in ("number", "size") if (v := _int_param(request, k)) is not None}
        else:
            kme.check_sae(_caller(request))
            body = await _json_body(request)
        return await kme.enc_keys(_caller(request), request.path_params["sae"], body)

    async def dec_keys(request: Request) -> dict[str, Any]:
        caller = kme.check_sae(_caller(request))
        if request.method == "GET":
            key_ids = request.query_params.getlist("key_ID")
        else:
            body = await _json_body(request)
            items = body.get("key_IDs")
            if not isinstance(items, list) or not all(
                isinstance(i, dict) and "key_ID" in i for i in items
            ):
                raise KmeError(400, 'key_IDs must be a list of {"key_ID": ...} objects')
            key_ids = [str(i["key_ID"]) for i in items]
        return kme.dec_keys(caller, request.path_params["sae"], key_ids)

    def peer_only(handler: Handler) -> Handler:
        async def checked(request: Request) -> dict[str, Any]:
            kme.check_peer(_caller(request))
            return await handler(request)

        return checked

    async def inventory(request: Request) -> dict[str, Any]:
        return kme.inventory()

    async def store(request: Request) -> dict[str, Any]:
        return await kme.store(await _json_body(request))

    async def allocate(request: Request) -> dict[str, Any]:
        return await kme.allocate(await _json_body(request))

    async def void(request: Request) -> dict[str, Any]:
        return kme.void(await _json_body(request))

    routes = [
        Route(f"{API}/{{sae}}/status", _route(status), methods=["GET"]),
        Route(f"{API}/{{sae}}/enc_keys", _route(enc_keys), methods=["GET", "POST"]),
        Route(f"{API}/{{sae}}/dec_keys", _route(dec_keys), methods=["GET", "POST"]),
        Route(f"{PEER_PREFIX}/inventory", _route(peer_only(inventory)), methods=["GET"]),
        Route(f"{PEER_PREFIX}/store", _route(peer_only(store)), methods=["POST"]),
        Route(f"{PEER_PREFIX}/allocate", _route(peer_only(allocate)), methods=["POST"]),
        Route(f"{PEER_PREFIX}/void", _route(peer_only(void)), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def client_ssl_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """TLS client context: trusts only the CA, presents ``cert``."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def peer_caller(config: KmsConfig, node: str, peer_url: Callable[[], str]) -> Any:
    """``call(method, path, body)`` to the other KME over mutual TLS with our KME certificate."""
    entry = config.node(node)
    context = client_ssl_context(config.ca, entry.cert, entry.key)
    client: httpx.AsyncClient | None = None

    async def call(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        nonlocal client
        if client is None:
            # keep-alive: a TLS handshake per call cost ~20 ms; a stopping peer aborts the
            # idle connection (see _TlsH11Protocol.shutdown) and httpx then opens a new one
            client = httpx.AsyncClient(verify=context, timeout=PEER_TIMEOUT_S)
        url = peer_url().rstrip("/") + PEER_PREFIX + path
        try:
            response = await client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise PeerError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200:
            body = answer if isinstance(answer, dict) else {}
            message = str(body.get("message", response.reason_phrase))
            details = body.get("details")
            raise PeerError(
                f"{method} {url}: {response.status_code} {message}",
                response.status_code,
                message,
                details if isinstance(details, list) else None,
            )
        return answer if isinstance(answer, dict) else {}

    return call


class KmeServer:
    """A KME served over HTTPS with mutual TLS. ``bind`` opens the listening socket first
    (an address in use is an ``OSError`` naming it, before uvicorn starts)."""

    def __init__(self, kme: Kme, host: str, port: int) -> None:
        entry = kme.entry
        self.kme = kme
        self.host, self._port = host, port
        self._socket: socket.socket | None = None
        config = uvicorn.Config(
            build_app(kme),
            ssl_certfile=str(entry.cert),
            ssl_keyfile=str(entry.key),
            ssl_ca_certs=str(kme.config.ca),
            # OPTIONAL, not REQUIRED: a caller with no certificate gets the standard's 401
            # body; a certificate that does not verify still fails the handshake
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            http=_TlsH11Protocol,
            lifespan="off",
            access_log=False,  # keys are never logged; neither is who asked for what
            log_level="warning",
            timeout_graceful_shutdown=2,  # an SAE's idle keep-alive connection: not forever
        )
        self.server = uvicorn.Server(config)

    def bind(self) -> None:
        if self._socket is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self._socket = socket.create_server((self.host, self._port), family=family)

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    @property
    def port(self) -> int:
        self.bind()
        assert self._socket is not None
        return int(self._socket.getsockname()[1])

    async def serve(self) -> None:
        self.bind()
        assert self._socket is not None
        await self.kme.recover()
        await self.server.serve(sockets=[self._socket])

    def stop(self) -> None:
        self.server.should_exit = True


def resolve_url(spec: str) -> Callable[[], str]:
    """A URL, or ``@FILE`` holding one (re-read at each call: a restarted KME may move)."""
    if not spec.startswith("@"):
        return lambda: spec
    path = Path(spec[1:])

    def read() -> str:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise PeerError(f"peer address file {path}: {exc.strerror or exc}") from None

    return read
