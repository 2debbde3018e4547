"""The recorded clock-sync job: profile, bench, run record, both nodes, teardown.

Both nodes run in this process and talk only through an authenticated in-process
channel, as BB84's one-process job does. The experiment stays blind to the bench's
nature; on an emulated bench this job (which started the emulators) adds the
emulator truth to the record afterwards (``track/truth_offset_ps``, ``truth_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qhil.drivers.roles import Attenuator, EntangledPhotonSource, TimeTagger
from qhil.errors import ConfigError
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.channel import (
    AuthenticationError,
    AuthKey,
    HmacSha256Authenticator,
    in_process_channels,
)
from qhil.orchestrator.experiments.clock_sync.corrections import save_correction
from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted
from qhil.orchestrator.experiments.clock_sync.runner import (
    ClockSyncResult,
    SyncProgress,
    close_shutters,
    run_alice_sync,
    run_bob_sync,
    run_clock_sync,
    switch_sources,
)
from qhil.orchestrator.experiments.clock_sync.settings import ClockSyncSettings
from qhil.orchestrator.experiments.clock_sync.truth import ClockSyncTruth, truth_function
from qhil.orchestrator.jobs import JobSummary, writable_run_store
from qhil.orchestrator.profile import load_profile

PS_PER_S = 1e12
#: Array prefix of each tracked direction in the run record.
PREFIX = {"one-way": "track", "a_to_b": "track", "b_to_a": "track_b_to_a"}
#: The summary's fields (``qhil run clock-sync --json``), in order.
SUMMARY_FIELDS = (
    "method",
    "offset_s",
    "offset_terms",
    "offset_stderr_s",
    "frequency_offset_ppb",
    "frequency_offset_stderr_ppb",
    "coincidences",
    "lock_losses",
    "reacquisitions",
    "locked_at_end",
    "t_ref_s",
    "tracking_interval_s",
    "path_delay_s",
    "path_delay_stderr_s",
    "truth_path_delay_s",
    "truth_offset_s",
    "offset_error_s",
    "truth_frequency_offset_ppb",
    "correction_file",
)


#: What the offset is (issue 9: the result and the world's truth in the same measurable
#: terms, said in the output). Each TDC1 resets its counter when its stream starts, so the
#: streams' timebases are what two taggers can compare; the hosts' clocks are not in it.
STREAM_TERMS = (
    "B's tagger stream time minus A's (each TDC1 counter reset at its stream start); "
    "the hosts' absolute clock offset is not included"
)


def offset_terms(method: str) -> str:
    """What the ``offset_s`` of a run by ``method`` measures, in words for the output."""
    if method == "two-way":
        return f"{STREAM_TERMS}; the path delay cancelled (symmetric fibre assumed)"
    return f"{STREAM_TERMS}; plus the pair's path-delay difference (source to B minus to A)"


class ClockSyncSummary(JobSummary):
    """What a finished (or aborted) clock-sync job reports."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "reason": self.reason}
        for k in SUMMARY_FIELDS:
            out[k] = self.results.get(k)
        out["truth"] = "emulator" if self.results.get("truth_offset_s") is not None else None
        return out


def _component(prof: Any, node: str, name: str) -> str | None:
    comp = prof.nodes[node].instruments[name].component
    return None if comp is None else str(comp)


async def run_clock_sync_job(
    profile: str | None = None,
    overrides: list[str] | None = None,
    *,
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    mode: str | None = None,
    progress: Callable[[SyncProgress], Any] | None = None,
) -> ClockSyncSummary:
    """Clock synchronisation on the profile's bench, both nodes in this process."""
    prof = load_profile(profile, overrides or [])
    settings = ClockSyncSettings.from_profile(prof, duration_s=duration_s)
    store = writable_run_store(data_dir)  # before any instrument is opened
    run = store.start_run(
        "clock_sync",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters={**settings.model_dump(mode="json"), "method_used": settings.method_used},
    )
    with run:
        async with open_bench(prof, mode=mode) as bench:
            run.set_identities(await bench.identities())
            a_tagger = bench.role(settings.alice_node, TimeTagger, name=settings.alice_tagger)
            b_tagger = bench.role(settings.bob_node, TimeTagger, name=settings.bob_tagger)
            sources = {
                node: bench.role(node, EntangledPhotonSource, name=cfg.instrument)
                for node, cfg in settings.active_sources.items()
            }
            auth = AuthKey.generate()  # pre-shared by the two nodes of this process
            alice_ch, bob_ch = in_process_channels(
                HmacSha256Authenticator(auth),
                HmacSha256Authenticator(auth),
                session_id=run.run_id,
                timeout_s=settings.message_timeout_s,
            )
            on_point = _Recorder(run)
            shutters = _shutters(bench, prof, settings)

            try:
                await close_shutters(shutters)
                await asyncio.gather(alice_ch.open(), bob_ch.open())
                result = await run_clock_sync(
                    settings,
                    a_tagger,
                    b_tagger,
                    alice_ch,
                    bob_ch,
                    sources,
                    progress=progress,
                    on_point=on_point,
                )
            except (AuthenticationError, ClockSyncAborted) as exc:
                return _aborted(run, exc)
            finally:
                await asyncio.gather(alice_ch.close(), bob_ch.close(), return_exceptions=True)
            results = {**result.to_results(), "offset_terms": offset_terms(result.method)}
            truth = None
            if bench.emulator_truth is not None:
                names = (_instrument_name(a_tagger), _instrument_name(b_tagger))
                components = {
                    "alice": _component(prof, settings.alice_node, names[0]),
                    "bob": _component(prof, settings.bob_node, names[1]),
                    **{
                        f"source.{node}": _component(prof, node, _instrument_name(src))
                        for node, src in sources.items()
                    },
                }
                truth = truth_function(bench.emulator_truth, settings, components, names)
            if truth is not None:
                results.update(_truth_results(truth, result, on_point.times, run))
        path = save_correction(
            store.data_dir,
            prof.bench.name,
            bench_taggers(prof, settings, a_tagger, b_tagger),
            result,
            run_id=run.run_id,
        )
        results["correction_file"] = str(path)
        run.log_results({k: v for k, v in results.items() if v is not None})
        run.finish("success")
    return ClockSyncSummary(run.run_id, "success", None, results)


def _aborted(run: Any, exc: Exception) -> ClockSyncSummary:
    """The run recorded ``aborted`` with the reason (exit 3): a typed abort says its own
    reason; a failed authentication (a wrong pre-shared key) is ``authentication_failed``."""
    reason = f"authentication_failed: {exc}" if isinstance(exc, AuthenticationError) else str(exc)
    run.abort(reason)
    return ClockSyncSummary(run.run_id, "aborted", reason, {})


class _Recorder:
    """``on_point``: each tracking row appended to the run's arrays as it comes."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.times: dict[str, list[float]] = {}

    def __call__(self, direction: str, row: dict[str, Any]) -> None:
        prefix = PREFIX[direction]
        for name, value in row.items():
            dtype = bool if name == "locked" else (np.int64 if name == "counts" else float)
            self.run.append(f"{prefix}/{name}", np.asarray([value], dtype=dtype))
        self.times.setdefault(prefix, []).append(row["t_s"])


def _shutters(
    bench: Any, prof: Any, settings: ClockSyncSettings, node: str | None = None
) -> dict[str, Attenuator]:
    """The attenuators named in ``shutters`` (at ``node`` only, when given); a name that
    is no attenuator of its node is a profile error naming the field."""
    from qhil.orchestrator.bench_errors import BenchLookupError

    out: dict[str, Attenuator] = {}
    for where, name in settings.shutters_at(node):
        try:
            out[f"{where}.{name}"] = bench.role(where, Attenuator, name=name)
        except BenchLookupError as exc:
            raise ConfigError(prof.source, "experiments.clock_sync.shutters", str(exc)) from None
    return out


def _instrument_name(driver: Any) -> str:
    """A bench driver's instrument name (its name is ``node.instrument``)."""
    return str(driver.name).split(".", 1)[-1]


def bench_taggers(prof: Any, settings: ClockSyncSettings, a: Any, b: Any) -> tuple[str, str]:
    """The two taggers as ``node.instrument``: part of a stored correction's key."""
    return (
        f"{settings.alice_node}.{_instrument_name(a)}",
        f"{settings.bob_node}.{_instrument_name(b)}",
    )


def _truth_results(
    truth: ClockSyncTruth,
    result: ClockSyncResult,
    times: dict[str, list[float]],
    run: Any,
) -> dict[str, Any]:
    """Emulator truth at the result's epoch and along each direction's track, each in the
    terms of what that direction measures (recorded as such)."""
    for direction, at_t in truth.directions.items():
        prefix = PREFIX[direction]
        if prefix in times:
            t = np.asarray(times[prefix]) * PS_PER_S
            run.append(f"{prefix}/truth_offset_ps", np.asarray(at_t(t), dtype=float))
    t_ref = result.model.t_ref_ps
    at = truth.offset([t_ref, t_ref + PS_PER_S])
    true_offset = float(at[0])
    out = {
        "truth_offset_s": true_offset / PS_PER_S,
        "offset_error_s": (result.model.offset_ps - true_offset) / PS_PER_S,
        "truth_frequency_offset_ppb": float(at[1] - at[0]) / PS_PER_S * 1e9,
        "truth_source": "emulator",
    }
    if truth.path_delay_ps is not None:
        out["truth_path_delay_s"] = truth.path_delay_ps / PS_PER_S
    return out


async def run_clock_sync_party_job(
    party: str,
    profile: str | None,
    overrides: list[str] | None = None,
    *,
    auth_key_file: str | Path,
    listen: str | None = None,
    connect: str | None = None,
    session_id: str = "qhil-clock-sync",
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    progress: Callable[[SyncProgress], Any] | None = None,
    peer_timeout_s: float = 60.0,
    on_waiting: Callable[[str], Any] | None = None,
) -> ClockSyncSummary:
    """One node of the clock sync in this process; the other runs elsewhere, over TCP.

    Only this party's node is opened; it switches the pair sources of its own node (a
    source elsewhere cannot be switched by either party: a profile error). Alice listens
    and computes, bob connects and streams; each records its own run
    (``clock_sync.alice`` with the track arrays, ``clock_sync.bob`` with the result alice
    sends) and stores the correction in its own data directory.
    """
    from qhil.orchestrator.jobs import load_auth_key, open_party_channel

    if party not in ("alice", "bob"):
        raise ConfigError("<command line>", "party", f"must be alice or bob, not {party!r}")
    prof = load_profile(profile, overrides or [])
    settings = ClockSyncSettings.from_profile(prof, duration_s=duration_s)
    node = settings.alice_node if party == "alice" else settings.bob_node
    if node not in prof.nodes:
        raise ConfigError(prof.source, f"nodes.{node}", f"{party}'s node is not in the profile")
    for where, name in settings.shutters_at():
        if where not in (settings.alice_node, settings.bob_node):
            raise ConfigError(
                prof.source,
                "experiments.clock_sync.shutters",
                f"{where}.{name}: in a --party run each party closes the shutters of its "
                "own node; close it by hand and leave it out of shutters",
            )
    for where in settings.active_sources:
        if where not in (settings.alice_node, settings.bob_node):
            raise ConfigError(
                prof.source,
                f"experiments.clock_sync.sources.{where}",
                "in a --party run each party switches the pair sources of its own node; "
                f"{where!r} is neither party's (run it in one process, or switch it by hand "
                "and leave it out of sources)",
            )
    own = prof.model_copy(update={"nodes": {node: prof.nodes[node]}, "world": None})
    auth = HmacSha256Authenticator(load_auth_key(auth_key_file))
    store = writable_run_store(data_dir)  # before any instrument is opened
    run = store.start_run(
        f"clock_sync.{party}",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters={
            **settings.model_dump(mode="json"),
            "method_used": settings.method_used,
            "party": party,
        },
    )
    with run:
        async with open_bench(own) as bench:
            run.set_identities(await bench.identities())
            tagger_name = settings.alice_tagger if party == "alice" else settings.bob_tagger
            tagger = bench.role(node, TimeTagger, name=tagger_name)
            mine = {
                where: bench.role(where, EntangledPhotonSource, name=cfg.instrument)
                for where, cfg in settings.active_sources.items()
                if where == node
            }
            try:
                channel, listener = await open_party_channel(
                    party,
                    auth,
                    listen=listen,
                    connect=connect,
                    session_id=session_id,
                    timeout_s=settings.message_timeout_s,
                    peer_timeout_s=peer_timeout_s,
                    on_waiting=on_waiting,
                )
            except AuthenticationError as exc:
                return _aborted(run, exc)
            try:
                await close_shutters(_shutters(bench, prof, settings, node))
                await switch_sources(settings, mine, True)
                if party == "alice":
                    result = await run_alice_sync(
                        settings, tagger, channel, progress=progress, on_point=_Recorder(run)
                    )
                else:
                    result = await run_bob_sync(settings, tagger, channel, progress=progress)
            except ClockSyncAborted as exc:
                return _aborted(run, exc)
            finally:
                with contextlib.suppress(Exception):
                    await switch_sources(settings, mine, False)
                await channel.close()
                if listener is not None:
                    await listener.close()
            taggers = bench_taggers(prof, settings, tagger, tagger)
        results = {**result.to_results(), "offset_terms": offset_terms(result.method)}
        path = save_correction(
            store.data_dir,
            prof.bench.name,
            _both_taggers(settings, party, taggers),
            result,
            run_id=run.run_id,
        )
        results["correction_file"] = str(path)
        run.log_results({k: v for k, v in results.items() if v is not None})
        run.finish("success")
    return ClockSyncSummary(run.run_id, "success", None, results)


def _both_taggers(
    settings: ClockSyncSettings, party: str, mine: tuple[str, str]
) -> tuple[str, str]:
    """The correction's key in a party run: its own tagger's name, the other's by its node
    (``node.<tagger setting or 'tagger'>``: the other process's instrument is not open here)."""
    other_a = f"{settings.alice_node}.{settings.alice_tagger or 'tagger'}"
    other_b = f"{settings.bob_node}.{settings.bob_tagger or 'tagger'}"
    return (mine[0], other_b) if party == "alice" else (other_a, mine[1])
