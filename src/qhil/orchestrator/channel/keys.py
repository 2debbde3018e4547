"""Pre-shared secrets of the classical channel, with leak-proof reprs.

``AuthKey`` is a reusable key (HMAC-SHA256). ``KeyPool`` is one-time key
material consumed front to back (the one-time pads of Wegman-Carter tags); a QKD
run replenishes it from fresh key. Neither object ever shows its bytes in
``repr``/``str``, and neither can be pickled (so a key cannot slip into a run
record or a log through a generic serialiser). Use :meth:`reveal` /
:meth:`take` where the bytes are needed.
"""

from __future__ import annotations

import hmac
import secrets
from typing import NoReturn

MIN_KEY_BYTES = 16


class AuthKey:
    """A pre-shared authentication key (at least 16 bytes; 32 recommended)."""

    __slots__ = ("__secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError(f"AuthKey: expected bytes, got {type(secret).__name__}")
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError(
                f"AuthKey: a key needs at least {MIN_KEY_BYTES} bytes (got {len(secret)})"
            )
        self.__secret = bytes(secret)

    @classmethod
    def generate(cls, n_bytes: int = 32) -> AuthKey:
        return cls(secrets.token_bytes(n_bytes))

    @classmethod
    def from_hex(cls, text: str) -> AuthKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise ValueError("AuthKey.from_hex: not a hexadecimal string") from None

    def reveal(self) -> bytes:
        """The key bytes (for the MAC and for provisioning the peer)."""
        return self.__secret

    def __len__(self) -> int:
        return len(self.__secret)

    def __repr__(self) -> str:
        return f"AuthKey(<{len(self.__secret)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuthKey):
            return NotImplemented
        return hmac.compare_digest(self.__secret, other.__secret)

    def __hash__(self) -> int:
        return hash(("AuthKey", len(self.__secret)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("AuthKey cannot be pickled: key material stays in memory")


class KeyPool:
    """One-time key material, consumed from the front; ``extend`` appends more."""

    __slots__ = ("__buffer", "__consumed")

    def __init__(self, material: bytes = b"") -> None:
        if not isinstance(material, bytes | bytearray):
            raise TypeError(f"KeyPool: expected bytes, got {type(material).__name__}")
        self.__buffer = bytearray(material)
        self.__consumed = 0

    @property
    def remaining(self) -> int:
        """Bytes still available."""
        return len(self.__buffer)

    @property
    def consumed(self) -> int:
        """Bytes taken so far."""
        return self.__consumed

    def take(self, n: int) -> bytes | None:
        """Remove and return the next ``n`` bytes, or ``None`` if fewer remain."""
        if n < 0:
            raise ValueError(f"KeyPool.take: n must be >= 0 (got {n})")
        if n > len(self.__buffer):
            return None
        out = bytes(self.__buffer[:n])
        # Overwrite before dropping so the consumed pad does not linger in this buffer.
        self.__buffer[:n] = bytes(n)
        del self.__buffer[:n]
        self.__consumed += n
        return out

    def peek(self, n: int) -> bytes | None:
        """The next ``n`` bytes without consuming them, or ``None`` if fewer remain."""
        if n < 0:
            raise ValueError(f"KeyPool.peek: n must be >= 0 (got {n})")
        return bytes(self.__buffer[:n]) if n <= len(self.__buffer) else None

    def extend(self, material: bytes) -> None:
        """Append fresh material (both parties must append the same bytes)."""
        if not isinstance(material, bytes | bytearray):
            raise TypeError(f"KeyPool.extend: expected bytes, got {type(material).__name__}")
        self.__buffer.extend(material)

    def __repr__(self) -> str:
        return f"KeyPool(<{len(self.__buffer)} bytes left, {self.__consumed} used>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeyPool cannot be pickled: key material stays in memory")
