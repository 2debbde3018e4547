"""Continuous key generation (issue 13): both parties' loops, in one process, over the
world test doubles and an authenticated in-memory channel (the real BB84 protocol, real
key confirmation; short keys of one 2^18-pulse block, eps relaxed as a lab may).

* a stop at any moment of a key (triggered when a chosen message passes) leaves both
  key stores with the same committed keys and nothing pending;
* a key whose QBER fails is dropped and the run goes on; too many in a row end it;
* an authentication failure ends the run, keeping the keys made before it;
* a full store pauses generation (no key dropped) until keys are consumed;
* after a crash, the inventory exchange makes both stores agree.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# tests/ is on sys.path (rootdir of the test packages)
from experiments.bb84.support import (
    TEST_KEY,
    WorldPatternGenerator,
    WorldTagger,
    bb84_world,
    frame_kind,
    settings,
)
from qhil.orchestrator.channel import HmacSha256Authenticator, in_process_channels
from qhil.orchestrator.experiments.bb84 import AbortReason, run_alice, run_bob
from qhil.orchestrator.experiments.bb84.continuous import (
    CappedKeyStore,
    ContinuousProgress,
    ContinuousResult,
    StopRequest,
    StorageGate,
    _Control,
    reconcile_stores,
    resolve_store,
    run_continuous_party,
    scan,
)
from qhil.records import KeyStore

TIMEOUT_S = 2.0
# One block of 2^18 pulses: a key of a few hundred bits in ~0.3 s at these eps.
SETTINGS = {
    "blocks": 1,
    "pattern_length": 1 << 18,
    "eps_sec": 1e-3,
    "eps_cor": 1e-6,
    "message_timeout_s": TIMEOUT_S,
}


class FlippingGenerator(WorldPatternGenerator):
    """Alice's generator with a fault: while ``flip`` is set, 20 % of the bits she
    sends are inverted (a QBER of ~20 %, far above max_qber)."""

    flip = False

    async def load_pattern(self, symbols: np.ndarray, symbol_rate_hz: float) -> None:
        if self.flip:
            rng = np.random.default_rng(7)
            symbols = symbols ^ (rng.random(symbols.size) < 0.2).astype(symbols.dtype)
        await super().load_pattern(symbols, symbol_rate_hz)


class Gate:
    """A node's store bound: at most ``limit`` committed keys of its label."""

    def __init__(self, store: KeyStore, label: str, limit: int) -> None:
        self.store, self.label, self.limit = store, label, limit

    def stored(self) -> int:
        return sum(r.label == self.label for r in scan(self.store.list_keys))

    def room(self, next_key_bits: int) -> bool:
        return self.stored() + 1 <= self.limit


async def continuous(
    tmp: Path,
    *,
    stop: StopRequest,
    tamper_a_to_b: Callable[[bytes], Sequence[bytes]] | None = None,
    tamper_b_to_a: Callable[[bytes], Sequence[bytes]] | None = None,
    generator: type[WorldPatternGenerator] = WorldPatternGenerator,
    on_progress: Callable[[ContinuousProgress], Any] | None = None,
    gates: dict[str, StorageGate] | None = None,
    max_consecutive_drops: int = 5,
    seed: int = 3,
) -> tuple[ContinuousResult, ContinuousResult, KeyStore, WorldPatternGenerator]:
    """Both parties' continuous loops until ``stop`` (or the run ends by itself)."""
    world = bb84_world(seed=seed)
    s = settings(**SETTINGS)
    a, b = in_process_channels(
        HmacSha256Authenticator(TEST_KEY),
        HmacSha256Authenticator(TEST_KEY),
        tamper_a_to_b=tamper_a_to_b,
        tamper_b_to_a=tamper_b_to_a,
        timeout_s=TIMEOUT_S,
    )
    await asyncio.gather(a.open(), b.open())
    keys = CappedKeyStore(tmp / "keys")  # as the jobs' (keys cut to a KME's room)
    gen, tagger = generator(world), WorldTagger(world)
    rngs = {p: np.random.default_rng([seed, i]) for i, p in enumerate(("alice", "bob"))}
    gates = gates or {}

    def party(name: str) -> Any:
        channel = a if name == "alice" else b

        def one_key(hook: Any) -> Any:
            run = run_alice if name == "alice" else run_bob
            role: Any = gen if name == "alice" else tagger
            return run(s, role, channel, key_store=keys, progress=hook, rng=rngs[name])

        return run_continuous_party(
            name,
            one_key,
            channel,
            key_store=keys,
            stop=stop,
            timeout_s=TIMEOUT_S,
            gate=gates.get(name),
            on_progress=on_progress,
            max_consecutive_drops=max_consecutive_drops,
        )

    try:
        ra, rb = await asyncio.wait_for(asyncio.gather(party("alice"), party("bob")), 120)
    finally:
        await asyncio.gather(a.close(), b.close())
    return ra, rb, keys, gen


def committed(keys: KeyStore, label: str) -> list[tuple[str, int]]:
    return [(r.sha256, r.length_bits) for r in keys.list_keys() if r.label == label]


def assert_same_keys(keys: KeyStore, ra: ContinuousResult, rb: ContinuousResult) -> None:
    """Both nodes hold the same committed keys, in order; nothing pending; each party's
    result lists exactly its node's keys."""
    assert keys.pending_keys() == []
    alice, bob = committed(keys, "alice"), committed(keys, "bob")
    assert alice == bob
    assert [(r.sha256, r.length_bits) for r in ra.keys] == alice
    assert [(r.sha256, r.length_bits) for r in rb.keys] == bob
    for ref_a, ref_b in zip(ra.keys, rb.keys, strict=True):
        assert keys.load(ref_a.key_id) == keys.load(ref_b.key_id)


def stop_after(stop: StopRequest, n: int) -> Callable[[ContinuousProgress], None]:
    def on_progress(p: ContinuousProgress) -> None:
        if p.party == "bob" and p.keys + p.dropped >= n:
            stop.request("test")

    return on_progress


async def test_keys_until_stopped(tmp_path: Path) -> None:
    stop = StopRequest()
    ra, rb, keys, _ = await continuous(tmp_path, stop=stop, on_progress=stop_after(stop, 3))
    assert len(ra.keys) == len(rb.keys) == 3
    assert ra.stopped == rb.stopped == "test"
    assert ra.aborted is None and rb.aborted is None
    assert_same_keys(keys, ra, rb)
    # never the same key material twice: every key is distinct
    assert len({r.sha256 for r in ra.keys}) == 3


# (direction, message kind): the stop comes as the SECOND such frame (key 1's) passes,
# i.e. at every step of a key: its start, a block, Cascade, the final messages.
STOP_POINTS = [
    ("a_to_b", "bb84.continuous.next"),
    ("b_to_a", "bb84.continuous.go"),
    ("a_to_b", "bb84.BlockLive"),
    ("a_to_b", "bb84.CascadeStart"),
    ("a_to_b", "bb84.Amplification"),
    ("b_to_a", "bb84.KeyConfirm"),
    ("a_to_b", "bb84.KeyConfirm"),  # Bob commits on this one: the key must finish
    ("b_to_a", "bb84.KeyCommitted"),
    ("a_to_b", "bb84.Finished"),
]


@pytest.mark.parametrize(("direction", "kind"), STOP_POINTS)
async def test_stop_at_any_moment_leaves_the_same_keys(
    tmp_path: Path, direction: str, kind: str
) -> None:
    stop = StopRequest()
    seen = Counter[str]()

    def watch(way: str) -> Callable[[bytes], Sequence[bytes]]:
        def tamper(frame: bytes) -> Sequence[bytes]:
            k = frame_kind(frame)
            if way == direction and k == kind:
                seen[k] += 1
                if seen[k] == 2:
                    stop.request("SIGTERM")
            return [frame]

        return tamper

    ra, rb, keys, _ = await continuous(
        tmp_path, stop=stop, tamper_a_to_b=watch("a_to_b"), tamper_b_to_a=watch("b_to_a")
    )
    assert seen[kind] == 2, "the stop point was never reached"
    assert ra.aborted is None and rb.aborted is None, (ra.aborted, rb.aborted)
    assert ra.stopped == rb.stopped == "SIGTERM"
    assert_same_keys(keys, ra, rb)
    # key 0 is kept; key 1 is discarded before key confirmation and kept once Bob could
    # have committed it (Alice's tag sent); in between, which depends on which party
    # reached confirmation first, but the same at both.
    at = STOP_POINTS.index((direction, kind))
    if at < STOP_POINTS.index(("a_to_b", "bb84.Amplification")):
        assert len(ra.keys) == 1
    elif at >= STOP_POINTS.index(("a_to_b", "bb84.KeyConfirm")):
        assert len(ra.keys) == 2


async def test_a_failed_key_is_dropped_and_the_run_goes_on(tmp_path: Path) -> None:
    stop = StopRequest()
    holder: list[Any] = []

    def on_progress(p: ContinuousProgress) -> None:
        gen = holder[0]
        if p.party == "bob":
            gen.flip = p.keys == 1 and p.dropped == 0  # key 1 sent with 20 % flipped bits
            if p.keys == 2:
                stop.request("test")

    class Gen(FlippingGenerator):
        def __init__(self, world: Any) -> None:
            super().__init__(world)
            holder.append(self)

    ra, rb, keys, _ = await continuous(tmp_path, stop=stop, generator=Gen, on_progress=on_progress)
    assert ra.dropped == rb.dropped == Counter({"qber_too_high": 1})
    assert [o.reason for o in ra.outcomes] == [None, AbortReason.QBER_TOO_HIGH, None]
    # the rate's time counts the dropped key's acquisition too
    assert ra.acquisition_s == pytest.approx(3 * settings(**SETTINGS).block_duration_s)
    assert ra.aborted is None and rb.aborted is None
    assert_same_keys(keys, ra, rb)
    assert len(ra.keys) == 2


async def test_keys_dropped_in_a_row_end_the_run(tmp_path: Path) -> None:
    class Bad(FlippingGenerator):
        flip = True

    stop = StopRequest()
    ra, rb, keys, _ = await continuous(tmp_path, stop=stop, generator=Bad, max_consecutive_drops=2)
    for r in (ra, rb):
        assert r.aborted is not None and r.aborted.reason is AbortReason.QBER_TOO_HIGH
        assert "2 keys in a row dropped" in r.aborted.detail
        assert r.stopped is None
    assert ra.keys == [] and keys.list_keys() == [] and keys.pending_keys() == []


async def test_authentication_failure_ends_the_run_keeping_earlier_keys(tmp_path: Path) -> None:
    stop = StopRequest()
    seen = Counter[str]()

    def forge(frame: bytes) -> Sequence[bytes]:
        k = frame_kind(frame)
        seen[k] += 1
        if k == "bb84.BlockLive" and seen[k] == 2:  # key 1's first block
            b = bytearray(frame)
            b[len(b) // 2] ^= 0x10
            return [bytes(b)]
        return [frame]

    ra, rb, keys, _ = await continuous(tmp_path, stop=stop, tamper_a_to_b=forge)
    assert rb.aborted is not None and rb.aborted.reason is AbortReason.AUTHENTICATION_FAILED
    assert ra.aborted is not None  # Alice hears nothing more: the channel failed
    assert ra.stopped is None and rb.stopped is None
    assert_same_keys(keys, ra, rb)
    assert len(ra.keys) == 1


async def test_a_full_store_pauses_until_keys_are_consumed(tmp_path: Path) -> None:
    """Bob's store holds at most one key; the 'application' consumes the oldest key of
    both nodes whenever generation pauses. No key is dropped, the bound always holds."""
    stop = StopRequest()
    keys = KeyStore(tmp_path / "keys")
    gate_b = Gate(keys, "bob", 1)
    pauses = 0
    most = 0

    def consume() -> None:
        for label in ("alice", "bob"):
            mine = [r for r in keys.list_keys() if r.label == label]
            if mine:
                keys.delete(mine[0].key_id)

    def on_progress(p: ContinuousProgress) -> None:
        nonlocal pauses, most
        if p.party != "bob":
            return
        most = max(most, gate_b.stored())
        if p.event == "paused":
            pauses += 1
            asyncio.get_running_loop().call_soon(consume)
        if p.keys >= 3:
            stop.request("test")

    ra, rb, _, _ = await continuous(
        tmp_path, stop=stop, gates={"bob": gate_b}, on_progress=on_progress
    )
    assert len(ra.keys) == len(rb.keys) == 3 and ra.dropped == Counter()
    assert pauses == 2  # before keys 1 and 2
    assert most == 1
    assert rb.paused_s > 0 and ra.paused_s == 0  # Alice waited for Bob's 'go' (heartbeats)


async def test_stop_while_paused(tmp_path: Path) -> None:
    stop = StopRequest()
    keys = KeyStore(tmp_path / "keys")

    def on_progress(p: ContinuousProgress) -> None:
        if p.event == "paused":
            stop.request("SIGINT")

    ra, rb, _, _ = await continuous(
        tmp_path,
        stop=stop,
        gates={"alice": Gate(keys, "alice", 1)},
        on_progress=on_progress,
    )
    assert ra.stopped == rb.stopped == "SIGINT"
    assert len(ra.keys) == len(rb.keys) == 1
    assert_same_keys(keys, ra, rb)


# --- restart after a crash: the inventory exchange ------------------------------------


def _key(store: KeyStore, bits: np.ndarray, label: str, *, pending: bool) -> str:
    save = store.save_pending if pending else store.save
    return save(bits, label=label).key_id


async def _reconcile(
    store_a: KeyStore, store_b: KeyStore, *, stopped: bool = False
) -> tuple[dict[str, int], ...]:
    a, b = in_process_channels(
        HmacSha256Authenticator(TEST_KEY), HmacSha256Authenticator(TEST_KEY), timeout_s=5
    )
    await asyncio.gather(a.open(), b.open())
    stop = StopRequest()
    if stopped:  # a signal at start-up: the restart's resolution is still done
        stop.request("SIGTERM")
    try:
        return tuple(
            await asyncio.gather(
                reconcile_stores(_Control(a, "alice", 5, stop), store_a, "alice"),
                reconcile_stores(_Control(b, "bob", 5, stop), store_b, "bob"),
            )
        )
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.parametrize("stopped", [False, True])
async def test_restart_resolves_what_a_crash_left(tmp_path: Path, stopped: bool) -> None:
    rng = np.random.default_rng(5)
    bits = [rng.integers(0, 2, 256, dtype=np.uint8) for _ in range(5)]
    ka, kb = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    # k0: both committed (alice's copy later handed out in full by her KME: gone)
    _key(kb, bits[0], "bob", pending=False)
    # k1: both committed
    _key(ka, bits[1], "alice", pending=False)
    _key(kb, bits[1], "bob", pending=False)
    # k2: alice killed after bob committed, before her own commit: pending at alice
    _key(ka, bits[2], "alice", pending=True)
    _key(kb, bits[2], "bob", pending=False)
    # k3: both killed while pending
    _key(ka, bits[3], "alice", pending=True)
    _key(kb, bits[3], "bob", pending=True)
    ra, rb = await _reconcile(ka, kb, stopped=stopped)
    assert ra == {"committed": 1, "discarded": 1}
    assert rb == {"discarded": 1}
    assert committed(ka, "alice") == committed(kb, "bob")[1:]
    assert ka.pending_keys() == [] and kb.pending_keys() == []


async def test_restart_deletes_an_orphan_of_a_crash_during_confirmation(tmp_path: Path) -> None:
    """Bob committed key 1 and died before acknowledging; Alice saw his end close and
    discarded hers. On restart Bob's copy goes: a key only one node holds is no key."""
    rng = np.random.default_rng(6)
    b0, b1 = (rng.integers(0, 2, 256, dtype=np.uint8) for _ in range(2))
    ka, kb = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    _key(ka, b0, "alice", pending=False)
    _key(kb, b0, "bob", pending=False)
    _key(kb, b1, "bob", pending=False)
    ra, rb = await _reconcile(ka, kb)
    assert rb == {"deleted": 1} and ra == {}
    assert committed(ka, "alice") == committed(kb, "bob")


def test_resolve_store_keeps_other_labels(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k")
    bits = np.ones(64, np.uint8)
    other = _key(store, bits, "bob", pending=True)
    assert resolve_store(store, "alice", set(), set()) == {}
    assert [r.key_id for r in store.pending_keys()] == [other]


async def test_restart_keeps_a_key_the_peers_kme_used_up(tmp_path: Path) -> None:
    """Alice's KME handed out all of the newest key and deleted its file; Bob's copy is
    still owed to his SAE (dec_keys): the ledger names it, so it is no orphan."""
    from qhil.kms.ledger import Ledger

    rng = np.random.default_rng(8)
    bits = rng.integers(0, 2, 256, dtype=np.uint8)
    ka, kb = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    ref = ka.save(bits, label="alice")
    kb.save(bits, label="bob")
    ledger = Ledger(ka.directory / "kme-alice")
    ledger.append({"op": "cursor", "cursor": {ref.sha256: 256}})
    ledger.close()
    ka.delete(ref.key_id)  # as the KME does once every bit is handed out
    ra, rb = await _reconcile(ka, kb)
    assert rb == {} and ra == {}
    assert len(committed(kb, "bob")) == 1


# --- the command line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--max-key-count", "8"], "--max-key-count is for --continuous runs only"),
        (["--kme-key-size", "64"], "--kme-key-size is for --continuous runs only"),
        (["--continuous", "--max-key-count", "0"], "--max-key-count"),
        (["--continuous", "--kme-key-size", "9"], "not a multiple of 8"),
        (["--continuous", "--kms-config", "nowhere/kms.toml"], "nowhere/kms.toml"),
    ],
)
def test_bad_continuous_options_are_one_line_errors(
    tmp_path: Path, args: list[str], says: str
) -> None:
    from click.testing import CliRunner

    from qhil.cli import main

    data = ["--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, ["run", "bb84", *args, *data])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qhil: error:") and says in lines[0], lines


# --- the KME bound -----------------------------------------------------------------------


def test_kme_capacity_counts_what_the_kme_has_not_handed_out(tmp_path: Path) -> None:
    """The gate reads K1's KME state: committed bits of the label less what its ledger
    says it handed out, in KME keys of key_size bits; room for the next key means room for
    all of its KME keys."""
    from qhil.kms.ledger import Ledger
    from qhil.orchestrator.experiments.bb84.continuous import KmeCapacity

    store = KeyStore(tmp_path / "keys")
    ref = store.save(np.ones(1000, np.uint8), label="alice")
    store.save(np.ones(5000, np.uint8), label="bob")  # the other node's: not counted
    gate = KmeCapacity(str(store.directory), "alice", key_size=100, max_key_count=15)
    assert gate.stored_key_count() == 10
    assert gate.room(500) and not gate.room(600)  # 10 + 5 <= 15 < 10 + 6
    # before the first key of a run: sized as the newest stored key (1000 bits: 10 more)
    assert not gate.room(0)
    ledger = Ledger(store.directory / "kme-alice")
    ledger.append({"op": "cursor", "cursor": {ref.sha256: 600}})  # 600 bits handed out
    ledger.close()
    assert gate.stored_key_count() == 4 and gate.room(0) and gate.room(1100)


async def test_a_key_larger_than_the_kmes_room_never_exceeds_max_key_count(
    tmp_path: Path,
) -> None:
    """The first key (size unknown before it) and every later one is cut to the room
    left at the smaller of the two KMEs, so the REAL count (uncapped) stays within
    max_key_count at both nodes, and both nodes keep the same keys."""
    from qhil.kms.capacity import key_capacity
    from qhil.kms.ledger import Ledger
    from qhil.orchestrator.experiments.bb84.continuous import KmeCapacity

    size, most = 8, 6  # room for 48 bits: keys here are a few hundred
    stop = StopRequest()
    gates: dict[str, StorageGate] = {
        p: KmeCapacity(str(tmp_path / "keys"), p, size, most) for p in ("alice", "bob")
    }
    # an earlier key of 3 KME keys at both nodes; Alice's KME handed out 2 of them:
    # room for 5 at Alice's, 3 at Bob's
    early = KeyStore(tmp_path / "keys")
    for label in ("alice", "bob"):
        ref = early.save(np.ones(3 * size, np.uint8), label=label)
    ledger = Ledger(tmp_path / "keys" / "kme-alice")
    ledger.append({"op": "cursor", "cursor": {ref.sha256: 2 * size}})
    ledger.close()
    details: list[str] = []

    def on_progress(p: ContinuousProgress) -> None:
        if p.event == "key":
            details.append(p.detail)
            stop.request("test")

    ra, rb, keys, _ = await continuous(tmp_path, stop=stop, gates=gates, on_progress=on_progress)
    assert len(ra.keys) == len(rb.keys) == 1
    assert ra.keys[0].length_bits == rb.keys[0].length_bits == 3 * size  # the common room
    assert ra.keys[0].sha256 == rb.keys[0].sha256
    assert "cut off" in details[0]
    for node in ("alice", "bob"):
        real = key_capacity(keys.directory, node, key_size=size, max_key_count=most)
        assert real.stored_key_count <= most, (node, real)


@pytest.mark.parametrize("continuous_party", ["alice", "bob"])
async def test_a_peer_not_running_continuous_is_named(
    tmp_path: Path, continuous_party: str
) -> None:
    """One party --continuous, the other a single run: both stop at once, the continuous
    one saying what is wrong (before, Bob skipped Alice's Hello as a dropped key's left-over
    and both waited for a timeout)."""
    from qhil.orchestrator.experiments.bb84 import BB84Aborted

    world = bb84_world(seed=3)
    s = settings(**SETTINGS)
    a, b = in_process_channels(
        HmacSha256Authenticator(TEST_KEY), HmacSha256Authenticator(TEST_KEY), timeout_s=60
    )
    await asyncio.gather(a.open(), b.open())
    keys = KeyStore(tmp_path / "keys")
    gen, tagger = WorldPatternGenerator(world), WorldTagger(world)
    long = settings(**{**SETTINGS, "message_timeout_s": 60.0})

    def one_key(hook: Any) -> Any:
        if continuous_party == "alice":
            return run_alice(s, gen, a, key_store=keys, progress=hook)
        return run_bob(s, tagger, b, key_store=keys, progress=hook)

    mine = run_continuous_party(
        continuous_party,
        one_key,
        a if continuous_party == "alice" else b,
        key_store=keys,
        stop=StopRequest(),
        timeout_s=60,
    )
    other = (
        run_bob(long, tagger, b, key_store=keys)
        if continuous_party == "alice"
        else run_alice(long, gen, a, key_store=keys)
    )
    try:
        res, single = await asyncio.wait_for(
            asyncio.gather(mine, other, return_exceptions=True), 30
        )
    finally:
        await asyncio.gather(a.close(), b.close())
    assert isinstance(res, ContinuousResult) and res.aborted is not None
    assert res.aborted.reason is AbortReason.PROTOCOL_ERROR
    if continuous_party == "bob":
        assert "is the other party running --continuous?" in res.aborted.detail
    assert isinstance(single, BB84Aborted)
    assert keys.list_keys() == [] and keys.pending_keys() == []


def test_text_summary_lists_the_last_keys_and_never_bits() -> None:
    from qhil.orchestrator.bb84_continuous_cli import TEXT_KEYS, _text

    keys = [
        {
            "length_bits": 100 + i,
            "sha256": "00" * 32,
            "alice_key_id": f"a{i}",
            "bob_key_id": f"b{i}",
        }
        for i in range(TEXT_KEYS + 5)
    ]
    out = _text({"run_id": "r", "status": "success", "keys": keys, "dropped": {"no_key": 2}})
    assert out["dropped"] == "no_key 2"
    assert out["keys"].startswith(f"{TEXT_KEYS + 5}, the last {TEXT_KEYS}")
    listed = [k for k in out if k.startswith("key ")]
    assert listed[0] == "key 5" and len(listed) == TEXT_KEYS
    assert out["key 5"] == "a5 / b5: 105 bits"


async def test_a_key_lost_for_no_data_says_the_likely_cause() -> None:
    from qhil.orchestrator.experiments.bb84 import BB84Aborted, BB84Progress
    from qhil.orchestrator.experiments.bb84.continuous_job import _diagnosed
    from qhil.orchestrator.experiments.bb84.detection import NO_LIGHT

    async def start(hook: Any) -> Any:
        hook(
            BB84Progress("bob", "block", 1, 1, 0, f"discarded: 3 clicks; likely cause: {NO_LIGHT}")
        )
        raise BB84Aborted(AbortReason.NO_DATA, "none of 1 blocks could be aligned")

    with pytest.raises(BB84Aborted) as err:
        await _diagnosed(start)(lambda event: None)
    assert err.value.detail.endswith(f"likely cause (1 of 1 discarded blocks): {NO_LIGHT}")


def test_a_key_file_going_during_a_listing_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KME deletes a used-up key file while the store is listed (this made the pause
    test fail now and then: its consumer deletes keys while Bob's gate lists them)."""
    store = KeyStore(tmp_path / "keys")
    first = store.save(np.ones(1000, np.uint8), label="alice")
    left = store.save(np.ones(300, np.uint8), label="alice")
    info = KeyStore.info

    def info_while_the_kme_deletes(self: KeyStore, key_id: str) -> Any:
        if key_id == first.key_id and self.path_of(key_id).exists():
            self.path_of(key_id).unlink()  # gone between the directory scan and the read
        return info(self, key_id)

    monkeypatch.setattr(KeyStore, "info", info_while_the_kme_deletes)
    assert [r.key_id for r in scan(store.list_keys)] == [left.key_id]


LATE_SIGNALS = """
import os, signal
from qhil.orchestrator.experiments.bb84.continuous_job import signalled

async def job(stop):
    return "recorded success"

with signalled(job) as (summary, first):
    os.kill(os.getpid(), signal.SIGINT)  # while the summary is printed, the plots drawn
    os.kill(os.getpid(), signal.SIGTERM)
    print(summary, first, flush=True)
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
"""


@pytest.mark.slow  # a Python process importing the job: ~2-4 s
def test_a_signal_after_the_run_ended_does_not_contradict_its_record() -> None:
    """A signal arriving once the job is over (summary printed, plots drawn) is noted
    and ignored: exit 0 as recorded (it raised KeyboardInterrupt, exit 130 after a
    "success" summary)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LATE_SIGNALS], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "recorded success None"
    assert "SIGINT after the run had ended: ignored" in done.stderr
    assert "SIGTERM after the run had ended: ignored" in done.stderr
