"""Key material never shows up in reprs, strs, exception messages or logs."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence

import pytest

from qhil.orchestrator.channel import (
    AuthenticationError,
    AuthKey,
    ChannelError,
    HmacSha256Authenticator,
    KeyPool,
    WegmanCarterAuthenticator,
    flip_byte,
    in_process_channels,
)

from .conftest import HMAC_KEY, WC_POOL, AuthPair

SECRET_PAYLOAD = b"\x13\x37sifted-key-bits\x13\x37"


def leaks(text: str) -> list[str]:
    """Forms in which a key (or a chunk of the pool, or the payload) could appear in text."""
    found = []
    for name, secret in (
        ("hmac key", HMAC_KEY),
        ("wc pool", WC_POOL[:48]),
        ("payload", SECRET_PAYLOAD),
    ):
        for chunk in (secret[:8], secret[16:24]):
            forms = {
                chunk.hex(),
                chunk.hex().upper(),
                repr(chunk)[2:-1],
                base64.b64encode(chunk).decode()[:8],
                chunk.decode("latin-1"),
                " ".join(str(b) for b in chunk[:6]),
                ", ".join(str(b) for b in chunk[:6]),
            }
            found += [f"{name}: {f!r}" for f in forms if f and f in text]
    return found


def test_the_leak_detector_detects() -> None:
    assert leaks(f"key={HMAC_KEY.hex()}")
    assert leaks(repr(WC_POOL[:40]))
    assert leaks(str(list(HMAC_KEY)))
    assert leaks(f"payload {SECRET_PAYLOAD!r}")
    assert not leaks("AuthKey(<34 bytes>) alice -> bob #3 'sift' (120 bytes)")


def test_reprs_and_strs_show_no_key_material() -> None:
    key = AuthKey(HMAC_KEY)
    pool = KeyPool(WC_POOL)
    objs = [
        key,
        pool,
        HmacSha256Authenticator(key),
        WegmanCarterAuthenticator(KeyPool(WC_POOL), local="alice", peer="bob"),
        *in_process_channels(HmacSha256Authenticator(key), HmacSha256Authenticator(key)),
    ]
    for obj in objs:
        for text in (repr(obj), str(obj), f"{obj}", format(obj)):
            assert not leaks(text), (type(obj).__name__, text)
    assert repr(key) == "AuthKey(<34 bytes>)"
    assert "vars" not in dir(key) and not hasattr(key, "__dict__")


async def test_logs_and_errors_of_a_whole_session_show_no_secrets(
    auth_pair: AuthPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    count = {"n": 0}
    flip = flip_byte(-3)

    def tamper_third(frame: bytes) -> Sequence[bytes]:
        count["n"] += 1
        return flip(frame) if count["n"] == 3 else [frame]

    a_auth, b_auth = auth_pair()
    a, b = in_process_channels(a_auth, b_auth, tamper_a_to_b=tamper_third, timeout_s=0.1)
    await asyncio.gather(a.open(), b.open())
    await a.send("sift", {"bits": SECRET_PAYLOAD})
    await b.recv("sift")
    await a.send("sift", {"bits": SECRET_PAYLOAD})
    errors: list[BaseException] = []
    with pytest.raises(AuthenticationError) as info:
        await b.recv("sift")
    errors.append(info.value)
    for coro in (b.send("x", {}), a.recv("never", timeout_s=0.01)):
        try:
            await coro
        except ChannelError as exc:
            errors.append(exc)
    assert len(errors) == 3
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "authentication failure" in logged  # the failure itself is logged
    assert not leaks(logged), leaks(logged)
    for exc in errors:
        assert not leaks(str(exc)) and not leaks(repr(exc)), exc
    assert not leaks(repr(a)) and not leaks(repr(b))
