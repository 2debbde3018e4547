"""Recorded calibrations of the entanglement bench: each rotation mount's zero and the
coincidence delay between the nodes (``qhil calibrate mount-zero`` / ``coincidence-delay``).

Both run on the shared two-node acquisition
(:mod:`qhil.orchestrator.experiments.entanglement.acquisition`: the source site's pump on,
both taggers streamed over the same interval, the clock model found on those streams,
coincidences with accidentals from displaced windows) and record a run of kind
``calibration.mount_zero`` / ``calibration.coincidence_delay`` like every other calibration
(:func:`qhil.calibration.jobs._recorded`). Settings: ``[experiments.calibration.mount_zero]``
and ``[experiments.calibration.coincidence_delay]`` (every field below; all optional).

The clock model: the first acquisition searches with no prior (+-``uncertainty_s``,
+-``max_frequency_offset_ppm``), or around the frequency of the stored clock-sync
correction of these taggers when there is one (``use_clock_correction``); every later one
around the first's frequency (a TDC1 restarts its counter with every stream, so each
stream's offset is found again; the frequency carries over).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from qhil.calibration.coincidence_delay import calibrate_from_streams
from qhil.calibration.errors import CalibrationError
from qhil.calibration.jobs import CalibrationSummary, _recorded
from qhil.calibration.mount_zero import Counts, MountZeroPoint, calibrate_mount_zero, wrap_deg
from qhil.drivers.roles import EntangledPhotonSource, RotationMount, TimeTagger
from qhil.errors import ConfigError
from qhil.numerics.timing import ClockModel
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.experiments.entanglement.settings import (
    AcquisitionSettings,
    CompensatedSettings,
)
from qhil.records import Run, RunStore
from qhil.records.paths import default_data_dir


class _EntanglementCalibrationSettings(AcquisitionSettings):
    """The entanglement experiments' acquisition settings (the nodes, their instruments, the
    taggers' inputs, the pump, the coincidence window and the clock-model search:
    :class:`~qhil.orchestrator.experiments.entanglement.settings.AcquisitionSettings`), read
    from ``[experiments.calibration.<NAME>]``."""

    NAME: ClassVar[str] = ""

    use_clock_correction: bool = Field(
        True, description="Search around the stored clock-sync correction's frequency."
    )

    @classmethod
    def from_profile(cls, profile: Any, **replace: Any) -> Any:
        """From ``[experiments.calibration.<NAME>]`` (defaults without it); the instruments
        named are checked on the profile's bench, errors naming the file and the field."""
        source = getattr(profile, "source", "") or "<profile>"
        calib = (getattr(profile, "experiments", {}) or {}).get("calibration") or {}
        own = calib.get(cls.NAME) or {} if isinstance(calib, dict) else None
        if not isinstance(own, dict):
            raise ConfigError(source, cls.TABLE, "must be a table")
        table = {**own, **{k: v for k, v in replace.items() if v is not None}}
        settings = cls.from_mapping(table, source)
        if getattr(profile, "nodes", None) is not None:  # before any instrument opens
            settings.check_bench(profile, source)
        return settings

    def options(self) -> Any:
        """The acquisition's coincidence options."""
        from qhil.orchestrator.experiments.entanglement.acquisition import CoincidenceOptions

        return CoincidenceOptions(
            n_sigma=self.n_sigma,
            window_ps=self.window_ps,
            uncertainty_s=self.uncertainty_s,
            max_frequency_offset_ppm=self.max_frequency_offset_ppm,
            min_significance=self.min_significance,
        )


class MountZeroSettings(_EntanglementCalibrationSettings, CompensatedSettings):
    """``qhil calibrate mount-zero``: which node's mount is scanned (the other's is the
    reference, held at ``reference_angle_deg``), and how; the fibres compensated first
    (``compensate_polarization`` and the ``compensation_*`` fields, as visibility's)."""

    NAME: ClassVar[str] = "mount_zero"
    TABLE: ClassVar[str] = "experiments.calibration.mount_zero"

    node: str = Field("alice", description="Node whose mount is scanned (the other: reference).")
    reference_angle_deg: float = Field(
        0.0, ge=-360, le=360, description="Where the reference mount is held: its zero."
    )
    points: int = Field(12, ge=4, le=360, description="Angles over one fringe period (90 deg).")
    integration_s: float = Field(0.5, gt=0, le=600, description="Acquisition per angle, s.")
    start_deg: float = Field(0.0, ge=-360, le=360, description="First angle of the scan.")
    min_visibility: float = Field(0.5, ge=0, lt=1, description="Weakest fringe accepted.")
    max_hv_da_sigma: float | None = Field(
        5.0,
        gt=0,
        description="Fail when the D/A fringe's zero or visibility disagree with the H/V "
        "one's by more than this many standard errors (fibres not compensated); None: report.",
    )

    @field_validator("node")
    @classmethod
    def _check_node(cls, node: str, info: ValidationInfo) -> str:
        ends = (info.data.get("alice_node"), info.data.get("bob_node"))
        if node not in ends:
            raise ValueError(f"{node!r} is neither alice_node {ends[0]!r} nor bob_node {ends[1]!r}")
        return node

    @property
    def reference_node(self) -> str:
        return self.bob_node if self.node == self.alice_node else self.alice_node


class CoincidenceDelaySettings(_EntanglementCalibrationSettings):
    """``qhil calibrate coincidence-delay``: one acquisition, its pairs' delay peak."""

    NAME: ClassVar[str] = "coincidence_delay"
    TABLE: ClassVar[str] = "experiments.calibration.coincidence_delay"

    integration_s: float = Field(0.5, gt=0, le=600, description="Acquisition, s.")
    wander_ppb_per_sqrt_s: float = Field(
        1.2,
        ge=0,
        le=1e4,
        description="The clocks' relative wander (random-walk FM): its error over the "
        "acquisition is part of the total delay's (the entanglement bench: 1.12).",
    )
    search_ps: float = Field(50_000.0, gt=0, le=1e7, description="Histogram range, +-ps.")
    peak_window_ps: float = Field(6000.0, gt=0, description="Peak window (full width), ps.")

    def instruments(self) -> list[tuple[str, str, str, str | None, bool]]:
        # No rotation mount needed (one left at whatever angle passes the pairs as they are).
        return [i for i in super().instruments() if i[2] != "RotationMount"]


def _nodes(bench: Bench, s: _EntanglementCalibrationSettings, mounts: bool) -> Any:
    """The acquisition's instruments (the entanglement experiments' ``EntanglementNodes``);
    the profile check (``check_bench``) already found each."""
    from qhil.orchestrator.experiments.entanglement.acquisition import EntanglementNodes

    return EntanglementNodes(
        alice_tagger=bench.role(s.alice_node, TimeTagger, name=s.alice_tagger),
        bob_tagger=bench.role(s.bob_node, TimeTagger, name=s.bob_tagger),
        source=bench.role(s.source_node, EntangledPhotonSource, name=s.source),
        alice_mount=bench.role(s.alice_node, RotationMount, name=s.alice_mount) if mounts else None,
        bob_mount=bench.role(s.bob_node, RotationMount, name=s.bob_mount) if mounts else None,
        alice_channels=s.alice_channels,
        bob_channels=s.bob_channels,
    )


def _stored_prior(
    bench: Bench, s: _EntanglementCalibrationSettings, nodes: Any, data_dir: str | Path | None
) -> tuple[ClockModel | None, str | None]:
    """The stored clock-sync correction's model for these taggers (frequency prior), if any."""
    if not s.use_clock_correction:
        return None, None
    from qhil.orchestrator.experiments.clock_sync.corrections import load_correction

    # A bench driver's name is "node.instrument", the correction's key.
    names = (str(nodes.alice_tagger.name), str(nodes.bob_tagger.name))
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    corr = load_correction(root, bench.name, names)
    if corr is None or corr.expired():
        return None, None
    return corr.model, corr.run_id


def _component(bench: Bench, driver: Any) -> str | None:
    node, _, name = str(driver.name).partition(".")
    comp = bench.profile.nodes[node].instruments[name].component
    return None if comp is None else str(comp)


def _truth_zero_deg(bench: Bench, nodes: Any, s: MountZeroSettings) -> float | None:
    """Emulator truth for the record (never for the routine): the scanned mount's angle at
    which its plate's axis is parallel to the reference plate's at ``reference_angle_deg``."""
    world = getattr(bench.emulator_truth, "world", None)
    if world is None:
        return None
    alice_scanned = s.node == s.alice_node
    scanned = nodes.alice_mount if alice_scanned else nodes.bob_mount
    reference = nodes.bob_mount if alice_scanned else nodes.alice_mount
    try:
        off = world.waveplate(_component(bench, scanned)).cfg.zero_offset_deg
        ref_off = world.waveplate(_component(bench, reference)).cfg.zero_offset_deg
    except Exception:  # no such plate in the world: no truth to record
        return None
    return float((s.reference_angle_deg + ref_off - off) % 90.0)


def _truth_total_delay_ps(bench: Bench, nodes: Any, s: Any, t_ref_ps: int) -> float | None:
    """Emulator truth for the record: bob's stream time minus alice's at alice's stream time
    ``t_ref_ps`` plus the pairs' path-delay difference (clock sync's one-way truth)."""
    from types import SimpleNamespace

    from qhil.orchestrator.experiments.clock_sync.truth import truth_function

    if bench.emulator_truth is None:
        return None
    names = (str(nodes.alice_tagger.name), str(nodes.bob_tagger.name))
    components = {
        "alice": _component(bench, nodes.alice_tagger),
        "bob": _component(bench, nodes.bob_tagger),
        f"source.{s.source_node}": _component(bench, nodes.source),
    }
    # The attributes of ClockSyncSettings the one-way truth reads.
    like: Any = SimpleNamespace(
        two_way=False,
        active_sources={s.source_node: None},
        alice_node=s.alice_node,
        bob_node=s.bob_node,
    )
    truth = truth_function(
        bench.emulator_truth,
        like,
        components,
        (names[0].partition(".")[2], names[1].partition(".")[2]),
    )
    return None if truth is None else float(truth.offset([t_ref_ps])[0])


class _Acquirer:
    """Acquisitions in a row: the first with the stored prior (or none), later ones around the
    first's frequency. Aborts of the acquisition become CalibrationErrors (exit 3)."""

    def __init__(self, nodes: Any, s: _EntanglementCalibrationSettings, prior: ClockModel | None):
        self.nodes = nodes
        self.prior = prior
        self.options = s.options()
        self.acquisitions = 0

    async def __call__(self, duration_s: float, *, keep_streams: bool = False) -> Any:
        from qhil.orchestrator.experiments.entanglement.acquisition import acquire_pairs
        from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted

        try:
            acq = await acquire_pairs(
                self.nodes, duration_s, self.options, prior=self.prior, keep_streams=keep_streams
            )
        except EntanglementAborted as exc:
            raise CalibrationError(str(exc)) from None
        self.acquisitions += 1
        self.prior = self.prior or acq.model
        return acq


async def _pump(nodes: Any, s: _EntanglementCalibrationSettings) -> None:
    from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted

    try:
        await nodes.pump_on(s.pump_current_ma, s.crystal_temperature_c)
    except EntanglementAborted as exc:
        raise CalibrationError(str(exc)) from None


async def run_mount_zero_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
) -> CalibrationSummary:
    """The zero of ``node``'s rotation mount against the other node's, recorded.

    The run (kind ``calibration.mount_zero``) holds one ``points`` row per angle
    (:data:`~qhil.calibration.mount_zero.POINT_DTYPE`: angle, H/V coincidences, accidentals,
    correlation, the fitted model) and the results of ``to_results()``: ``zero_deg`` with
    ``zero_std_deg``, each node's ``zero_<node>_deg``, the fringe's visibility. The scanned
    mount is left at its zero; the pump is switched off at the end.
    """

    async def body(bench: Bench, s: MountZeroSettings, run: Run) -> dict[str, Any]:
        nodes = _nodes(bench, s, mounts=True)
        prior, clock_run = _stored_prior(bench, s, nodes, data_dir)
        acquire = _Acquirer(nodes, s, prior)
        scanned = nodes.alice_mount if s.node == s.alice_node else nodes.bob_mount
        reference = nodes.bob_mount if s.node == s.alice_node else nodes.alice_mount
        # Rows of the matrix are alice's outcomes: the scanned node's H/V first either way.
        first_is_alice = s.node == s.alice_node

        async def count(integration_s: float) -> tuple[Counts, Counts, float]:
            acq = await acquire(integration_s)
            m = acq.matrix if first_is_alice else acq.matrix.T
            hv, da = m[:2, :2].ravel(), m[2:, 2:].ravel()
            return (
                (int(hv[0]), int(hv[1]), int(hv[2]), int(hv[3])),
                (int(da[0]), int(da[1]), int(da[2]), int(da[3])),
                float(acq.accidentals[:2, :2].sum()),
            )

        async def on_point(point: MountZeroPoint) -> None:
            await run.aappend("scan", _point_row(point))

        try:  # the pump off at the end, also when switching it on failed halfway
            await _pump(nodes, s)
            polcal = await _compensate(bench, nodes, s, run, data_dir)
            result = await calibrate_mount_zero(
                scanned,
                reference,
                count,
                node=s.node,
                mount_name=str(scanned.name).partition(".")[2],
                reference_node=s.reference_node,
                reference_name=str(reference.name).partition(".")[2],
                reference_angle_deg=s.reference_angle_deg,
                points=s.points,
                integration_s=s.integration_s,
                start_deg=s.start_deg,
                min_visibility=s.min_visibility,
                max_hv_da_sigma=s.max_hv_da_sigma,
                on_point=on_point,
            )
        finally:
            await nodes.pump_off()
        run.append("points", result.rows())
        out = {
            **polcal,
            **result.to_results(),
            "clock_correction_run": clock_run,
            "acquisitions": acquire.acquisitions,
        }
        truth = _truth_zero_deg(bench, nodes, s)
        if truth is not None:
            out["truth_plate_zero_deg"] = truth
            if not s.compensate_polarization:  # else the compensation took the offsets in
                out["zero_error_deg"] = wrap_deg(result.zero_deg - truth)
        return out

    return await _recorded(
        "mount_zero", MountZeroSettings, profile, overrides, data_dir, mode, body
    )


async def _compensate(
    bench: Bench, nodes: Any, s: MountZeroSettings, run: Run, data_dir: str | Path | None
) -> dict[str, Any]:
    """The fibres compensated (or a stored compensation reused: the experiments' own
    ``fibres.compensate_fibres``) with the scanned mount at ``<node>_mount_zero_deg`` and the
    reference at ``reference_angle_deg``. Bob's controller then undoes the fibres AND the
    plates' relative offset (no measurement on the pairs tells one from the other), so the
    zero found is that of the compensated frame: where the plates are parallel for the pairs
    as they now arrive, to the fringe fit's precision (the compensation's residual)."""
    if not s.compensate_polarization:
        return {}
    from qhil.drivers.roles import PolarizationController
    from qhil.orchestrator.experiments.entanglement.errors import EntanglementAborted
    from qhil.orchestrator.experiments.entanglement.fibres import compensate_fibres

    alice_scanned = s.node == s.alice_node
    own = s.alice_mount_zero_deg if alice_scanned else s.bob_mount_zero_deg
    angles = (own, s.reference_angle_deg) if alice_scanned else (s.reference_angle_deg, own)
    await nodes.set_angles(angles[0] % 360.0, angles[1] % 360.0)
    controller = bench.role(s.bob_node, PolarizationController, name=s.polarization_controller)
    try:
        return await compensate_fibres(
            nodes, controller, s, run, RunStore(data_dir), await bench.identities()
        )
    except EntanglementAborted as exc:
        raise CalibrationError(str(exc)) from None


def _point_row(point: MountZeroPoint) -> Any:
    """One raw row as measured (``scan``), before the fit: a crash keeps these."""
    from qhil.calibration.mount_zero import POINT_DTYPE

    row = np.zeros(1, dtype=POINT_DTYPE)
    row["angle_deg"], row["position_deg"] = point.angle_deg, point.position_deg
    row["hh"], row["hv"], row["vh"], row["vv"] = point.counts
    row["dd"], row["da"], row["ad"], row["aa"] = point.da_counts
    row["accidentals"], row["integration_s"] = point.accidentals, point.integration_s
    for name in ("correlation", "correlation_std", "model"):
        row[name] = row[f"da_{name}"] = np.nan
    return row


async def run_coincidence_delay_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
) -> CalibrationSummary:
    """The coincidence delay between the nodes, recorded.

    One acquisition of ``integration_s``: its clock model (found on these streams, see the
    module doc), then the peak of every pair's ``t_b' - t_a`` within ``+-search_ps``
    (:func:`~qhil.calibration.coincidence_delay.calibrate_from_streams`). The run (kind
    ``calibration.coincidence_delay``) holds the ``histogram`` (bins, pairs, the fitted
    peak on its background) and the results: ``delay_ps`` after the model, the model's
    ``clock_offset_ps`` at ``clock_t_ref_ps`` (alice's stream time), ``total_delay_ps``.
    """

    async def body(bench: Bench, s: CoincidenceDelaySettings, run: Run) -> dict[str, Any]:
        nodes = _nodes(bench, s, mounts=False)
        prior, clock_run = _stored_prior(bench, s, nodes, data_dir)
        acquire = _Acquirer(nodes, s, prior)
        try:  # the pump off at the end, also when switching it on failed halfway
            await _pump(nodes, s)
            acq = await acquire(s.integration_s, keep_streams=True)
        finally:
            await nodes.pump_off()
        a_t = acq.alice_all_t_ps
        # Quote the total at the acquisition's centre, where a linear model misses least.
        t_mid = int((int(a_t[0]) + int(a_t[-1])) // 2) if a_t.size else acq.model.t_ref_ps
        result = calibrate_from_streams(
            a_t,
            np.sort(acq.bob_all_t_ps),
            integration_s=s.integration_s,
            clock_offset_ps=float(acq.model.offset_at(t_mid)),
            clock_t_ps=t_mid,
            clock_drift=acq.model.drift,
            # The model comes from these pairs: one-way, the path-delay difference inside it.
            clock_method="one-way",
            clock_run_id=clock_run,
            search_ps=s.search_ps,
            window_ps=s.peak_window_ps,
            wander_ppb_per_sqrt_s=s.wander_ppb_per_sqrt_s,
        )
        run.append("histogram", result.histogram)
        out = {
            **result.to_results(),
            "window_ps_used": acq.window_ps,
        }
        truth = _truth_total_delay_ps(bench, nodes, s, t_mid)
        if truth is not None:
            out["truth_total_delay_ps"] = truth
            out["total_delay_error_ps"] = result.total_delay_ps - truth
        return out

    return await _recorded(
        "coincidence_delay",
        CoincidenceDelaySettings,
        profile,
        overrides,
        data_dir,
        mode,
        body,
    )
