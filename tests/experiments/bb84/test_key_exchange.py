"""Decoy-state BB84 end to end on an emulated World: equal keys, physics against GLLP
(PHYSICS.md case 4), alignment with an unknown clock offset.

Statistical checks are two-sided binomial intervals at 99.9 % confidence; the world,
Alice and Bob are seeded, so a run is reproducible.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.orchestrator.channel import (
    KeyPool,
    TcpListener,
    WegmanCarterAuthenticator,
    accept_channel,
    connect_channel,
)
from qhil.orchestrator.experiments.bb84 import (
    AbortReason,
    BB84Aborted,
    BB84Progress,
    run_alice,
    run_bob,
)
from qhil.orchestrator.experiments.bb84 import alice as alice_module
from qhil.orchestrator.experiments.bb84 import bob as bob_module
from qhil.records import KeyStore

from .conftest import Runner
from .support import WorldPatternGenerator, WorldTagger, bb84_world, settings

CONF = 0.999
L = 1 << 20


def binomial_ok(k: int, n: int, p: float) -> bool:
    lo, hi = stats.binom.interval(CONF, n, p)
    return bool(lo <= k <= hi)


async def test_equal_keys_and_signal_gain_and_qber_match_gllp(
    run: Runner, key_store: KeyStore
) -> None:
    e_d, dark_hz = 0.02, 2000.0
    world = bb84_world(e_d=e_d, dark_hz=dark_hz, seed=11)
    s = settings(blocks=4, pattern_length=L)
    rows: dict[str, list[np.ndarray]] = {}
    events: list[BB84Progress] = []

    def on_data(name: str, arr: np.ndarray) -> None:
        rows.setdefault(name, []).append(arr)

    r = await run(world, s, on_data=on_data, progress=events.append)

    # --- the key: equal at both nodes, of the finite-key length less the two
    # confirmation pads, stored and committed ---
    assert r.status == "success" and r.reason is None and r.committed
    assert r.finite_key is not None and r.secret_bits == r.finite_key.length - 2 * s.tag_bits
    assert r.secret_bits > 1000 and key_store.pending_keys() == []
    assert r.keys_match
    assert r.alice_key is not None and r.bob_key is not None
    ka, kb = key_store.load(r.alice_key.key_id), key_store.load(r.bob_key.key_id)
    assert ka == kb and len(ka) == r.secret_bits
    assert {k.label for k in key_store.list_keys()} == {"alice", "bob"}
    assert 0.3 < float(np.mean(ka.bits)) < 0.7  # not a constant string

    # --- physics: gain and QBER per intensity vs PHYSICS.md case 4 (world truth) ---
    truth = world.truth
    world.transmitter("alice.tx").enabled = True  # Alice left it dark; truth reports live mus
    eta = truth.path_transmission("alice.tx", "bob.h") * truth.detector_efficiency("bob.h")
    mus = truth.mean_photon_numbers("alice.tx")
    assert np.allclose(mus, s.mus)  # the settings describe this world
    slot = 1 / s.rep_rate_hz
    darks = sum(truth.dark_count_rate_hz(f"bob.{d}") for d in "hvda")
    assert darks == pytest.approx(4 * dark_hz)
    y0 = 1 - math.exp(-darks * slot)  # any of the 4 detectors dark in the pulse slot
    # Misalignment: the share of each prepared state in the orthogonal polarization.
    e_d = (1 - world.transmitter("alice.tx").state_contrast) / 2
    assert e_d == pytest.approx(0.02)
    st = r.statistics
    qk = st.qber_key
    assert qk is not None
    for k in (0, 1):  # signal, decoy
        q = 1 - (1 - y0) * math.exp(-eta * mus[k])
        e = (e_d * (1 - y0) * (1 - math.exp(-eta * mus[k])) + y0 / 2) / q
        assert binomial_ok(int(st.detections[k]), int(st.pulses[k]), q), (k, st.gains[k], q)
        assert binomial_ok(int(st.test_errors[k]), int(st.test_sifted[k]), e), (k, e)
        assert st.key_errors is not None
        assert binomial_ok(int(st.key_errors[k]), int(st.key_sifted[k]), e), (k, qk[k], e)
    assert binomial_ok(int(st.detections[2]), int(st.pulses[2]), y0)  # vacuum: dark counts
    # Passive 50:50 receiver, Alice's Z probability 1/2: a quarter of detections sift into each.
    n_det = int(st.detections.sum())
    assert binomial_ok(int(st.key_sifted.sum()), n_det, 0.25)
    assert binomial_ok(int(st.test_sifted.sum()), n_det, 0.25)
    # Counting windows span each block's period but for Bob's settling time at the start
    # (photons of the previous pattern still in the fibre: what he measured, none at 0 km)
    # and a few pulses at the ends; revealed alignment pulses are excluded: about 95 % of
    # the pulses in them count.
    settle_ps = np.concatenate(rows["bob/block"])["settle_ps"]
    settle = int(np.rint(settle_ps * 1e-12 * s.rep_rate_hz).sum())
    lo = st.pulses_sent - settle - st.blocks * 100
    assert lo < st.window_pulses < st.pulses_sent - settle + st.blocks * 100
    assert binomial_ok(int(st.pulses.sum()), st.window_pulses, 1 - s.alignment_fraction)

    # --- the decoy-state estimate brackets the true single-photon yield ---
    assert r.decoy_bounds is not None
    y1_true = 1 - (1 - y0) * (1 - eta)
    assert r.decoy_bounds.y1_lower <= y1_true
    assert r.decoy_bounds.e1_upper >= e_d
    assert r.key_rate_bps == pytest.approx(r.secret_bits / (4 * L / s.rep_rate_hz))

    # --- hooks: one row per block and party, progress through every stage ---
    assert len(rows["alice/block"]) == len(rows["bob/block"]) == 4
    assert all(a.dtype == alice_module.BLOCK_ROW for a in rows["alice/block"])
    bob_rows = np.concatenate(rows["bob/block"])
    assert bob_rows.dtype == bob_module.BLOCK_ROW
    assert np.all(bob_rows["used"] == 1) and np.all(bob_rows["significance"] >= 6)
    assert int(bob_rows["test_errors"].sum()) == int(st.test_errors.sum())
    stages = [e.stage for e in events if e.party == "alice"]
    assert stages == ["block"] * 4 + ["reconcile", "verify", "amplify", "confirm", "done"]


async def test_alignment_is_found_with_an_unknown_clock_offset_and_drift(run: Runner) -> None:
    world = bb84_world(e_d=0.01, bob_offset_s=3.7e-3, bob_drift_ppm=0.8, seed=5)
    s = settings(blocks=3, pattern_length=L, settle_s=0.0)
    rows: list[np.ndarray] = []

    def on_data(name: str, arr: np.ndarray) -> None:
        if name == "bob/block":
            rows.append(arr)

    r = await run(world, s, on_data=on_data, seed=3)
    assert r.status == "success" and r.keys_match
    assert run.tagger is not None
    # The pattern position Bob gave each block's first click is the true one (truth
    # is used here only): Bob's clock runs 3.7 ms ahead and 0.8 ppm fast.
    period_ps = 1e12 / s.rep_rate_hz
    for row, block in zip(rows, run.tagger.blocks, strict=True):
        k = world.truth.pulse_indices("alice.tx", "bob.tagger", block)
        assert int(row["first_position"][0]) == int(k[0]) % L
        # Reading Bob's clock as Alice's would put the click tens of thousands of pulses off.
        naive = round(int(block.timestamps_ps[0]) / period_ps) % L
        assert abs(naive - int(k[0]) % L) > 10_000
        assert float(row["drift_ppm"][0]) == pytest.approx(0.8, abs=0.05)


async def test_gains_stay_unbiased_when_the_tagger_records_part_of_a_period(
    run: Runner,
) -> None:
    # A tagger that gates in whole ms records 13 of 13.1 ms; here it records 80 %. The
    # counting window follows the clicks, so the gains still match the physics.
    world = bb84_world(e_d=0.01, dark_hz=2000.0, seed=12)
    s = settings(blocks=2, pattern_length=L, settle_s=0.0)  # 0 km: nothing in flight
    r = await run(world, s, window_fraction=0.8)
    assert r.status == "success" and r.keys_match
    st = r.statistics
    assert st.blocks_used == 2
    assert abs(st.window_pulses - 0.8 * st.pulses_sent) < 100 * st.blocks
    truth = world.truth
    world.transmitter("alice.tx").enabled = True
    eta = truth.path_transmission("alice.tx", "bob.h") * truth.detector_efficiency("bob.h")
    y0 = 1 - math.exp(-4 * 2000.0 / s.rep_rate_hz)
    for k, mu in enumerate(truth.mean_photon_numbers("alice.tx")):
        q = 1 - (1 - y0) * math.exp(-eta * mu)
        assert binomial_ok(int(st.detections[k]), int(st.pulses[k]), q), (k, st.gains[k], q)


async def test_data_hook_may_be_async(run: Runner) -> None:
    world = bb84_world(seed=2)
    got: list[str] = []

    async def on_data(name: str, arr: Any) -> None:
        got.append(name)

    with pytest.raises(BB84Aborted) as err:  # one small block: no key, but rows were written
        await run(world, settings(blocks=1, pattern_length=1 << 16), on_data=on_data)
    assert err.value.reason is AbortReason.NO_KEY
    assert got == ["alice/block", "bob/block"] or got == ["bob/block", "alice/block"]


async def test_parties_over_tcp_with_wegman_carter_tags(tmp_path: Path) -> None:
    # Each party as it would run in its own process: its own role, its own end of a TCP
    # channel, its own key store; information-theoretic (Wegman-Carter) authentication.
    pool = bytes(range(256)) * 1024  # 16-byte pad per message: Cascade needs ~1000 each way
    listener = await TcpListener.start("127.0.0.1", 0, local="bob")
    bob_ch_task = asyncio.create_task(
        accept_channel(
            listener,
            local="bob",
            peer="alice",
            authenticator=WegmanCarterAuthenticator(KeyPool(pool), local="bob", peer="alice"),
            session_id="bb84-tcp",
        )
    )
    alice_ch = await connect_channel(
        "127.0.0.1",
        listener.port,
        local="alice",
        peer="bob",
        authenticator=WegmanCarterAuthenticator(KeyPool(pool), local="alice", peer="bob"),
        session_id="bb84-tcp",
    )
    bob_ch = await bob_ch_task
    world = bb84_world(e_d=0.01, seed=21)
    s = settings(blocks=3, pattern_length=L)
    alice_keys, bob_keys = KeyStore(tmp_path / "alice"), KeyStore(tmp_path / "bob")
    try:
        ra, rb = await asyncio.gather(
            run_alice(
                s,
                WorldPatternGenerator(world),
                alice_ch,
                key_store=alice_keys,
                rng=np.random.default_rng(7),
            ),
            run_bob(
                s, WorldTagger(world), bob_ch, key_store=bob_keys, rng=np.random.default_rng(8)
            ),
        )
    finally:
        await alice_ch.close()
        await bob_ch.close()
        await listener.close()
    assert ra.key is not None and rb.key is not None
    assert ra.key.sha256 == rb.key.sha256 and ra.key.length_bits > 1000
    assert alice_keys.load(ra.key.key_id) == bob_keys.load(rb.key.key_id)
    # Both computed the same public numbers on their own.
    assert np.array_equal(ra.statistics.key_sifted, rb.statistics.key_sifted)
    assert ra.finite_key == rb.finite_key and ra.leaked_bits == rb.leaked_bits


async def test_bob_drops_the_photons_of_the_previous_pattern_still_in_the_fibre(
    run: Runner,
) -> None:
    # 20 km of fibre: 100 us of the previous block's pulses arrive at the start of each
    # window. Taken for the new pattern, they put clicks on vacuum pulses (no dark counts
    # here, so a vacuum pulse cannot click) and errors into the key.
    world = bb84_world(length_km=20.0, e_d=0.01, dark_hz=0.0, seed=21)
    unsettled = await run(world, settings(blocks=3, pattern_length=L, settle_s=0.0))
    world = bb84_world(length_km=20.0, e_d=0.01, dark_hz=0.0, seed=21)
    settled_ = await run(world, settings(blocks=3, pattern_length=L, settle_s=2e-4))
    assert settled_.statistics.detections[2] == 0  # vacuum pulses: nothing to detect
    # Without settling: ~0.8 % of the clicks are the previous pattern's, a fifth of them
    # mapped onto vacuum pulses (blocks after the first).
    assert unsettled.statistics.detections[2] > 50
