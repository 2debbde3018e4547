"""BBM92's two parties over an in-process authenticated channel, on synthetic outcomes.

The outcomes are drawn as a phi+ source on ideal passive analysers gives them (basis 50:50
at each node; same basis: the same bit but with probability ``qber``; different bases:
independent), so sifting, the QBER check and BB84's post-processing are tested without
the emulated bench (that is test_bbm92_bench.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhil.numerics.qkd import CascadeSetup
from qhil.numerics.qkd.bbm92 import bbm92_key_length
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84 import alice as alice_module
from qhil.orchestrator.experiments.bb84.both import run_both
from qhil.orchestrator.experiments.bb84.party import run_party
from qhil.orchestrator.experiments.bbm92 import BBM92Aborted, BBM92Result, make_party, run_bbm92
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings
from qhil.records import KeyStore

from ..bb84.support import open_channels
from ..bb84.test_aborts import flip_tag_of_frame


def phi_plus(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis_a, basis_b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    bit_a = rng.integers(0, 2, n)
    flip = rng.random(n) < qber
    bit_b = np.where(basis_a == basis_b, bit_a ^ flip, rng.integers(0, 2, n))
    return 2 * basis_a + bit_a, 2 * basis_b + bit_b


async def _run(
    settings: BBM92Settings, a: np.ndarray, b: np.ndarray, keys: KeyStore
) -> BBM92Result:
    ca, cb = await open_channels()
    try:
        return await run_bbm92(
            settings,
            a,
            b,
            ca,
            cb,
            acquisition_s=10.0,
            key_store=keys,
            alice_rng=np.random.default_rng(1),
            bob_rng=np.random.default_rng(2),
        )
    finally:
        await ca.close()
        await cb.close()


@pytest.mark.asyncio
async def test_identical_keys_and_the_tomamichel_length(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    a, b = phi_plus(200_000, 0.02, seed=3)
    res = await _run(BBM92Settings(), a, b, keys)
    c = res.counts
    assert res.status == "success" and res.committed and res.keys_match
    assert res.alice_key is not None and res.bob_key is not None and res.finite_key is not None
    assert res.leaked_bits is not None
    # the public counts are the data's own
    same = (a >> 1) == (b >> 1)
    assert c.sifted == int(same.sum())
    assert c.key_bits == int((same & (a >> 1 == 0)).sum())
    assert c.test_errors == int(((a != b) & same & (a >> 1 == 1)).sum())
    assert c.key_errors == int(((a != b) & same & (a >> 1 == 0)).sum())
    # the key length is Tomamichel et al.'s on those counts, less the confirmation pads
    f = bbm92_key_length(c.key_bits, c.test_bits, c.test_errors, res.leaked_bits)
    assert res.finite_key.length == f.length > 0
    assert res.secret_bits == f.length - 2 * BBM92Settings().tag_bits
    a_bits = keys.load(res.alice_key.key_id)
    b_bits = keys.load(res.bob_key.key_id)
    assert a_bits == b_bits and len(a_bits) == res.secret_bits


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("n", "qber", "reason", "says"),
    [
        (20_000, 0.25, AbortReason.QBER_TOO_HIGH, "test-basis (D/A) QBER"),  # intercept-resend
        (2_000, 0.02, AbortReason.NO_KEY, "Tomamichel"),  # too few for the finite key
    ],
)
async def test_aborts_without_a_key(
    tmp_path: Path, n: int, qber: float, reason: AbortReason, says: str
) -> None:
    keys = KeyStore(tmp_path / "keys")
    a, b = phi_plus(n, qber, seed=4)
    with pytest.raises(BBM92Aborted) as info:
        await _run(BBM92Settings(), a, b, keys)
    assert info.value.reason is reason
    assert says in info.value.detail
    assert info.value.result.secret_bits == 0 and not info.value.result.committed
    assert keys.list_keys() == [] and keys.pending_keys() == []


@pytest.mark.asyncio
async def test_different_settings_abort_before_sifting(tmp_path: Path) -> None:
    a, b = phi_plus(1000, 0.02, seed=6)
    ca, cb = await open_channels()
    keys = KeyStore(tmp_path / "keys")
    pa = make_party("alice", BBM92Settings(max_qber=0.1), a, ca, acquisition_s=1.0, key_store=keys)
    pb = make_party("bob", BBM92Settings(), b, cb, acquisition_s=1.0, key_store=keys)
    try:
        with pytest.raises(BB84Aborted) as info:
            await run_both(run_party(pa, pa.run()), run_party(pb, pb.run()), "bbm92")
    finally:
        await ca.close()
        await cb.close()
    assert info.value.reason is AbortReason.PROTOCOL_ERROR
    assert "[experiments.bbm92]" in info.value.detail


async def _run_tampered(keys: KeyStore, a: np.ndarray, b: np.ndarray, **tamper: Any) -> None:
    ca, cb = await open_channels(**tamper)
    try:
        await run_bbm92(BBM92Settings(), a, b, ca, cb, acquisition_s=10.0, key_store=keys)
    finally:
        await ca.close()
        await cb.close()


@pytest.mark.asyncio
async def test_a_tampered_announcement_aborts_on_authentication(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    a, b = phi_plus(20_000, 0.02, seed=7)
    seen: list[int] = []
    with pytest.raises(BBM92Aborted) as info:
        await _run_tampered(keys, a, b, tamper_b_to_a=flip_tag_of_frame(1, seen))
    assert len(seen) > 1  # the frame was really altered in flight
    assert info.value.reason is AbortReason.AUTHENTICATION_FAILED
    assert keys.list_keys() == [] and keys.pending_keys() == []


@pytest.mark.asyncio
async def test_errors_left_by_reconciliation_fail_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deliberately weak Cascade (one pass of half-key blocks) leaves errors behind;
    # BB84's verification, reused as is, must catch them.
    def weak(key_bits: int, qber: float, seed: int, frame_bits: int | None = None) -> CascadeSetup:
        return CascadeSetup(key_bits, key_bits, (max(1, key_bits // 2),), seed)

    monkeypatch.setattr(alice_module.CascadeSetup, "for_qber", staticmethod(weak))
    keys = KeyStore(tmp_path / "keys")
    a, b = phi_plus(100_000, 0.03, seed=8)
    with pytest.raises(BBM92Aborted) as info:
        await _run_tampered(keys, a, b)
    assert info.value.reason is AbortReason.VERIFICATION_FAILED
    assert keys.list_keys() == [] and keys.pending_keys() == []
