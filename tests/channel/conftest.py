"""Authenticator pairs for the channel tests: HMAC and Wegman-Carter."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qhil.orchestrator.channel import (
    Authenticator,
    AuthKey,
    HmacSha256Authenticator,
    KeyPool,
    WegmanCarterAuthenticator,
)

# Distinctive key material, so the hygiene tests can search for it anywhere.
HMAC_KEY = bytes.fromhex("5ec7e7" * 10 + "a11ce0b0")
WC_POOL = bytes.fromhex("c0ffee15900d" * 200)

AuthPair = Callable[[], tuple[Authenticator, Authenticator]]


def hmac_pair() -> tuple[Authenticator, Authenticator]:
    return HmacSha256Authenticator(AuthKey(HMAC_KEY)), HmacSha256Authenticator(AuthKey(HMAC_KEY))


def wc_pair() -> tuple[Authenticator, Authenticator]:
    return (
        WegmanCarterAuthenticator(KeyPool(WC_POOL), local="alice", peer="bob"),
        WegmanCarterAuthenticator(KeyPool(WC_POOL), local="bob", peer="alice"),
    )


@pytest.fixture(params=["hmac", "wegman-carter"])
def auth_pair(request: pytest.FixtureRequest) -> AuthPair:
    return hmac_pair if request.param == "hmac" else wc_pair
