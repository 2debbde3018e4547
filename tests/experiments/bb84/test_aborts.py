"""Abort rules: eavesdropper (QBER), tampered classical messages (authentication),
failed verification, no secret length, no data, mismatched settings, instrument faults.
Every abort leaves the key store empty and carries its reason and measured statistics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.errors import InstrumentError
from qhil.numerics.qkd import CascadeSetup
from qhil.orchestrator.experiments.bb84 import (
    AbortReason,
    BB84Aborted,
    run_alice,
    run_bob,
)
from qhil.orchestrator.experiments.bb84 import alice as alice_module
from qhil.orchestrator.experiments.bb84 import bob as bob_module
from qhil.records import KeyStore

from .conftest import Runner
from .support import WorldPatternGenerator, WorldTagger, bb84_world, open_channels, settings

L = 1 << 20


def no_keys(store: KeyStore) -> bool:
    return store.list_keys() == []


async def test_intercept_resend_gives_25_percent_qber_and_no_key(
    run: Runner, key_store: KeyStore
) -> None:
    world = bb84_world(e_d=1e-6, eve_fraction=1.0, seed=8)
    with pytest.raises(BB84Aborted) as err:
        await run(world, settings(blocks=1, pattern_length=L))
    exc = err.value
    assert exc.reason is AbortReason.QBER_TOO_HIGH and not exc.from_peer
    assert exc.result is not None and exc.result.status == "aborted"
    st = exc.result.statistics
    # Eve measures in a random basis and resends: Bob's sifted bit is wrong 1/4 of the time.
    for k in (0, 1):
        lo, hi = stats.binom.interval(0.999, int(st.test_sifted[k]), 0.25)
        assert lo <= int(st.test_errors[k]) <= hi, (k, st.qber_test[k])
    assert st.test_sifted[0] > 5000
    assert exc.result.alice_key is None and exc.result.secret_bits == 0
    assert no_keys(key_store)


def flip_tag_of_frame(index: int, seen: list[int]) -> Any:
    """Flip the last byte (inside the tag) of the ``index``-th frame in one direction."""

    def tamper(frame: bytes) -> Sequence[bytes]:
        n = len(seen)
        seen.append(n)
        if n != index:
            return [frame]
        b = bytearray(frame)
        b[-1] ^= 0x40
        return [bytes(b)]

    return tamper


@pytest.mark.parametrize(
    ("direction", "index"),
    [("a_to_b", 2), ("a_to_b", 3), ("b_to_a", 2)],
    ids=["BlockLive", "AlignmentReveal", "Announcement"],
)
async def test_tampered_message_aborts_on_authentication(
    run: Runner, key_store: KeyStore, direction: str, index: int
) -> None:
    world = bb84_world(seed=4)
    seen: list[int] = []
    tamper = flip_tag_of_frame(index, seen)
    kw = {"tamper_a_to_b": tamper} if direction == "a_to_b" else {"tamper_b_to_a": tamper}
    with pytest.raises(BB84Aborted) as err:
        await run(world, settings(blocks=2, pattern_length=1 << 16), **kw)
    assert len(seen) > index  # the frame was really altered in flight
    assert err.value.reason is AbortReason.AUTHENTICATION_FAILED
    assert "failed authentication" in err.value.detail
    assert no_keys(key_store)


async def test_failed_verification_aborts(
    run: Runner, key_store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deliberately weak Cascade (one pass of half-key blocks) leaves errors behind;
    # the 50-bit verification tag must catch them.
    def weak(key_bits: int, qber: float, seed: int, frame_bits: int | None = None) -> CascadeSetup:
        return CascadeSetup(key_bits, key_bits, (max(1, key_bits // 2),), seed)

    monkeypatch.setattr(alice_module.CascadeSetup, "for_qber", staticmethod(weak))
    world = bb84_world(e_d=0.03, seed=6)
    with pytest.raises(BB84Aborted) as err:
        await run(world, settings(blocks=1, pattern_length=1 << 18))
    assert err.value.reason is AbortReason.VERIFICATION_FAILED
    res = err.value.result
    assert res is not None and res.leaked_bits is not None and res.leaked_bits <= 2 + 2 * 18
    assert no_keys(key_store)


async def test_too_little_data_gives_no_key(run: Runner, key_store: KeyStore) -> None:
    world = bb84_world(seed=9)
    with pytest.raises(BB84Aborted) as err:
        await run(world, settings(blocks=1, pattern_length=1 << 16))
    exc = err.value
    assert exc.reason is AbortReason.NO_KEY
    res = exc.result
    assert res is not None and res.finite_key is not None and res.finite_key.length == 0
    # Everything up to the key length was measured and reconciled.
    assert res.statistics.key_errors is not None and res.leaked_bits is not None
    assert res.statistics.sifted_key_bits > 1000
    assert no_keys(key_store)


async def test_no_clicks_means_no_data(run: Runner, key_store: KeyStore) -> None:
    world = bb84_world(eta=1e-7, seed=9)
    rows: list[tuple[str, np.ndarray]] = []
    with pytest.raises(BB84Aborted) as err:
        await run(
            world,
            settings(blocks=2, pattern_length=1 << 16),
            on_data=lambda name, arr: rows.append((name, arr)),
        )
    assert err.value.reason is AbortReason.NO_DATA
    res = err.value.result
    assert res is not None and res.statistics.blocks == 2 and res.statistics.blocks_used == 0
    assert no_keys(key_store)
    # Discarded blocks still leave rows, of the same dtype as used blocks' rows.
    assert sorted(n for n, _ in rows) == ["alice/block"] * 2 + ["bob/block"] * 2
    for name, arr in rows:
        want = alice_module.BLOCK_ROW if name == "alice/block" else bob_module.BLOCK_ROW
        assert arr.dtype == want and arr["used"][0] == 0


async def test_mismatched_settings_abort_before_the_first_block(key_store: KeyStore) -> None:
    world = bb84_world(seed=1)
    a, b = await open_channels()
    gen = WorldPatternGenerator(world)
    results = await asyncio.gather(
        run_alice(settings(max_qber=0.1), gen, a, key_store=key_store),
        run_bob(settings(max_qber=0.11), WorldTagger(world), b, key_store=key_store),
        return_exceptions=True,
    )
    ea, eb = results
    assert isinstance(eb, BB84Aborted) and eb.reason is AbortReason.PROTOCOL_ERROR
    assert "settings differ" in eb.detail and not eb.from_peer
    assert isinstance(ea, BB84Aborted) and ea.from_peer
    assert ea.reason is AbortReason.PROTOCOL_ERROR
    assert gen.uploads == [] or len(gen.uploads) == 1  # nothing measured after the first upload


class BrokenGenerator(WorldPatternGenerator):
    async def load_pattern(self, symbols: np.ndarray, symbol_rate_hz: float) -> None:
        raise InstrumentError("TCPIP::10.0.0.5::5025::SOCKET", -222, "Data out of range")


async def test_instrument_fault_propagates_and_stops_the_peer(key_store: KeyStore) -> None:
    world = bb84_world(seed=1)
    a, b = await open_channels()
    ea, eb = await asyncio.gather(
        run_alice(settings(), BrokenGenerator(world), a, key_store=key_store),
        run_bob(settings(), WorldTagger(world), b, key_store=key_store),
        return_exceptions=True,
    )
    assert isinstance(ea, InstrumentError)  # a failure, not a protocol abort
    assert isinstance(eb, BB84Aborted) and eb.reason is AbortReason.PEER_FAILED and eb.from_peer
    assert "InstrumentError" in eb.detail
    assert not world.transmitter("alice.tx").enabled  # Alice left the transmitter dark
