"""The recorded BBM92 job: profile, bench, acquisition, both parties, run record, keys.

Both nodes and the source site in this process; the fibres are compensated first (or a
stored compensation that still holds is reused: ``entanglement/fibres.py``), as for
visibility and CHSH; Alice and Bob still talk only through an
authenticated channel (HMAC-SHA256, a key shared at start-up) and each holds only its own
node's outcomes. Keys go to the key store; the record and the summary carry SHA-256s.
On an emulated bench the job (which started the emulators) adds the Ma-Fung-Lo
prediction from the world's truth to the record (``predicted_*``, ``truth.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qhil.drivers.roles import (
    EntangledPhotonSource,
    PolarizationController,
    RotationMount,
    TimeTagger,
)
from qhil.numerics.qkd.randomness import secure_generator
from qhil.orchestrator.bench import BenchLookupError, open_bench
from qhil.orchestrator.channel import (
    AuthenticationError,
    AuthKey,
    HmacSha256Authenticator,
    in_process_channels,
)
from qhil.orchestrator.experiments.bb84 import BB84Progress
from qhil.orchestrator.experiments.bbm92.events import click_masks, outcomes
from qhil.orchestrator.experiments.bbm92.parties import BBM92Aborted, run_bbm92
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings
from qhil.orchestrator.experiments.bbm92.tracking import ChunkTracker, tracker_for
from qhil.orchestrator.experiments.bbm92.truth import predict_from_world
from qhil.orchestrator.experiments.entanglement.acquisition import (
    EntanglementNodes,
    PairAcquisition,
    acquire_pairs,
)
from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted
from qhil.orchestrator.experiments.entanglement.experiments import options
from qhil.orchestrator.experiments.entanglement.fibres import compensate_fibres
from qhil.orchestrator.experiments.entanglement.job import calibrated_zeros
from qhil.orchestrator.experiments.entanglement.settings import check_open_taggers
from qhil.orchestrator.jobs import JobSummary, _scalars, output_stores
from qhil.orchestrator.profile import load_profile

log = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "qber",
    "qber_test",
    "qber_key",
    "sifted_bits",
    "sifted_rate_hz",
    "coincidences",
    "accidentals",
    "secret_bits",
    "key_rate_bps",
    "finite_key_mu",
    "leaked_bits",
    "acquisition_s",
    "predicted_qber",
    "predicted_sifted_rate_hz",
    "alice_key_sha256",
    "bob_key_sha256",
    "key_committed",
)


class BBM92Summary(JobSummary):
    """What a finished (or aborted) BBM92 job reports (no key material)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "reason": self.reason}
        for k in SUMMARY_FIELDS:
            out[k] = self.results.get(k)
        out["secret_bits"] = out["secret_bits"] or 0
        out["key_committed"] = bool(out["key_committed"])
        out["polarization_calibration"] = self.results.get("polcal_reuse")  # as bb84's
        out["results"] = self.results
        return out


def _optional(bench: Any, node: str, role: Any, name: str | None) -> Any:
    try:
        return bench.role(node, role, name=name)
    except BenchLookupError:
        if name is not None:  # named in the settings: it must be there
            raise
        return None


def nodes_for_bbm92(bench: Any, s: BBM92Settings) -> EntanglementNodes:
    """The acquisition's roles; the mounts only when the bench has them (passive bases).
    The taggers' inputs checked against the open taggers (ConfigError naming the field)."""
    alice = bench.role(s.alice_node, TimeTagger, name=s.alice_tagger)
    bob = bench.role(s.bob_node, TimeTagger, name=s.bob_tagger)
    check_open_taggers(s, alice, bob, getattr(getattr(bench, "profile", None), "source", "<bench>"))
    return EntanglementNodes(
        alice_tagger=alice,
        bob_tagger=bob,
        source=bench.role(s.source_node, EntangledPhotonSource, name=s.source),
        alice_mount=_optional(bench, s.alice_node, RotationMount, s.alice_mount),
        bob_mount=_optional(bench, s.bob_node, RotationMount, s.bob_mount),
        alice_channels=s.alice_channels,
        bob_channels=s.bob_channels,
    )


def _rngs(seed: int | None) -> list[np.random.Generator | None]:
    """alice's and bob's protocol and squashing generators (None: CSPRNG-seeded)."""
    if seed is None:
        return [None, None, secure_generator(), secure_generator()]
    log.warning("bbm92: insecure_test_seed is set: the key is predictable (tests only)")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]


def _chunk_recorder(run: Any) -> Callable[[PairAcquisition], None]:
    """Each chunk's matrices appended to the run's arrays as a row as soon as it is
    acquired (a run killed mid-acquisition keeps the chunks it had)."""

    def record(acq: PairAcquisition) -> None:
        c = acq.coincidences
        run.append("acquisition/matrix", c.matrix.reshape(1, 4, 4).astype(np.int64))
        run.append("acquisition/accidentals", c.accidentals.reshape(1, 4, 4).astype(float))
        run.append("acquisition/singles_a", c.singles_a.reshape(1, 4).astype(np.int64))
        run.append("acquisition/singles_b", c.singles_b.reshape(1, 4).astype(np.int64))

    return record


def _record_acquisition(acqs: list[PairAcquisition]) -> dict[str, Any]:
    """The chunks' totals (clock model and window: the first's)."""
    out = acqs[0].to_results()
    t = sum(a.duration_s for a in acqs)
    cs = [a.coincidences for a in acqs]
    out.update(
        chunks=len(acqs),
        coincidences=sum(c.coincidences for c in cs),
        accidentals=sum(c.accidentals_total for c in cs),
        accidentals_std=float(np.sqrt(sum((c.accidentals_std**2).sum() for c in cs))),
        accidentals_predicted=sum(c.predicted_accidentals() for c in cs),
        singles_a_hz=sum(float(c.singles_a.sum()) for c in cs) / t,
        singles_b_hz=sum(float(c.singles_b.sum()) for c in cs) / t,
        coincidence_rate_hz=sum(c.coincidences for c in cs) / t,
    )
    return out


async def start_pairs(
    bench: Any, nodes: EntanglementNodes, s: BBM92Settings, run: Any, store: Any, identities: Any
) -> dict[str, Any]:
    """Mounts to their zeros, pump on, the fibres compensated (or a stored compensation
    reused) when the settings ask: the bench ready for pairs. The compensation's results."""
    if nodes.alice_mount is not None or nodes.bob_mount is not None:
        await nodes.set_angles(
            s.alice_mount_zero_deg if nodes.alice_mount else None,
            s.bob_mount_zero_deg if nodes.bob_mount else None,
        )
    await nodes.pump_on(s.pump_current_ma, s.crystal_temperature_c)
    if not s.compensate_polarization:
        return {}
    # plates at their zeros: H/V, D/A analysers
    controller = bench.role(s.bob_node, PolarizationController, name=s.polarization_controller)
    return await compensate_fibres(nodes, controller, s, run, store, identities)


async def acquire_chunks(
    nodes: EntanglementNodes,
    s: BBM92Settings,
    on_chunk: Callable[[PairAcquisition], None] | None = None,
    tracker: ChunkTracker | None = None,
) -> list[PairAcquisition]:
    """The acquisition in ``s.chunks()``, each its own clock model (the previous as prior);
    ``on_chunk`` gets each chunk as it comes (to record it); ``tracker`` tests it and
    re-compensates before the next one when the QBER drifted (``tracking.py``)."""
    acqs: list[PairAcquisition] = []
    chunks = s.chunks()
    for i, d in enumerate(chunks):
        prior = acqs[-1].model if acqs else None
        acqs.append(await acquire_pairs(nodes, d, options(s), prior=prior))
        if on_chunk is not None:
            on_chunk(acqs[-1])
        if tracker is not None:
            await tracker.after_chunk(acqs[-1], last=i == len(chunks) - 1)
    return acqs


async def run_bbm92_job(
    profile: str | None = None,
    overrides: list[str] | None = None,
    *,
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
    mode: str | None = None,
    progress: Callable[[BB84Progress], Any] | None = None,
    insecure_test_seed: int | None = None,
) -> BBM92Summary:
    """BBM92 on the profile's entanglement bench, both parties in this process.

    ``insecure_test_seed`` is for reproducibility tests ONLY (every random choice of the
    parties from it: the key is predictable); neither the CLI nor a profile sets it.
    """
    prof = load_profile(profile, overrides or [])
    s = BBM92Settings.from_profile(prof, duration_s=duration_s)
    store, keys = output_stores(data_dir, key_dir)  # before any instrument is opened
    alice_rng, bob_rng, alice_squash, bob_squash = _rngs(insecure_test_seed)
    run = store.start_run(
        "bbm92",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters=s.model_dump(mode="json"),
    )
    with run:
        async with open_bench(prof, mode=mode) as bench:
            identities = await bench.identities()
            run.set_identities(identities)
            # The mounts' zeros: the newest mount-zero calibration of these instruments, if any.
            s, zero_source = calibrated_zeros(s, store.data_dir, identities)
            nodes = nodes_for_bbm92(bench, s)
            world = getattr(bench.emulator_truth, "world", None)
            predicted: dict[str, Any] = {}
            polcal: dict[str, Any] = {}
            try:
                polcal = await start_pairs(bench, nodes, s, run, store, identities)
                if progress is not None:
                    progress(BB84Progress("alice", "acquire", 0, 1, 0, f"{s.duration_s:g} s"))
                tracker = tracker_for(bench, nodes, s, run, polcal)
                acqs = await acquire_chunks(nodes, s, _chunk_recorder(run), tracker)
                if world is not None:  # the emulator's truth, while the pump is on
                    with contextlib.suppress(LookupError, KeyError, ValueError):
                        predicted = predict_from_world(world.truth, prof, s, acqs[0].window_ps)
            except EntanglementAborted as exc:
                run.abort(str(exc))
                return BBM92Summary(run.run_id, "aborted", str(exc), {})
            finally:
                with contextlib.suppress(Exception):  # the run's own error matters more
                    await nodes.pump_off()
            results = {**polcal, **_record_acquisition(acqs), **predicted}
            if tracker is not None:
                results.update(tracker.results())
            results.update(
                mount_zero_source=zero_source,
                alice_mount_zero_deg=s.alice_mount_zero_deg,
                bob_mount_zero_deg=s.bob_mount_zero_deg,
            )
            masks = [
                click_masks(c.alice_t_ps, c.alice_outcome, c.bob_t_ps, c.bob_outcome)
                for c in (a.coincidences for a in acqs)
            ]
            mask_a = np.concatenate([m[0] for m in masks])
            mask_b = np.concatenate([m[1] for m in masks])
            assert alice_squash is not None and bob_squash is not None
            # Each node squashes its own clicks with its own randomness.
            out_a, out_b = outcomes(mask_a, alice_squash), outcomes(mask_b, bob_squash)
            auth = AuthKey.generate()  # pre-shared by the two parties of this process
            alice_ch, bob_ch = in_process_channels(
                HmacSha256Authenticator(auth),
                HmacSha256Authenticator(auth),
                session_id=run.run_id,
                timeout_s=s.message_timeout_s,
            )
            try:
                await asyncio.gather(alice_ch.open(), bob_ch.open())
                result = await run_bbm92(
                    s,
                    out_a,
                    out_b,
                    alice_ch,
                    bob_ch,
                    acquisition_s=s.duration_s,
                    key_store=keys,
                    run_id=run.run_id,
                    progress=progress,
                    alice_rng=alice_rng,
                    bob_rng=bob_rng,
                )
            except AuthenticationError as exc:
                reason = f"authentication_failed: {exc}"
                run.log_results(_scalars(results))
                run.abort(reason)
                return BBM92Summary(run.run_id, "aborted", reason, results)
            except BBM92Aborted as exc:
                results.update(exc.result.to_results())
                reason = f"{exc.reason.value}: {exc.detail}"
                run.log_results(_scalars(results))
                run.abort(reason)
                return BBM92Summary(run.run_id, "aborted", reason, results)
            finally:
                await asyncio.gather(alice_ch.close(), bob_ch.close(), return_exceptions=True)
        results.update(result.to_results())
        run.log_results(_scalars(results))
        for ref in (result.alice_key, result.bob_key):
            if ref is not None:
                run.add_key(ref)
        run.finish("success")
    return BBM92Summary(run.run_id, "success", None, results)
