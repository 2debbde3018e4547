"""Continuous key generation: BB84 key after key over one open bench and channel (issue 13).

Each party runs :func:`run_continuous_party` with its end of the authenticated channel;
in one process both run side by side (:func:`run_continuous`). Per key, Alice (the
leader) says ``next`` and Bob answers ``go``, then one whole BB84 run (``run_alice`` /
``run_bob``, blocks to key confirmation) makes the key, committed at both nodes or at
neither by the protocol's own confirmation. Between keys:

* **Bounded storage.** Before each key a party asks its :class:`StorageGate` whether its
  store has room for one more key; while it has not, generation pauses (a ``wait``
  heartbeat every half message timeout keeps the peer waiting): keys are never dropped
  for lack of room.
* **Per-key aborts.** A key whose QBER, verification, confirmation or length fails (or
  that had no data) is dropped and the run goes on, both parties counting it (both see
  the same reason); ``max_consecutive_drops`` of them in a row end the run. Any other
  abort (authentication above all: an attack or a misconfiguration) ends the run.
* **Stop.** :class:`StopRequest` (set by SIGINT/SIGTERM) ends the run at once: a key
  that has not reached key confirmation at this party is cancelled (discarded, as a
  failed confirmation is) and the peer told ``Abort(stopped)``; one that has is let
  finish (a few messages), so both nodes keep the same set of committed keys. The
  stopping party lingers for the peer's answer, then closes; a peer that was busy past
  that (an acquisition, a block's processing) finds it closed at its next send and reads
  what came before the close: the ``Abort(stopped)`` makes it "stopped by <party>", not
  ``channel_failed`` (``link.abort_before_close``).
* **Restart.** At the start the parties exchange the (SHA-256, length) of the keys of
  their label (:func:`reconcile_stores`): a key left pending by a crash is committed
  when the peer committed it, else discarded; the newest committed key that the peer
  holds in neither form (Bob killed between his commit and his acknowledgement, so
  Alice discarded) is deleted. Both nodes then hold the same keys.

Control messages (kind ``bb84.continuous.*``) carry no key material; the inventory
carries the keys' SHA-256, which the run records publish anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from qhil.orchestrator.channel import (
    AuthenticationError,
    ChannelClosedError,
    ChannelError,
    ChannelTimeoutError,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import (
    MessageChannel,
    abort_before_close,
    peer_abort,
)
from qhil.orchestrator.experiments.bb84.messages import Abort, from_payload, kind_of, to_payload
from qhil.orchestrator.experiments.bb84.party import ProgressHook, _call, log
from qhil.orchestrator.experiments.bb84.result import BB84Progress, PartyResult
from qhil.orchestrator.experiments.bb84.statistics import BB84Statistics
from qhil.records import KeyNotFoundError, KeyRef, KeyStore, KeyStoreError

KIND = "bb84.continuous."
NEXT, GO, WAIT, INVENTORY = (KIND + k for k in ("next", "go", "wait", "inventory"))
_ABORT = kind_of(Abort)

#: Reasons that cost one key, not the run: both parties see them on the same public data.
DROP_REASONS = frozenset(
    {
        AbortReason.QBER_TOO_HIGH,
        AbortReason.VERIFICATION_FAILED,
        AbortReason.CONFIRMATION_FAILED,
        AbortReason.NO_KEY,
        AbortReason.NO_DATA,
    }
)
#: Keys dropped in a row that end the run (the bench, not chance, is failing).
MAX_CONSECUTIVE_DROPS = 5
#: How often a paused party looks at its store again, s.
POLL_S = 0.2
#: Longest a stopping party waits for the peer to close after telling it, s.
LINGER_S = 5.0
#: Listings of a key store tried while files go during them (:func:`scan`).
SCAN_TRIES = 10

#: One key: ``run_key(progress)`` runs ``run_alice`` or ``run_bob`` with that hook.
KeyRunner = Callable[[ProgressHook], Awaitable[PartyResult]]


class StopRequest:
    """Set once (by a signal handler, say) to end a continuous run cleanly."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.why: str | None = None

    def request(self, why: str) -> None:
        if self.why is None:
            self.why = why
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less if the stop comes; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        return self.is_set()


def scan(listing: Callable[[], list[KeyRef]]) -> list[KeyRef]:
    """``KeyStore.list_keys`` / ``pending_keys``, again when a key file went while it was
    read (a KME deletes the files it has used up; a peer process commits): the listing
    raises ``KeyNotFoundError`` for a file its directory scan had just seen."""
    for _ in range(SCAN_TRIES - 1):
        with contextlib.suppress(KeyNotFoundError):
            return listing()
    return listing()


class StorageGate(Protocol):
    """Whether a node's store may take one more key of about ``next_key_bits`` bits
    (0: size unknown yet, before the first key)."""

    def room(self, next_key_bits: int) -> bool: ...


class Unbounded:
    """No bound on the stored keys."""

    def room(self, next_key_bits: int) -> bool:
        return True


#: ``room_bits`` of a store without a bound (on the wire: control messages carry ints).
NO_CAP = -1


def room_bits(gate: StorageGate) -> int:
    """Bits the node's store may take now (``NO_CAP``: no bound): a gate with a
    ``room_bits()`` method says; others are unbounded in size."""
    method = getattr(gate, "room_bits", None)
    return NO_CAP if method is None else int(method())


def common_cap(*rooms: int) -> int:
    """The largest key both nodes' stores take: the smaller bounded room."""
    bounded = [r for r in rooms if r != NO_CAP]
    return min(bounded) if bounded else NO_CAP


class CappedKeyStore(KeyStore):
    """A key store that keeps at most ``caps[label]`` bits of a key saved under
    ``label`` (its first bits: a prefix of a secret key is as secret). Both parties set
    the same cap for each key (agreed in ``next``/``go``), so their keys stay equal; the
    key confirmation covers the whole key before it is cut."""

    def __init__(self, directory: Any = None) -> None:
        super().__init__(directory)
        self.caps: dict[str, int] = {}
        self.cut_bits: dict[str, int] = {}  # the last key's bits cut off, by label

    def save_pending(
        self, bits: Any, *, run_id: str | None = None, label: str | None = None
    ) -> KeyRef:
        cap = self.caps.get(label or "", NO_CAP)
        cut = 0
        if cap != NO_CAP and np.asarray(bits).size > cap:
            cut = int(np.asarray(bits).size - cap)
            bits = np.asarray(bits)[:cap]
        self.cut_bits[label or ""] = cut
        return super().save_pending(bits, run_id=run_id, label=label)


@dataclass
class KmeCapacity:
    """The node's KME's bound (``qhil.kms``): keys of ``key_size`` bits not yet handed
    out, over the committed keys labelled ``label``, must stay within ``max_key_count``.

    Room for the next key means room for as many KME keys as the largest key so far
    makes (a run's keys vary by a few per cent), at most ``max_key_count`` of them;
    before the first key, as many as the newest stored key of the label makes (an earlier
    run's), or, with none left, that the store is not full. The key is then cut to
    :meth:`room_bits` (:class:`CappedKeyStore`), so the count NEVER exceeds the bound: a
    key larger than the room left (the first key, a key longer than the largest so far,
    any key longer than the whole store) loses its excess bits.
    """

    key_dir: str
    label: str
    key_size: int
    max_key_count: int

    def stored_key_count(self) -> int:
        """KME keys not yet handed out (the KME's ledger knows what it handed out)."""
        try:
            from qhil.kms.capacity import key_capacity
        except ImportError:  # no KME package: every committed bit of the label is unserved
            refs = scan(KeyStore(self.key_dir).list_keys)
            return sum(r.length_bits for r in refs if r.label == self.label) // self.key_size
        cap = key_capacity(
            self.key_dir, self.label, key_size=self.key_size, max_key_count=self.max_key_count
        )
        return int(cap.stored_key_count)

    def room(self, next_key_bits: int) -> bool:
        stored = self.stored_key_count()
        if next_key_bits <= 0:
            mine = [r for r in scan(KeyStore(self.key_dir).list_keys) if r.label == self.label]
            if not mine:
                return stored < self.max_key_count
            next_key_bits = mine[-1].length_bits
        need = min(math.ceil(next_key_bits / self.key_size), self.max_key_count)
        return stored + need <= self.max_key_count

    def room_bits(self) -> int:
        """The bits the store takes now without exceeding ``max_key_count`` KME keys."""
        return max(0, self.max_key_count - self.stored_key_count()) * self.key_size


@dataclass(frozen=True)
class ContinuousProgress:
    """After each key (committed or dropped) and on pausing/resuming."""

    party: str
    event: str  # "key", "dropped", "paused", "resumed"
    keys: int
    bits: int
    dropped: int
    detail: str = ""


@dataclass
class KeyOutcome:
    """One attempted key: committed (``ref``) or dropped (``reason``)."""

    index: int
    ref: KeyRef | None
    reason: AbortReason | None = None
    detail: str = ""
    result: PartyResult | None = None
    aborted: BB84Aborted | None = None

    @property
    def statistics(self) -> BB84Statistics | None:
        """The key's public tally (also of a dropped key, as far as it got)."""
        if self.result is not None:
            return self.result.statistics
        if self.aborted is not None and self.aborted.result is not None:
            return self.aborted.result.statistics
        return None


@dataclass
class ContinuousResult:
    """What one party's continuous run did; key material never appears here."""

    party: str
    outcomes: list[KeyOutcome] = field(default_factory=list)
    stopped: str | None = None  # why it stopped cleanly ("SIGTERM", "stopped by bob")
    aborted: BB84Aborted | None = None  # why it ended otherwise
    paused_s: float = 0.0
    resolved: dict[str, int] = field(default_factory=dict)  # restart: committed/discarded/...

    @property
    def keys(self) -> list[KeyRef]:
        return [o.ref for o in self.outcomes if o.ref is not None]

    @property
    def secret_bits(self) -> int:
        return sum(r.length_bits for r in self.keys)

    @property
    def dropped(self) -> Counter[str]:
        return Counter(o.reason.value for o in self.outcomes if o.reason is not None)

    @property
    def acquisition_s(self) -> float:
        """Acquisition time of every key tried, dropped ones included (an honest rate)."""
        return sum(s.acquisition_s for o in self.outcomes if (s := o.statistics) is not None)


class _Control:
    """The control messages between keys, over the same channel as the keys."""

    def __init__(self, channel: MessageChannel, party: str, timeout_s: float, stop: StopRequest):
        self.channel = channel
        self.party = party
        self.peer = "bob" if party == "alice" else "alice"
        self.timeout_s = timeout_s
        self.stop = stop
        self.told = False
        self.told_stop = False
        self.after_drop = False  # what is left of a dropped key may still come in

    async def send(self, kind: str, payload: dict[str, Any] | None = None) -> None:
        try:
            await self.channel.send(kind, payload or {})
        except AuthenticationError as exc:
            raise BB84Aborted(AbortReason.AUTHENTICATION_FAILED, str(exc)) from exc
        except (ChannelError, ConnectionError) as exc:
            # The peer may have stopped (Abort) and closed before we sent: its stop, not ours
            if isinstance(exc, ChannelClosedError | ConnectionError):
                told = await abort_before_close(self.channel, self.timeout_s)
                if told is not None:
                    raise told from exc
            raise BB84Aborted(
                AbortReason.CHANNEL_FAILED, f"{self.party}: cannot send {kind!r}: {exc}"
            ) from exc

    async def tell(self, reason: AbortReason, detail: str) -> None:
        """Best effort, once: the peer stops too (its key in progress is discarded)."""
        if self.told or reason is AbortReason.AUTHENTICATION_FAILED:
            return  # after a failed authentication the channel is not to be trusted
        self.told = True
        kind, payload = to_payload(Abort(reason.value, detail))
        with contextlib.suppress(Exception):
            await self.channel.send(kind, payload)

    async def tell_stopped(self, why: str) -> None:
        await self.tell(AbortReason.STOPPED, f"{self.party} stopped ({why})")
        self.told_stop = True

    async def linger(self) -> None:
        """After telling the peer we stopped: read (and drop) what it still sends until it
        closes, stops too, or ``LINGER_S``. Closing with its messages unread would reset
        the TCP connection, and a reset can lose our ``Abort(stopped)`` at the peer (it
        then ends 'connection lost', aborted, instead of 'stopped by <us>')."""
        loop = asyncio.get_running_loop()
        end = loop.time() + min(self.timeout_s, LINGER_S)
        while (left := end - loop.time()) > 0:
            try:
                got = await self.channel.recv(timeout_s=left)
            except Exception:  # closed, timed out, anything: nothing more to wait for
                return
            if got.kind == _ABORT:
                return

    async def expect(
        self, kind: str, key: int | None = None, *, stoppable: bool = True
    ) -> dict[str, Any] | None:
        """The peer's next control message of ``kind`` (for key ``key``), skipping ``wait``
        heartbeats and what is left of a dropped key (its messages, both parties' Aborts);
        None when our stop came first. A peer's Abort of another reason ends the run."""
        while True:
            recv = asyncio.ensure_future(self.channel.recv(timeout_s=self.timeout_s))
            # (an unstoppable wait, the inventory's, still ends on the channel's timeout)
            stopping = asyncio.ensure_future(
                self.stop.wait() if stoppable else asyncio.Event().wait()
            )
            try:
                await asyncio.wait({recv, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not recv.done():
                    recv.cancel()
                    with contextlib.suppress(BaseException):
                        await recv
            if not recv.done() or recv.cancelled():
                return None
            try:
                got = recv.result()
            except AuthenticationError as exc:
                raise BB84Aborted(AbortReason.AUTHENTICATION_FAILED, str(exc)) from exc
            except ChannelTimeoutError as exc:
                raise BB84Aborted(
                    AbortReason.CHANNEL_FAILED,
                    f"{self.party}: no {kind!r} (nor a wait) from {self.peer} within "
                    f"{self.timeout_s:g} s",
                ) from exc
            except (ChannelError, ConnectionError) as exc:
                raise BB84Aborted(
                    AbortReason.CHANNEL_FAILED,
                    f"{self.party}: channel failed while waiting for {kind!r}: {exc}",
                ) from exc
            if got.kind == kind and (key is None or got.payload.get("key") == key):
                self.after_drop = False
                return dict(got.payload)
            if got.kind == WAIT:
                continue
            if got.kind == _ABORT:
                msg = from_payload(got.kind, got.payload)
                assert isinstance(msg, Abort)
                told = peer_abort(msg)
                if told.reason in DROP_REASONS and self.after_drop:
                    continue  # the peer's own abort of the key both just dropped
                raise told
            if self.after_drop and not got.kind.startswith(KIND):
                continue  # a message of the dropped key, sent before the peer saw the abort
            hint = (
                "" if got.kind.startswith(KIND) else " (is the other party running --continuous?)"
            )
            raise BB84Aborted(
                AbortReason.PROTOCOL_ERROR,
                f"{self.party}: expected {kind!r} for key {key} from {self.peer}, got "
                f"{got.kind!r}{hint}",
            )


def _inventory(store: KeyStore, label: str) -> dict[str, Any]:
    def pack(refs: list[KeyRef]) -> dict[str, Any]:
        mine = [r for r in refs if r.label == label]
        sha = b"".join(bytes.fromhex(r.sha256) for r in mine)
        return {"sha256": sha, "bits": np.asarray([r.length_bits for r in mine], np.int64)}

    return {
        "committed": pack(scan(store.list_keys)),
        "pending": pack(scan(store.pending_keys)),
        "served": b"".join(bytes.fromhex(sha) for sha in _served(store, label)),
    }


def _served(store: KeyStore, label: str) -> list[str]:
    """SHA-256 of the keys the node's KME has begun handing out (its ledger's cursor),
    files it deleted once used up included: such a key existed and was committed."""
    try:
        from qhil.kms.capacity import ledger_cursor
    except ImportError:  # no KME package
        return []
    return sorted(ledger_cursor(store.directory, label))


def _keys_of(part: Any) -> set[tuple[str, int]]:
    sha, bits = part["sha256"], np.asarray(part["bits"])
    if not isinstance(sha, bytes) or len(sha) != 32 * bits.size:
        raise BB84Aborted(AbortReason.PROTOCOL_ERROR, "inventory: malformed key list")
    return {(sha[32 * i : 32 * i + 32].hex(), int(b)) for i, b in enumerate(bits)}


def resolve_store(
    store: KeyStore,
    label: str,
    peer_committed: set[tuple[str, int]],
    peer_pending: set[tuple[str, int]],
    peer_served: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """Make this node's keys of ``label`` agree with the peer's inventory (see module doc)."""
    done = Counter[str]()
    for ref in scan(store.pending_keys):
        if ref.label != label:
            continue
        if (ref.sha256, ref.length_bits) in peer_committed:
            store.commit(ref.key_id)
            done["committed"] += 1
        else:
            store.discard(ref.key_id)
            done["discarded"] += 1
    mine = [r for r in scan(store.list_keys) if r.label == label]
    if mine:
        # Only the newest key can be a crash's orphan: every earlier key was confirmed
        # before the next began. The peer's copy of a key may be gone because its KME
        # handed it all out (its ledger still names it): such a key is kept.
        newest = mine[-1]
        held = (newest.sha256, newest.length_bits) in peer_committed | peer_pending
        if not held and newest.sha256 not in peer_served:
            store.delete(newest.key_id)
            log.warning(
                "bb84 %s: key %s was committed here but not by the peer (a crash during "
                "its confirmation): deleted",
                label,
                newest.key_id,
            )
            done["deleted"] += 1
    return dict(done)


async def reconcile_stores(control: _Control, store: KeyStore, label: str) -> dict[str, int]:
    """Exchange inventories (Alice first) and resolve this node's keys against the peer's."""
    mine = _inventory(store, label)
    if control.party == "alice":
        await control.send(INVENTORY, mine)
        theirs = await control.expect(INVENTORY, stoppable=False)
    else:
        theirs = await control.expect(INVENTORY, stoppable=False)
        await control.send(INVENTORY, mine)
    if theirs is None:
        return {}
    try:
        committed, pending = _keys_of(theirs["committed"]), _keys_of(theirs["pending"])
        raw = theirs["served"]
        if not isinstance(raw, bytes) or len(raw) % 32:
            raise TypeError("malformed list of served keys")
        served = frozenset(raw[i : i + 32].hex() for i in range(0, len(raw), 32))
    except (KeyError, TypeError) as exc:
        raise BB84Aborted(AbortReason.PROTOCOL_ERROR, f"inventory: {exc}") from None
    try:
        return await asyncio.to_thread(resolve_store, store, label, committed, pending, served)
    except (KeyStoreError, OSError) as exc:
        raise BB84Aborted(AbortReason.KEY_STORE_FAILED, f"{label}: {exc}") from None


async def _wait_for_room(
    control: _Control, gate: StorageGate, next_bits: int, key: int, on_pause: Callable[[bool], Any]
) -> tuple[bool, float]:
    """Until ``gate`` has room (True) or the stop (False); sends ``wait`` heartbeats so the
    peer keeps waiting. Returns (room, seconds paused)."""
    loop = asyncio.get_running_loop()
    if await asyncio.to_thread(gate.room, next_bits):
        return True, 0.0
    start = last = loop.time()
    await _call(on_pause, True)
    await control.send(WAIT, {"key": key})
    heartbeat = control.timeout_s / 2
    try:
        while not await asyncio.to_thread(gate.room, next_bits):
            if await control.stop.sleep(POLL_S):
                return False, loop.time() - start
            if loop.time() - last >= heartbeat:
                await control.send(WAIT, {"key": key})
                last = loop.time()
    finally:
        await _call(on_pause, False)
    return True, loop.time() - start


async def _one_key(
    run_key: KeyRunner, party: str, control: _Control, progress: ProgressHook | None
) -> PartyResult | None:
    """One key; None when the stop came before this party reached key confirmation
    (the key is then cancelled, discarded, and the peer told)."""
    confirming = False

    def hook(event: BB84Progress) -> Any:
        nonlocal confirming
        if event.party == party and event.stage == "confirm":
            confirming = True  # from here the peer may commit: let the key finish
        return progress(event) if progress is not None else None

    task = asyncio.ensure_future(run_key(hook))
    stopping = asyncio.ensure_future(control.stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not confirming:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if task.cancelled():
                await control.tell_stopped(control.stop.why or "stopped")
                return None
        return await task
    finally:
        stopping.cancel()
        if not task.done():  # we are cancelled ourselves (a second signal)
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def run_continuous_party(
    party: str,
    run_key: KeyRunner,
    channel: MessageChannel,
    *,
    key_store: KeyStore,
    stop: StopRequest,
    timeout_s: float,
    gate: StorageGate | None = None,
    progress: ProgressHook | None = None,
    on_progress: Callable[[ContinuousProgress], Any] | None = None,
    on_key: Callable[[KeyOutcome], Any] | None = None,
    max_consecutive_drops: int = MAX_CONSECUTIVE_DROPS,
    reconcile: bool = True,
) -> ContinuousResult:
    """One party's continuous run: keys until ``stop``, a run-ending abort, or
    ``max_consecutive_drops`` dropped keys in a row. Never raises :class:`BB84Aborted`:
    the result's ``aborted`` holds it; other errors (an instrument fault) propagate.
    ``on_key`` gets each key's outcome (committed or dropped) before the next key."""
    gate = gate if gate is not None else Unbounded()
    control = _Control(channel, party, timeout_s, stop)
    out = ContinuousResult(party)
    largest = 0
    in_a_row = 0
    in_key = False

    async def tell(event: str, detail: str = "") -> None:
        n = ContinuousProgress(
            party, event, len(out.keys), out.secret_bits, sum(out.dropped.values()), detail
        )
        await _call(on_progress, n)

    async def paused(on: bool) -> None:
        await tell("paused" if on else "resumed", "key store full" if on else "")

    try:
        if reconcile:
            out.resolved = await reconcile_stores(control, key_store, party)
        k = 0
        while not stop.is_set():
            if party == "alice":
                room, waited = await _wait_for_room(control, gate, largest, k, paused)
                out.paused_s += waited
                if not room:
                    break
                await control.send(NEXT, {"key": k, "room": room_bits(gate)})
                go = await control.expect(GO, k)
                if go is None:
                    break
                cap = _int_of(go, "cap")
            else:
                nxt = await control.expect(NEXT, k)
                if nxt is None:
                    break
                room, waited = await _wait_for_room(control, gate, largest, k, paused)
                out.paused_s += waited
                if not room:
                    break
                cap = common_cap(_int_of(nxt, "room"), room_bits(gate))
                await control.send(GO, {"key": k, "cap": cap})
            if isinstance(key_store, CappedKeyStore):  # (a plain KeyStore keeps whole keys)
                key_store.caps[party] = cap
            try:
                in_key = True
                result = await _one_key(run_key, party, control, progress)
            except BB84Aborted as exc:
                if exc.reason not in DROP_REASONS:
                    raise
                in_key = False
                control.after_drop = True
                outcome = KeyOutcome(k, None, exc.reason, exc.detail, aborted=exc)
                out.outcomes.append(outcome)
                in_a_row += 1
                await _call(on_key, outcome)
                await tell("dropped", f"{exc.reason.value}: {exc.detail}")
                if in_a_row >= max_consecutive_drops:
                    out.aborted = BB84Aborted(
                        exc.reason,
                        f"{in_a_row} keys in a row dropped; the last: {exc.detail}",
                        result=exc.result,
                    )
                    break
                k += 1
                continue
            in_key = False
            if result is None:
                break
            assert result.key is not None
            outcome = KeyOutcome(k, result.key, result=result)
            out.outcomes.append(outcome)
            cut = key_store.cut_bits.get(party, 0) if isinstance(key_store, CappedKeyStore) else 0
            largest = max(largest, result.key.length_bits + cut)
            in_a_row = 0
            await _call(on_key, outcome)
            detail = f"key {k}: {result.key.length_bits} bits"
            if cut:
                detail += f" ({cut} more cut off: the KME's store had no room for them)"
                log.warning("bb84 %s: %s", party, detail)
            await tell("key", detail)
            k += 1
    except BB84Aborted as exc:
        if exc.reason is AbortReason.STOPPED and exc.from_peer:
            out.stopped = stop.why if stop.why is not None else f"stopped by {control.peer}"
            # the acknowledgement the stopping peer lingers for (it may then close)
            await control.tell(AbortReason.STOPPED, f"{party} stopped too")
        else:
            out.aborted = exc
            if not in_key and not exc.from_peer:  # a key's own abort was told by its party
                await control.tell(exc.reason, exc.detail)
        return out
    if out.aborted is None and stop.is_set():
        out.stopped = stop.why or "stopped"
        if stop.why is not None:
            await control.tell_stopped(stop.why)
    if control.told_stop:
        await control.linger()
    return out


def _int_of(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name, NO_CAP)
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < NO_CAP:
        raise BB84Aborted(AbortReason.PROTOCOL_ERROR, f"control message: bad {name!r}")
    return int(value)


def digest_of(refs: list[KeyRef]) -> str:
    """A SHA-256 over the keys' (SHA-256, length) in order: equal at both nodes when they
    committed the same keys (for comparing two parties' summaries)."""
    h = hashlib.sha256()
    for r in refs:
        h.update(bytes.fromhex(r.sha256) + r.length_bits.to_bytes(8, "big"))
    return h.hexdigest()
