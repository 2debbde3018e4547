"""Wegman-Carter authentication of the transcript: one pad per checkpoint, not per message.

Each direction keeps a running polynomial hash (poly1271 over GF(2^127 - 1) at that
direction's secret point ``r``) fed with every frame's ``mac_input`` as it is sent or
received, so no transcript is stored. Only *checkpoint* frames carry a tag: ``(h + s)
mod 2^128`` with ``h`` the hash of everything sent in that direction since the last
checkpoint (the checkpoint frame included) and ``s`` a fresh 16-byte pad; the hash then
restarts. Frames in between carry no tag and are acted on unverified: whatever they
reveal is counted as leaked anyway (sifting, Cascade parities), and any change to them
(flip, forgery, replay, drop, reorder; session, direction and sequence number are in each
``mac_input`` with the receiver's *expected* values) fails the next checkpoint.

The tag field is ``flag (1 byte) | tag (16 bytes)``: flag 1 = checkpoint, 0 = deferred
(zero tag). The flag is not authenticated by itself; stripping it leaves the receiver's
hash running where the sender's restarted, so the next checkpoint fails, and a kind that
must be a checkpoint (``checkpoint_kinds``, e.g. key confirmation) arriving deferred is
refused by the channel at once.

Forgery: a checkpoint covering L 15-byte blocks (each message is length-prefixed and
padded to whole blocks, an injective, prefix-free encoding) is forged with probability
<= 2L/(2^127 - 1) (the argument of ``auth.WegmanCarterAuthenticator``). Checkpoints come
at least every ``every_messages`` messages or ``every_bytes`` bytes in a direction, so L
stays below ``every_bytes / 15 + 2 * every_messages`` blocks: 1.8e7 by default (256 MiB,
65536 messages), a forgery probability below 2.2e-31 per checkpoint; a failed tag
closes the channel, so an attacker gets one try per run. References: Wegman & Carter 1981; Fung, Ma,
Chau 2010 "Practical issues in quantum-key-distribution postprocessing" (authenticate the
transcript once, after the fact: "delayed authentication"); Pacher et al. 2016
"Attacks on quantum key distribution protocols that employ non-ITS authentication".
"""

from __future__ import annotations

import hmac
import struct
from typing import Literal

from qhil.orchestrator.channel.auth import _BLOCK, _PAD, Direction, hash_points_and_pads, poly1271
from qhil.orchestrator.channel.errors import KeyPoolExhaustedError
from qhil.orchestrator.channel.keys import KeyPool

Verdict = Literal["verified", "deferred", "failed"]

CHECKPOINT = 1
DEFERRED = 0
#: Default bound on what one checkpoint covers (see the module docstring).
EVERY_MESSAGES = 1 << 16
EVERY_BYTES = 256 << 20


class _RunningHash:
    """Horner's rule over 15-byte blocks, fed one length-prefixed message at a time."""

    __slots__ = ("blocks", "bytes", "h", "messages", "r")

    def __init__(self, r: int) -> None:
        self.r = r
        self.h = 0
        self.blocks = self.bytes = self.messages = 0

    def absorb(self, data: bytes) -> None:
        seg = struct.pack(">Q", len(data)) + data
        seg += bytes(-len(seg) % _BLOCK)  # whole blocks: the length prefix keeps it injective
        self.h = poly1271(seg, self.r, self.h)
        self.blocks += len(seg) // _BLOCK
        self.bytes += len(data)
        self.messages += 1

    def reset(self) -> None:
        self.h = 0
        self.blocks = self.bytes = self.messages = 0


class TranscriptAuthenticator:
    """Wegman-Carter over each direction's transcript, tagged at checkpoints only.

    Build both parties from identical pools: ``TranscriptAuthenticator(KeyPool(shared),
    local="alice", peer="bob", checkpoint_kinds={...})``. The first 32 bytes are the two
    directions' hash points, the rest is split evenly into their pad pools (as for
    :class:`~qhil.orchestrator.channel.auth.WegmanCarterAuthenticator`). ``pad_bits_used``
    counts the pads spent; ``staged`` holds key material set aside for the next run's pool
    (``stage_replenishment``), ``replenish_bytes`` how much to set aside per key.
    """

    __slots__ = (
        "_hashes",
        "_local",
        "_pads",
        "_peer",
        "checkpoint_kinds",
        "checkpoints",
        "every_bytes",
        "every_messages",
        "replenish_bytes",
        "staged",
    )

    name = "Wegman-Carter/poly1271-transcript"
    tag_size = 1 + _PAD

    def __init__(
        self,
        pool: KeyPool,
        *,
        local: str,
        peer: str,
        checkpoint_kinds: frozenset[str] | set[str] = frozenset(),
        every_messages: int = EVERY_MESSAGES,
        every_bytes: int = EVERY_BYTES,
        replenish_bytes: int = 0,
    ) -> None:
        if local == peer:
            raise ValueError(f"TranscriptAuthenticator: local and peer are both {local!r}")
        if every_messages < 1 or every_bytes < 1:
            raise ValueError("TranscriptAuthenticator: every_messages and every_bytes must be >= 1")
        self._local, self._peer = local, peer
        points, self._pads = hash_points_and_pads(pool, local, peer)
        self._hashes = {d: _RunningHash(r) for d, r in points.items()}
        self.checkpoint_kinds = frozenset(checkpoint_kinds)
        self.every_messages = every_messages
        self.every_bytes = every_bytes
        self.replenish_bytes = replenish_bytes
        self.staged = b""
        self.checkpoints = 0

    # ------------------------------------------------------------- policy
    def checkpoint_due(self, direction: Direction, kind: str, size: int) -> bool:
        """Whether the next frame sent in ``direction`` (of ``kind``, ``size`` bytes) carries a tag."""
        h = self._hashes[direction]
        return (
            kind in self.checkpoint_kinds
            or h.messages + 1 >= self.every_messages
            or h.bytes + size >= self.every_bytes
        )

    @property
    def pad_bits_used(self) -> int:
        """Bits of one-time pad spent so far (16 bytes per checkpoint, both directions)."""
        return 8 * sum(p.consumed for p in self._pads.values())

    def pads_left(self, direction: Direction) -> int:
        return self._pads[direction].remaining // _PAD

    def pending_messages(self, direction: Direction) -> int:
        """Messages in ``direction`` not yet covered by a checkpoint."""
        return self._hashes[direction].messages

    # ------------------------------------------------------------ tagging
    def _tag(self, direction: Direction, *, consume: bool) -> bytes:
        pool = self._pads[direction]
        pad = pool.take(_PAD) if consume else pool.peek(_PAD)
        if pad is None:
            raise KeyPoolExhaustedError(
                f"{self._local}: Wegman-Carter pads for {direction[0]} -> {direction[1]} are used "
                f"up; replenish the pool with fresh key"
            )
        h = self._hashes[direction].h
        return ((h + int.from_bytes(pad, "little")) % (1 << 128)).to_bytes(_PAD, "little")

    def seal(self, direction: Direction, data: bytes, *, checkpoint: bool) -> bytes:
        """Absorb an outgoing frame's ``mac_input``; its tag field (flag + tag)."""
        if checkpoint:  # the pad must exist before anything changes
            self._pads_or_raise(direction)
        h = self._hashes[direction]
        h.absorb(data)
        if not checkpoint:
            return bytes([DEFERRED]) + bytes(_PAD)
        tag = self._tag(direction, consume=True)
        h.reset()
        self.checkpoints += 1
        return bytes([CHECKPOINT]) + tag

    def _pads_or_raise(self, direction: Direction) -> None:
        if self._pads[direction].remaining < _PAD:
            self._tag(direction, consume=False)  # raises KeyPoolExhaustedError

    def check(
        self, direction: Direction, data: bytes, field: bytes, *, checkpoint: bool = False
    ) -> Verdict:
        """Absorb an incoming frame's ``mac_input`` and check a checkpoint's tag.

        A failed checkpoint spends no pad (a stray frame cannot use up the genuine one's)
        and leaves the hash as it was. ``checkpoint``: the frame must be one (a hello: a
        stray connection's untagged hello must not enter the hash the real peer's is
        checked against).
        """
        if len(field) != self.tag_size or field[0] not in (CHECKPOINT, DEFERRED):
            return "failed"
        if checkpoint and field[0] != CHECKPOINT:
            return "failed"
        h = self._hashes[direction]
        if field[0] == DEFERRED:
            if field[1:] != bytes(_PAD):
                return "failed"
            h.absorb(data)
            return "deferred"
        saved = (h.h, h.blocks, h.bytes, h.messages)
        h.absorb(data)
        if hmac.compare_digest(self._tag(direction, consume=False), field[1:]):
            self._pads[direction].take(_PAD)
            h.reset()
            self.checkpoints += 1
            return "verified"
        h.h, h.blocks, h.bytes, h.messages = saved
        return "failed"

    # The Authenticator interface (every message a checkpoint), for code that tags directly.
    def tag(self, direction: Direction, data: bytes) -> bytes:
        return self.seal(direction, data, checkpoint=True)

    def verify(self, direction: Direction, data: bytes, tag: bytes) -> bool:
        return self.check(direction, data, tag) == "verified"

    # ------------------------------------------------------- replenishment
    def stage_replenishment(self, material: bytes) -> None:
        """Key material set aside (by both parties, identically) for the next run's pool."""
        self.staged += bytes(material)

    def take_staged(self) -> bytes:
        out, self.staged = self.staged, b""
        return out

    def __repr__(self) -> str:
        left = ", ".join(
            f"{s}->{r}: {p.remaining // _PAD} tags" for (s, r), p in self._pads.items()
        )
        return f"TranscriptAuthenticator({self._local} <-> {self._peer}; {left} left)"
