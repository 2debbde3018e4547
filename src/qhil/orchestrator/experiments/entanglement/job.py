"""The recorded visibility and CHSH jobs: profile, bench, run record, teardown.

Both nodes and the source site in this process. The experiment stays blind to the
bench's nature; on an emulated bench this job (which started the emulators) adds the
world's truth to the record afterwards (``truth_visibility``, ``truth_s``: the source's
visibility through both analysers' PBS extinction, and ``2 sqrt(2)`` times it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from qhil.drivers.roles import (
    EntangledPhotonSource,
    PolarizationController,
    RotationMount,
    TimeTagger,
)
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.experiments.entanglement.acquisition import (
    EntanglementNodes,
    PairAcquisition,
)
from qhil.orchestrator.experiments.entanglement.errors import (
    EntanglementAborted,
)
from qhil.orchestrator.experiments.entanglement.experiments import (
    ProgressHook,
    run_chsh,
    run_visibility,
)
from qhil.orchestrator.experiments.entanglement.fibres import compensate_fibres
from qhil.orchestrator.experiments.entanglement.settings import (
    AcquisitionSettings,
    ChshSettings,
    CompensatedSettings,
    VisibilitySettings,
    check_open_taggers,
)
from qhil.orchestrator.jobs import JobSummary, writable_run_store
from qhil.orchestrator.profile import load_profile

S = TypeVar("S", bound=AcquisitionSettings)

VISIBILITY_FIELDS = (
    "mount_zero_source",
    "alice_mount_zero_deg",
    "bob_mount_zero_deg",
    "visibility_hv",
    "visibility_hv_stderr",
    "visibility_da",
    "visibility_da_stderr",
    "max_angle_hv_deg",
    "max_angle_da_deg",
    "coincidences",
    "accidentals",
    "accidentals_std",
    "accidentals_predicted",
    "window_ps",
    "acquired_s",
    "polcal_e_z_after",
    "polcal_e_x_after",
    "truth_visibility",
)
CHSH_FIELDS = (
    "mount_zero_source",
    "alice_mount_zero_deg",
    "bob_mount_zero_deg",
    "s",
    "s_stderr",
    "sigmas_above_2",
    "e0",
    "e1",
    "e2",
    "e3",
    "coincidences",
    "accidentals",
    "accidentals_std",
    "accidentals_predicted",
    "window_ps",
    "acquired_s",
    "polcal_e_z_after",
    "polcal_e_x_after",
    "truth_visibility",
    "truth_s",
)


class EntanglementSummary(JobSummary):
    """What a finished (or aborted) visibility / CHSH job reports."""

    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "reason": self.reason}
        for k in self.fields:
            out[k] = self.results.get(k)
        out["polarization_calibration"] = self.results.get("polcal_reuse")  # as bb84's
        return out


class VisibilitySummary(EntanglementSummary):
    fields = VISIBILITY_FIELDS


class ChshSummary(EntanglementSummary):
    fields = CHSH_FIELDS


def nodes_from_bench(bench: Any, s: AcquisitionSettings) -> EntanglementNodes:
    """The roles the acquisition uses, from an open bench (the taggers' inputs checked
    against the open taggers: ConfigError naming the field)."""
    alice = bench.role(s.alice_node, TimeTagger, name=s.alice_tagger)
    bob = bench.role(s.bob_node, TimeTagger, name=s.bob_tagger)
    check_open_taggers(s, alice, bob, getattr(getattr(bench, "profile", None), "source", "<bench>"))
    return EntanglementNodes(
        alice_tagger=alice,
        bob_tagger=bob,
        source=bench.role(s.source_node, EntangledPhotonSource, name=s.source),
        alice_mount=bench.role(s.alice_node, RotationMount, name=s.alice_mount),
        bob_mount=bench.role(s.bob_node, RotationMount, name=s.bob_mount),
        alice_channels=s.alice_channels,
        bob_channels=s.bob_channels,
    )


def _point_recorder(run: Any) -> Callable[[int, PairAcquisition], None]:
    """Each point's matrices and scalars appended to the run's arrays as it comes."""

    def record(i: int, acq: PairAcquisition) -> None:
        c = acq.coincidences
        run.append("points/matrix", c.matrix.reshape(1, 4, 4).astype(np.int64))
        run.append("points/accidentals", c.accidentals.reshape(1, 4, 4).astype(float))
        run.append("points/accidentals_std", c.accidentals_std.reshape(1, 4, 4).astype(float))
        run.append("points/singles_a", c.singles_a.reshape(1, 4).astype(np.int64))
        run.append("points/singles_b", c.singles_b.reshape(1, 4).astype(np.int64))
        for name, value in (
            ("alice_axis_deg", acq.alice_angle_deg),
            ("bob_axis_deg", acq.bob_angle_deg),
            ("duration_s", acq.duration_s),
            ("window_ps", float(c.window_ps)),
            ("sigma_ps", c.sigma_ps),
            ("clock_offset_ps", acq.model.offset_ps),
            ("clock_drift_ppb", acq.model.drift * 1e9),
        ):
            run.append(f"points/{name}", np.asarray([np.nan if value is None else value]))

    return record


async def compensate_at_zeros(
    bench: Any, nodes: EntanglementNodes, s: CompensatedSettings, run: Any, runs: Any
) -> dict[str, Any]:
    """The fibres compensated with both plates at their zeros (``fibres.py``: a stored
    compensation reused when it still holds), bob's controller from the bench."""
    controller = bench.role(s.bob_node, PolarizationController, name=s.polarization_controller)
    await nodes.set_angles(s.alice_mount_zero_deg % 360.0, s.bob_mount_zero_deg % 360.0)
    return await compensate_fibres(nodes, controller, s, run, runs, await bench.identities())


def calibrated_zeros(settings: S, data_dir: Any, identities: dict[str, str]) -> tuple[S, str]:
    """The settings with the newest mount-zero calibration's zeros of these instruments
    (``use_mount_zero_calibration``), and where the zeros came from, for the record."""
    if not settings.use_mount_zero_calibration:
        return settings, "settings"
    from qhil.calibration.mount_zero import latest_mount_zeros

    found = latest_mount_zeros(data_dir, identities)
    if found is None or not {settings.alice_node, settings.bob_node} <= set(found.zeros_deg):
        return settings, "settings (no mount-zero calibration of these instruments)"
    update = {
        "alice_mount_zero_deg": found.zeros_deg[settings.alice_node],
        "bob_mount_zero_deg": found.zeros_deg[settings.bob_node],
    }
    return settings.model_copy(update=update), f"calibration {found.run_id}"


def truth_visibility(world: Any, prof: Any, s: AcquisitionSettings) -> float | None:
    """The world's visibility of the source's pairs as the two analysers see them: the
    source's ``visibility`` times each analyser's PBS contrast ``(ER - 1) / (ER + 1)``."""
    try:
        src_name = s.source or _only(prof, s.source_node, "spdc")
        src = world.component(f"{s.source_node}.{_component(prof, s.source_node, src_name)}")
        vis = float(src.cfg.visibility)
        for node in (s.alice_node, s.bob_node):
            er = 10 ** (float(world.analyzer(f"{node}.analyzer").cfg.pbs_extinction_ratio_db) / 10)
            vis *= (er - 1.0) / (er + 1.0)
        return vis
    except Exception:  # a world without these components: no truth, not a failure
        return None


def _only(prof: Any, node: str, word: str) -> str:
    names = [n for n, spec in prof.nodes[node].instruments.items() if word in spec.model]
    return names[0]


def _component(prof: Any, node: str, name: str) -> str:
    comp = prof.nodes[node].instruments[name].component
    return str(comp).split(".", 1)[-1] if comp else name


async def _run_job(
    kind: str,
    settings: AcquisitionSettings,
    prof: Any,
    data_dir: str | Path | None,
    mode: str | None,
    body: Callable[[EntanglementNodes, Any, Any], Coroutine[Any, Any, dict[str, Any]]],
    summary_cls: type[EntanglementSummary],
) -> EntanglementSummary:
    store = writable_run_store(data_dir)  # before any instrument is opened
    run = store.start_run(
        kind,
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters=settings.model_dump(mode="json"),
    )
    with run:
        async with open_bench(prof, mode=mode) as bench:
            identities = await bench.identities()
            run.set_identities(identities)
            settings, zeros_from = calibrated_zeros(settings, store.data_dir, identities)
            zeros = {
                "mount_zero_source": zeros_from,
                "alice_mount_zero_deg": settings.alice_mount_zero_deg,
                "bob_mount_zero_deg": settings.bob_mount_zero_deg,
            }
            run.log_results(zeros)
            nodes = nodes_from_bench(bench, settings)
            try:
                await nodes.pump_on(settings.pump_current_ma, settings.crystal_temperature_c)
                polcal: dict[str, Any] = {}
                if isinstance(settings, CompensatedSettings) and settings.compensate_polarization:
                    polcal = await compensate_at_zeros(bench, nodes, settings, run, store)
                results = {**zeros, **polcal, **await body(nodes, run, settings)}
            except EntanglementAborted as exc:
                run.abort(str(exc))
                return summary_cls(run.run_id, "aborted", str(exc), {})
            finally:
                with contextlib.suppress(Exception):  # the run's own error matters more
                    await nodes.pump_off()
            world = getattr(bench.emulator_truth, "world", None)
            if world is not None:
                v = truth_visibility(world, prof, settings)
                if v is not None:
                    results["truth_visibility"] = v
                    results["truth_s"] = 2.0 * math.sqrt(2.0) * v
                    results["truth_source"] = "emulator"
        if kind == "visibility":
            results.pop("truth_s", None)
        run.log_results({k: v for k, v in results.items() if v is not None})
        run.finish("success")
    return summary_cls(run.run_id, "success", None, results)


async def run_visibility_job(
    profile: str | None = None,
    overrides: list[str] | None = None,
    *,
    data_dir: str | Path | None = None,
    mode: str | None = None,
    integration_s: float | None = None,
    progress: ProgressHook | None = None,
) -> EntanglementSummary:
    """Visibility fringes on the profile's bench (``[experiments.visibility]``)."""
    prof = load_profile(profile, overrides or [])
    settings = VisibilitySettings.from_profile(prof, integration_s=integration_s)

    async def body(nodes: EntanglementNodes, run: Any, s: VisibilitySettings) -> dict[str, Any]:
        res = await run_visibility(s, nodes, progress=progress, on_point=_point_recorder(run))
        run.append("fringe/angle_deg", res.angles_deg)
        for basis in res.counts:
            b = basis.lower()
            run.append(f"fringe/counts_{b}", res.counts[basis])
            run.append(f"fringe/accidentals_{b}", res.accidentals[basis])
        return res.to_results()

    return await _run_job("visibility", settings, prof, data_dir, mode, body, VisibilitySummary)


async def run_chsh_job(
    profile: str | None = None,
    overrides: list[str] | None = None,
    *,
    data_dir: str | Path | None = None,
    mode: str | None = None,
    integration_s: float | None = None,
    progress: ProgressHook | None = None,
) -> EntanglementSummary:
    """The CHSH test on the profile's bench (``[experiments.chsh]``)."""
    prof = load_profile(profile, overrides or [])
    settings = ChshSettings.from_profile(prof, integration_s=integration_s)

    async def body(nodes: EntanglementNodes, run: Any, s: ChshSettings) -> dict[str, Any]:
        res = await run_chsh(s, nodes, progress=progress, on_point=_point_recorder(run))
        r = res.result
        run.append("chsh/alice_deg", np.asarray([a for a, _ in res.setting_pairs]))
        run.append("chsh/bob_deg", np.asarray([b for _, b in res.setting_pairs]))
        run.append("chsh/counts", res.counts)
        run.append("chsh/accidentals", res.accidentals)
        run.append("chsh/e", np.asarray([c.value for c in r.correlators]))
        run.append("chsh/e_stderr", np.asarray([c.stderr for c in r.correlators]))
        run.append("chsh/signs", np.asarray(r.signs, dtype=np.int64))
        return res.to_results()

    return await _run_job("chsh", settings, prof, data_dir, mode, body, ChshSummary)
