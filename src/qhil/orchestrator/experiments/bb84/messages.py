"""The classical messages of the BB84 protocol, typed.

Every message is a frozen dataclass whose fields declare their wire kind;
:func:`to_payload` / :func:`from_payload` map them to the authenticated channel's
``(kind, payload)`` (kind ``"bb84.<ClassName>"``; the channel's codec carries
ints, floats, bytes and numpy arrays without pickle) and back. Rebuilding checks
every field (presence, type, dtype, bit padding, protocol version) and raises
:class:`ProtocolViolation` naming the message and field. Bit strings travel
packed (``numpy.packbits``) with their count.

Message flow (A = Alice, B = Bob), per block then once per run. Every block message
names its block; the blocks are pipelined (protocol version 6): block ``b``'s
announcement, sifting and tally happen while block ``b + 1`` is acquired, so for
``b >= 1`` the order is fixed as::

    A->B Hello            protocol version + SHA-256 of the settings
    A->B BlockLive(0)     pattern uploaded, output on
    B->A BlockAcquired(0) tags recorded
    A->B AlignmentReveal(0)  revealed positions with basis and bit (after B acquired)
    A->B BlockLive(1)     the next pattern (Bob processes block 0 meanwhile)
      -- while block b >= 1 is acquired:
    B->A Announcement(b-1)   detected positions and bases (or BlockDiscarded(b-1))
    A->B SiftReplyMsg(b-1)   basis match, intensity of each, Alice's test-basis bits
    B->A BlockTally(b-1)     test-basis errors per intensity; whether Bob re-compensates
      -- then:
    B->A BlockAcquired(b)
    A->B AlignmentReveal(b)
    (B<->A polcal.*       only if BlockTally(b-1) asked: the polarization re-compensation)
    A->B BlockLive(b+1)   unless b is the last block, whose Announcement, SiftReplyMsg and
                          BlockTally (and re-compensation) follow here
    A->B CascadeStart     Cascade setup (shuffle seed drawn by Alice)
    B->A ParityQueryMsg / A->B ParityReplyMsg ...   until B sends CascadeDone
    A->B VerificationMsg  multiply-add-shift seed + tag
    B->A VerificationOutcome  match, key-basis errors per intensity
    A->B Amplification    final length + hash family + its seed (both store the key PENDING)
    B->A KeyConfirm       Bob's confirmation tag of his final key
    A->B KeyConfirm       Alice's tag (sent only if Bob's matched hers)
    B->A KeyCommitted     Bob matched Alice's tag and committed his key
    A->B Finished         Alice committed (or, Bob's ack lost, presumed it): Bob may close
    either way: Abort (reason, detail)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.orchestrator.experiments.bb84.errors import ProtocolViolation

# 2: key confirmation and commit after amplification; 3: Cascade queries mix passes;
# 4: BlockTally says whether a polarization re-compensation follows (drift tracking);
# 5: Amplification names its hash family (multiply-add-shift; its seed is a then b);
# verification and confirmation tags are multiply-add-shift too (seeds of 2(n + t - 1) bits);
# 6: the blocks are pipelined (block b's Announcement, SiftReplyMsg and BlockTally come while
# block b + 1 is acquired, before its BlockAcquired; a re-compensation after the next reveal)
VERSION = 6

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class Message:
    """Base of every message."""


@dataclass(frozen=True, eq=False)
class Hello(Message):
    version: int = field(metadata={"wire": "u64"})
    settings_digest: bytes = field(metadata={"wire": "bytes"})


@dataclass(frozen=True, eq=False)
class BlockLive(Message):
    block: int = field(metadata={"wire": "u64"})
    n_symbols: int = field(metadata={"wire": "u64"})
    symbol_rate_hz: float = field(metadata={"wire": "f64"})


@dataclass(frozen=True, eq=False)
class BlockAcquired(Message):
    block: int = field(metadata={"wire": "u64"})
    n_tags: int = field(metadata={"wire": "u64"})
    lost: int = field(metadata={"wire": "u64"})


@dataclass(frozen=True, eq=False)
class AlignmentReveal(Message):
    """Pattern positions (sorted) whose basis and bit Alice discloses for alignment."""

    block: int = field(metadata={"wire": "u64"})
    positions: I64 = field(metadata={"wire": "i64[]"})
    bases: U8 = field(metadata={"wire": "bits"})
    bits: U8 = field(metadata={"wire": "bits"})


@dataclass(frozen=True, eq=False)
class BlockDiscarded(Message):
    block: int = field(metadata={"wire": "u64"})
    detail: str = field(metadata={"wire": "str"})


@dataclass(frozen=True, eq=False)
class Announcement(Message):
    """Bob's counting window (``window_pulses`` consecutive positions from
    ``window_start``, wrapping), the detected positions in it (strictly increasing)
    and his basis for each."""

    block: int = field(metadata={"wire": "u64"})
    window_start: int = field(metadata={"wire": "u64"})
    window_pulses: int = field(metadata={"wire": "u64"})
    positions: I64 = field(metadata={"wire": "i64[]"})
    bases: U8 = field(metadata={"wire": "bits"})


@dataclass(frozen=True, eq=False)
class SiftReplyMsg(Message):
    """Per announced position: basis match and intensity index; Alice's bits of the
    matched test-basis (X) positions, in announcement order; and how many unrevealed
    pulses of the block carried each intensity."""

    block: int = field(metadata={"wire": "u64"})
    match: U8 = field(metadata={"wire": "bits"})
    intensity: U8 = field(metadata={"wire": "u8[]"})
    test_bits: U8 = field(metadata={"wire": "bits"})
    pulses: I64 = field(metadata={"wire": "i64[]"})


@dataclass(frozen=True, eq=False)
class BlockTally(Message):
    """Test-basis errors per intensity index found by Bob in this block; ``recompensate``
    1: the polarization is re-compensated before the next block (``tracking.py``)."""

    block: int = field(metadata={"wire": "u64"})
    test_errors: I64 = field(metadata={"wire": "i64[]"})
    recompensate: int = field(default=0, metadata={"wire": "u64"})


@dataclass(frozen=True, eq=False)
class CascadeStart(Message):
    key_bits: int = field(metadata={"wire": "u64"})
    frame_bits: int = field(metadata={"wire": "u64"})
    block_sizes: I64 = field(metadata={"wire": "i64[]"})
    shuffle_seed: int = field(metadata={"wire": "u64"})


@dataclass(frozen=True, eq=False)
class ParityQueryMsg(Message):
    payload: bytes = field(metadata={"wire": "bytes"})  # ParityQuery.encode()


@dataclass(frozen=True, eq=False)
class ParityReplyMsg(Message):
    payload: bytes = field(metadata={"wire": "bytes"})  # ParityReply.encode()


@dataclass(frozen=True, eq=False)
class CascadeDone(Message):
    leaked_bits: int = field(metadata={"wire": "u64"})


@dataclass(frozen=True, eq=False)
class VerificationMsg(Message):
    n_key_bits: int = field(metadata={"wire": "u64"})
    tag_bits: int = field(metadata={"wire": "u64"})
    seed: bytes = field(metadata={"wire": "bytes"})
    tag: bytes = field(metadata={"wire": "bytes"})


@dataclass(frozen=True, eq=False)
class VerificationOutcome(Message):
    """Whether Bob's tag matched, and the key-basis errors per intensity Cascade corrected."""

    ok: bool = field(metadata={"wire": "bool"})
    key_errors: I64 = field(metadata={"wire": "i64[]"})


@dataclass(frozen=True, eq=False)
class Amplification(Message):
    """The final length, the privacy-amplification hash family
    (``numerics.qkd.universal_hash.PA_FAMILIES``) and its fresh seed."""

    n_out: int = field(metadata={"wire": "u64"})
    family: str = field(metadata={"wire": "str"})
    seed: U8 = field(metadata={"wire": "bits"})


@dataclass(frozen=True, eq=False)
class KeyConfirm(Message):
    """A key-confirmation tag: multiply-add-shift hash (fresh ``seed`` of the sender's) of the
    sender's stored key, one-time padded with final-key bits that are then dropped."""

    seed: U8 = field(metadata={"wire": "bits"})
    tag: U8 = field(metadata={"wire": "bits"})


@dataclass(frozen=True, eq=False)
class KeyCommitted(Message):
    """Bob confirmed Alice's tag and committed his key (Alice commits on it)."""


@dataclass(frozen=True, eq=False)
class Finished(Message):
    """Alice has committed: the last message, after which Bob stops waiting and closes."""


@dataclass(frozen=True, eq=False)
class Abort(Message):
    reason: str = field(metadata={"wire": "str"})
    detail: str = field(metadata={"wire": "str"})


# --- BBM92 in two processes (experiments/bbm92/party_job.py): the shared acquisition ---


@dataclass(frozen=True, eq=False)
class AcquisitionStart(Message):
    """BBM92: alice's pair source is on; both nodes stream ``duration_s`` from now."""

    settings_digest: bytes = field(metadata={"wire": "bytes"})
    duration_s: float = field(metadata={"wire": "f64"})


@dataclass(frozen=True, eq=False)
class Timestamps(Message):
    """BBM92: bob's analyser tags' times, his timebase, sorted (no channels: no outcomes)."""

    times: I64 = field(metadata={"wire": "i64[]"})


@dataclass(frozen=True, eq=False)
class CoincidenceGroups(Message):
    """BBM92: for each coincidence alice keeps, its group (``< n_groups``) and bob's tick."""

    n_groups: int = field(metadata={"wire": "u64"})
    group: I64 = field(metadata={"wire": "i64[]"})
    ticks: I64 = field(metadata={"wire": "i64[]"})


@dataclass(frozen=True, eq=False)
class HeraldRequest(Message):
    """BBM92, bob's fibre compensation: one pair acquisition of ``duration_s`` please (alice
    answers AcquisitionStart, then both stream); 0: no more (the key's acquisition follows)."""

    duration_s: float = field(metadata={"wire": "f64"})


@dataclass(frozen=True, eq=False)
class HeraldedPairs(Message):
    """BBM92, bob's fibre compensation: for each pair alice found, her outcome (0..3: H, V,
    D, A) and bob's tick. Only for compensation acquisitions, never for key ones."""

    outcome: I64 = field(metadata={"wire": "i64[]"})
    ticks: I64 = field(metadata={"wire": "i64[]"})


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    BlockLive,
    BlockAcquired,
    AlignmentReveal,
    BlockDiscarded,
    Announcement,
    SiftReplyMsg,
    BlockTally,
    CascadeStart,
    ParityQueryMsg,
    ParityReplyMsg,
    CascadeDone,
    VerificationMsg,
    VerificationOutcome,
    Amplification,
    KeyConfirm,
    KeyCommitted,
    Finished,
    Abort,
    AcquisitionStart,
    Timestamps,
    CoincidenceGroups,
    HeraldRequest,
    HeraldedPairs,
)

KIND_PREFIX = "bb84."
_KINDS: dict[str, type[Message]] = {KIND_PREFIX + cls.__name__: cls for cls in MESSAGE_TYPES}


def _fields(cls: type[Message]) -> list[tuple[str, str]]:
    return [(f.name, f.metadata["wire"]) for f in dataclasses.fields(cls)]


def kind_of(msg: Message | type[Message]) -> str:
    cls = msg if isinstance(msg, type) else type(msg)
    return KIND_PREFIX + cls.__name__


def to_payload(msg: Message) -> tuple[str, dict[str, Any]]:
    """(kind, payload) for :meth:`AuthenticatedChannel.send`. Bit strings are packed."""
    payload: dict[str, Any] = {"v": VERSION}
    for name, kind in _fields(type(msg)):
        value = getattr(msg, name)
        if kind == "u64":
            payload[name] = int(value)
        elif kind == "f64":
            payload[name] = float(value)
        elif kind == "bool":
            payload[name] = bool(value)
        elif kind == "str":
            payload[name] = str(value)
        elif kind == "bytes":
            payload[name] = bytes(value)
        elif kind == "i64[]":
            payload[name] = np.ascontiguousarray(value, dtype=np.int64).reshape(-1)
        elif kind == "u8[]":
            payload[name] = np.ascontiguousarray(value, dtype=np.uint8).reshape(-1)
        elif kind == "bits":
            arr = np.asarray(value, dtype=np.uint8).reshape(-1)
            payload[name] = (int(arr.size), np.packbits(arr).tobytes())
        else:  # pragma: no cover - a declaration error
            raise TypeError(f"{type(msg).__name__}.{name}: unknown wire kind {kind!r}")
    return kind_of(msg), payload


def _bad(cls: type[Message], name: str, what: str) -> ProtocolViolation:
    return ProtocolViolation(f"{cls.__name__}.{name}: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def from_payload(kind: str, payload: dict[str, Any]) -> Message:
    """Check and rebuild a message; raise :class:`ProtocolViolation` naming what is wrong."""
    cls = _KINDS.get(kind)
    if cls is None:
        raise ProtocolViolation(f"unknown message kind {kind!r}")
    if payload.get("v") != VERSION:
        raise ProtocolViolation(
            f"{cls.__name__}: protocol version {payload.get('v')!r}, expected {VERSION}"
        )
    fields = _fields(cls)
    extra = set(payload) - {"v"} - {n for n, _ in fields}
    if extra:
        raise ProtocolViolation(f"{cls.__name__}: unexpected fields {sorted(extra)}")
    values: dict[str, Any] = {}
    for name, kind_ in fields:
        if name not in payload:
            raise _bad(cls, name, "missing")
        v = payload[name]
        if kind_ == "u64":
            if not _is_int(v) or int(v) < 0:
                raise _bad(cls, name, "expected an integer >= 0")
            values[name] = int(v)
        elif kind_ == "f64":
            if not isinstance(v, float | int) or isinstance(v, bool):
                raise _bad(cls, name, "expected a number")
            values[name] = float(v)
        elif kind_ == "bool":
            if not isinstance(v, bool):
                raise _bad(cls, name, "expected true/false")
            values[name] = v
        elif kind_ == "str":
            if not isinstance(v, str):
                raise _bad(cls, name, "expected a string")
            values[name] = v
        elif kind_ == "bytes":
            if not isinstance(v, bytes):
                raise _bad(cls, name, "expected bytes")
            values[name] = v
        elif kind_ in ("i64[]", "u8[]"):
            want = np.int64 if kind_ == "i64[]" else np.uint8
            if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype != want:
                raise _bad(cls, name, f"expected a 1-D {np.dtype(want)} array")
            values[name] = v
        elif kind_ == "bits":
            ok = isinstance(v, tuple) and len(v) == 2 and _is_int(v[0]) and isinstance(v[1], bytes)
            if not ok or int(v[0]) < 0 or len(v[1]) != (int(v[0]) + 7) // 8:
                raise _bad(cls, name, "expected (bit count, packed bytes)")
            bits = np.unpackbits(np.frombuffer(v[1], dtype=np.uint8))
            n = int(v[0])
            if np.any(bits[n:]):
                raise _bad(cls, name, "nonzero padding bits")
            values[name] = bits[:n].copy()
    return cls(**values)
