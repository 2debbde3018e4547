"""``qhil run bb84 --continuous``: the recorded jobs around :mod:`.continuous`.

The bench, the checks before the first photon (mean photon numbers, polarization) and
the channel are opened once; then keys follow one another until SIGINT/SIGTERM
(:func:`run_signalled`: the first signal asks for a clean stop, a second cancels), a
run-ending abort, or too many dropped keys in a row. Every committed key is added to
the run record (id, length, SHA-256) when it is made, so a kill -9 leaves the record
(``incomplete``) listing every key made so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.orchestrator.experiments.bb84.continuous import (
    MAX_CONSECUTIVE_DROPS,
    CappedKeyStore,
    ContinuousProgress,
    ContinuousResult,
    KeyOutcome,
    KeyRunner,
    KmeCapacity,
    StopRequest,
    StorageGate,
    Unbounded,
    digest_of,
    run_continuous_party,
)
from qhil.orchestrator.experiments.bb84.detection import DiscardDiagnosis
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.party import ProgressHook
from qhil.orchestrator.experiments.bb84.result import PartyResult
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.tracking import AliceTracking

#: Per key and party, ``<party>/keys``: what the record keeps of each attempted key.
KEY_ROW = np.dtype(
    [
        ("key", np.int64),
        ("committed", np.int8),
        ("secret_bits", np.int64),
        ("acquisition_s", np.float64),
        ("qber_test_signal", np.float64),
        ("t_s", np.float64),  # when the key ended, s since key generation began
    ]
)
#: Per party, ``<party>/pauses``: each pause for a full key store, s since the start.
PAUSE_ROW = np.dtype([("start_s", np.float64), ("end_s", np.float64)])

_SECONDARY = (AbortReason.CHANNEL_FAILED, AbortReason.PEER_FAILED)

#: ``gates(label)``: the storage bound of the node whose keys carry ``label``.
GateFactory = Callable[[str], StorageGate]


def kme_gates(
    key_dir: str | Path, *, max_key_count: int | None, key_size: int | None, kms_config: str | None
) -> GateFactory:
    """Each node's KME bound: from ``kms_config``'s ``[limits]`` unless given; with
    neither, the KME's defaults (``qhil.kms.config``)."""
    from qhil.kms.config import DEFAULT_KEY_SIZE, DEFAULT_MAX_KEY_COUNT, load_config

    size, count = DEFAULT_KEY_SIZE, DEFAULT_MAX_KEY_COUNT
    if kms_config is not None:
        limits = load_config(kms_config).limits
        size, count = limits.key_size, limits.max_key_count
    size = key_size if key_size is not None else size
    count = max_key_count if max_key_count is not None else count
    return lambda label: KmeCapacity(str(key_dir), label, size, count)


def _diagnosed(start: KeyRunner) -> KeyRunner:
    """``start`` with a key lost for no data saying its likely cause (no light,
    polarization, drift...), as a single run's abort does."""

    async def one_key(hook: ProgressHook) -> PartyResult:
        diagnosis = DiscardDiagnosis(hook)
        try:
            return await start(diagnosis)
        except BB84Aborted as exc:
            if exc.reason is AbortReason.NO_DATA:
                exc.detail = diagnosis.explain(exc)
            raise

    return one_key


def _key_row(o: KeyOutcome, t_s: float) -> np.ndarray:
    row = np.zeros(1, KEY_ROW)
    row["t_s"] = t_s
    row["key"] = o.index
    row["committed"] = o.ref is not None
    row["secret_bits"] = o.ref.length_bits if o.ref is not None else 0
    stats = o.statistics
    row["acquisition_s"] = stats.acquisition_s if stats is not None else np.nan
    row["qber_test_signal"] = stats.qber_test[0] if stats is not None else np.nan
    return row


class Recorder:
    """Into the record at once: each outcome (a committed key's reference, one row) and
    each pause (a row when it ends), timed from this recorder's creation, so the run's
    plots (``qhil.plots.continuous``) show the keys over time from the record alone."""

    def __init__(
        self,
        run: Any,
        party: str,
        on_progress: Callable[[ContinuousProgress], Any] | None = None,
    ) -> None:
        self.run, self.party, self._forward = run, party, on_progress
        self._t0 = time.monotonic()
        self._paused_at: float | None = None

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def on_key(self, o: KeyOutcome) -> None:
        if o.ref is not None:
            self.run.add_key(o.ref)
        self.run.append(f"{self.party}/keys", _key_row(o, self._now()))

    def on_progress(self, p: ContinuousProgress) -> Any:
        if p.party == self.party and p.event == "paused":
            self._paused_at = self._now()
        elif p.party == self.party and p.event == "resumed" and self._paused_at is not None:
            row = np.array([(self._paused_at, self._now())], PAUSE_ROW)
            self.run.append(f"{self.party}/pauses", row)
            self._paused_at = None
        return self._forward(p) if self._forward is not None else None


@dataclasses.dataclass
class ContinuousLoop:
    """What every continuous job (bb84, bbm92, one process or one party) gives each
    party's key loop: its run, the key store cut to the KMEs' room, the storage gates."""

    run: Any
    store: Any
    keys: CappedKeyStore
    stop: StopRequest
    timeout_s: float
    gates: GateFactory | None = None
    progress: ProgressHook | None = None
    on_progress: Callable[[ContinuousProgress], Any] | None = None
    max_consecutive_drops: int = MAX_CONSECUTIVE_DROPS

    def party(
        self, name: str, runner: KeyRunner, channel: Any
    ) -> Coroutine[Any, Any, ContinuousResult]:
        """Party ``name``'s loop, its keys and pauses recorded as they come."""
        recorder = Recorder(self.run, name, self.on_progress)
        return run_continuous_party(
            name,
            runner,
            channel,
            key_store=self.keys,
            stop=self.stop,
            timeout_s=self.timeout_s,
            gate=self.gates(name) if self.gates is not None else Unbounded(),
            progress=self.progress,
            on_progress=recorder.on_progress,
            on_key=recorder.on_key,
            max_consecutive_drops=self.max_consecutive_drops,
        )


def continuous_loop(
    kind: str,
    prof: Any,
    settings: Any,
    *,
    data_dir: str | Path | None,
    key_dir: str | Path | None,
    party: str | None = None,
    **loop: Any,
) -> ContinuousLoop:
    """The stores (checked writable before any instrument is opened), the run started
    (``kind``, the settings, ``party``, ``continuous``), and ``loop``'s options
    (:class:`ContinuousLoop`'s fields from ``stop`` on)."""
    from qhil.orchestrator.jobs import output_stores

    store, plain = output_stores(data_dir, key_dir)
    keys = CappedKeyStore(plain.directory)  # keys cut to the KME's room (continuous.py)
    mine = {} if party is None else {"party": party}
    run = store.start_run(
        kind,
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters={**settings.model_dump(mode="json"), **mine, "continuous": True},
    )
    return ContinuousLoop(run, store, keys, **loop)


def results_of(res: ContinuousResult) -> dict[str, Any]:
    """One party's run results (scalars; never key bits)."""
    keys = res.keys
    acq = res.acquisition_s
    out: dict[str, Any] = {
        "keys_committed": len(keys),
        "keys_dropped": sum(res.dropped.values()),
        "secret_bits": res.secret_bits,
        "acquisition_s": acq,
        "key_rate_bps": res.secret_bits / acq if acq > 0 else 0.0,
        "paused_s": res.paused_s,
        "keys_sha256": digest_of(keys),
    }
    out.update({f"dropped_{reason}": n for reason, n in res.dropped.items()})
    out.update({f"restart_{what}": n for what, n in res.resolved.items()})
    return out


def summary_of(run_id: str, results: list[ContinuousResult]) -> dict[str, Any]:
    """The job's summary (``--json``): status, why it ended, the keys (ids, lengths)."""
    first = results[0]
    ended = [r.aborted for r in results if r.aborted is not None]
    # the first-hand reason (Bob's failed authentication, not the silence Alice saw next)
    ended.sort(key=lambda e: (e.from_peer, e.reason in _SECONDARY))
    aborted = ended[0] if ended else None
    keys: list[dict[str, Any]] = []
    for i, ref in enumerate(first.keys):
        entry: dict[str, Any] = {"length_bits": ref.length_bits, "sha256": ref.sha256}
        for r in results:
            entry[f"{r.party}_key_id"] = r.keys[i].key_id if i < len(r.keys) else None
        keys.append(entry)
    out = {
        "run_id": run_id,
        "status": "aborted" if aborted is not None else "success",
        "reason": f"{aborted.reason.value}: {aborted.detail}" if aborted is not None else None,
        "stopped": first.stopped,
        **results_of(first),
        "dropped": dict(first.dropped),
        "keys": keys,
    }
    return out


def _finish(run: Any, summary: dict[str, Any], results: dict[str, Any]) -> None:
    run.log_results({k: v for k, v in results.items() if v is not None})
    if summary["status"] == "success":
        run.finish("success", summary["stopped"])
    else:
        run.abort(summary["reason"])


async def run_bb84_continuous_job(
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
    """Both parties in this process, key after key on one open bench (see module doc).

    Each key is a BB84 run of the profile's ``duration_s`` (or ``blocks``); the
    returned summary is :func:`summary_of`'s.
    """
    from qhil.orchestrator.bench import open_bench
    from qhil.orchestrator.experiments.bb84 import bench_roles, run_alice, run_bob
    from qhil.orchestrator.jobs import bb84_settings, open_in_process_or_abort
    from qhil.orchestrator.profile import load_profile

    prof = load_profile(profile, overrides or [])
    settings = bb84_settings(prof, duration_s)
    loop = continuous_loop(
        "bb84.continuous", prof, settings, data_dir=data_dir, key_dir=key_dir, stop=stop,
        timeout_s=settings.message_timeout_s, gates=gates, progress=progress,
        on_progress=on_progress, max_consecutive_drops=max_consecutive_drops,
    )  # fmt: skip
    run = loop.run
    with run:
        async with open_bench(prof, mode=mode) as bench:
            run.set_identities(await bench.identities())
            generator, tagger = bench_roles(bench, settings)
            reason, tracking = await _before_keys(
                prof, settings, bench, generator, tagger, run, loop.store
            )
            # the drift is tracked through every key (bb84/tracking.py), as in one run
            alice_tracking = None if tracking is None else AliceTracking(tracking.polarization)
            if reason is not None:
                run.abort(reason)
                return _not_started(run.run_id, reason)
            opened = await open_in_process_or_abort(run, settings.message_timeout_s)
            if isinstance(opened, str):
                return _not_started(run.run_id, opened)
            alice_ch, bob_ch = opened

            def common(hook: ProgressHook) -> dict[str, Any]:
                return {
                    "key_store": loop.keys,
                    "run_id": run.run_id,
                    "progress": hook,
                    "on_data": run.append,
                }

            try:
                a, b = await asyncio.gather(
                    loop.party(
                        "alice",
                        _diagnosed(
                            lambda h: run_alice(
                                settings, generator, alice_ch, tracking=alice_tracking, **common(h)
                            )
                        ),
                        alice_ch,
                    ),
                    loop.party(
                        "bob",
                        _diagnosed(
                            lambda h: run_bob(
                                settings, tagger, bob_ch, tracking=tracking, **common(h)
                            )
                        ),
                        bob_ch,
                    ),
                )
            finally:
                await asyncio.gather(alice_ch.close(), bob_ch.close(), return_exceptions=True)
        summary = summary_of(run.run_id, [a, b])
        _finish(run, summary, results_of(a))
    return summary


def _not_started(run_id: str, reason: str) -> dict[str, Any]:
    return {"run_id": run_id, "status": "aborted", "reason": reason, "stopped": None, "keys": []}


async def _before_keys(
    prof: Any,
    settings: BB84Settings,
    bench: Any,
    generator: Any,
    tagger: Any,
    run: Any,
    store: Any,
) -> tuple[str | None, Any]:
    """The checks a single BB84 run makes before its first block, once for all keys: the
    mean photon numbers, then the polarization (a stored compensation reused when it still
    holds). Returns (the abort reason or None, Bob's drift tracking for every key or None)."""
    from qhil.orchestrator.jobs import _bob_tracking, _calibrate_polarization

    if settings.verify_mus:
        from qhil.calibration.jobs import verify_mean_photon_numbers

        reason = await verify_mean_photon_numbers(prof, bench, settings.mus, run)
        if reason is not None:
            return str(reason), None
    if not settings.calibrate_polarization:
        return None, None
    identities = await bench.identities()
    try:
        start = await _calibrate_polarization(
            prof,
            bench,
            generator,
            tagger,
            run,
            reuse=(store, identities, settings.polarization_max_age_s),
        )
    except BB84Aborted as exc:
        return f"{exc.reason.value}: {exc.detail}", None
    return None, _bob_tracking(prof, bench, settings, start)


async def run_bb84_continuous_party_job(
    party: str,
    profile: str | None,
    overrides: list[str] | None = None,
    *,
    stop: StopRequest,
    auth_key_file: str | Path,
    listen: str | None = None,
    connect: str | None = None,
    session_id: str = "qhil-bb84",
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
    gates: GateFactory | None = None,
    progress: ProgressHook | None = None,
    on_progress: Callable[[ContinuousProgress], Any] | None = None,
    peer_timeout_s: float = 60.0,
    on_waiting: Callable[[str], Any] | None = None,
    max_consecutive_drops: int = MAX_CONSECUTIVE_DROPS,
) -> dict[str, Any]:
    """One party of a continuous run; the other runs elsewhere (``--party``), over TCP.

    As ``run_bb84_party_job``: only this party's node is opened, Alice listens and Bob
    connects with the same pre-shared key, each records its own run
    (``bb84.continuous.alice`` / ``.bob``) and keeps its own keys.
    """
    from qhil.errors import ConfigError
    from qhil.orchestrator.bench import open_bench
    from qhil.orchestrator.channel import HmacSha256Authenticator
    from qhil.orchestrator.experiments.bb84 import run_alice, run_bob
    from qhil.orchestrator.jobs import (
        _alice_tracking,
        _bob_tracking,
        _party_polarization,
        _tell,
        bb84_settings,
        load_auth_key,
        open_party_or_abort,
    )
    from qhil.orchestrator.profile import load_profile

    if party not in ("alice", "bob"):
        raise ConfigError("<command line>", "party", f"must be alice or bob, not {party!r}")
    prof = load_profile(profile, overrides or [])
    settings = bb84_settings(prof, duration_s)
    node = settings.alice_node if party == "alice" else settings.bob_node
    if node not in prof.nodes:
        raise ConfigError(prof.source, f"nodes.{node}", f"{party}'s node is not in the profile")
    own = prof.model_copy(update={"nodes": {node: prof.nodes[node]}, "world": None})
    auth = HmacSha256Authenticator(load_auth_key(auth_key_file))
    loop = continuous_loop(
        f"bb84.continuous.{party}", prof, settings, data_dir=data_dir, key_dir=key_dir,
        party=party, stop=stop, timeout_s=settings.message_timeout_s, gates=gates,
        progress=progress, on_progress=on_progress, max_consecutive_drops=max_consecutive_drops,
    )  # fmt: skip
    run = loop.run
    with run:
        async with open_bench(own) as bench:
            run.set_identities(await bench.identities())
            if party == "alice" and settings.verify_mus:
                from qhil.calibration.jobs import verify_mean_photon_numbers

                reason = await verify_mean_photon_numbers(prof, bench, settings.mus, run)
                if reason is not None:
                    run.abort(reason)
                    return _not_started(run.run_id, str(reason))
            opened = await open_party_or_abort(
                party,
                auth,
                run,
                listen=listen,
                connect=connect,
                session_id=session_id,
                timeout_s=settings.message_timeout_s,
                peer_timeout_s=peer_timeout_s,
                on_waiting=on_waiting,
            )
            if isinstance(opened, str):
                return _not_started(run.run_id, opened)
            channel = opened.channel
            _tell(on_waiting, f"{party}: connected; continuous key generation until stopped")
            try:
                try:
                    start = await _party_polarization(
                        prof, settings, party, bench, channel, run, on_waiting
                    )
                except BB84Aborted as exc:
                    reason = f"{exc.reason.value}: {exc.detail}"
                    run.abort(reason)
                    return _not_started(run.run_id, reason)
                instrument: Any = (
                    bench.role(node, PatternGenerator, name=settings.pattern_generator)
                    if party == "alice"
                    else bench.role(node, TimeTagger, name=settings.tagger)
                )
                run_one: Any = run_alice if party == "alice" else run_bob
                # the drift is tracked through every key (bb84/tracking.py), as in one run
                tracking = (
                    _alice_tracking(prof, settings)
                    if party == "alice"
                    else _bob_tracking(prof, bench, settings, start)
                )

                def one_key(hook: ProgressHook) -> Any:
                    return run_one(
                        settings,
                        instrument,
                        channel,
                        key_store=loop.keys,
                        run_id=run.run_id,
                        progress=hook,
                        on_data=run.append,
                        tracking=tracking,
                    )

                mine = await loop.party(party, _diagnosed(one_key), channel)
            finally:
                await opened.close()
        summary = summary_of(run.run_id, [mine])
        _finish(run, summary, results_of(mine))
    return summary


@contextlib.contextmanager
def signalled(
    job: Callable[[StopRequest], Coroutine[Any, Any, Any]],
) -> Iterator[tuple[Any, int | None]]:
    """:func:`run_signalled`, then, while the caller prints the summary and draws the
    plots, a signal is noted on stderr and ignored: the run is recorded already, so the
    exit code follows its record (a second signal's default handler made it exit 130
    after a "success" summary). The previous handlers are back on exit."""
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def late(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        print(f"qhil: {name} after the run had ended: ignored (it is recorded)", file=sys.stderr)

    try:
        yield run_signalled(job, late=late)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_signalled(
    job: Callable[[StopRequest], Coroutine[Any, Any, Any]],
    *,
    late: Callable[[int, Any], None] | None = None,
) -> tuple[Any, int | None]:
    """``asyncio.run(job(stop))``: the first SIGINT/SIGTERM asks the job to stop cleanly
    (``stop``), a second cancels it (then the run is recorded aborted, as for any job).
    Returns (the job's result, the first signal's number or None). ``late``: the
    handler of the signals after the job ended (set as the loop's are removed)."""
    received: list[int] = []

    async def main() -> Any:
        stop = StopRequest()
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if received:
                task.cancel(f"terminated by signal ({name})")
            else:
                stop.request(name)
            received.append(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await job(stop)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
                if late is not None:  # at once: no moment without a handler
                    signal.signal(signum, late)

    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        if received:
            raise Interrupted(received[0]) from None
        raise
    return result, (received[0] if received else None)


class Interrupted(Exception):
    """A second SIGINT/SIGTERM cancelled the job (its run is recorded aborted)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


__all__ = [
    "AbortReason",
    "kme_gates",
    "run_bb84_continuous_job",
    "run_bb84_continuous_party_job",
    "run_signalled",
    "signalled",
    "summary_of",
]
