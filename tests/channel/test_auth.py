"""Tag algorithms: HMAC against the standard library, the GF(2^127 - 1) polynomial
hash against direct evaluation, Wegman-Carter pad bookkeeping."""

from __future__ import annotations

import hashlib
import hmac
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qhil.orchestrator.channel import (
    AuthKey,
    HmacSha256Authenticator,
    KeyPool,
    KeyPoolExhaustedError,
    WegmanCarterAuthenticator,
    poly1271,
)
from qhil.orchestrator.channel.auth import P127

AB = ("alice", "bob")
BA = ("bob", "alice")


def test_hmac_matches_stdlib_and_rejects_any_change() -> None:
    key = AuthKey(bytes(range(32)))
    auth = HmacSha256Authenticator(key)
    data = b"message bytes"
    tag = auth.tag(AB, data)
    assert tag == hmac.new(bytes(range(32)), data, hashlib.sha256).digest()
    assert auth.verify(AB, data, tag)
    assert not auth.verify(AB, data + b"!", tag)
    assert not auth.verify(AB, data, bytes([tag[0] ^ 1]) + tag[1:])
    assert not HmacSha256Authenticator(AuthKey(bytes(32))).verify(AB, data, tag)


def reference_poly(data: bytes, r: int) -> int:
    blocks = [int.from_bytes(data[i : i + 15] + b"\x01", "little") for i in range(0, len(data), 15)]
    n = len(blocks)
    return sum(m * pow(r, n - i, P127) for i, m in enumerate(blocks)) % P127


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200), r=st.integers(1, P127 - 1))
def test_poly1271_equals_direct_polynomial(data: bytes, r: int) -> None:
    assert poly1271(data, r) == reference_poly(data, r)


def test_poly1271_distinguishes_length_and_trailing_zeros() -> None:
    r = 0x1234567890ABCDEF1234567890ABCDEF % P127
    seen = {poly1271(b"\x00" * n, r) for n in range(0, 64)}
    assert len(seen) == 64  # every length of zero bytes hashes differently


def wc_pair(pool: bytes) -> tuple[WegmanCarterAuthenticator, WegmanCarterAuthenticator]:
    return (
        WegmanCarterAuthenticator(KeyPool(pool), local="alice", peer="bob"),
        WegmanCarterAuthenticator(KeyPool(pool), local="bob", peer="alice"),
    )


def test_wegman_carter_pads_stay_in_step_whatever_the_interleaving() -> None:
    pool = bytes(range(256)) * 8
    a, b = wc_pair(pool)
    # Alice tags 3 messages to Bob while Bob tags 2 to Alice; the receivers verify
    # in the opposite interleaving.
    a_tags = [a.tag(AB, f"a{i}".encode()) for i in range(3)]
    b_tags = [b.tag(BA, f"b{i}".encode()) for i in range(2)]
    assert all(a.verify(BA, f"b{i}".encode(), t) for i, t in enumerate(b_tags))
    assert all(b.verify(AB, f"a{i}".encode(), t) for i, t in enumerate(a_tags))
    # Same message, fresh pad: a different tag each time (one-time pads).
    assert a.tag(AB, b"same") != a.tag(AB, b"same")


def test_wegman_carter_rejects_modified_message_and_wrong_pool() -> None:
    pool = bytes(range(256)) * 4
    a, b = wc_pair(pool)
    t = a.tag(AB, b"hello")
    assert not b.verify(AB, b"hellp", t)
    a2, _ = wc_pair(pool)
    _, b_other = wc_pair(bytes(reversed(pool)))
    assert not b_other.verify(AB, b"hello", a2.tag(AB, b"hello"))


def test_wegman_carter_exhaustion_and_replenish() -> None:
    pool = bytes(range(1, 97))  # 32 bytes of hash keys + 64 bytes: 2 pads per direction
    a, b = wc_pair(pool)
    assert a.pads_left(AB) == 2 and a.pads_left(BA) == 2
    for i in range(2):
        assert b.verify(AB, b"m", a.tag(AB, b"m")), i
    with pytest.raises(KeyPoolExhaustedError, match="alice -> bob are used up"):
        a.tag(AB, b"m")
    fresh = bytes(range(100, 164))
    a.replenish(fresh)
    b.replenish(fresh)
    assert a.pads_left(AB) == 2
    assert b.verify(AB, b"m", a.tag(AB, b"m"))


def test_wegman_carter_needs_hash_keys() -> None:
    with pytest.raises(KeyPoolExhaustedError, match="needs at least 32"):
        WegmanCarterAuthenticator(KeyPool(b"x" * 20), local="alice", peer="bob")
    with pytest.raises(ValueError, match="both 'alice'"):
        WegmanCarterAuthenticator(KeyPool(b"x" * 64), local="alice", peer="alice")


def test_keys_refuse_short_material_and_pickling() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        AuthKey(b"short")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(AuthKey.generate())
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(KeyPool(b"abc"))
    assert AuthKey(b"k" * 16) == AuthKey(b"k" * 16) != AuthKey(b"j" * 16)
    assert AuthKey.from_hex("00" * 16) == AuthKey(bytes(16))


def test_key_pool_take_consumes_from_the_front() -> None:
    p = KeyPool(b"abcdef")
    assert p.take(2) == b"ab"
    assert p.take(5) is None
    assert p.take(4) == b"cdef"
    assert (p.remaining, p.consumed) == (0, 6)


def test_wegman_carter_a_forged_tag_spends_no_pad() -> None:
    """A stray or forged frame must not use up the pad of the genuine message after it
    (a stray connection to a listening party made the real peer's hello fail)."""
    pool = bytes(range(1, 97))  # 2 pads per direction
    a, b = wc_pair(pool)
    genuine = a.tag(AB, b"hello")
    assert not b.verify(AB, b"hello", bytes(16))  # forged
    assert not b.verify(AB, b"other", genuine)  # a tag moved onto another message
    assert b.pads_left(AB) == 2
    assert b.verify(AB, b"hello", genuine)
    assert b.pads_left(AB) == 1
    assert b.verify(AB, b"m", a.tag(AB, b"m"))  # the next pad is in step on both sides


def test_key_pool_peek_consumes_nothing() -> None:
    p = KeyPool(b"abc")
    assert p.peek(2) == b"ab"
    assert p.peek(4) is None
    assert (p.remaining, p.consumed) == (3, 0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        p.peek(-1)
