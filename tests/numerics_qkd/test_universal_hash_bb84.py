"""Multiply-add-shift in the key exchange: the Amplification message names the family and
carries its seed, both parties derive the same key from it, Bob refuses a message that does
not fit, and the run's result names the family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments.bb84.support import (
    WorldPatternGenerator,
    WorldTagger,
    bb84_world,
    open_channels,
    settings,
)
from qhil.numerics.qkd import toeplitz
from qhil.numerics.qkd.bits import random_bits
from qhil.numerics.qkd.universal_hash import MULTIPLY_ADD_SHIFT, TOEPLITZ, mas_hash
from qhil.orchestrator.channel.codec import decode as channel_decode
from qhil.orchestrator.channel.codec import encode as channel_encode
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted, run_bb84
from qhil.orchestrator.experiments.bb84 import messages as m
from qhil.orchestrator.experiments.bb84.party import FinalKey, PartyBase
from qhil.records import KeyStore


def _party(tmp_path: Path, seed: int) -> PartyBase:
    party = PartyBase(
        settings(),
        None,  # type: ignore[arg-type]  # the amplification helpers never touch the link
        key_store=KeyStore(tmp_path / "keys"),
        run_id=None,
        progress=None,
        on_data=None,
        rng=np.random.default_rng(seed),
    )
    party.party = "bob"
    return party


def _over_the_wire(msg: m.Message) -> m.Message:
    kind, payload = m.to_payload(msg)
    header, buffers = channel_encode(kind, payload)
    return m.from_payload(*channel_decode(header, b"".join(bytes(b) for b in buffers)))


def test_both_parties_derive_the_same_key_from_the_message(tmp_path: Path) -> None:
    alice, bob = _party(tmp_path, 1), _party(tmp_path, 2)
    key = random_bits(np.random.default_rng(3), 5000)
    amp = alice.amplification_message(key.size, 1800)
    assert amp.family == MULTIPLY_ADD_SHIFT and amp.seed.size == 2 * (5000 + 1800 - 1)
    mine = alice.amplify(key, amp)
    got = _over_the_wire(amp)
    assert isinstance(got, m.Amplification)
    bob.check_amplification(got, key.size, 1800)
    assert np.array_equal(bob.amplify(key, got), mine)
    assert np.array_equal(mine, mas_hash(key, amp.seed, 1800))
    assert alice.pa_family == bob.pa_family == MULTIPLY_ADD_SHIFT


def test_bob_accepts_a_toeplitz_amplification(tmp_path: Path) -> None:
    bob = _party(tmp_path, 2)
    rng = np.random.default_rng(4)
    key = random_bits(rng, 700)
    amp = m.Amplification(300, TOEPLITZ, random_bits(rng, 700 + 300 - 1))
    bob.check_amplification(amp, key.size, 300)
    assert np.array_equal(bob.amplify(key, amp), toeplitz.toeplitz_hash(key, amp.seed, 300))
    assert bob.pa_family == TOEPLITZ


@pytest.mark.parametrize(
    ("family", "n_out", "seed_bits", "needle"),
    [
        ("sha256", 300, 1998, "Amplification: unknown hash family 'sha256'"),
        (MULTIPLY_ADD_SHIFT, 301, 2 * (700 + 301 - 1), "Alice amplifies to 301 bits, Bob's bound"),
        (MULTIPLY_ADD_SHIFT, 300, 999, "999-bit seed, multiply-add-shift needs 1998"),
        (TOEPLITZ, 300, 1998, "1998-bit seed, toeplitz needs 999"),
    ],
)
def test_bob_refuses_a_message_that_does_not_fit(
    tmp_path: Path, family: str, n_out: int, seed_bits: int, needle: str
) -> None:
    bob = _party(tmp_path, 2)
    amp = m.Amplification(n_out, family, np.zeros(seed_bits, np.uint8))
    with pytest.raises(BB84Aborted, match=needle) as exc:
        bob.check_amplification(amp, 700, 300)
    assert exc.value.reason is AbortReason.PROTOCOL_ERROR


async def test_a_run_names_the_family_that_made_its_key(tmp_path: Path) -> None:
    world = bb84_world(seed=3)
    a, b = await open_channels()
    try:
        r = await run_bb84(
            settings(blocks=2),
            WorldPatternGenerator(world),
            WorldTagger(world),
            a,
            b,
            key_store=KeyStore(tmp_path / "keys"),
            alice_rng=np.random.default_rng([3, 1]),
            bob_rng=np.random.default_rng([3, 2]),
        )
    finally:
        await a.close()
        await b.close()
    assert r.status == "success" and r.keys_match and r.secret_bits > 0
    assert r.pa_family == MULTIPLY_ADD_SHIFT
    assert r.to_results()["pa_family"] == MULTIPLY_ADD_SHIFT


async def test_a_bbm92_run_names_the_family_too(tmp_path: Path) -> None:
    # BBM92 reuses BB84's post-processing: same message, same family in its result
    from experiments.bbm92.test_protocol import _run, phi_plus
    from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings

    a, b = phi_plus(100_000, 0.02, seed=3)
    res = await _run(BBM92Settings(), a, b, KeyStore(tmp_path / "keys"))
    assert res.status == "success" and res.keys_match
    assert res.pa_family == MULTIPLY_ADD_SHIFT
    assert res.to_results()["pa_family"] == MULTIPLY_ADD_SHIFT


def test_confirmation_tags_are_multiply_add_shift() -> None:
    rng = np.random.default_rng(9)
    final = FinalKey(random_bits(rng, 1000), 32)
    msg = final.confirm(rng, final.pad_bob)
    assert msg.seed.size == 2 * (final.stored.size + 32 - 1)
    assert np.array_equal(msg.tag, mas_hash(final.stored, msg.seed, 32) ^ final.pad_bob)
    assert final.matches(msg, final.pad_bob) is True
    assert final.matches(msg, final.pad_alice) is False
    # a seed of Toeplitz's length (n + t - 1) is malformed now
    short = m.KeyConfirm(msg.seed[: final.stored.size + 31], msg.tag)
    assert final.matches(short, final.pad_bob) is None
