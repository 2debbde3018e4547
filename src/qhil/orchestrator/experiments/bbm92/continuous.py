"""``qhil run bbm92 --continuous``: BBM92 key after key on one open entanglement bench
(issue 13), through BB84's protocol-independent loop (``bb84/continuous.py``).

The bench is opened, the mounts set to their zeros, the pump switched on and the fibres
compensated once (a stored compensation reused when it holds), as for one ``qhil run
bbm92``; then each key is one acquisition (``experiments.bbm92.duration_s``, in chunks)
whose coincidences both parties sift and post-process as a single run does. The loop
gives the same guarantees as BB84's: every confirmed key committed at both nodes, the
storage bound of the KME (pause, never drop), a clean stop on SIGINT/SIGTERM, the run
recorded key by key (kind ``bbm92.continuous``). Both parties in one process only
(``--party`` is refused: the acquisition needs both nodes' taggers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd.randomness import secure_generator
from qhil.orchestrator.experiments.bb84.continuous import (
    MAX_CONSECUTIVE_DROPS,
    ContinuousProgress,
    ContinuousResult,
    KeyRunner,
    StopRequest,
)
from qhil.orchestrator.experiments.bb84.continuous_job import (
    GateFactory,
    _finish,
    _not_started,
    continuous_loop,
    results_of,
    summary_of,
)
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.party import ProgressHook, run_party
from qhil.orchestrator.experiments.bb84.result import BB84Result, PartyResult
from qhil.orchestrator.experiments.bb84.statistics import BB84Statistics
from qhil.orchestrator.experiments.bbm92.result import BBM92Counts
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings

Outcomes = tuple[NDArray[np.integer], NDArray[np.integer]]


def statistics_of(c: BBM92Counts) -> BB84Statistics:
    """BBM92's public counts in the loop's statistics shape (one "intensity": the pairs),
    so each key's row in the record has its acquisition time and test-basis QBER."""

    def one(v: int) -> NDArray[np.int64]:
        return np.array([v, 0, 0], np.int64)

    return BB84Statistics(
        mus=(0.0, 0.0, 0.0),
        blocks=1,
        blocks_used=1,
        acquisition_s=c.acquisition_s,
        pulses_sent=0,
        window_pulses=0,
        pulses=one(c.coincidences),
        detections=one(c.coincidences),
        key_sifted=one(c.key_bits),
        test_sifted=one(c.test_bits),
        test_errors=one(c.test_errors),
        key_errors=None if c.key_errors is None else one(c.key_errors),
    )


class SharedAcquisition:
    """One acquisition per key, made when the first party asks and handed to both:
    Alice gets her node's outcomes, Bob his (each key's ``k``-th call of each party)."""

    def __init__(self, acquire: Callable[[], Awaitable[Outcomes]]) -> None:
        self._acquire = acquire
        self._tasks: dict[int, asyncio.Future[Outcomes]] = {}
        self._taken = {"alice": 0, "bob": 0}

    async def outcomes(self, party: str) -> NDArray[np.integer]:
        k = self._taken[party]
        self._taken[party] += 1
        if k not in self._tasks:
            self._tasks[k] = asyncio.ensure_future(self._acquire())
        task = self._tasks[k]
        if min(self._taken.values()) > k:  # both have it now
            del self._tasks[k]
        # shielded: one party's cancellation (a stop) must not cut the other's acquisition
        out = await asyncio.shield(task)
        return out[0] if party == "alice" else out[1]

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()


def key_runner(
    party: str,
    s: BBM92Settings,
    shared: SharedAcquisition,
    channel: Any,
    *,
    key_store: Any,
    run_id: str,
) -> KeyRunner:
    """One BBM92 key of ``party`` per call: its outcomes of the next acquisition, then
    sifting and post-processing; a dropped key's abort carries its counts."""
    from qhil.orchestrator.experiments.bbm92.parties import make_party

    async def one_key(hook: ProgressHook) -> PartyResult:
        out = await shared.outcomes(party)
        p = make_party(
            party,
            s,
            out,
            channel,
            acquisition_s=s.duration_s,
            key_store=key_store,
            run_id=run_id,
            progress=hook,
        )
        try:
            result = await run_party(p, p.run())
        except BB84Aborted as exc:
            if exc.result is None:
                exc.result = BB84Result(
                    "aborted",
                    statistics_of(p.counts),
                    (1.0, 0.0, 0.0),
                    s.eps_sec,
                    s.eps_cor,
                    reason=exc.reason,
                    detail=exc.detail,
                )
            raise
        return dataclasses.replace(result, statistics=statistics_of(p.counts))

    return one_key


async def run_bbm92_continuous_job(
    profile: str | None = None,
    overrides: list[str] | None = None,
    *,
    stop: StopRequest,
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
    mode: str | None = None,
    gates: GateFactory | None = None,
    progress: ProgressHook | None = None,
    on_progress: Callable[[ContinuousProgress], Any] | None = None,
    max_consecutive_drops: int = MAX_CONSECUTIVE_DROPS,
) -> dict[str, Any]:
    """Both parties in this process, key after key on one open entanglement bench; the
    summary is ``bb84.continuous_job.summary_of``'s (see module doc)."""
    from qhil.orchestrator.bench import open_bench
    from qhil.orchestrator.experiments.bbm92.events import click_masks, outcomes
    from qhil.orchestrator.experiments.bbm92.job import (
        acquire_chunks,
        nodes_for_bbm92,
        start_pairs,
    )
    from qhil.orchestrator.experiments.bbm92.tracking import ChunkTracker, tracker_for
    from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted
    from qhil.orchestrator.experiments.entanglement.job import calibrated_zeros
    from qhil.orchestrator.jobs import _scalars, open_in_process_or_abort
    from qhil.orchestrator.profile import load_profile

    prof = load_profile(profile, overrides or [])
    s = BBM92Settings.from_profile(prof, duration_s=duration_s)
    loop = continuous_loop(
        "bbm92.continuous", prof, s, data_dir=data_dir, key_dir=key_dir, stop=stop,
        timeout_s=s.message_timeout_s, gates=gates, progress=progress,
        on_progress=on_progress, max_consecutive_drops=max_consecutive_drops,
    )  # fmt: skip
    store, keys, run = loop.store, loop.keys, loop.run
    # each node squashes its own clicks with its own randomness (CSPRNG-seeded)
    squash = {"alice": secure_generator(), "bob": secure_generator()}
    with run:
        async with open_bench(prof, mode=mode) as bench:
            identities = await bench.identities()
            run.set_identities(identities)
            s, zero_source = calibrated_zeros(s, store.data_dir, identities)
            nodes = nodes_for_bbm92(bench, s)
            tracker: ChunkTracker | None = None  # set once the fibres are compensated

            async def acquire() -> Outcomes:
                acqs = await acquire_chunks(nodes, s, tracker=tracker)
                cs = [a.coincidences for a in acqs]
                for c in cs:
                    run.append("acquisition/matrix", c.matrix.reshape(1, 4, 4).astype(np.int64))
                masks = [
                    click_masks(c.alice_t_ps, c.alice_outcome, c.bob_t_ps, c.bob_outcome)
                    for c in cs
                ]
                return (
                    outcomes(np.concatenate([m[0] for m in masks]), squash["alice"]),
                    outcomes(np.concatenate([m[1] for m in masks]), squash["bob"]),
                )

            shared = SharedAcquisition(acquire)
            results: dict[str, Any] = {"mount_zero_source": zero_source}
            try:
                results.update(await start_pairs(bench, nodes, s, run, store, identities))
                tracker = tracker_for(bench, nodes, s, run, results, continuous=True)
                opened = await open_in_process_or_abort(run, s.message_timeout_s)
                if isinstance(opened, str):
                    return _not_started(run.run_id, opened)
                alice_ch, bob_ch = opened

                def party(name: str, channel: Any) -> Coroutine[Any, Any, ContinuousResult]:
                    runner = key_runner(name, s, shared, channel, key_store=keys, run_id=run.run_id)
                    return loop.party(name, runner, channel)

                try:
                    a, b = await asyncio.gather(party("alice", alice_ch), party("bob", bob_ch))
                finally:
                    await shared.close()
                    await asyncio.gather(alice_ch.close(), bob_ch.close(), return_exceptions=True)
            except EntanglementAborted as exc:
                run.log_results(_scalars(results))
                run.abort(str(exc))
                return _not_started(run.run_id, str(exc))
            finally:
                with contextlib.suppress(Exception):  # the run's own error matters more
                    await nodes.pump_off()
        summary = summary_of(run.run_id, [a, b])
        if tracker is not None:
            results.update(tracker.results())
        _finish(run, summary, {**_scalars(results), **results_of(a)})
    return summary


__all__ = ["AbortReason", "SharedAcquisition", "run_bbm92_continuous_job", "statistics_of"]
