"""Message authentication for the classical channel.

Two authenticators, one interface (``name``, ``tag_size``, ``tag``, ``verify``):

* :class:`HmacSha256Authenticator` — HMAC-SHA256 under a reusable pre-shared key.
  Computationally secure; consumes no key material.
* :class:`WegmanCarterAuthenticator` — information-theoretically secure
  Wegman-Carter tags: a polynomial universal hash over GF(2^127 - 1) with a
  secret evaluation point, plus a fresh 16-byte one-time pad per message taken
  from a pre-shared :class:`KeyPool` (the way QKD systems authenticate with key
  from the previous round). ``tag = (poly_r(m) + s) mod 2^128``: the Poly1305
  construction with a Mersenne prime. For messages of at most L 15-byte blocks a
  forgery succeeds with probability <= 2L / (2^127 - 1) per attempt: the integer
  difference of two hashes can hit a given tag difference mod 2^128 in at most two
  ways, each a nonzero polynomial of degree <= L in r.

``direction`` is ``(sender, receiver)``; the data to authenticate already binds
session, direction and sequence number (see ``frames.mac_input``), and the
Wegman-Carter pads are kept per direction so both parties consume them in the
same order whatever the interleaving of the two directions.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

import numpy as np
import numpy.typing as npt

from qhil.orchestrator.channel.errors import KeyPoolExhaustedError
from qhil.orchestrator.channel.keys import AuthKey, KeyPool

Direction = tuple[str, str]

P127 = (1 << 127) - 1
_BLOCK = 15  # bytes per polynomial coefficient: 120 bits + a marker byte < p
_PAD = 16


class Authenticator(Protocol):
    """Computes and checks tags. ``verify`` may consume key material (one-time pads)."""

    @property
    def name(self) -> str: ...

    @property
    def tag_size(self) -> int: ...

    def tag(self, direction: Direction, data: bytes) -> bytes: ...

    def verify(self, direction: Direction, data: bytes, tag: bytes) -> bool: ...


class HmacSha256Authenticator:
    """HMAC-SHA256 over the framed message with a pre-shared :class:`AuthKey`."""

    __slots__ = ("_key",)

    name = "HMAC-SHA256"
    tag_size = 32

    def __init__(self, key: AuthKey) -> None:
        if not isinstance(key, AuthKey):
            raise TypeError("HmacSha256Authenticator: key must be an AuthKey")
        self._key = key

    def tag(self, direction: Direction, data: bytes) -> bytes:
        del direction  # bound inside ``data``
        return hmac.new(self._key.reveal(), data, hashlib.sha256).digest()

    def verify(self, direction: Direction, data: bytes, tag: bytes) -> bool:
        return hmac.compare_digest(self.tag(direction, data), tag)

    def __repr__(self) -> str:
        return f"HmacSha256Authenticator(key={self._key!r})"


def poly1271(data: bytes, r: int, h: int = 0) -> int:
    """``h r^L + sum_i m_i r^(L - i + 1) mod (2^127 - 1)`` over the L 15-byte blocks ``m_i``.

    Each block gets a 0x01 byte appended (as Poly1305 appends a 1 bit), so blocks of
    different lengths differ and the encoding is injective. ``h``: a running hash to
    continue (the transcript's). Horner's rule in CPython costs ~0.05 s per MB; from
    ``_LANES_MIN_BLOCKS`` blocks on, :func:`_poly_lanes` evaluates the same polynomial
    with numpy (a whole run's transcript is tens of MB).
    """
    full = len(data) // _BLOCK
    mv = memoryview(data)
    start = 0
    if full >= _LANES_MIN_BLOCKS:
        h = (h * pow(r, full, P127) + _poly_lanes(mv[: full * _BLOCK], r)) % P127
        start = full * _BLOCK
    for i in range(start, len(data), _BLOCK):
        m = int.from_bytes(bytes(mv[i : i + _BLOCK]) + b"\x01", "little")
        h = ((h + m) * r) % P127
    return h


_LANES = 4096
_LANES_MIN_BLOCKS = 4 * _LANES  # below: Horner in Python is as fast
_M16 = np.uint64(0xFFFF)
_S16 = np.uint64(16)


def _limbs(x: int) -> npt.NDArray[np.uint64]:
    """``x < 2^128`` as 8 little-endian 16-bit limbs."""
    return np.frombuffer(x.to_bytes(16, "little"), dtype="<u2").astype(np.uint64)


def _fold(limbs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Limb columns (n_cols, lanes) of values < 2^64 each -> 8 limbs of a number < 2^128
    congruent mod 2^127 - 1 (2^128 = 2 mod p: what carries past limb 7 comes back doubled)."""
    cols = limbs
    while True:
        out = np.zeros((8, cols.shape[1]), dtype=np.uint64)
        carry = np.zeros(cols.shape[1], dtype=np.uint64)
        for s in range(cols.shape[0]):  # a loop over 16-bit columns, vectorised over lanes
            c = cols[s] + carry
            if s < 8:
                out[s] = c & _M16
            else:  # bit 128 + 16 (s - 8) + b  ==  2^(16 (s - 8) + b + 1) mod p
                out[s - 8] += (c & _M16) << np.uint64(1)
            carry = c >> _S16
        out[cols.shape[0] - 8] += carry << np.uint64(1)  # bit 16 n_cols = 128 + 16 (n_cols - 8)
        if not (out > _M16).any():
            return out
        cols = out


def _times(x: npt.NDArray[np.uint64], y: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Limb columns (15, n) of ``x * y``: x (8, n) limbs, y (8,) limbs of one number.
    Every column sums at most 8 products of 16-bit limbs: < 2^35."""
    prod = x[:, None, :] * y[None, :, None]  # (a, b, lane): limb a of x times limb b of y
    cols = np.zeros((15, x.shape[1]), dtype=np.uint64)
    for a in range(8):
        cols[a : a + 8] += prod[a]
    return cols


def _poly_lanes(blocks: memoryview, r: int) -> int:
    """``sum_i m_i r^(L - i + 1) mod p`` of whole 15-byte blocks, over ``_LANES`` lanes.

    With R = r^k (k lanes) and the blocks laid out row by row (zero blocks in front, which
    add nothing), lane j runs Horner's rule in R down its column, H_j; the result is
    ``sum_j H_j r^(k - j)``, summed by pairing neighbouring lanes (``H_2i r^s + H_2i+1``,
    s = 1, 2, 4, ...) in log2(k) vectorised steps.
    """
    k = _LANES
    n = len(blocks) // _BLOCK
    rows = -(-n // k)
    raw = np.zeros((rows * k, 16), dtype=np.uint8)
    raw[rows * k - n :, :_BLOCK] = np.frombuffer(blocks, dtype=np.uint8).reshape(n, _BLOCK)
    raw[rows * k - n :, _BLOCK] = 1
    coeff = raw.view("<u2").astype(np.uint64).reshape(rows, k, 8)  # (row, lane, limb)
    big_r = _limbs(pow(r, k, P127))
    acc = np.ascontiguousarray(coeff[0].T)
    for t in range(1, rows):  # Horner down the columns: acc = acc * R + row
        cols = _times(acc, big_r)
        cols[:8] += coeff[t].T
        acc = _fold(cols)
    power = r
    while acc.shape[1] > 1:  # lanes (2i, 2i + 1) -> H_2i * r^s + H_2i+1
        cols = _times(acc[:, 0::2], _limbs(power))
        cols[:8] += acc[:, 1::2]
        acc = _fold(cols)
        power = power * power % P127
    value = int.from_bytes(acc[:, 0].astype("<u2").tobytes(), "little")
    return value * r % P127


def split_into_pads(pads: dict[Direction, KeyPool], local: str, peer: str, material: bytes) -> None:
    """Half of ``material`` (whole pads) to each direction's pad pool, the same at both
    parties: the first half to the direction from the alphabetically first name."""
    first, second = sorted((local, peer))
    half = (len(material) // (2 * _PAD)) * _PAD
    pads[(first, second)].extend(material[:half])
    pads[(second, first)].extend(material[half : 2 * half])


def hash_points_and_pads(
    pool: KeyPool, local: str, peer: str
) -> tuple[dict[Direction, int], dict[Direction, KeyPool]]:
    """The two directions' secret hash points (the pool's first 32 bytes) and pad pools
    (the rest, split evenly), emptying ``pool``."""
    first, second = sorted((local, peer))
    keys = pool.take(2 * _PAD)
    if keys is None:
        raise KeyPoolExhaustedError(
            f"{local}: key pool holds {pool.remaining} bytes, needs at least "
            f"{2 * _PAD} for the hash keys"
        )
    r1 = int.from_bytes(keys[:_PAD], "little") % P127
    r2 = int.from_bytes(keys[_PAD:], "little") % P127
    if r1 == 0 or r2 == 0:  # probability 2^-127; a zero point hashes everything to 0
        raise ValueError("Wegman-Carter: degenerate hash key; use fresh material")
    pads: dict[Direction, KeyPool] = {(first, second): KeyPool(), (second, first): KeyPool()}
    split_into_pads(pads, local, peer, pool.take(pool.remaining) or b"")
    return {(first, second): r1, (second, first): r2}, pads


class WegmanCarterAuthenticator:
    """Wegman-Carter tags from a pre-shared pool (see module docstring).

    Construct both parties from identical pools with their own names:
    ``WegmanCarterAuthenticator(KeyPool(shared), local="alice", peer="bob")``.
    The first 32 bytes become the two directions' hash keys; the rest is split
    evenly into the two directions' pad pools. :meth:`replenish` splits fresh
    material the same way (both parties must call it with the same bytes, at the
    same point of the protocol).
    """

    __slots__ = ("_hash_keys", "_local", "_pads", "_peer")

    name = "Wegman-Carter/poly1271"
    tag_size = 16

    def __init__(self, pool: KeyPool, *, local: str, peer: str) -> None:
        if local == peer:
            raise ValueError(f"WegmanCarterAuthenticator: local and peer are both {local!r}")
        self._local, self._peer = local, peer
        self._hash_keys, self._pads = hash_points_and_pads(pool, local, peer)

    def _split_into_pads(self, material: bytes) -> None:
        split_into_pads(self._pads, self._local, self._peer, material)

    def replenish(self, material: bytes) -> None:
        """Add fresh pads: half to each direction (a multiple of 32 bytes is used)."""
        self._split_into_pads(material)

    def pads_left(self, direction: Direction) -> int:
        """Messages that can still be authenticated in ``direction``."""
        return self._pads[direction].remaining // _PAD

    def _compute(self, direction: Direction, data: bytes, *, consume: bool = True) -> bytes:
        if direction not in self._pads:
            raise ValueError(f"WegmanCarterAuthenticator: unknown direction {direction}")
        pool = self._pads[direction]
        pad = pool.take(_PAD) if consume else pool.peek(_PAD)
        if pad is None:
            raise KeyPoolExhaustedError(
                f"{self._local}: Wegman-Carter pads for {direction[0]} -> {direction[1]} are used "
                f"up; replenish the pool with fresh key"
            )
        h = poly1271(data, self._hash_keys[direction])
        return ((h + int.from_bytes(pad, "little")) % (1 << 128)).to_bytes(16, "little")

    def tag(self, direction: Direction, data: bytes) -> bytes:
        return self._compute(direction, data)

    def verify(self, direction: Direction, data: bytes, tag: bytes) -> bool:
        # A pad is spent only by the authentic message it was shared for: a forged or stray
        # frame (e.g. a connection to a listening party before its peer's) would otherwise
        # use it up and make the peer's genuine message fail. Each failed try rules out one
        # tag value for that pad: a forgery still succeeds with probability <= tries * L/2^127.
        ok = hmac.compare_digest(self._compute(direction, data, consume=False), tag)
        if ok:
            self._pads[direction].take(_PAD)
        return ok

    def __repr__(self) -> str:
        left = ", ".join(
            f"{s}->{r}: {p.remaining // _PAD} tags" for (s, r), p in self._pads.items()
        )
        return f"WegmanCarterAuthenticator({self._local} <-> {self._peer}; {left} left)"
