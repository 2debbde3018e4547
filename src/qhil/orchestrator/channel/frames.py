"""Wire layout of one channel message and the bytes its tag covers.

Frame (big-endian)::

    magic "QHC1" | seq u64 | header_len u32 | body_len u64 | header | body | tag

The tag covers ``mac_input``: a domain label, then the session context, sender,
receiver and the receiver's *expected* sequence number, each length-prefixed,
then the frame without its tag. The receiver computes it from what it expects,
not from what the frame claims, so a replayed, reordered, reflected or
cross-session frame fails the tag even if an attacker rewrites its fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"QHC1"
_FIXED = struct.Struct(">4sQIQ")
FIXED_SIZE = _FIXED.size  # 24 bytes
_DOMAIN = b"qhil classical channel v1\x00"


@dataclass(frozen=True)
class ParsedFrame:
    seq: int
    header: bytes
    body: memoryview
    authenticated_part: memoryview
    tag: bytes


def build(seq: int, header: bytes, buffers: list[bytes | memoryview]) -> tuple[bytearray, int]:
    """Frame without tag (as a bytearray to append the tag to) and its body length."""
    body_len = sum(len(b) if isinstance(b, bytes) else b.nbytes for b in buffers)
    out = bytearray(_FIXED.pack(MAGIC, seq, len(header), body_len))
    out += header
    for b in buffers:
        out += b
    return out, body_len


#: Longest tag any authenticator makes (HMAC-SHA512 would be 64 bytes).
MAX_TAG_SIZE = 64


def check_head(head: bytes, frame_len: int, tag_size: int | None) -> str | None:
    """Whether the first FIXED_SIZE bytes of a frame agree with the length its transport
    announced (``tag_size`` None: any tag up to MAX_TAG_SIZE); a string says why not.

    Lets a transport reject a tampered length prefix at once, instead of waiting for
    bytes the prefix promises and the peer never sends.
    """
    if frame_len < FIXED_SIZE:
        return f"frame of {frame_len} bytes is shorter than the minimum {FIXED_SIZE}"
    magic, _, header_len, body_len = _FIXED.unpack_from(head)
    if magic != MAGIC:
        return "bad magic (not a qhil channel frame)"
    tag = frame_len - FIXED_SIZE - header_len - body_len
    if (tag != tag_size) if tag_size is not None else not 0 <= tag <= MAX_TAG_SIZE:
        return (
            f"announced length {frame_len} does not match the frame's own "
            f"(header {header_len} + body {body_len} + tag {tag_size or '<= 64'})"
        )
    return None


def parse(frame: bytes, tag_size: int) -> ParsedFrame | str:
    """Split a frame; a string says why it is malformed (treated as forged)."""
    if len(frame) < FIXED_SIZE + tag_size:
        return f"frame of {len(frame)} bytes is shorter than the minimum {FIXED_SIZE + tag_size}"
    magic, seq, header_len, body_len = _FIXED.unpack_from(frame)
    if magic != MAGIC:
        return "bad magic (not a qhil channel frame)"
    if FIXED_SIZE + header_len + body_len + tag_size != len(frame):
        return (
            f"lengths do not add up (header {header_len} + body {body_len} + tag {tag_size} "
            f"in a {len(frame)}-byte frame)"
        )
    mv = memoryview(frame)
    end = len(frame) - tag_size
    return ParsedFrame(
        seq=seq,
        header=bytes(mv[FIXED_SIZE : FIXED_SIZE + header_len]),
        body=mv[FIXED_SIZE + header_len : end],
        authenticated_part=mv[:end],
        tag=bytes(mv[end:]),
    )


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def mac_input(
    context: bytes, sender: str, receiver: str, seq: int, framed: bytes | bytearray | memoryview
) -> bytes:
    """Bytes the tag authenticates (see module docstring)."""
    prefix = (
        _DOMAIN
        + _lp(context)
        + _lp(sender.encode())
        + _lp(receiver.encode())
        + struct.pack(">Q", seq)
    )
    return prefix + bytes(framed)
