"""Alice and Bob of BBM92: sifting over the channel, then BB84's post-processing.

Each party holds only its own analyser's outcome (0..3 = H, V, D, A) for each coincidence
of the acquisition, in the same order at both nodes (the coincidences are public: they
come from timestamps, never from outcomes). Messages, all BB84's (``bb84.messages``):

    A->B Hello            protocol version + SHA-256 of the shared BBM92 settings
    B->A Announcement     coincidence indices and Bob's basis of each (no bit values)
    A->B SiftReplyMsg     basis match per coincidence; Alice's test-basis (D/A) bits
    B->A BlockTally       test-basis errors
    ...                   Cascade, verification, amplification, confirmation: BB84's
                          ``post_process`` of each party, with the hooks below

Key basis H/V, test basis D/A (Tomamichel et al. 2012): every D/A-sifted bit is disclosed
to estimate the phase error of the H/V key; the passive 50:50 splitters pick which
coincidences those are, independently of everything Eve can see. For phi+ both bases'
bits agree (H-H, V-V, D-D, A-A).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd.bbm92 import BBM92FiniteKey, bbm92_key_length, detector_basis_bit
from qhil.orchestrator.experiments.bb84.alice import _Alice
from qhil.orchestrator.experiments.bb84.bob import _Bob
from qhil.orchestrator.experiments.bb84.both import run_both
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import MessageChannel, PeerLink
from qhil.orchestrator.experiments.bb84.messages import (
    VERSION,
    Announcement,
    BlockTally,
    Hello,
    SiftReplyMsg,
)
from qhil.orchestrator.experiments.bb84.party import (
    CONFIRMATION_PADS,
    PartyBase,
    ProgressHook,
    _call,
    run_party,
)
from qhil.orchestrator.experiments.bb84.result import BB84Progress, PartyResult
from qhil.orchestrator.experiments.bb84.statistics import N_INTENSITIES, Tally
from qhil.orchestrator.experiments.bbm92.result import BBM92Counts, BBM92Result
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings
from qhil.records import KeyStore

I64 = NDArray[np.int64]
KEY, TEST = 0, 1


def _outcomes(outcomes: NDArray[np.integer]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    o = np.asarray(outcomes)
    if o.ndim != 1:
        raise ValueError("outcomes: one analyser outcome (0..3 = H, V, D, A) per coincidence")
    return detector_basis_bit(o)


class _Common(PartyBase):
    """BBM92's answers to the post-processing's protocol-specific questions."""

    protocol = "bbm92"

    def __init__(
        self,
        settings: BBM92Settings,
        outcomes: NDArray[np.integer],
        link: PeerLink,
        *,
        acquisition_s: float,
        key_store: KeyStore,
        run_id: str | None,
        progress: ProgressHook | None,
        rng: np.random.Generator | None,
    ) -> None:
        self.bbm92 = settings
        self.basis, self.bit = _outcomes(outcomes)
        self.counts = BBM92Counts(acquisition_s=acquisition_s, coincidences=int(self.basis.size))
        self.bbm92_finite: BBM92FiniteKey | None = None
        # The post-processing reads eps, tag_bits, frame_bits, timeouts, n_blocks: BBM92's
        # settings have each (BB84Settings is what PartyBase declares).
        PartyBase.__init__(  # not super(): _Alice/_Bob's own __init__ take a device
            self,
            settings,  # type: ignore[arg-type]
            link,
            key_store=key_store,
            run_id=run_id,
            progress=progress,
            on_data=None,
            rng=rng,
        )

    def new_tally(self) -> Tally:
        # BB84's per-intensity tally is not used (one "intensity": the counts above).
        return Tally((0.0, 0.0, 0.0))

    async def emit(self, stage: str, block: int, detail: str = "") -> None:
        event = BB84Progress(self.party, stage, block, 1, self.counts.key_bits, detail)
        await _call(self.progress, event)

    def partial_result(self, reason: AbortReason, detail: str) -> Any:
        # BB84's result has no place for BBM92's counts: run_bbm92 builds a BBM92Result.
        return None

    def check_test_qber(self) -> None:
        """After sifting: data in both bases, and the test basis' QBER under ``max_qber``."""
        c, s = self.counts, self.bbm92
        if c.key_bits == 0 or c.test_bits == 0:
            raise self.abort(
                AbortReason.NO_DATA,
                f"{c.coincidences} coincidences gave {c.key_bits} key-basis (H/V) and "
                f"{c.test_bits} test-basis (D/A) bits after sifting",
            )
        if c.qber_test > s.max_qber:
            raise self.abort(
                AbortReason.QBER_TOO_HIGH,
                f"test-basis (D/A) QBER {100 * c.qber_test:.2f} % over {c.test_bits} bits "
                f"exceeds {100 * s.max_qber:g} % (an eavesdropper, or the fibres' polarization "
                "not compensated, or a mount off its zero)",
            )

    def valid_key_errors(self, errors: I64) -> bool:
        e = np.asarray(errors)
        return (
            e.shape == (N_INTENSITIES,)
            and bool(np.all(e[1:] == 0))
            and 0 <= int(e[0]) <= self.counts.key_bits
        )

    def record_key_errors(self, key_errors: I64) -> Any:  # BBM92Counts
        self.counts.key_errors = int(np.asarray(key_errors)[0])
        q = self.counts.qber_key
        assert q is not None
        if q > self.bbm92.max_qber:
            raise self.abort(
                AbortReason.QBER_TOO_HIGH,
                f"key-basis (H/V) QBER {100 * q:.2f} % (from reconciliation) exceeds "
                f"{100 * self.bbm92.max_qber:g} %",
            )
        return self.counts

    def key_length(self, counts: Any) -> int:  # BBM92Counts
        s = self.bbm92
        assert self.leaked_bits is not None
        f = bbm92_key_length(
            counts.key_bits,
            counts.test_bits,
            counts.test_errors,
            self.leaked_bits,
            eps_sec=s.eps_sec,
            eps_cor=s.eps_cor,
        )
        self.bbm92_finite = f
        pads = CONFIRMATION_PADS * s.tag_bits
        if f.length <= pads:
            raise self.abort(
                AbortReason.NO_KEY,
                f"finite-key length {f.length} (Tomamichel et al. 2012) leaves no key after the "
                f"{pads} bits of key confirmation: {counts.key_bits} key-basis bits, test QBER "
                f"{100 * f.qber_test:.2f} % + {100 * f.mu:.2f} % statistical deviation over "
                f"{counts.test_bits} test bits, {self.leaked_bits} bits leaked in "
                f"reconciliation, {f.correction_bits:.0f} bits of epsilon terms",
            )
        return f.length


class BBM92Alice(_Common, _Alice):
    party = "alice"

    async def run(self) -> PartyResult:
        s = self.bbm92
        await self.link.send(Hello(VERSION, s.digest()))
        await self.emit("sift", 0)
        ann = await self.link.expect(Announcement)
        n = self.basis.size
        if ann.positions.size != n or ann.bases.size != n:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                f"Bob announces {ann.positions.size} coincidences, Alice holds {n}",
            )
        if n and not np.array_equal(ann.positions, np.arange(n)):
            raise self.abort(AbortReason.PROTOCOL_ERROR, "Announcement: coincidences out of order")
        match = self.basis == ann.bases
        test = match & (self.basis == TEST)
        key = match & (self.basis == KEY)
        await self.link.send(
            SiftReplyMsg(
                0,
                match.astype(np.uint8),
                np.zeros(int(match.sum()), np.uint8),
                self.bit[test],
                np.array([n, 0, 0], np.int64),
            )
        )
        tally = await self.link.expect(BlockTally)
        errs = np.asarray(tally.test_errors)
        k = int(test.sum())
        if tally.block != 0 or errs.shape != (N_INTENSITIES,) or not 0 <= errs[0] <= k:
            raise self.abort(AbortReason.PROTOCOL_ERROR, "BlockTally is malformed")
        c = self.counts
        c.sifted, c.key_bits, c.test_bits, c.test_errors = (
            int(match.sum()),
            int(key.sum()),
            k,
            int(errs[0]),
        )
        self.check_test_qber()
        return await self.post_process(self.bit[key], c.qber_test)


class BBM92Bob(_Common, _Bob):
    party = "bob"

    async def run(self) -> PartyResult:
        s = self.bbm92
        hello = await self.link.expect(Hello)
        if hello.version != VERSION or hello.settings_digest != s.digest():
            raise self.abort(
                AbortReason.PROTOCOL_ERROR,
                "Alice's BBM92 settings differ from Bob's (compare both [experiments.bbm92] tables)",
            )
        await self.emit("sift", 0)
        n = self.basis.size
        await self.link.send(Announcement(0, 0, n, np.arange(n, dtype=np.int64), self.basis))
        reply = await self.link.expect(SiftReplyMsg)
        if reply.block != 0 or reply.match.size != n:
            raise self.abort(
                AbortReason.PROTOCOL_ERROR, f"SiftReplyMsg for {reply.match.size} of {n}"
            )
        match = reply.match.astype(bool)  # Alice's word: Bob never learns her bases
        test = match & (self.basis == TEST)
        key = match & (self.basis == KEY)
        if reply.test_bits.size != int(test.sum()):
            raise self.abort(AbortReason.PROTOCOL_ERROR, "SiftReplyMsg: test bits of wrong length")
        errors = int(np.count_nonzero(reply.test_bits != self.bit[test]))
        await self.link.send(BlockTally(0, np.array([errors, 0, 0], np.int64)))
        c = self.counts
        c.sifted, c.key_bits, c.test_bits, c.test_errors = (
            int(match.sum()),
            int(key.sum()),
            int(test.sum()),
            errors,
        )
        self.check_test_qber()
        raw = self.bit[key]
        return await self.post_process(raw, np.zeros(raw.size, np.uint8))


def make_party(
    party: str,
    settings: BBM92Settings,
    outcomes: NDArray[np.integer],
    channel: MessageChannel,
    *,
    acquisition_s: float,
    key_store: KeyStore,
    run_id: str | None = None,
    progress: ProgressHook | None = None,
    rng: np.random.Generator | None = None,
) -> BBM92Alice | BBM92Bob:
    """One party of BBM92 (``"alice"`` or ``"bob"``) on its end of the channel; run it
    with ``run_party(p, p.run())`` (raises BB84Aborted when the protocol aborts).
    ``rng`` is for reproducing tests only (default: CSPRNG-seeded)."""
    peer = "bob" if party == "alice" else "alice"
    link = PeerLink(channel, party, peer, settings.message_timeout_s)
    cls = BBM92Alice if party == "alice" else BBM92Bob
    return cls(
        settings,
        outcomes,
        link,
        acquisition_s=acquisition_s,
        key_store=key_store,
        run_id=run_id,
        progress=progress,
        rng=rng,
    )


def result_of(
    p: BBM92Alice | BBM92Bob, reason: AbortReason | None = None, detail: str = ""
) -> BBM92Result:
    """A party's view of the run as a :class:`BBM92Result` (aborted when ``reason``)."""
    s = p.bbm92
    return BBM92Result(
        status="aborted" if reason is not None else "success",
        counts=p.counts,
        eps_sec=s.eps_sec,
        eps_cor=s.eps_cor,
        reason=reason,
        detail=detail,
        leaked_bits=p.leaked_bits,
        finite_key=p.bbm92_finite,
        alice_key=p.committed if p.party == "alice" else None,
        bob_key=p.committed if p.party == "bob" else None,
        committed=p.committed is not None,
        pa_family=p.pa_family,
    )


class BBM92Aborted(Exception):
    """Raised by :func:`run_bbm92` with the run's counts (``result``) and BB84's reason."""

    def __init__(self, reason: AbortReason, detail: str, result: BBM92Result) -> None:
        super().__init__(f"BBM92 aborted ({reason.value}): {detail}")
        self.reason, self.detail, self.result = reason, detail, result


async def run_bbm92(
    settings: BBM92Settings,
    alice_outcomes: NDArray[np.integer],
    bob_outcomes: NDArray[np.integer],
    alice_channel: MessageChannel,
    bob_channel: MessageChannel,
    *,
    acquisition_s: float,
    key_store: KeyStore,
    run_id: str | None = None,
    progress: ProgressHook | None = None,
    alice_rng: np.random.Generator | None = None,
    bob_rng: np.random.Generator | None = None,
) -> BBM92Result:
    """Both parties in this process over two opened channel ends; the combined result.

    Raises :class:`BBM92Aborted` (root cause, with what was counted) when the protocol
    aborts; any other error propagates after both parties stopped.
    """
    common: dict[str, Any] = {
        "acquisition_s": acquisition_s,
        "key_store": key_store,
        "run_id": run_id,
        "progress": progress,
    }
    parties = {
        "alice": make_party(
            "alice", settings, alice_outcomes, alice_channel, rng=alice_rng, **common
        ),
        "bob": make_party("bob", settings, bob_outcomes, bob_channel, rng=bob_rng, **common),
    }
    try:
        await run_both(
            run_party(parties["alice"], parties["alice"].run()),
            run_party(parties["bob"], parties["bob"].run()),
            "bbm92",
        )
    except BB84Aborted as exc:
        # Both count the same public numbers; Alice's view is complete up to the abort.
        result = result_of(parties["alice"], exc.reason, exc.detail)
        raise BBM92Aborted(exc.reason, exc.detail, result) from exc
    a, b = parties["alice"], parties["bob"]
    return BBM92Result(
        status="success",
        counts=a.counts,
        eps_sec=settings.eps_sec,
        eps_cor=settings.eps_cor,
        leaked_bits=a.leaked_bits,
        finite_key=a.bbm92_finite,
        alice_key=a.committed,
        bob_key=b.committed,
        committed=a.committed is not None and b.committed is not None,
        pa_family=a.pa_family,
    )
