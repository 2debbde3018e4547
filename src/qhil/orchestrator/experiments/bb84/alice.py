"""Alice: drives the pattern generator, answers Bob, holds the reference key.

:func:`run_alice` talks only to a :class:`~qhil.drivers.roles.PatternGenerator`
and to her end of the classical channel, so it can run in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import numpy as np

from qhil.drivers.roles import PatternGenerator
from qhil.numerics.qkd import (
    CascadeAlice,
    CascadeSetup,
    ParityQuery,
    SiftAnnouncement,
    SiftedKey,
    SiftReply,
    alice_sift,
    alice_verification,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import MessageChannel, PeerLink
from qhil.orchestrator.experiments.bb84.messages import (
    VERSION,
    AlignmentReveal,
    Announcement,
    BlockAcquired,
    BlockDiscarded,
    BlockLive,
    BlockTally,
    CascadeDone,
    CascadeStart,
    Finished,
    Hello,
    KeyCommitted,
    ParityQueryMsg,
    ParityReplyMsg,
    SiftReplyMsg,
    VerificationMsg,
    VerificationOutcome,
)
from qhil.orchestrator.experiments.bb84.party import (
    ACK_WAIT_TIMEOUTS,
    DataHook,
    FinalKey,
    PartyBase,
    ProgressHook,
    log,
    run_party,
)
from qhil.orchestrator.experiments.bb84.pattern import BlockPattern, draw_pattern
from qhil.orchestrator.experiments.bb84.result import PartyResult
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.stages import stage
from qhil.orchestrator.experiments.bb84.statistics import N_INTENSITIES
from qhil.orchestrator.experiments.bb84.tracking import (
    ALICE_RECOMPENSATION_ROW,
    AliceTracking,
    recompensate_alice,
)
from qhil.records import KeyStore

#: Raw-data row per block (``alice/block``): pulses and test-basis errors per intensity.
BLOCK_ROW = np.dtype(
    [
        ("block", np.int64),
        ("used", np.int64),
        ("tags", np.int64),
        ("revealed", np.int64),
        ("window_pulses", np.int64),
        *[(f"pulses_{n}", np.int64) for n in ("signal", "decoy", "vacuum")],
        *[(f"test_errors_{n}", np.int64) for n in ("signal", "decoy", "vacuum")],
    ]
)

# Cascade's block sizes need an error-rate estimate below 1/2.
_MAX_QBER_ESTIMATE = 0.45


@dataclass
class _Sifted:
    """Alice's sifted block: her sifted key, her test-basis bits (for Bob) and how many
    test-basis bits each intensity has (bounds Bob's error counts)."""

    key: SiftedKey
    test_bits: np.ndarray
    tested: np.ndarray


class _Alice(PartyBase):
    party = "alice"

    def __init__(
        self,
        generator: PatternGenerator,
        settings: BB84Settings,
        link: PeerLink,
        *,
        key_store: KeyStore,
        run_id: str | None,
        progress: ProgressHook | None,
        on_data: DataHook | None,
        rng: np.random.Generator | None,
        channel: MessageChannel | None = None,
        tracking: AliceTracking | None = None,
    ) -> None:
        super().__init__(
            settings,
            link,
            key_store=key_store,
            run_id=run_id,
            progress=progress,
            on_data=on_data,
            rng=rng,
        )
        self.generator = generator
        self.channel = channel  # Bob's re-compensations run over it (tracking.py)
        self.tracking = tracking

    async def run(self) -> PartyResult:
        s = self.settings
        await self.link.send(Hello(VERSION, s.digest()))
        await self.blocks()
        stats = self.check_estimates()
        key, _ = self.raw_key()
        return await self.post_process(key, stats.test_qber_all)

    async def post_process(self, key: np.ndarray, qber_estimate: float) -> PartyResult:
        """From the sifted key to a committed key: Cascade, verification, the key length
        (``key_length``), amplification, confirmation. BBM92 reuses it (its own hooks)."""
        s = self.settings
        await self.reconcile(key, qber_estimate)
        await self.emit("verify", s.n_blocks)
        vm = alice_verification(key, self.rng, s.tag_bits)
        await self.link.send(VerificationMsg(vm.n_key_bits, vm.tag_bits, vm.seed, vm.tag))
        out = await self.link.expect(VerificationOutcome)
        if not out.ok:
            raise self.abort(
                AbortReason.VERIFICATION_FAILED,
                f"Bob's {s.tag_bits}-bit verification tag differs from Alice's after reconciliation",
            )
        if not self.valid_key_errors(out.key_errors):
            raise self.abort(AbortReason.PROTOCOL_ERROR, "VerificationOutcome: bad error counts")
        stats = self.record_key_errors(out.key_errors)
        length = self.key_length(stats)
        await self.emit("amplify", s.n_blocks)
        amp = self.amplification_message(key.size, length)
        amplified = await asyncio.to_thread(self.amplify, key, amp)
        final = FinalKey(amplified, s.tag_bits)
        self.store_pending(final.stored)  # before Bob computes his: a failed write stops both
        await self.link.send(amp)
        await self.confirm(final)
        await self.emit("done", s.n_blocks, f"{final.stored.size} secret bits")
        return self.result()

    async def confirm(self, final: FinalKey) -> None:
        """Key confirmation, then commit (the rules are in the README, "Key confirmation").

        Bob's tag must match ours before we send ours; Bob commits on ours and says
        so (KeyCommitted), and we commit on that. If his acknowledgement does not come
        (timeout) or comes altered (authentication failure), Bob had matched our tag and
        committed: we commit too ("presumed"). His Abort, or his end of the channel
        closing (his check of our tag failed or the channel failed at his end first),
        means he did not commit: we discard ours.
        """
        s = self.settings
        await self.emit("confirm", s.n_blocks)
        await self.check_confirmation(final, final.pad_bob)
        await self.link.send(final.confirm(self.rng, final.pad_alice))
        try:
            await self.link.expect(KeyCommitted, timeout_s=ACK_WAIT_TIMEOUTS * s.message_timeout_s)
            mode = "acknowledged"
        except BB84Aborted as exc:
            if self.link.failure not in ("timeout", "authentication"):
                raise
            log.warning(
                "bb84 alice: Bob's commit acknowledgement was lost (%s); both tags matched, "
                "so Bob committed: committing too",
                exc.detail,
            )
            mode = "presumed"
        self.commit(mode)
        if not self.link.broken:
            with contextlib.suppress(BB84Aborted):  # Bob has committed: he only stops waiting
                await self.link.send(Finished())

    async def blocks(self) -> None:
        """Every block, pipelined (README "Pipeline"): while block ``b`` is acquired, the
        next pattern is drawn (a thread) and block ``b - 1`` is sifted with Bob."""
        s = self.settings
        n_blocks = s.n_blocks
        pat = await self.draw()
        await self.go_live(0, pat)
        pending: tuple[int, BlockPattern, BlockAcquired] | None = None
        for b in range(n_blocks):
            nxt = asyncio.ensure_future(self.draw()) if b + 1 < n_blocks else None
            try:
                recompensate = await self.finish(*pending) if pending is not None else False
                acq = await self.link.expect(BlockAcquired, block=b)
                with stage("output"):
                    await self.generator.set_output(False)
                rev = pat.revealed
                shown = pat.record_at(rev)  # not the whole pattern's bases and bits
                await self.link.send(AlignmentReveal(b, rev, shown.bases, shown.bits))
                pending = (b, pat, acq)
                if nxt is not None:
                    pat = await nxt  # before a re-compensation: it draws from the same rng
            finally:
                if nxt is not None and not nxt.done():
                    nxt.cancel()
            if recompensate:  # Bob saw block b - 1's QBER rise; block b was taken already
                await self.recompensate(b - 1)
            if nxt is not None:
                await self.go_live(b + 1, pat)
        if pending is not None and await self.finish(*pending):
            await self.recompensate(pending[0])

    async def draw(self) -> BlockPattern:
        """A fresh block pattern, drawn in a thread."""
        s = self.settings
        with stage("pattern"):
            return await asyncio.to_thread(
                draw_pattern,
                self.rng,
                s.pattern_length,
                s.z_basis_probability,
                s.intensity_probabilities,
                s.alignment_fraction,
            )

    async def go_live(self, b: int, pat: BlockPattern) -> None:
        """Block ``b``'s pattern onto the generator, its output on, and Bob told."""
        s = self.settings
        with stage("upload"):
            await self.generator.load_pattern(pat.symbols, s.rep_rate_hz)
        with stage("output"):
            await self.generator.set_output(True)
        await self.link.send(BlockLive(b, s.pattern_length, s.rep_rate_hz))

    async def recompensate(self, b: int) -> None:
        """Serve Bob's polarization re-compensation, asked for in block ``b``'s tally."""
        s = self.settings
        assert self.channel is not None  # finish() asks for it only with a channel
        await self.emit("block", b + 1, "serving a polarization re-compensation")
        event = await recompensate_alice(
            self.tracking, b, self.channel, self.generator, s.message_timeout_s, self.rng
        )
        await self.persist("recompensation", ALICE_RECOMPENSATION_ROW, event)
        await self.emit("block", b + 1)

    async def finish(self, b: int, pat: BlockPattern, acq: BlockAcquired) -> bool:
        """Block ``b`` after its acquisition: Bob's announcement, sifting, his tally; whether
        he asks for a polarization re-compensation."""
        s = self.settings
        n = s.pattern_length
        rev = pat.revealed
        msg = await self.link.expect(Announcement, BlockDiscarded, block=b)
        if isinstance(msg, BlockDiscarded):
            log.info("bb84 alice: block %d discarded by Bob: %s", b, msg.detail)
            self.tally.discard_block(s.block_duration_s, n)
            await self.persist("block", BLOCK_ROW, {"block": b, "used": 0, "tags": acq.n_tags})
            await self.emit("block", b + 1, f"discarded: {msg.detail}")
            return False
        pos = msg.positions
        if pos.size != msg.bases.size:
            raise self.abort(AbortReason.PROTOCOL_ERROR, "Announcement: positions and bases differ")
        if msg.window_start >= n or msg.window_pulses >= n:
            raise self.abort(AbortReason.PROTOCOL_ERROR, "Announcement: window outside the pattern")
        try:
            reply, sifted, pulses = await asyncio.to_thread(self._sift, pat, msg)
        except ValueError as exc:
            raise self.abort(AbortReason.PROTOCOL_ERROR, f"Announcement: {exc}") from None
        await self.link.send(
            SiftReplyMsg(b, reply.match.astype(np.uint8), reply.intensity, sifted.test_bits, pulses)
        )
        tally_msg = await self.link.expect(BlockTally, block=b)
        errs = tally_msg.test_errors
        tested = sifted.tested
        if (
            errs.shape != (N_INTENSITIES,)
            or np.any((errs < 0) | (errs > tested))
            or tally_msg.recompensate not in (0, 1)
            or (tally_msg.recompensate and self.channel is None)
        ):
            raise self.abort(AbortReason.PROTOCOL_ERROR, f"BlockTally for block {b} is malformed")
        await asyncio.to_thread(self._keep_block, msg, reply, sifted, pulses, errs)
        row: dict[str, float | int] = {
            "block": b,
            "used": 1,
            "tags": acq.n_tags,
            "revealed": rev.size,
        }
        for i, name in enumerate(("signal", "decoy", "vacuum")):
            row[f"pulses_{name}"] = int(pulses[i])
            row[f"test_errors_{name}"] = int(errs[i])
        with stage("record"):
            await self.persist("block", BLOCK_ROW, row)
        recompensate = bool(tally_msg.recompensate and self.channel is not None)
        if not recompensate:
            await self.emit("block", b + 1)
        return recompensate

    def _keep_block(
        self,
        msg: Announcement,
        reply: SiftReply,
        sifted: _Sifted,
        pulses: np.ndarray,
        errs: np.ndarray,
    ) -> None:
        """The block into the public tally and its key bits into the raw key (a worker
        thread; one block at a time)."""
        s = self.settings
        with stage("sifting"):
            self.tally.add_block(
                duration_s=s.block_duration_s,
                pulses_sent=s.pattern_length,
                window_pulses=msg.window_pulses,
                pulses=pulses,
                detected_intensity=reply.intensity,
                match=reply.match,
                bases=msg.bases,
                test_errors=errs,
            )
            key = sifted.key.basis == 0
            self.add_key_part(sifted.key.bits[key], sifted.key.intensity[key])

    def _sift(self, pat: BlockPattern, msg: Announcement) -> tuple[SiftReply, _Sifted, np.ndarray]:
        """Alice's sifting of an announcement (a worker thread): her reply, her sifted
        bits and the unrevealed pulses per intensity in Bob's window. ValueError: the
        announcement is malformed."""
        n = self.settings.pattern_length
        rev = pat.revealed
        pos = msg.positions
        with stage("sifting"):
            inside = np.mod(pos - msg.window_start, n) < msg.window_pulses  # in the window
            if pos.size and (pos.min() < 0 or pos.max() >= n or not inside.all()):
                raise ValueError("detections outside window")
            if pos.size and rev.size:
                at = np.searchsorted(rev, pos).clip(0, rev.size - 1)
                if np.any(rev[at] == pos):
                    raise ValueError("names revealed pulses")
            if pos.size > 1 and np.any(np.diff(pos) <= 0):
                raise ValueError("SiftAnnouncement.pulse_index: must be strictly increasing")
            # Sifting at the announced pulses only (record index i is pulse pos[i]).
            ann = SiftAnnouncement(np.arange(pos.size, dtype=np.int64), msg.bases)
            reply, sifted = alice_sift(pat.record_at(pos), ann)
            pulses = pat.unrevealed_pulses(N_INTENSITIES, msg.window_start, msg.window_pulses)
            test = sifted.basis == 1
            tested = np.bincount(sifted.intensity[test], minlength=N_INTENSITIES)
        return reply, _Sifted(sifted, sifted.bits[test], tested[:N_INTENSITIES]), pulses

    async def reconcile(self, key: np.ndarray, qber_estimate: float) -> None:
        s = self.settings
        await self.emit("reconcile", s.n_blocks, f"{key.size} bits")
        q = min(max(qber_estimate, 0.0), _MAX_QBER_ESTIMATE)
        seed = int(self.rng.integers(0, 2**63 - 1))
        setup = CascadeSetup.for_qber(key.size, q, seed, s.frame_bits)
        await self.link.send(
            CascadeStart(
                setup.key_bits, setup.frame_bits, np.asarray(setup.block_sizes, np.int64), seed
            )
        )
        cascade = CascadeAlice(key, setup)
        while True:
            msg = await self.link.expect(ParityQueryMsg, CascadeDone)
            if isinstance(msg, CascadeDone):
                if msg.leaked_bits != cascade.leaked_bits:
                    raise self.abort(
                        AbortReason.PROTOCOL_ERROR,
                        f"Bob counts {msg.leaked_bits} disclosed parities, Alice "
                        f"{cascade.leaked_bits}",
                    )
                break
            try:
                reply = cascade.answer(ParityQuery.decode(msg.payload))
            except (ValueError, IndexError) as exc:
                raise self.abort(AbortReason.PROTOCOL_ERROR, f"ParityQuery: {exc}") from None
            await self.link.send(ParityReplyMsg(reply.encode()))
        self.leaked_bits = cascade.leaked_bits


async def run_alice(
    settings: BB84Settings,
    generator: PatternGenerator,
    channel: MessageChannel,
    *,
    key_store: KeyStore,
    run_id: str | None = None,
    progress: ProgressHook | None = None,
    on_data: DataHook | None = None,
    rng: np.random.Generator | None = None,
    tracking: AliceTracking | None = None,
) -> PartyResult:
    """Alice's side of decoy-state BB84; returns her result or raises :class:`BB84Aborted`.

    ``tracking``: the reference light's settings for Bob's re-compensations
    (``tracking.py``); without them she refuses his requests and the run goes on.

    ``rng`` is for reproducing tests only: by default every random choice (symbols,
    revealed subset, Cascade shuffle, verification and amplification seeds) comes
    from a fresh CSPRNG-seeded generator.
    """
    link = PeerLink(channel, "alice", "bob", settings.message_timeout_s)
    alice = _Alice(
        generator,
        settings,
        link,
        key_store=key_store,
        run_id=run_id,
        progress=progress,
        on_data=on_data,
        rng=rng,
        channel=channel,
        tracking=tracking,
    )
    try:
        return await run_party(alice, alice.run())
    finally:
        with contextlib.suppress(Exception):  # leave the transmitter dark
            await generator.set_output(False)
