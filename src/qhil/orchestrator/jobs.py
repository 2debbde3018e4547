"""Recorded jobs: an experiment on a bench from a profile, start to finish.

A job loads the profile, opens the bench (serving emulated instruments where
the profile says so), records the run (profile snapshot, instrument
identities, software, seed, parameters, per-block raw data, results, status),
runs the experiment and tears everything down. The experiment itself only
sees role interfaces and the authenticated classical channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger
from qhil.errors import ConfigError
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.channel import (
    AuthenticationError,
    Authenticator,
    AuthKey,
    ChannelConnectionError,
    ChannelTimeoutError,
    HmacSha256Authenticator,
    accept_channel,
    connect_channel,
    in_process_channels,
)
from qhil.orchestrator.channel.keys import MIN_KEY_BYTES
from qhil.orchestrator.channel.pool import PoolRun
from qhil.orchestrator.channel.tcp import TcpListener
from qhil.orchestrator.channel.transport import Tamper
from qhil.orchestrator.experiments.bb84 import (
    BB84Aborted,
    BB84Progress,
    BB84Result,
    BB84Settings,
    PartyResult,
    bench_roles,
    run_alice,
    run_bb84,
    run_bob,
)
from qhil.orchestrator.experiments.bb84.detection import DiscardDiagnosis
from qhil.orchestrator.experiments.bb84.tracking import (
    AliceTracking,
    BobTracking,
    tracked_polarization,
    tracking_results,
)
from qhil.orchestrator.profile import load_profile
from qhil.records import KeyStore, RecordError, RunStore, default_data_dir, default_key_dir

if TYPE_CHECKING:
    from qhil.calibration.polarization import PolarizationCalibration

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    """What a finished (or aborted) job reports; key material never appears here."""

    run_id: str
    status: str
    reason: str | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        r = self.results
        return {
            "run_id": self.run_id,
            "status": self.status,
            "reason": self.reason,
            "qber": r.get("qber_key_signal")
            if r.get("qber_key_signal") is not None
            else r.get("qber_test_signal"),
            "qber_test_signal": r.get("qber_test_signal"),
            "gain_signal": r.get("gain_signal"),
            "sifted_bits": r.get("sifted_bits"),
            "secret_bits": r.get("secret_bits", 0),
            "secret_key_rate_bps": r.get("key_rate_bps", 0.0),
            "secret_key_rate_per_pulse": r.get("key_rate_per_pulse", 0.0),
            "alice_key_sha256": r.get("alice_key_sha256"),
            "bob_key_sha256": r.get("bob_key_sha256"),
            "key_committed": bool(r.get("key_committed", False)),
            "pa_family": r.get("pa_family"),  # the privacy-amplification hash that made the key
            # which polarization calibration the run used, or why it compensated anew
            "polarization_calibration": r.get("polcal_reuse"),
            # Wegman-Carter runs: pad spent, the run's budget, key bits kept for the pool
            **{k: r[k] for k in _POOL_SUMMARY if k in r},
            "results": r,
        }


_POOL_SUMMARY = ("auth_pad_bits_used", "auth_pad_bits_budget", "auth_pool_refill_bits")


def output_stores(
    data_dir: str | Path | None, key_dir: str | Path | None
) -> tuple[RunStore, KeyStore]:
    """The run store and the key store, each checked writable now, before the first photon:
    an unwritable location is a one-line error naming it (exit 2), not a key lost at the end."""
    store = writable_run_store(data_dir)
    keys = KeyStore(key_dir if key_dir is not None else default_key_dir(data_dir))
    keys.check_writable()
    return store, keys


def writable_run_store(data_dir: str | Path | None) -> RunStore:
    """The run store, checked writable now (an unwritable one: a one-line error naming it)."""
    where = Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        store = RunStore(data_dir)
        probe = store.data_dir / f".probe-{os.getpid()}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except (OSError, sqlite3.Error) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise RecordError(f"data directory {where} is not writable: {why}") from None
    return store


def bb84_settings(prof: Any, duration_s: float | None) -> BB84Settings:
    """The profile's BB84 settings; ``duration_s`` replaces its block count or duration."""
    if duration_s is None:
        return BB84Settings.from_profile(prof)
    table = {**prof.experiments.get("bb84", {}), "duration_s": duration_s, "blocks": None}
    return BB84Settings.from_mapping(table, prof.source)


async def run_bb84_job(
    profile: str | None = None,
    overrides: list[str] | None = None,
    *,
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
    mode: str | None = None,
    progress: Callable[[BB84Progress], Any] | None = None,
    tamper_alice_to_bob: Tamper | None = None,
    insecure_test_seed: int | None = None,
    auth_pool_file: str | Path | None = None,
) -> JobSummary:
    """Decoy-state BB84 on the profile's bench, both parties in this process.

    ``auth_pool_file``: authenticate with Wegman-Carter over the transcript from this
    pre-shared pool (``qhil.orchestrator.channel.pool``): the run takes its pad budget
    from it and, once the key is committed, refills it from the key's reserved tail.

    Alice and Bob still only talk through an authenticated channel (HMAC-SHA256
    with a key shared by the two parties at start-up); the final keys go to the
    key store (0600 files) and only their SHA-256 reaches the record and the summary.
    ``tamper_alice_to_bob`` is a man-in-the-middle hook for security tests.

    ``insecure_test_seed`` is for reproducibility tests ONLY: it seeds every random
    choice of the parties (Alice's symbols, the revealed subsets, the protocol's seeds)
    and of the polarization search instead of the OS CSPRNG, so the key is predictable
    from the seed. Neither the CLI nor a profile can set it; using it logs a warning.
    """
    rngs = _insecure_test_rngs(insecure_test_seed)
    prof = load_profile(profile, overrides or [])
    settings = bb84_settings(prof, duration_s)
    store, keys = output_stores(data_dir, key_dir)  # before any instrument is opened
    pool_run = PoolRun(auth_pool_file) if auth_pool_file is not None else None
    run = store.start_run(
        "bb84",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters=settings.model_dump(mode="json"),
    )
    with run:
        async with open_bench(prof, mode=mode) as bench:
            identities = await bench.identities()
            run.set_identities(identities)
            generator, tagger = bench_roles(bench, settings)
            if settings.verify_mus:  # measured levels must agree with the configured mus
                from qhil.calibration.jobs import verify_mean_photon_numbers

                reason = await verify_mean_photon_numbers(prof, bench, settings.mus, run)
                if reason is not None:
                    run.abort(reason)
                    return JobSummary(run.run_id, "aborted", reason, {})
            tracking = None  # drift tracking during the run (bb84/tracking.py)
            if settings.calibrate_polarization:
                try:
                    start = await _calibrate_polarization(
                        prof,
                        bench,
                        generator,
                        tagger,
                        run,
                        rngs["search"],
                        reuse=(store, identities, settings.polarization_max_age_s),
                    )
                except BB84Aborted as exc:  # the bench, not the profile: exit 3, recorded
                    reason = f"{exc.reason.value}: {exc.detail}"
                    run.abort(reason)
                    return JobSummary(run.run_id, "aborted", reason, {})
                tracking = _bob_tracking(prof, bench, settings, start)
            alice_auth, bob_auth = _in_process_auth(pool_run)
            opened = await open_in_process_or_abort(
                run, settings.message_timeout_s, (alice_auth, bob_auth), tamper_alice_to_bob
            )
            if isinstance(opened, str):
                return JobSummary(run.run_id, "aborted", opened, {})
            alice_ch, bob_ch = opened
            diagnosis = DiscardDiagnosis(progress)  # names the likely cause of a no_data abort
            try:
                result: BB84Result = await run_bb84(
                    settings,
                    generator,
                    tagger,
                    alice_ch,
                    bob_ch,
                    key_store=keys,
                    run_id=run.run_id,
                    progress=diagnosis,
                    on_data=run.append,
                    alice_rng=rngs["alice"],
                    bob_rng=rngs["bob"],
                    tracking=tracking,
                )
            except BB84Aborted as exc:
                return _bb84_aborted(run, exc, diagnosis, pool_run, alice_auth, tracking)
            finally:
                await asyncio.gather(alice_ch.close(), bob_ch.close(), return_exceptions=True)
        made = [k for k in (result.alice_key, result.bob_key) if k is not None]
        both = len(made) == 2
        summary = _bb84_ended(run, result.to_results(), pool_run, alice_auth, tracking, made, both)
    return summary


def _bb84_aborted(
    run: Any,
    exc: BB84Aborted,
    diagnosis: DiscardDiagnosis,
    pool_run: PoolRun | None,
    auth: Any,
    tracking: BobTracking | None,
) -> JobSummary:
    """A BB84 job's protocol abort: what it had (its tally, the polarization reuse, the
    pad spent, the tracking) recorded with the likely cause; the run aborted (exit 3)."""
    reason = f"{exc.reason.value}: {diagnosis.explain(exc)}"
    results = exc.result.to_results() if exc.result is not None else {}
    results = _with_reuse(run, results)  # the summary's polarization_calibration
    results.update(_pool_report(pool_run, auth, committed=False))
    results.update(tracking_results(tracking))
    run.log_results(tracked_polarization(tracking))  # the store's, not the summary's
    if results:
        run.log_results(_scalars(results))
    run.abort(reason)
    return JobSummary(run.run_id, "aborted", reason, results)


def _bb84_ended(
    run: Any,
    results: dict[str, Any],
    pool_run: PoolRun | None,
    auth: Any,
    tracking: BobTracking | None,
    keys: list[Any],
    committed: bool,
) -> JobSummary:
    """A BB84 job that ran to its end: its results with the polarization reuse, the pad
    accounting (the pool refilled when ``committed``) and the tracking, recorded with
    ``keys`` (references only); the run finished."""
    results = _with_reuse(run, results)
    results.update(_pool_report(pool_run, auth, committed=committed))
    results.update(tracking_results(tracking))
    run.log_results(tracked_polarization(tracking))  # the store's, not the summary's
    run.log_results(_scalars(results))
    for ref in keys:
        run.add_key(ref)
    run.finish("success")
    return JobSummary(run.run_id, "success", None, results)


#: BB84 messages that carry a Wegman-Carter checkpoint tag: key confirmation (before any
#: commit each party has verified everything its peer sent) and the closing messages.
BB84_CHECKPOINT_KINDS = frozenset(
    {"bb84.KeyConfirm", "bb84.KeyCommitted", "bb84.Finished", "bb84.Abort"}
)


def _in_process_auth(pool_run: PoolRun | None) -> tuple[Authenticator, Authenticator]:
    """Alice's and Bob's authenticators: HMAC-SHA256 under a key made here, or
    Wegman-Carter over the transcript from the run's pool budget."""
    if pool_run is None:
        key = AuthKey.generate()  # pre-shared by the two parties of this process
        return HmacSha256Authenticator(key), HmacSha256Authenticator(key)
    kinds = BB84_CHECKPOINT_KINDS
    return (
        pool_run.authenticator(local="alice", peer="bob", checkpoint_kinds=kinds),
        pool_run.authenticator(local="bob", peer="alice", checkpoint_kinds=kinds),
    )


def _pool_report(pool_run: PoolRun | None, auth: Any, *, committed: bool) -> dict[str, Any]:
    """Pad accounting (and the pool's refill once the key is committed), if WC is in use."""
    return {} if pool_run is None else pool_run.finish(auth, committed=committed)


async def _calibrate_polarization(
    prof: Any,
    bench: Any,
    generator: Any,
    tagger: Any,
    run: Any,
    rng: np.random.Generator | None = None,
    reuse: tuple[RunStore, dict[str, str], float] | None = None,
) -> PolarizationCalibration | None:
    """Compensate the link's polarization first, as a lab does; recorded in the same run.

    ``reuse`` (run store, the bench's identities, max age in s): first try the latest
    stored calibration of these instruments, checked on the bench (qhil.calibration.store).
    """
    from qhil.calibration.errors import CalibrationError
    from qhil.calibration.polarization import calibrate_polarization
    from qhil.calibration.settings import PolarizationSettings
    from qhil.calibration.store.reuse import reuse_stored_polarization

    ps = PolarizationSettings.from_profile(prof)
    controller = bench.role(ps.bob_node, PolarizationController, name=ps.controller)
    if reuse is not None:
        held = await reuse_stored_polarization(*reuse, generator, tagger, controller, ps, run, rng)
        if held is not None:  # it still holds: no compensation step; tracking starts from
            return held  # the check's error rates and the stored half-wave voltages
    try:
        result = await calibrate_polarization(
            generator, tagger, controller, rng=rng, **ps.routine_kwargs()
        )
    except CalibrationError as exc:
        raise _calibration_failed(exc) from exc
    _record_polarization(run, result)
    run.log_results({"calibration_polarization_run": run.run_id})
    return result


def _bob_tracking(
    prof: Any, bench: Any, settings: BB84Settings, start: PolarizationCalibration | None
) -> BobTracking | None:
    """Bob's drift tracking (``track_polarization``): his controller, the compensation's
    settings and the start-of-run compensation (a reused one's check and stored half-wave
    voltages; None: the first used block sets the expected error rates)."""
    from qhil.calibration.settings import PolarizationSettings

    if not (settings.calibrate_polarization and settings.track_polarization):
        return None
    ps = PolarizationSettings.from_profile(prof)
    controller = bench.role(ps.bob_node, PolarizationController, name=ps.controller)
    return BobTracking(ps, controller, start)


def _with_reuse(run: Any, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with the run's ``polcal_reuse`` (for the summary), when it has one."""
    used = run.record().results.get("polcal_reuse")
    return results if used is None else {**results, "polcal_reuse": used}


def _insecure_test_rngs(seed: int | None) -> dict[str, np.random.Generator | None]:
    """Generators for `run_bb84_job`'s ``insecure_test_seed`` (None: the parties' own
    CSPRNG-seeded ones)."""
    if seed is None:
        return {"alice": None, "bob": None, "search": None}
    log.warning("bb84: insecure_test_seed is set: the key is predictable (tests only)")
    alice, bob, search = np.random.SeedSequence(seed).spawn(3)
    return {
        "alice": np.random.default_rng(alice),
        "bob": np.random.default_rng(bob),
        "search": np.random.default_rng(search),
    }


def _calibration_failed(exc: Exception) -> BB84Aborted:
    """A compensation that failed on the bench (no light, too lossy a link) aborts the run
    (exit 3), as a failed ``qhil calibrate`` does; the profile was fine."""
    from qhil.orchestrator.experiments.bb84.errors import AbortReason

    return BB84Aborted(
        AbortReason.CALIBRATION_FAILED,
        f"polarization compensation failed: {exc} "
        "(experiments.bb84.calibrate_polarization = false skips it)",
    )


def _record_polarization(run: Any, result: Any) -> None:
    """Bob's compensation in his run: the voltages found, its results as ``polcal_*``."""
    run.append("polarization_voltages_mv", np.asarray([result.voltages_mv], dtype=np.int64))
    run.log_results({f"polcal_{k}": v for k, v in result.to_results().items() if v is not None})


async def _party_polarization(
    prof: Any,
    settings: BB84Settings,
    party: str,
    bench: Any,
    channel: Any,
    run: Any,
    on_waiting: Callable[[str], Any] | None = None,
    reuse: tuple[RunStore, float] | None = None,
) -> PolarizationCalibration | None:
    """Two-party polarization compensation before the key exchange, over the channel.

    Alice makes the reference states Bob asks for live on her generator; Bob counts them
    on his tagger and sets his controller (the same search as in one process). Each
    records it in its own run. A channel failure aborts as in the protocol (exit 3), and so
    does a failed compensation (no light, the peer failed), as in one process.
    ``reuse`` (run store, max age in s): Bob starts from the latest valid stored
    calibration of his instruments; met there, the search only verifies it.
    """
    from qhil.calibration.errors import CalibrationError
    from qhil.calibration.remote_reference import (
        compensate_with_remote_reference,
        serve_remote_reference,
    )
    from qhil.calibration.settings import PolarizationSettings
    from qhil.orchestrator.channel import ChannelError
    from qhil.orchestrator.experiments.bb84.errors import AbortReason

    ps = PolarizationSettings.from_profile(prof) if settings.calibrate_polarization else None
    timeout_s = settings.message_timeout_s
    if ps is not None:
        _tell(
            on_waiting, f"{party}: compensating the fibre's polarization (Alice's reference light)"
        )
    try:
        if party == "alice":
            gen = bench.role(settings.alice_node, PatternGenerator, name=settings.pattern_generator)
            report = await serve_remote_reference(channel, gen, ps, timeout_s=timeout_s)
            if report is not None:
                run.log_results({f"polcal_{k}": v for k, v in report.to_results().items()})
            return None
        tagger = bench.role(settings.bob_node, TimeTagger, name=settings.tagger)
        controller = None
        if ps is not None:
            controller = bench.role(ps.bob_node, PolarizationController, name=ps.controller)
        start = None
        if ps is not None and controller is not None and reuse is not None:
            from qhil.calibration.store.reuse import start_from_stored

            identities = run.record().identities
            start = await start_from_stored(reuse[0], identities, reuse[1], controller, run)
        result = await compensate_with_remote_reference(
            channel, tagger, controller, ps, timeout_s=timeout_s
        )
        if result is not None and ps is not None:
            from qhil.calibration.store.reuse import note_start_check

            _record_polarization(run, result)
            note_start_check(run, result, start, ps)
            _tell(
                on_waiting,
                f"bob: polarization compensated: e_Z {100 * result.e_z.value:.2f} %, "
                f"e_X {100 * result.e_x.value:.2f} % ({len(result.steps)} evaluations)",
            )
        return result
    except CalibrationError as exc:
        raise _calibration_failed(exc) from exc
    except AuthenticationError as exc:
        raise BB84Aborted(AbortReason.AUTHENTICATION_FAILED, str(exc)) from exc
    except (ChannelError, ConnectionError) as exc:
        detail = f"{party}: channel failed during the polarization compensation: {exc}"
        raise BB84Aborted(AbortReason.CHANNEL_FAILED, detail) from exc


def _alice_tracking(prof: Any, settings: BB84Settings) -> AliceTracking | None:
    """Alice serves Bob's re-compensations (bb84/tracking.py) when she compensates at all."""
    from qhil.calibration.settings import PolarizationSettings

    if not settings.calibrate_polarization:
        return None
    return AliceTracking(PolarizationSettings.from_profile(prof))


def _tell(on_waiting: Callable[[str], Any] | None, text: str) -> None:
    log.info("%s", text)
    if on_waiting is not None:
        on_waiting(text)


def _party_results(party: str, mine: PartyResult, settings: BB84Settings) -> dict[str, Any]:
    """One party's results, from the public tally both parties share: QBERs, gains,
    decoy bounds and the key rate are computed as for a run of both parties; only the
    party's own key's SHA-256 is reported (it does not hold the other's)."""
    # BB84Result counts a run's secret bits from Alice's key: give this party's key there.
    both = BB84Result(
        status="success",
        statistics=mine.statistics,
        probabilities=settings.intensity_probabilities,
        eps_sec=settings.eps_sec,
        eps_cor=settings.eps_cor,
        decoy_bounds=mine.decoy_bounds,
        leaked_bits=mine.leaked_bits,
        finite_key=mine.finite_key,
        alice_key=mine.key,
        committed=mine.committed,
        pa_family=mine.pa_family,
    ).to_results()
    both.pop("alice_key_sha256")
    both.pop("bob_key_sha256")
    return {**both, f"{party}_key_sha256": mine.key_sha256, "key_commit": mine.commit}


def _scalars(results: dict[str, Any]) -> dict[str, Any]:
    """Run-record results: numbers and short strings (None left out)."""
    return {k: v for k, v in results.items() if v is not None}


def load_auth_key(path: str | Path) -> AuthKey:
    """A pre-shared authentication key from a file (hex), readable by its owner only."""
    p = Path(path)
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
        content = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), "auth key", f"cannot read it: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            str(p), "auth key", f"is readable by others (mode {mode:o}); chmod 600 it"
        )
    try:
        raw = bytes.fromhex(content.decode("ascii").strip())
    except ValueError:  # UnicodeDecodeError (non-ASCII bytes) is one too
        raise ConfigError(
            str(p), "auth key", "not a hexadecimal string (hex digits 0-9a-f, two per byte)"
        ) from None
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigError(
            str(p),
            "auth key",
            f"too short: {len(raw)} bytes ({2 * len(raw)} hex digits); a key needs at least "
            f"{MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex digits), 32 recommended",
        )
    return AuthKey(raw)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError("<command line>", "address", f"{text!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


def _failed_handshakes(exc: ChannelTimeoutError) -> str:
    """The part of ``accept_channel``'s timeout that names failed handshakes, if any."""
    _, sep, tried = str(exc).partition("; ")
    return sep + tried


async def _connect_when_listening(
    host: str, port: int, *, timeout_s: float, peer_timeout_s: float, **kw: Any
) -> Any:
    """Connect to the peer, retrying with backoff while it is not listening yet.

    Gives up after ``peer_timeout_s`` in all (a silent host included), naming the
    address; ``timeout_s`` is the channel's wait for each message once open.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + peer_timeout_s
    delay = 0.05
    last = "no answer"
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(
                connect_channel(host, port, timeout_s=timeout_s, **kw), remaining
            )
        except ChannelConnectionError as exc:  # refused, unreachable, or no TCP in time
            last = str(exc)
            if loop.time() + delay <= deadline:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
        except ChannelTimeoutError:
            raise  # connected, but the handshake timed out: that error says so
        except TimeoutError:
            pass
        raise ChannelConnectionError(
            f"{last}; gave up after {peer_timeout_s:g} s (--peer-timeout): is the other "
            f"party running and listening at {host}:{port}?"
        ) from None


async def open_party_channel(
    party: str,
    auth: Any,
    *,
    listen: str | None,
    connect: str | None,
    session_id: str,
    timeout_s: float,
    peer_timeout_s: float,
    on_waiting: Callable[[str], Any] | None = None,
) -> tuple[Any, TcpListener | None]:
    """The authenticated channel to the other party: alice listens (``listen``), bob
    connects (``connect``); each waits up to ``peer_timeout_s`` for the other and tells
    ``on_waiting`` at once what it awaits where. Returns (channel, alice's listener or
    None); the caller closes both. A failed authentication raises ``AuthenticationError``.
    """
    peer = "bob" if party == "alice" else "alice"
    if party == "alice":
        host, port = _host_port(listen or "127.0.0.1:0")
        listener = await TcpListener.start(host, port, local=party)
        where = "{}:{}".format(*listener.address)
        _tell(
            on_waiting,
            f"alice: listening on {where}, waiting up to {peer_timeout_s:g} s for bob to connect",
        )
        try:
            # A stray connection's failed handshake is logged and closed; she listens on
            # until bob's hello authenticates or the peer timeout.
            channel = await accept_channel(
                listener,
                local=party,
                peer=peer,
                authenticator=auth,
                session_id=session_id,
                timeout_s=timeout_s,
                accept_timeout_s=peer_timeout_s,
            )
        except ChannelTimeoutError as exc:
            await listener.close()
            raise ChannelTimeoutError(
                f"alice: bob did not connect to {where} (or did not finish the "
                f"handshake) within {peer_timeout_s:g} s (--peer-timeout)" + _failed_handshakes(exc)
            ) from None
        except BaseException:
            await listener.close()
            raise
        return channel, listener
    host, port = _host_port(connect or "")
    _tell(
        on_waiting,
        f"bob: connecting to alice at {host}:{port}, waiting up "
        f"to {peer_timeout_s:g} s for her to listen",
    )
    channel = await _connect_when_listening(
        host,
        port,
        local=party,
        peer=peer,
        authenticator=auth,
        session_id=session_id,
        timeout_s=timeout_s,
        peer_timeout_s=peer_timeout_s,
    )
    return channel, None


@dataclass
class PartyChannel:
    """A party's open channel to the other, and alice's listener (None at bob)."""

    channel: Any
    listener: TcpListener | None

    async def close(self) -> None:
        await self.channel.close()
        if self.listener is not None:
            await self.listener.close()


async def open_party_or_abort(
    party: str,
    auth: Any,
    run: Any,
    *,
    listen: str | None,
    connect: str | None,
    session_id: str,
    timeout_s: float,
    peer_timeout_s: float,
    on_waiting: Callable[[str], Any] | None = None,
) -> PartyChannel | str:
    """:func:`open_party_channel` for a recorded run. A handshake that fails
    authentication (a wrong pre-shared key, a forged hello) aborts the protocol as it would
    mid-run: ``run`` is recorded aborted and the reason (``authentication_failed: ...``) is
    returned instead of the channel. Other failures (the peer never came) raise."""
    try:
        channel, listener = await open_party_channel(
            party,
            auth,
            listen=listen,
            connect=connect,
            session_id=session_id,
            timeout_s=timeout_s,
            peer_timeout_s=peer_timeout_s,
            on_waiting=on_waiting,
        )
    except AuthenticationError as exc:
        return _auth_aborted(run, exc)
    return PartyChannel(channel, listener)


async def open_in_process_or_abort(
    run: Any,
    timeout_s: float,
    auths: tuple[Authenticator, Authenticator] | None = None,
    tamper_alice_to_bob: Tamper | None = None,
) -> tuple[Any, Any] | str:
    """Alice's and Bob's ends of an authenticated in-process channel (session: the run's
    id), opened. ``auths``: theirs (default: HMAC-SHA256 under a key made here, shared by
    the two parties of this process). A failed authentication closes both ends, records
    ``run`` aborted and returns the reason instead."""
    if auths is None:
        key = AuthKey.generate()
        auths = (HmacSha256Authenticator(key), HmacSha256Authenticator(key))
    alice_ch, bob_ch = in_process_channels(
        *auths, session_id=run.run_id, timeout_s=timeout_s, tamper_a_to_b=tamper_alice_to_bob
    )
    try:
        await asyncio.gather(alice_ch.open(), bob_ch.open())
    except AuthenticationError as exc:
        await asyncio.gather(alice_ch.close(), bob_ch.close(), return_exceptions=True)
        return _auth_aborted(run, exc)
    return alice_ch, bob_ch


def _auth_aborted(run: Any, exc: AuthenticationError) -> str:
    reason = f"authentication_failed: {exc}"
    run.abort(reason)
    return reason


async def run_bb84_party_job(
    party: str,
    profile: str | None,
    overrides: list[str] | None = None,
    *,
    auth_key_file: str | Path | None = None,
    listen: str | None = None,
    connect: str | None = None,
    session_id: str = "qhil-bb84",
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
    progress: Callable[[BB84Progress], Any] | None = None,
    peer_timeout_s: float = 60.0,
    on_waiting: Callable[[str], Any] | None = None,
    auth_pool_file: str | Path | None = None,
) -> JobSummary:
    """One party of BB84 in this process; the other runs elsewhere, reached over TCP.

    Authentication: HMAC-SHA256 under ``auth_key_file``, or Wegman-Carter over the
    transcript from this party's copy of the pre-shared pool ``auth_pool_file`` (see
    :func:`run_bb84_job`; each party refills its own copy from its committed key).

    Only this party's node of the profile is opened (the other node's instruments
    belong to the other process). Alice listens, Bob connects; both hold the same
    pre-shared authentication key. Each party records its own run ("bb84.alice" or
    "bb84.bob") and stores its own key; the summaries carry the keys' SHA-256.
    With ``experiments.bb84.calibrate_polarization`` (both parties must agree) Bob's
    polarization controller is compensated first with Alice's reference light, over
    the channel (:mod:`qhil.calibration.remote_reference`).

    Alice waits up to ``peer_timeout_s`` for Bob to connect, Bob as long for Alice to
    listen; ``on_waiting(text)`` is told at once what is awaited where. A handshake that
    fails authentication (a wrong pre-shared key) records the run ``aborted``.
    """
    if party not in ("alice", "bob"):
        raise ConfigError("<command line>", "party", f"must be alice or bob, not {party!r}")
    prof = load_profile(profile, overrides or [])
    settings = bb84_settings(prof, duration_s)
    node = settings.alice_node if party == "alice" else settings.bob_node
    if node not in prof.nodes:
        raise ConfigError(prof.source, f"nodes.{node}", f"{party}'s node is not in the profile")
    own = prof.model_copy(update={"nodes": {node: prof.nodes[node]}, "world": None})
    peer = "bob" if party == "alice" else "alice"
    pool_run = PoolRun(auth_pool_file) if auth_pool_file is not None else None
    auth: Authenticator
    if pool_run is not None:
        auth = pool_run.authenticator(
            local=party, peer=peer, checkpoint_kinds=BB84_CHECKPOINT_KINDS
        )
    elif auth_key_file is not None:
        auth = HmacSha256Authenticator(load_auth_key(auth_key_file))
    else:
        raise ConfigError("<command line>", "auth", "give an auth key file or a pool file")
    store, keys = output_stores(data_dir, key_dir)  # before any instrument is opened
    run = store.start_run(
        f"bb84.{party}",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters={**settings.model_dump(mode="json"), "party": party},
    )
    with run:
        async with open_bench(own) as bench:
            run.set_identities(await bench.identities())
            if party == "alice" and settings.verify_mus:  # her levels, before she listens
                from qhil.calibration.jobs import verify_mean_photon_numbers

                reason = await verify_mean_photon_numbers(prof, bench, settings.mus, run)
                if reason is not None:
                    run.abort(reason)
                    return JobSummary(run.run_id, "aborted", reason, {})
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
                return JobSummary(run.run_id, "aborted", opened, {})
            channel = opened.channel
            _tell(on_waiting, f"{party}: connected to {peer}; authenticated")
            diagnosis = DiscardDiagnosis(progress)  # names the likely cause of a no_data abort
            common: dict[str, Any] = {
                "key_store": keys,
                "run_id": run.run_id,
                "progress": diagnosis,
                "on_data": run.append,
            }
            tracking = None  # bob's drift tracking (bb84/tracking.py)
            try:
                start = await _party_polarization(
                    prof,
                    settings,
                    party,
                    bench,
                    channel,
                    run,
                    on_waiting,
                    reuse=(store, settings.polarization_max_age_s),
                )
                if party == "alice":
                    gen = bench.role(node, PatternGenerator, name=settings.pattern_generator)
                    mine = await run_alice(
                        settings, gen, channel, tracking=_alice_tracking(prof, settings), **common
                    )
                else:
                    tagger = bench.role(node, TimeTagger, name=settings.tagger)
                    tracking = _bob_tracking(prof, bench, settings, start)
                    mine = await run_bob(settings, tagger, channel, tracking=tracking, **common)
            except BB84Aborted as exc:
                return _bb84_aborted(run, exc, diagnosis, pool_run, auth, tracking)
            finally:
                await opened.close()
        made = [mine.key] if mine.key is not None else []
        results = _party_results(party, mine, settings)
        summary = _bb84_ended(run, results, pool_run, auth, tracking, made, bool(made))
    return summary
