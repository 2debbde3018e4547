"""Bob: records tags, aligns them from the data, drives Cascade, checks the tag.

:func:`run_bob` talks only to a :class:`~qhil.drivers.roles.TimeTagger` and to his
end of the classical channel, so it can run in its own process.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from qhil.drivers.roles import TagBlock, TimeTagger
from qhil.numerics.qkd import (
    CascadeBob,
    CascadeSetup,
    Detections,
    ParityReply,
    SiftedKey,
    SiftReply,
    VerificationMessage,
    bob_sift,
    bob_verification,
)
from qhil.numerics.timing import AlignmentError
from qhil.orchestrator.experiments.bb84.detection import (
    BlockAlignment,
    Clicks,
    OffsetTracker,
    align_clicks,
    clicks_from,
    clicks_from_tags,
    detections_for_block,
    revealed_counts,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import MessageChannel, PeerLink
from qhil.orchestrator.experiments.bb84.messages import (
    VERSION,
    AlignmentReveal,
    Amplification,
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
    LINGER_TIMEOUTS,
    DataHook,
    FinalKey,
    PartyBase,
    ProgressHook,
    concurrently,
    log,
    run_party,
)
from qhil.orchestrator.experiments.bb84.result import PartyResult
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.settling import PreviousPattern, settled
from qhil.orchestrator.experiments.bb84.stages import stage
from qhil.orchestrator.experiments.bb84.statistics import N_INTENSITIES
from qhil.orchestrator.experiments.bb84.tracking import (
    RECOMPENSATION_ROW,
    TRACKING_ROW,
    BobTracking,
    QberWatch,
    Verdict,
    recompensate_bob,
    revealed_errors,
)
from qhil.records import KeyStore

#: Raw-data row per block (``bob/block``): tags per detector, alignment, sifting, test errors.
BLOCK_ROW = np.dtype(
    [
        ("block", np.int64),
        ("used", np.int64),
        ("lost", np.int64),
        ("tags_h", np.int64),
        ("tags_v", np.int64),
        ("tags_d", np.int64),
        ("tags_a", np.int64),
        ("first_position", np.int64),
        ("significance", np.float64),
        ("agreement", np.float64),
        ("jitter_ps", np.float64),
        ("drift_ppm", np.float64),
        ("detections", np.int64),
        ("key_sifted", np.int64),
        ("test_sifted", np.int64),
        ("test_errors", np.int64),
        ("qber_test", np.float64),
        ("settle_ps", np.int64),  # clicks this long after the block's first were dropped
        ("settle_dropped", np.int64),  # how many (the previous pattern's light, README)
    ]
)


@dataclass
class _Processed:
    """A block's processing (in a worker thread): its clicks, and its alignment, squashed
    detections and the clicks dropped as the previous pattern's light, or why it is
    discarded; and, for the drift tracking, its revealed clicks' counts and errors per basis."""

    clicks: Clicks
    found: tuple[BlockAlignment, Detections, int] | None
    problem: str | None = None
    revealed: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class _InFlight:
    """A block acquired and revealed, its processing running (``task``)."""

    block: int
    tags: TagBlock
    task: asyncio.Future[_Processed]


class _Bob(PartyBase):
    party = "bob"

    def __init__(
        self,
        tagger: TimeTagger,
        settings: BB84Settings,
        link: PeerLink,
        *,
        key_store: KeyStore,
        run_id: str | None,
        progress: ProgressHook | None,
        on_data: DataHook | None,
        rng: np.random.Generator | None,
        channel: MessageChannel | None = None,
        tracking: BobTracking | None = None,
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
        self.tagger = tagger
        self.detector_of_channel = settings.detector_of_channel()
        self.previous = PreviousPattern()
        self.offsets = OffsetTracker(settings.pattern_length)  # alignment, tracked
        self._stale_through = -1  # blocks up to this one were taken before a re-compensation
        self._in_flight: list[asyncio.Future[Any]] = []  # the block being processed
        # Drift tracking (tracking.py): the revealed QBER's test, and what re-compensates.
        self.channel = channel
        self.tracking = tracking if settings.track_polarization and channel is not None else None
        self.watch: QberWatch | None = None
        if self.tracking is not None:
            ps = self.tracking.polarization
            self.watch = QberWatch(settings.tracking_significance, ps.confidence)
            if self.tracking.start is not None:
                self.watch.expect_from(self.tracking.start)

    async def run(self) -> PartyResult:
        s = self.settings
        hello = await self.link.expect(Hello)
        if hello.version != VERSION or hello.settings_digest != s.digest():
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                "Alice's BB84 settings differ from Bob's (compare both [experiments.bb84] tables)",
            )
        await self.blocks()
        self.check_estimates()
        raw, key_intensity = self.raw_key()
        return await self.post_process(raw, key_intensity)

    async def post_process(self, raw: np.ndarray, key_intensity: np.ndarray) -> PartyResult:
        """From the sifted key to a committed key: Cascade, verification, the key length
        (``key_length``), amplification, confirmation. BBM92 reuses it (its own hooks)."""
        s = self.settings
        corrected = await self.reconcile(raw)
        await self.emit("verify", s.n_blocks)
        vm = await self.link.expect(VerificationMsg)
        try:
            ok = bob_verification(
                corrected, VerificationMessage(vm.n_key_bits, vm.tag_bits, vm.seed, vm.tag)
            )
        except ValueError as exc:
            raise self.abort(AbortReason.PROTOCOL_ERROR, f"VerificationMsg: {exc}") from None
        flipped = key_intensity[corrected != raw]
        key_errors = np.bincount(flipped, minlength=N_INTENSITIES)[:N_INTENSITIES].astype(np.int64)
        await self.link.send(VerificationOutcome(ok, key_errors))
        if not ok:
            raise self.abort(
                AbortReason.VERIFICATION_FAILED,
                f"{vm.tag_bits}-bit verification tags differ after reconciliation",
            )
        stats = self.record_key_errors(key_errors)
        length = self.key_length(stats)
        await self.emit("amplify", s.n_blocks)
        amp = await self.link.expect(Amplification)
        self.check_amplification(amp, corrected.size, length)
        amplified = await asyncio.to_thread(self.amplify, corrected, amp)
        final = FinalKey(amplified, s.tag_bits)
        self.store_pending(final.stored)
        await self.confirm(final)
        await self.emit("done", s.n_blocks, f"{final.stored.size} secret bits")
        return self.result()

    async def confirm(self, final: FinalKey) -> None:
        """Key confirmation, then commit (rules in the README, "Key confirmation").

        We send our tag first; Alice sends hers only if ours matched. We commit once
        hers matches ours, then tell her (KeyCommitted). Anything else (her Abort, a
        timeout, an altered message, the channel closing) leaves our key unconfirmed:
        it is discarded. After committing we wait for her Finished, so that she never
        sees our end close while she waits for our acknowledgement.
        """
        s = self.settings
        await self.emit("confirm", s.n_blocks)
        await self.link.send(final.confirm(self.rng, final.pad_bob))
        await self.check_confirmation(final, final.pad_alice)
        self.commit("acknowledged")
        try:
            await self.link.send(KeyCommitted())
            await self.link.expect(Finished, timeout_s=LINGER_TIMEOUTS * s.message_timeout_s)
        except BB84Aborted as exc:  # committed: Alice commits without our ack too
            log.warning("bb84 bob: key committed; closing exchange incomplete: %s", exc.detail)

    async def blocks(self) -> None:
        """Every block, pipelined (README "Pipeline"): block ``b``'s processing (alignment,
        settling, squashing: a thread) starts once its reveal is in and runs while Alice
        uploads block ``b + 1`` and it is acquired; the announcement, Alice's sifting and
        the tally of block ``b`` run during that acquisition."""
        s = self.settings
        n_blocks = s.n_blocks
        await self.expect_live(0)
        pending: _InFlight | None = None
        try:
            await self._pipeline(n_blocks, pending)
        finally:  # an abort or a failure mid-pipeline: no processing left running
            for task in self._in_flight:
                task.cancel()

    async def _pipeline(self, n_blocks: int, pending: _InFlight | None) -> None:
        s = self.settings
        recompensate = None
        for b in range(n_blocks):
            if pending is None:
                tags = await self.acquire()
            else:
                tags, recompensate = await concurrently(self.acquire(), self.finish(pending))
            await self.link.send(BlockAcquired(b, len(tags), int(tags.lost)))
            rev = await self.link.expect(AlignmentReveal, block=b)
            n = s.pattern_length
            revealed = rev.positions
            if not (revealed.size == rev.bases.size == rev.bits.size):
                raise self.abort(
                    AbortReason.PROTOCOL_ERROR, f"AlignmentReveal for block {b} malformed"
                )
            if revealed.size and (
                revealed[0] < 0 or revealed[-1] >= n or np.any(np.diff(revealed) <= 0)
            ):
                raise self.abort(AbortReason.PROTOCOL_ERROR, "AlignmentReveal: bad positions")
            # The previous block's processing ended in its finish: the tracker's state and
            # the squashing's random choices go block by block, as without the pipeline.
            task = asyncio.ensure_future(self._process(tags, rev))
            self._in_flight = [task]
            pending = _InFlight(b, tags, task)
            if recompensate is not None:  # block b - 1's QBER rose; block b was taken already
                self._stale_through = b
                await self.recompensate(*recompensate)
                recompensate = None
            if b + 1 < n_blocks:
                await self.expect_live(b + 1)
        if pending is not None:
            recompensate = await self.finish(pending)
            if recompensate is not None:
                await self.recompensate(*recompensate)

    async def expect_live(self, b: int) -> None:
        s = self.settings
        n = s.pattern_length
        live = await self.link.expect(BlockLive)
        if live.block != b or live.n_symbols != n or live.symbol_rate_hz != s.rep_rate_hz:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                f"BlockLive {live.block} ({live.n_symbols} symbols at {live.symbol_rate_hz} Hz) "
                f"does not match block {b} ({n} at {s.rep_rate_hz} Hz) (out of order?)",
            )

    async def acquire(self) -> TagBlock:
        s = self.settings
        with stage("acquisition"):
            tags = await self.tagger.acquire(s.block_duration_s)
        if s.settle_s is not None:  # the user's fixed settling time, not the measured one
            tags = settled(tags, s.settle_s)
        return tags

    async def _process(self, tags: TagBlock, rev: AlignmentReveal) -> _Processed:
        """Block processing in a worker thread (:class:`_Processed`)."""
        return await asyncio.to_thread(self._process_sync, tags, rev)

    def _process_sync(self, tags: TagBlock, rev: AlignmentReveal) -> _Processed:
        with stage("clicks"):
            clicks = clicks_from_tags(tags, self.detector_of_channel)
        if tags.lost:
            return _Processed(clicks, None, f"the tagger lost {tags.lost} tags (buffer overflow)")
        try:
            found = self._detections(clicks, rev)
        except AlignmentError as exc:
            return _Processed(clicks, None, f"alignment failed: {exc}")
        revealed = None
        if self.watch is not None:  # here, not on the event loop: a pass over the clicks
            aligned = found[0]
            with stage("tracking"):
                if aligned.revealed_code is not None:
                    revealed = revealed_counts(clicks, aligned)
                else:
                    revealed = revealed_errors(clicks, aligned.positions, rev)
        return _Processed(clicks, found, revealed=revealed)

    async def recompensate(self, b: int, verdict: Verdict) -> None:
        """The polarization re-compensation block ``b``'s tally asked for."""
        s = self.settings
        assert self.tracking is not None and self.watch is not None and self.channel is not None
        await self.emit("block", b + 1, f"re-compensating: {verdict.describe()}")
        event = await recompensate_bob(
            self.tracking, self.watch, verdict, self.channel, self.tagger, s.message_timeout_s
        )
        await self.persist("recompensation", RECOMPENSATION_ROW, event)
        await self.emit("block", b + 1)

    async def finish(self, p: _InFlight) -> tuple[int, Verdict] | None:
        """Block ``p.block`` after its acquisition: the announcement (or discard), Alice's
        reply, the tally. Returns (block, verdict) when it asks for a re-compensation."""
        s = self.settings
        n = s.pattern_length
        b, tags = p.block, p.tags
        done = await p.task
        clicks, found = done.clicks, done.found
        if found is None:
            detail = done.problem or "no alignment"
            log.warning("bb84 bob: block %d discarded: %s", b, detail)
            await self.link.send(BlockDiscarded(b, detail))
            self.tally.discard_block(s.block_duration_s, n)
            await self.persist("block", BLOCK_ROW, self._row(b, clicks, tags.lost, None))
            await self.emit("block", b + 1, f"discarded: {detail}")
            return None
        aligned, det, dropped = found
        await self.link.send(
            Announcement(b, aligned.window_start, aligned.window_pulses, det.pulse_index, det.basis)
        )
        reply = await self.link.expect(SiftReplyMsg, block=b)
        k = det.pulse_index.size
        if (
            reply.match.size != k
            or reply.intensity.size != k
            or reply.pulses.shape != (N_INTENSITIES,)
            or (k and int(reply.intensity.max()) >= N_INTENSITIES)
        ):
            raise self.abort(AbortReason.PROTOCOL_ERROR, f"SiftReply for block {b} malformed")
        match = reply.match.astype(bool)
        # Per-detection work in a worker thread: the event loop serves the acquisition.
        sifted, test, wrong, test_errors = await asyncio.to_thread(self._sift, det, match, reply)
        if wrong is None:
            raise self.abort(AbortReason.PROTOCOL_ERROR, "SiftReply: wrong number of test bits")
        verdict = None
        if self.watch is not None:
            assert done.revealed is not None  # counted with the block, as the watch is on
            verdict = self.watch.check(b, *done.revealed)
            if verdict.triggered and b <= self._stale_through:
                # Taken before the last re-compensation (the pipeline acquires a block ahead):
                # its QBER says nothing about the new voltages.
                verdict = dataclasses.replace(verdict, triggered=False)
            await self.persist("tracking", TRACKING_ROW, verdict.row())
        recompensate = verdict is not None and verdict.triggered
        await self.link.send(BlockTally(b, test_errors, int(recompensate)))
        key = await asyncio.to_thread(
            self._keep_block, aligned.window_pulses, reply, match, det, sifted, test_errors
        )
        row = self._row(b, clicks, tags.lost, aligned)
        row.update(
            settle_ps=self.previous.settle_ps,
            settle_dropped=dropped,
            detections=k,
            key_sifted=int(key.sum()),
            test_sifted=int(test.sum()),
            test_errors=int(wrong.sum()),
            qber_test=float(wrong.mean()) if wrong.size else float("nan"),
        )
        with stage("record"):
            await self.persist("block", BLOCK_ROW, row)
        if recompensate and verdict is not None and self.tracking and self.watch and self.channel:
            return b, verdict
        await self.emit("block", b + 1)
        return None

    @staticmethod
    def _sift(
        det: Detections, match: np.ndarray, reply: SiftReplyMsg
    ) -> tuple[SiftedKey, np.ndarray, np.ndarray | None, np.ndarray]:
        """Bob's sifting of Alice's reply (a worker thread): his sifted bits, which are in
        the test basis, which of those differ from Alice's (None: she sent another number
        of test bits) and the test errors per intensity."""
        with stage("sifting"):
            sifted = bob_sift(det, SiftReply(match, reply.intensity))
            test = sifted.basis == 1
            if int(test.sum()) != reply.test_bits.size:
                return sifted, test, None, np.zeros(N_INTENSITIES, np.int64)
            wrong = sifted.bits[test] != reply.test_bits
            test_errors = np.bincount(sifted.intensity[test][wrong], minlength=N_INTENSITIES)
        return sifted, test, wrong, test_errors[:N_INTENSITIES].astype(np.int64)

    def _keep_block(
        self,
        window_pulses: int,
        reply: SiftReplyMsg,
        match: np.ndarray,
        det: Detections,
        sifted: SiftedKey,
        test_errors: np.ndarray,
    ) -> np.ndarray:
        """The block into the public tally and its key bits into the raw key (a worker
        thread; one block at a time); returns which sifted bits are key bits."""
        s = self.settings
        with stage("sifting"):
            self.tally.add_block(
                duration_s=s.block_duration_s,
                pulses_sent=s.pattern_length,
                window_pulses=window_pulses,
                pulses=reply.pulses,
                detected_intensity=reply.intensity,
                match=match,
                bases=det.basis,
                test_errors=test_errors,
            )
            key: np.ndarray = sifted.basis == 0
            self.add_key_part(sifted.bits[key], sifted.intensity[key])
        return key

    def _detections(
        self, clicks: Clicks, rev: AlignmentReveal
    ) -> tuple[BlockAlignment, Detections, int]:
        """The block's alignment and squashed detections, and how many clicks were dropped
        as the previous pattern's light."""
        s = self.settings
        with stage("alignment"):
            aligned = align_clicks(
                clicks,
                s.pattern_length,
                s.rep_rate_hz,
                rev.positions,
                rev.bases,
                rev.bits,
                max_drift=s.max_drift_ppm * 1e-6,
                min_significance=s.min_alignment_significance,
                predicted_first=self.offsets.predict(clicks),
            )
            self.offsets.update(clicks, aligned)
        dropped = 0
        with stage("settling"):
            if s.settle_s is None:
                settle_ps = self.previous.add(clicks, aligned.positions, rev)
                kept = int(np.count_nonzero(aligned.positions >= 0))
                aligned = clicks_from(clicks, aligned, settle_ps, s.pattern_length)
                dropped = kept - int(np.count_nonzero(aligned.positions >= 0))
        with stage("sifting"):
            det = detections_for_block(clicks, aligned, s.pattern_length, rev.positions, self.rng)
        return aligned, det, dropped

    @staticmethod
    def _row(
        b: int, clicks: Clicks, lost: int, aligned: BlockAlignment | None
    ) -> dict[str, float | int]:
        h, v, d, a = (int(x) for x in clicks.per_detector)
        row: dict[str, float | int] = {
            "block": b,
            "used": int(aligned is not None),
            "lost": int(lost),
            "tags_h": h,
            "tags_v": v,
            "tags_d": d,
            "tags_a": a,
        }
        if aligned is not None:
            al = aligned.alignment
            row.update(
                first_position=aligned.first_position,
                significance=float(al.significance),
                agreement=float(al.agreement),
                jitter_ps=float(al.grid.jitter_ps),
                drift_ppm=float(al.grid.drift * 1e6),
            )
        return row

    async def reconcile(self, raw: np.ndarray) -> np.ndarray:
        s = self.settings
        await self.emit("reconcile", s.n_blocks, f"{raw.size} bits")
        start = await self.link.expect(CascadeStart)
        if start.key_bits != raw.size:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                f"Alice reconciles {start.key_bits} bits, Bob holds {raw.size}",
            )
        try:
            setup = CascadeSetup(
                start.key_bits,
                start.frame_bits,
                tuple(int(x) for x in start.block_sizes),
                start.shuffle_seed,
            )
        except ValueError as exc:
            raise self.abort(AbortReason.PROTOCOL_ERROR, f"CascadeStart: {exc}") from None
        cascade = CascadeBob(raw, setup)
        while (query := cascade.next_query()) is not None:
            await self.link.send(ParityQueryMsg(query.encode()))
            rep = await self.link.expect(ParityReplyMsg)
            try:
                cascade.receive(ParityReply.decode(rep.payload))
            except ValueError as exc:
                raise self.abort(AbortReason.PROTOCOL_ERROR, f"ParityReply: {exc}") from None
        await self.link.send(CascadeDone(cascade.stats.leaked_bits))
        self.leaked_bits = cascade.stats.leaked_bits
        return cascade.key


async def run_bob(
    settings: BB84Settings,
    tagger: TimeTagger,
    channel: MessageChannel,
    *,
    key_store: KeyStore,
    run_id: str | None = None,
    progress: ProgressHook | None = None,
    on_data: DataHook | None = None,
    rng: np.random.Generator | None = None,
    tracking: BobTracking | None = None,
) -> PartyResult:
    """Bob's side of decoy-state BB84; returns his result or raises :class:`BB84Aborted`.

    ``rng`` (squashing's random choices) is for reproducing tests only; by default
    it is a fresh CSPRNG-seeded generator. ``tracking`` (his controller and the
    compensation's settings): watch the drift and re-compensate (``tracking.py``).
    """
    link = PeerLink(channel, "bob", "alice", settings.message_timeout_s)
    bob = _Bob(
        tagger,
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
    return await run_party(bob, bob.run())
