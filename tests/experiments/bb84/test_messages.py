"""The BB84 message schema: every message survives the channel's payload form; malformed
payloads are refused with the message and field named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qhil.orchestrator.channel.codec import decode as channel_decode
from qhil.orchestrator.channel.codec import encode as channel_encode
from qhil.orchestrator.experiments.bb84 import ProtocolViolation
from qhil.orchestrator.experiments.bb84 import messages as m

RNG = np.random.default_rng(5)


def bits(n: int) -> np.ndarray:
    return RNG.integers(0, 2, n).astype(np.uint8)


SAMPLES: list[m.Message] = [
    m.Hello(1, b"\x01" * 32),
    m.BlockLive(3, 1 << 20, 80e6),
    m.BlockAcquired(3, 12345, 0),
    m.AlignmentReveal(3, np.array([1, 5, 9], np.int64), bits(3), bits(3)),
    m.BlockDiscarded(3, "alignment failed: ..."),
    m.Announcement(3, 17, 900, np.arange(0, 100, 7, dtype=np.int64), bits(15)),
    m.SiftReplyMsg(
        3, bits(13), RNG.integers(0, 3, 13).astype(np.uint8), bits(5), np.array([7, 8, 9])
    ),
    m.BlockTally(3, np.array([1, 0, 2], np.int64)),
    m.CascadeStart(1000, 500, np.array([8, 64, 250], np.int64), 2**62),
    m.ParityQueryMsg(b"\x00\x01\x02"),
    m.ParityReplyMsg(b"\xff"),
    m.CascadeDone(77),
    m.VerificationMsg(1000, 64, b"seed", b"tag"),
    m.VerificationOutcome(True, np.array([3, 1, 0], np.int64)),
    m.Amplification(10, "multiply-add-shift", bits(2018)),
    m.KeyConfirm(bits(1040), bits(32)),
    m.KeyCommitted(),
    m.Finished(),
    m.Abort("qber_too_high", "25 %"),
    m.AcquisitionStart(b"\x01" * 32, 2.5),
    m.Timestamps(np.array([5, 7, 1000], np.int64)),
    m.CoincidenceGroups(2, np.array([0, 0, 1], np.int64), np.array([5, 5, 1000], np.int64)),
    m.HeraldRequest(0.2),
    m.HeraldedPairs(np.array([0, 3, 2], np.int64), np.array([5, 9, 1000], np.int64)),
]


def through_channel_codec(msg: m.Message) -> m.Message:
    kind, payload = m.to_payload(msg)
    header, buffers = channel_encode(kind, payload)
    kind2, payload2 = channel_decode(header, b"".join(bytes(b) for b in buffers))
    return m.from_payload(kind2, payload2)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return bool(a == b) and type(a) is type(b)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip_through_the_channel_codec(msg: m.Message) -> None:
    back = through_channel_codec(msg)
    assert type(back) is type(msg)
    for name in msg.__dataclass_fields__:
        assert same(getattr(back, name), getattr(msg, name)), name


def test_every_message_type_is_sampled() -> None:
    assert {type(s) for s in SAMPLES} == set(m.MESSAGE_TYPES)


def test_bits_travel_packed() -> None:
    _, payload = m.to_payload(m.Amplification(10, "toeplitz", bits(8001)))
    n, packed = payload["seed"]
    assert n == 8001 and len(packed) == 1001


def _payload(msg: m.Message) -> tuple[str, dict[str, Any]]:
    return m.to_payload(msg)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda k, p: ("bb84.Nope", p), "unknown message kind"),
        (lambda k, p: (k, {**p, "v": 99}), "protocol version"),
        (lambda k, p: (k, {x: y for x, y in p.items() if x != "positions"}), "positions: missing"),
        (lambda k, p: (k, {**p, "extra": 1}), "unexpected fields"),
        (lambda k, p: (k, {**p, "positions": p["positions"].astype(np.int32)}), "int64 array"),
        (lambda k, p: (k, {**p, "positions": p["positions"].reshape(1, -1)}), "1-D"),
        (lambda k, p: (k, {**p, "block": -1}), "block: expected an integer >= 0"),
        (lambda k, p: (k, {**p, "block": True}), "block: expected an integer"),
        (lambda k, p: (k, {**p, "bases": (4, b"\x0f")}), "nonzero padding"),
        (lambda k, p: (k, {**p, "bases": (20, b"\x00")}), "bit count, packed bytes"),
    ],
)
def test_malformed_payloads_are_refused(mutate: Any, needle: str) -> None:
    kind, payload = _payload(m.AlignmentReveal(0, np.array([1, 2, 3], np.int64), bits(3), bits(3)))
    with pytest.raises(ProtocolViolation, match="AlignmentReveal|unknown") as err:
        m.from_payload(*mutate(kind, payload))
    assert needle in str(err.value)
