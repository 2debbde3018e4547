"""What Alice and Bob share: the public tally, hooks, the abort checks, the key length.

Each party runs its own copy; they agree on every number because every number
comes from public messages both have seen.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd import DecoyBounds, FiniteKeyResult
from qhil.numerics.qkd.randomness import secure_generator
from qhil.numerics.qkd.universal_hash import (
    PA_FAMILIES,
    PA_FAMILY,
    amplify,
    mas_hash,
    new_pa_seed,
    new_seed,
    pa_seed_length,
    seed_length,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import PeerLink
from qhil.orchestrator.experiments.bb84.messages import Amplification, KeyConfirm
from qhil.orchestrator.experiments.bb84.result import (
    BB84Progress,
    BB84Result,
    Party,
    PartyResult,
)
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.statistics import (
    N_INTENSITIES,
    SIGNAL,
    BB84Statistics,
    Tally,
    decoy_bounds,
    finite_key,
)
from qhil.records import KeyRef, KeyStore, KeyStoreError

log = logging.getLogger("qhil.orchestrator.experiments.bb84")

#: ``progress(event)``; may return an awaitable.
ProgressHook = Callable[[BB84Progress], Any]
#: ``on_data(name, array)`` (e.g. a run record's ``append``); may return an awaitable.
DataHook = Callable[[str, np.ndarray], Any]

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]

#: Confirmation pads per run: Bob's tag and Alice's tag each use their own final-key bits.
CONFIRMATION_PADS = 2
#: Alice waits this many ``message_timeout_s`` for Bob's KeyCommitted: longer than Bob
#: waits for her KeyConfirm (one timeout, started earlier), so an Abort Bob sends on his
#: timeout reaches her before she presumes his commit.
ACK_WAIT_TIMEOUTS = 2.0
#: Bob, committed, waits this many timeouts for Alice's Finished before closing: longer
#: than Alice's wait above, so she never sees his channel close while she waits.
LINGER_TIMEOUTS = 3.0


class FinalKey:
    """The amplified key split into the key that is stored and the two confirmation pads.

    ``bits[: l - 2t]`` is stored; ``pad_bob`` and ``pad_alice`` (``t`` bits each, the
    last ``2t``) one-time-pad the parties' confirmation tags and are then dropped. The
    whole ``l`` bits are ``eps_sec``-secret, so a tag padded with bits that are never
    used again says nothing about the stored key: the confirmation leaks nothing beyond
    what the finite-key length accounts for (it only shortens the stored key by ``2t``).
    """

    def __init__(self, amplified: U8, tag_bits: int) -> None:
        t = tag_bits
        n = amplified.size - CONFIRMATION_PADS * t
        if n < 1:
            raise ValueError(f"{amplified.size} amplified bits leave nothing after 2 x {t} pads")
        self.tag_bits = t
        self.stored = amplified[:n]
        self.pad_bob = amplified[n : n + t]
        self.pad_alice = amplified[n + t :]

    def tag(self, seed: U8, pad: U8) -> U8:
        """Multiply-add-shift hash of the stored key under ``seed``, XOR ``pad``."""
        return mas_hash(self.stored, seed, self.tag_bits) ^ pad

    def confirm(self, rng: np.random.Generator, pad: U8) -> KeyConfirm:
        """Our confirmation message: a fresh seed and our padded tag."""
        seed = new_seed(rng, self.stored.size, self.tag_bits)
        return KeyConfirm(seed, self.tag(seed, pad))

    def matches(self, msg: KeyConfirm, pad: U8) -> bool | None:
        """Whether the peer's tag equals ours for its seed (None: malformed message)."""
        need = seed_length(self.stored.size, self.tag_bits)
        if msg.seed.size != need or msg.tag.size != self.tag_bits:
            return None
        mine = np.packbits(self.tag(msg.seed, pad)).tobytes()
        return hmac.compare_digest(mine, np.packbits(msg.tag).tobytes())


T = TypeVar("T")
U = TypeVar("U")


async def concurrently(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    """Both results, the two running at once (the pipeline's overlapped stages).

    If either fails, the other is cancelled (an acquisition stops waiting, a peer's abort
    is not held up by the tagger) and the failure is raised once both have stopped; if
    we are cancelled, both are.
    """
    tasks = (asyncio.ensure_future(first), asyncio.ensure_future(second))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # a failure, or our own cancellation: stop what still runs
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in tasks:  # the failure that stopped the other (not the cancellation it caused)
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    return tasks[0].result(), tasks[1].result()


async def _call(hook: Callable[..., Any] | None, *args: Any) -> None:
    if hook is None:
        return
    out = hook(*args)
    if inspect.isawaitable(out):
        await out


class PartyBase:
    """State and steps common to both parties."""

    party: Party
    #: The protocol's name in log lines (BBM92's parties reuse this class).
    protocol = "bb84"

    def __init__(
        self,
        settings: BB84Settings,
        link: PeerLink,
        *,
        key_store: KeyStore,
        run_id: str | None,
        progress: ProgressHook | None,
        on_data: DataHook | None,
        rng: np.random.Generator | None,
    ) -> None:
        self.settings = settings
        self.link = link
        self.key_store = key_store
        self.run_id = run_id
        self.progress = progress
        self.on_data = on_data
        self.rng = rng if rng is not None else secure_generator()
        self.tally = self.new_tally()
        self._key_parts: list[U8] = []
        self._key_intensity_parts: list[U8] = []
        self.bounds: DecoyBounds | None = None
        self.leaked_bits: int | None = None
        self.finite: FiniteKeyResult | None = None
        self.pending: KeyRef | None = None  # stored, not yet committed
        self.committed: KeyRef | None = None
        self.commit_mode: str | None = None  # "acknowledged" or "presumed"
        self.pa_family: str | None = None  # the hash family that made the key

    def new_tally(self) -> Tally:
        """The public tally this protocol accumulates (BBM92's parties keep their own)."""
        return Tally(self.settings.mus)

    # --- hooks ---

    async def emit(self, stage: str, block: int, detail: str = "") -> None:
        event = BB84Progress(
            self.party,
            stage,
            block,
            self.settings.n_blocks,
            int(self.tally.key_sifted.sum()),
            detail,
        )
        await _call(self.progress, event)

    async def persist(self, name: str, schema: np.dtype, row: dict[str, float | int]) -> None:
        """One row of ``schema`` under ``<party>/<name>`` through the raw-data hook.

        Fields missing from ``row`` are -1 (integers) or NaN (floats), so every row of
        a name has the same dtype (a run record's arrays require it).
        """
        if self.on_data is None:
            return
        unknown = set(row) - set(schema.names or ())
        if unknown:  # pragma: no cover - a programming error
            raise KeyError(f"{name}: fields {sorted(unknown)} are not in the row schema")
        arr = np.zeros(1, dtype=schema)
        for field in schema.names or ():
            arr[field] = row.get(field, np.nan if schema[field].kind == "f" else -1)
        await _call(self.on_data, f"{self.party}/{name}", arr)

    # --- key material ---

    def add_key_part(self, bits: U8, intensity: U8) -> None:
        self._key_parts.append(bits.astype(np.uint8))
        self._key_intensity_parts.append(intensity.astype(np.uint8))

    def raw_key(self) -> tuple[U8, U8]:
        """The sifted key-basis bits of all blocks (block order, then position) and their
        intensity indices."""
        if not self._key_parts:
            return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
        return np.concatenate(self._key_parts), np.concatenate(self._key_intensity_parts)

    # --- checks both parties make on the same public numbers ---

    def abort(self, reason: AbortReason, detail: str) -> BB84Aborted:
        return BB84Aborted(reason, detail, result=self.partial_result(reason, detail))

    def partial_result(self, reason: AbortReason, detail: str) -> BB84Result:
        s = self.settings
        return BB84Result(
            status="aborted",
            statistics=self.tally.snapshot(),
            probabilities=s.intensity_probabilities,
            eps_sec=s.eps_sec,
            eps_cor=s.eps_cor,
            reason=reason,
            detail=detail,
            decoy_bounds=self.bounds,
            leaked_bits=self.leaked_bits,
            finite_key=self.finite,
        )

    def check_estimates(self) -> BB84Statistics:
        """After the blocks: enough data, and the test-basis signal QBER under the threshold."""
        stats = self.tally.snapshot()
        if stats.blocks_used == 0:
            raise self.abort(AbortReason.NO_DATA, f"none of {stats.blocks} blocks could be aligned")
        if stats.sifted_key_bits == 0 or stats.test_sifted[SIGNAL] == 0:
            raise self.abort(
                AbortReason.NO_DATA,
                f"{stats.sifted_key_bits} key-basis and {int(stats.test_sifted[SIGNAL])} "
                f"signal test-basis bits after sifting",
            )
        try:
            self.bounds = decoy_bounds(stats, self.settings.eps_pe_effective)
        except ValueError as exc:  # degenerate counts: nothing to report, the key length decides
            log.info("%s: decoy bounds not available: %s", self.party, exc)
        q = float(stats.qber_test[SIGNAL])
        if q > self.settings.max_qber:
            raise self.abort(
                AbortReason.QBER_TOO_HIGH,
                f"test-basis QBER of the signal intensity {100 * q:.2f} % over "
                f"{int(stats.test_sifted[SIGNAL])} bits exceeds {100 * self.settings.max_qber:g} %",
            )
        return stats

    def record_key_errors(self, key_errors: I64) -> BB84Statistics:
        """After verification: the key-basis QBER of the signal must pass too."""
        self.tally.key_errors = np.asarray(key_errors, dtype=np.int64)
        stats = self.tally.snapshot()
        qk = stats.qber_key
        assert qk is not None
        q = float(qk[SIGNAL])
        if q > self.settings.max_qber:
            raise self.abort(
                AbortReason.QBER_TOO_HIGH,
                f"key-basis QBER of the signal intensity {100 * q:.2f} % (from reconciliation) "
                f"exceeds {100 * self.settings.max_qber:g} %",
            )
        return stats

    def key_length(self, stats: BB84Statistics) -> int:
        s = self.settings
        assert self.leaked_bits is not None
        self.finite = finite_key(
            stats, s.intensity_probabilities, self.leaked_bits, s.eps_sec, s.eps_cor
        )
        if self.finite.length <= 0:
            f = self.finite
            raise self.abort(
                AbortReason.NO_KEY,
                f"finite-key length is 0: {stats.sifted_key_bits} sifted bits, single-photon "
                f"bound {f.s1_key:.0f}, phase error bound {f.phase_error:.4f}, "
                f"{self.leaked_bits} bits leaked in reconciliation, "
                f"{f.correction_bits:.0f} bits of epsilon terms",
            )
        pads = CONFIRMATION_PADS * s.tag_bits
        if self.finite.length <= pads:
            raise self.abort(
                AbortReason.NO_KEY,
                f"finite-key length {self.finite.length} leaves no key after the "
                f"{pads} bits the key confirmation uses",
            )
        return self.finite.length

    def valid_key_errors(self, errors: I64) -> bool:
        e = np.asarray(errors)
        return (
            e.shape == (N_INTENSITIES,)
            and bool(np.all(e >= 0))
            and bool(np.all(e <= self.tally.key_sifted))
        )

    # --- privacy amplification (the family and its seed travel in ``Amplification``) ---

    def amplification_message(self, n_in: int, length: int) -> Amplification:
        """Alice: the final length and a fresh seed of :data:`PA_FAMILY` from our generator."""
        return Amplification(length, PA_FAMILY, new_pa_seed(self.rng, n_in, length, PA_FAMILY))

    def check_amplification(self, amp: Amplification, n_in: int, length: int) -> None:
        """Bob: Alice's family is one we know, her length is our bound, her seed fits both."""
        if amp.family not in PA_FAMILIES:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                f"Amplification: unknown hash family {amp.family!r} ({', '.join(PA_FAMILIES)})",
            )
        if amp.n_out != length:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                f"Alice amplifies to {amp.n_out} bits, Bob's bound gives {length}",
            )
        need = pa_seed_length(amp.family, n_in, length)
        if amp.seed.size != need:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                f"Amplification: {amp.seed.size}-bit seed, {amp.family} needs {need} "
                f"for {n_in} -> {length} bits",
            )

    def amplify(self, key: U8, amp: Amplification) -> U8:
        """Hash the reconciled key with the message's family and seed (CPU-bound: run it
        in a thread)."""
        self.pa_family = amp.family
        return amplify(key, amp.seed, amp.n_out, amp.family)

    async def check_confirmation(self, final: FinalKey, pad: U8) -> None:
        """The peer's KeyConfirm must equal our tag under its seed with its ``pad``."""
        theirs = await self.link.expect(KeyConfirm)
        ok = final.matches(theirs, pad)
        if ok is None:
            raise self.abort(AbortReason.PROTOCOL_ERROR, "KeyConfirm: seed or tag of wrong length")
        if not ok:
            peer, me = self.link.peer.capitalize(), self.party.capitalize()
            raise self.abort(
                AbortReason.CONFIRMATION_FAILED,
                f"{peer}'s {final.tag_bits}-bit confirmation tag of the final key differs "
                f"from {me}'s",
            )

    def store_pending(self, bits: U8) -> KeyRef:
        """Save our final key as PENDING (not usable); a failed write aborts, naming the path."""
        bits = self.keep_for_authentication(bits)
        try:
            ref = self.key_store.save_pending(bits, run_id=self.run_id, label=self.party)
        except (KeyStoreError, OSError) as exc:
            raise self.abort(AbortReason.KEY_STORE_FAILED, f"{self.party}: {exc}") from None
        self.pending = ref
        log.info(
            "%s %s: key %s pending confirmation, %d bits, sha256 %s",
            self.protocol,
            self.party,
            ref.key_id,
            ref.length_bits,
            ref.sha256,
        )
        return ref

    def keep_for_authentication(self, bits: U8) -> U8:
        """With Wegman-Carter over the transcript (channel/transcript.py), the key's last
        ``replenish_bytes`` are set aside for the next run's authentication pool before
        the key is stored (both parties alike: the keys have the same length); the key
        confirmation still covers them. At most half the key goes there, in whole pairs of
        pads (256 bits)."""
        auth: Any = getattr(self.link.channel, "authenticator", None)
        want = 8 * int(getattr(auth, "replenish_bytes", 0))
        n = min(want, bits.size // 2 // 256 * 256)
        if n < want:
            log.warning(
                "%s %s: a %d-bit key refills the authentication pool with %d bits, not %d",
                self.protocol, self.party, bits.size, n, want,
            )  # fmt: skip
        if n == 0:
            return bits
        auth.stage_replenishment(np.packbits(bits[-n:]).tobytes())
        return bits[:-n]

    def commit(self, mode: str) -> KeyRef:
        """Make the pending key usable; a failure aborts naming the path (the key stays
        pending, never usable)."""
        assert self.pending is not None
        try:
            ref = self.key_store.commit(self.pending.key_id)
        except (KeyStoreError, OSError) as exc:
            # Left pending, not discarded: the peer may have committed (Alice's case), and
            # this copy is what resolves it by id once the directory is fixed.
            kept, self.pending = self.pending.key_id, None
            raise self.abort(
                AbortReason.KEY_STORE_FAILED, f"{self.party}: {exc} (key {kept} left pending)"
            ) from None
        self.committed, self.pending, self.commit_mode = ref, None, mode
        log.info("%s %s: committed key %s (%s)", self.protocol, self.party, ref.key_id, mode)
        return ref

    def discard_pending(self) -> None:
        """Drop a key that was never confirmed (no-op without one; never raises)."""
        ref, self.pending = self.pending, None
        if ref is None:
            return
        try:
            self.key_store.discard(ref.key_id)
            log.info("%s %s: discarded unconfirmed key %s", self.protocol, self.party, ref.key_id)
        except (KeyStoreError, OSError) as exc:  # gone with its directory: nothing usable
            log.warning(
                "%s %s: could not discard pending key %s: %s",
                self.protocol,
                self.party,
                ref.key_id,
                exc,
            )

    def result(self) -> PartyResult:
        assert self.committed is not None and self.commit_mode is not None
        return PartyResult(
            self.party,
            self.tally.snapshot(),
            self.bounds,
            self.leaked_bits,
            self.finite,
            self.committed,
            committed=True,
            commit=self.commit_mode,
            pa_family=self.pa_family,
        )


async def run_party(party: PartyBase, body: Coroutine[Any, Any, PartyResult]) -> PartyResult:
    """Run a party's protocol ``body``; on any way out but success, discard the key it
    has pending (never usable unless confirmed) and tell the peer why we stopped."""
    try:
        return await body
    except BB84Aborted as exc:
        party.discard_pending()
        if exc.result is None:
            exc.result = party.partial_result(exc.reason, exc.detail)
        log.warning(
            "%s %s: aborted (%s): %s", party.protocol, party.party, exc.reason.value, exc.detail
        )
        await party.link.tell_abort(exc)
        raise
    except Exception as exc:
        party.discard_pending()
        await party.link.tell_abort(
            BB84Aborted(
                AbortReason.PEER_FAILED, f"{party.party} stopped: {type(exc).__name__}: {exc}"
            )
        )
        raise
    finally:
        party.discard_pending()  # cancelled (or a crash): a key never confirmed is never usable
