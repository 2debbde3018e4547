"""One party of BBM92 per process, over TCP (as ``qhil run bbm92 --party alice|bob``).

Each process opens only its own node's instruments; alice's also opens the source site's
pair source (she switches it on and off). With ``compensate_polarization`` bob first
compensates the fibres (or reuses a stored compensation of his instruments that still holds:
``entanglement/fibres.py``) from pairs alice names, acquisitions that never become key:

    B->A HeraldRequest     duration
    A->B AcquisitionStart  settings digest, that duration (both stream it from now)
    B->A Timestamps        bob's analyser tags' times
    A->B HeraldedPairs     per pair she finds: her outcome (H, V, D, A) and bob's tick
    ... as many as his search needs, then B->A HeraldRequest(0): none more.

The key's acquisition is then shared over the channel:

    A->B AcquisitionStart  settings digest, duration
    (both stream their own tagger for ``duration_s``)
    B->A Timestamps        bob's analyser tags' times only (his outcomes stay at bob)
    A->B CoincidenceGroups per coincidence she keeps: its group and bob's tick

Alice finds the clock model and the coincidences on both streams, groups them
(``events.group_pairs``); each node ORs its own outcomes per group and squashes them with
its own randomness. Then the BBM92 parties run as in one process (sifting with bases
only, BB84's post-processing). Each records its run (``bbm92.alice`` / ``bbm92.bob``) and
stores its own key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.drivers.roles import (
    EntangledPhotonSource,
    PolarizationController,
    RotationMount,
    TimeTagger,
)
from qhil.errors import ConfigError
from qhil.numerics.entanglement import NoCoincidencePeakError, cross_node_coincidences
from qhil.numerics.qkd.randomness import secure_generator
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.channel import HmacSha256Authenticator
from qhil.orchestrator.experiments.bb84 import BB84Aborted, BB84Progress
from qhil.orchestrator.experiments.bb84.errors import AbortReason
from qhil.orchestrator.experiments.bb84.link import PeerLink
from qhil.orchestrator.experiments.bb84.messages import (
    AcquisitionStart,
    CoincidenceGroups,
    HeraldedPairs,
    HeraldRequest,
    Timestamps,
)
from qhil.orchestrator.experiments.bb84.party import run_party
from qhil.orchestrator.experiments.bbm92.events import (
    group_masks,
    group_pairs,
    masks_at_ticks,
    outcomes,
)
from qhil.orchestrator.experiments.bbm92.job import BBM92Summary, _optional
from qhil.orchestrator.experiments.bbm92.parties import make_party, result_of
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings
from qhil.orchestrator.experiments.entanglement.acquisition import (
    PS_PER_S,
    _joined,
    _read,
    clock_model,
)
from qhil.orchestrator.experiments.entanglement.compensation import Heralds
from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted
from qhil.orchestrator.experiments.entanglement.experiments import options
from qhil.orchestrator.experiments.entanglement.fibres import compensate_fibres
from qhil.orchestrator.jobs import (
    _scalars,
    load_auth_key,
    open_party_or_abort,
    output_stores,
)
from qhil.orchestrator.profile import load_profile

I64 = np.ndarray
#: Longest compensation acquisition alice serves, s (compensation_verify_s is at most 600).
MAX_HERALD_S = 600.0


async def _stream(
    tagger: TimeTagger, node: str, s: BBM92Settings, inputs: tuple[int, ...], duration_s: float
) -> tuple[I64, I64]:
    """One node's analyser tags over one chunk: times (sorted) and outcomes 0..3."""
    t, c = _joined(*await _read(tagger, node, duration_s, options(s).chunk_s))
    lut = np.full(max(max(inputs), int(c.max(initial=0))) + 1, -1, np.int64)
    lut[np.asarray(inputs)] = np.arange(4)
    o = lut[c]
    return t[o >= 0], o[o >= 0]


async def _alice_pairs(
    s: BBM92Settings, link: PeerLink, tagger: TimeTagger, d: float, prior: Any
) -> tuple[Any, Any, I64, int, int]:
    """Alice's stream and bob's times of one acquisition: the coincidences, the clock
    model, bob's tick of each pair, and both nodes' event counts."""
    opts = options(s)
    a_t, a_o = await _stream(tagger, "alice", s, s.alice_channels, d)
    b_t = np.asarray((await link.expect(Timestamps)).times, np.int64)
    if b_t.size > 1 and np.any(np.diff(b_t) < 0):
        raise BB84Aborted(AbortReason.PROTOCOL_ERROR, "Timestamps: bob's times are not sorted")
    try:
        model, _ = await asyncio.to_thread(clock_model, a_t, b_t, d, opts, prior)
        c = await asyncio.to_thread(
            cross_node_coincidences,
            a_t,
            a_o + 1,
            b_t,
            np.ones(b_t.size, np.int64),  # bob's outcomes stay at bob: pairs from times only
            model,
            n_sigma=opts.n_sigma,
            window_ps=opts.window_ps,
            duration_ps=d * PS_PER_S,
        )
    except (EntanglementAborted, NoCoincidencePeakError) as exc:
        raise BB84Aborted(
            AbortReason.NO_DATA, f"no coincidences between the nodes: {exc}"
        ) from None
    mapped = model.map_b_to_a(b_t)
    ticks = b_t[np.searchsorted(mapped, c.bob_t_ps).clip(0, max(b_t.size - 1, 0))]
    return c, model, ticks, int(a_t.size), int(b_t.size)


async def _alice_chunk(
    s: BBM92Settings, link: PeerLink, tagger: TimeTagger, d: float, prior: Any
) -> tuple[I64, Any, dict[str, float]]:
    """One chunk at alice: her masks per group, the chunk's clock model, its counts."""
    await link.send(AcquisitionStart(s.digest(), d))
    c, model, ticks, n_a, n_b = await _alice_pairs(s, link, tagger, d, prior)
    group, n = group_pairs(c.alice_t_ps, c.bob_t_ps)
    sel = group >= 0
    await link.send(CoincidenceGroups(n, group[sel], ticks[sel]))
    counts = {
        "window_ps": float(c.window_ps),
        "coincidences": float(c.coincidences),
        "accidentals": c.accidentals_total,
        "singles_a": float(n_a),
        "singles_b": float(n_b),
    }
    return group_masks(group, c.alice_outcome, n), model, counts


async def _alice_heralds(s: BBM92Settings, link: PeerLink, tagger: TimeTagger) -> Any:
    """Alice's side of bob's fibre compensation: each acquisition he asks for, her outcome
    and his tick of every pair (these pairs are never key), until he asks for none. The
    last clock model (None: no acquisition) is the key acquisition's prior."""
    model = None
    while (d := (await link.expect(HeraldRequest)).duration_s) != 0:
        if not 0 < d <= MAX_HERALD_S:
            raise BB84Aborted(
                AbortReason.PROTOCOL_ERROR, f"HeraldRequest: {d!r} s is not in (0, {MAX_HERALD_S}]"
            )
        await link.send(AcquisitionStart(s.digest(), d))  # as for the key: then both stream
        c, model, ticks, _, _ = await _alice_pairs(s, link, tagger, d, model)
        await link.send(HeraldedPairs(np.asarray(c.alice_outcome, np.int64), ticks))
    return model


def _bob_heralds(s: BBM92Settings, link: PeerLink, tagger: TimeTagger) -> Heralds:
    """Bob's pair acquisitions for his compensation (``entanglement/fibres.py``): alice
    names the pairs with her outcomes; he counts them against his own."""

    async def heralds(d: float) -> NDArray[np.int64]:
        await link.send(HeraldRequest(d))
        await _expect_start(link, s, d)
        t, o = await _stream(tagger, "bob", s, s.bob_channels, d)
        await link.send(Timestamps(t))
        pairs = await link.expect(HeraldedPairs)
        a, ticks = np.asarray(pairs.outcome, np.int64), np.asarray(pairs.ticks, np.int64)
        at = np.searchsorted(t, ticks)
        ok = a.size == ticks.size and bool(np.all((a >= 0) & (a < 4)) and np.all(at < t.size))
        if not ok or not np.array_equal(t[at], ticks):
            raise BB84Aborted(AbortReason.PROTOCOL_ERROR, "HeraldedPairs is malformed")
        matrix = np.zeros((4, 4), np.int64)
        np.add.at(matrix, (a, o[at]), 1)  # a double click at bob: his first event's outcome
        return matrix

    return heralds


async def _alice_acquire(
    s: BBM92Settings, link: PeerLink, tagger: TimeTagger, source: Any
) -> tuple[I64, dict[str, Any]]:
    """Alice's side of the shared acquisition, chunk by chunk: her masks, and the record."""
    masks, rows = [], []
    await source.set_output(True)
    try:
        if s.crystal_temperature_c is not None:
            await source.set_crystal_temperature_c(s.crystal_temperature_c)
        await source.set_pump_current_ma(s.pump_current_ma)
        model = await _alice_heralds(s, link, tagger)  # bob's compensation, if he makes one
        for d in s.chunks():
            mask, model, counts = await _alice_chunk(s, link, tagger, d, model)
            masks.append(mask)
            rows.append(counts)
    finally:
        with contextlib.suppress(Exception):
            await source.set_output(False)
    assert model is not None
    record = {
        "chunks": len(rows),
        "clock_offset_ps": model.offset_ps,  # the last chunk's
        "clock_drift_ppb": model.drift * 1e9,
        "window_ps": rows[0]["window_ps"],
        "coincidences": int(sum(r["coincidences"] for r in rows)),
        "accidentals": sum(r["accidentals"] for r in rows),
        "singles_a_hz": sum(r["singles_a"] for r in rows) / s.duration_s,
        "singles_b_hz": sum(r["singles_b"] for r in rows) / s.duration_s,
    }
    return np.concatenate(masks), record


async def _expect_start(link: PeerLink, s: BBM92Settings, d: float) -> None:
    """Alice's go for an acquisition of ``d`` s (her pump is on): bob streams on receipt,
    as she does on sending it, so that both streams cover the same interval."""
    start = await link.expect(AcquisitionStart)
    if start.settings_digest != s.digest() or start.duration_s != d:
        raise BB84Aborted(
            AbortReason.PROTOCOL_ERROR,
            "Alice's BBM92 settings differ from Bob's (compare both [experiments.bbm92] tables)",
        )


async def _bob_acquire(s: BBM92Settings, link: PeerLink, tagger: TimeTagger) -> I64:
    masks = []
    for d in s.chunks():
        await _expect_start(link, s, d)
        t, o = await _stream(tagger, "bob", s, s.bob_channels, d)
        await link.send(Timestamps(t))
        g = await link.expect(CoincidenceGroups)
        bad = g.group.size and (g.group.min() < 0 or g.group.max() >= g.n_groups)
        if g.group.size != g.ticks.size or bad:
            raise BB84Aborted(AbortReason.PROTOCOL_ERROR, "CoincidenceGroups is malformed")
        try:
            masks.append(masks_at_ticks(t, o, g.group, g.ticks, g.n_groups))
        except ValueError as exc:
            raise BB84Aborted(AbortReason.PROTOCOL_ERROR, f"CoincidenceGroups: {exc}") from None
    return np.concatenate(masks)


async def _bob_compensate(
    bench: Any, s: BBM92Settings, link: PeerLink, tagger: TimeTagger, run: Any, store: Any
) -> dict[str, Any]:
    """Bob's compensation of the fibres (or a stored one of his instruments reused) from
    alice's heralds over the channel; a failure is the protocol's calibration_failed."""
    controller = bench.role(s.bob_node, PolarizationController, name=s.polarization_controller)
    try:
        return await compensate_fibres(
            None,
            controller,
            s,
            run,
            store,
            await bench.identities(),
            heralds=_bob_heralds(s, link, tagger),
        )
    except EntanglementAborted as exc:
        raise BB84Aborted(AbortReason.CALIBRATION_FAILED, exc.detail) from None


async def run_bbm92_party_job(
    party: str,
    profile: str | None,
    overrides: list[str] | None = None,
    *,
    auth_key_file: str | Path,
    listen: str | None = None,
    connect: str | None = None,
    session_id: str = "qhil-bbm92",
    duration_s: float | None = None,
    data_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
    progress: Callable[[BB84Progress], Any] | None = None,
    peer_timeout_s: float = 60.0,
    on_waiting: Callable[[str], Any] | None = None,
) -> BBM92Summary:
    """One party of BBM92 in this process; the other runs elsewhere, reached over TCP."""
    if party not in ("alice", "bob"):
        raise ConfigError("<command line>", "party", f"must be alice or bob, not {party!r}")
    prof = load_profile(profile, overrides or [])
    s = BBM92Settings.from_profile(prof, duration_s=duration_s)
    node = s.alice_node if party == "alice" else s.bob_node
    mine = [node, s.source_node] if party == "alice" else [node]
    own = prof.model_copy(update={"nodes": {n: prof.nodes[n] for n in mine}, "world": None})
    auth = HmacSha256Authenticator(load_auth_key(auth_key_file))
    store, keys = output_stores(data_dir, key_dir)  # before any instrument is opened
    run = store.start_run(
        f"bbm92.{party}",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters={**s.model_dump(mode="json"), "party": party},
    )
    results: dict[str, Any] = {}
    with run:
        async with open_bench(own) as bench:
            identities = await bench.identities()
            run.set_identities(identities)
            tagger = bench.role(
                node, TimeTagger, name=s.alice_tagger if party == "alice" else s.bob_tagger
            )
            mount = _optional(
                bench, node, RotationMount, s.alice_mount if party == "alice" else s.bob_mount
            )
            if mount is not None:
                await mount.move_to_deg(
                    s.alice_mount_zero_deg if party == "alice" else s.bob_mount_zero_deg
                )
            opened = await open_party_or_abort(
                party,
                auth,
                run,
                listen=listen,
                connect=connect,
                session_id=session_id,
                timeout_s=s.message_timeout_s,
                peer_timeout_s=peer_timeout_s,
                on_waiting=on_waiting,
            )
            if isinstance(opened, str):
                return BBM92Summary(run.run_id, "aborted", opened, {})
            channel = opened.channel
            peer = "bob" if party == "alice" else "alice"
            link = PeerLink(channel, party, peer, s.message_timeout_s)
            p = None
            try:
                if progress is not None:
                    progress(BB84Progress(party, "acquire", 0, 1, 0, f"{s.duration_s:g} s"))  # type: ignore[arg-type]
                try:
                    if party == "alice":
                        source = bench.role(s.source_node, EntangledPhotonSource, name=s.source)
                        mask, results = await _alice_acquire(s, link, tagger, source)
                    else:
                        if s.compensate_polarization:
                            results = await _bob_compensate(bench, s, link, tagger, run, store)
                        await link.send(HeraldRequest(0.0))  # no more: the key's acquisition
                        mask = await _bob_acquire(s, link, tagger)
                except BB84Aborted as exc:
                    await link.tell_abort(exc)
                    raise
                own_outcomes = outcomes(mask, secure_generator())
                # this node's outcomes (H, V, D, A) over the coincidences: its record's plot
                run.append(
                    f"{party}/outcomes", np.bincount(own_outcomes, minlength=4).reshape(1, 4)
                )
                p = make_party(
                    party,
                    s,
                    own_outcomes,
                    channel,
                    acquisition_s=s.duration_s,
                    key_store=keys,
                    run_id=run.run_id,
                    progress=progress,
                )
                await run_party(p, p.run())
            except BB84Aborted as exc:
                if p is not None:
                    results.update(result_of(p, exc.reason, exc.detail).to_results())
                reason = f"{exc.reason.value}: {exc.detail}"
                run.log_results(_scalars(results))
                run.abort(reason)
                return BBM92Summary(run.run_id, "aborted", reason, results)
            finally:
                await opened.close()
        results.update(result_of(p).to_results())
        run.log_results(_scalars(results))
        if p.committed is not None:
            run.add_key(p.committed)
        run.finish("success")
    return BBM92Summary(run.run_id, "success", None, results)
