"""The fibres of the entanglement bench compensated before an experiment, or a stored
compensation reused: one path for visibility, CHSH, BBM92 and the mount-zero calibration.

The compensation is :func:`~.compensation.compensate_pairs` (bob's controller from
alice-heralded coincidences, plates where the caller put them). It is a polarization
calibration of bob's controller on these instruments (the store's kind ``polarization``
reads it from the run's ``polcal_*`` results), so the next run on the same bench first
tries the newest valid one no older than ``polarization_max_age_s``
(:mod:`qhil.calibration.store.reuse`, as BB84 does): bob's controller is set to its
voltages and ONE pair acquisition of ``compensation_verify_s`` (the compensation's own
verification) must meet the compensation's own target (both heralded error fractions'
one-sided upper bounds at 95 % below ``compensation_target_error``). Met: no
compensation step. Not met (the fibre moved, another seed's fibre, plates elsewhere):
the search runs, starting from the stored voltages.

Recorded as BB84's reuse is: ``polcal_reuse`` (``reused run <id> (<age> s old)`` or
``not reused: <why>``), the check as ``polcal_check_*``, ``calibration_polarization_run``
(the run whose compensation this run used: its own id when it compensated), the voltages
as the array ``polarization_voltages_mv``; a compensation's ``polcal_*`` and
``polcal/steps`` as before.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qhil.calibration.errors import CalibrationError
from qhil.calibration.polarization import PolarizationMeasurement, polarization_options
from qhil.calibration.store.reuse import PolarizationCheck, _candidate, judge
from qhil.drivers.roles import PolarizationController
from qhil.numerics.timing import ClockModel
from qhil.orchestrator.experiments.entanglement.acquisition import (
    EntanglementNodes,
    acquire_pairs,
)
from qhil.orchestrator.experiments.entanglement.compensation import Heralds, compensate_pairs
from qhil.orchestrator.experiments.entanglement.errors import (
    EntanglementAborted,
    EntanglementAbortReason,
)
from qhil.orchestrator.experiments.entanglement.experiments import options
from qhil.orchestrator.experiments.entanglement.settings import CompensatedSettings
from qhil.records import RunStore

log = logging.getLogger(__name__)


def _counts(row: Any) -> tuple[int, int, int, int]:
    h, v, d, a = (int(x) for x in row)
    return h, v, d, a


def local_heralds(nodes: EntanglementNodes, s: CompensatedSettings) -> Heralds:
    """Pair acquisitions with both taggers in this process, each with the last one's
    clock model as its prior."""
    prior: list[ClockModel | None] = [None]

    async def heralds(duration_s: float) -> NDArray[np.int64]:
        acq = await acquire_pairs(nodes, duration_s, options(s), prior=prior[0])
        prior[0] = acq.model
        return acq.matrix

    return heralds


async def _check_stored(
    heralds: Heralds,
    controller: PolarizationController,
    voltages_mv: list[int],
    s: CompensatedSettings,
) -> PolarizationMeasurement:
    """One verification acquisition at the stored voltages (the controller is left there):
    bob's H, V, D, A among the pairs heralded by alice's H and by alice's D."""
    await controller.set_voltages_mv(voltages_mv)
    matrix = await heralds(s.compensation_verify_s)
    return PolarizationMeasurement(
        tuple(voltages_mv), _counts(matrix[0]), _counts(matrix[2]), s.compensation_verify_s
    )


async def compensate_fibres(
    nodes: EntanglementNodes | None,
    controller: PolarizationController,
    s: CompensatedSettings,
    run: Any,
    runs: RunStore,
    identities: dict[str, str],
    *,
    heralds: Heralds | None = None,
) -> dict[str, Any]:
    """Bob's controller compensating the fibres (pump on, plates where the experiment
    measures H/V and D/A): a stored compensation that still holds, else a new one.
    ``nodes``: both taggers here; or ``heralds``: the pairs come from elsewhere (two
    processes). Returns the results recorded (``polcal_*``,
    ``calibration_polarization_run``); a compensation that misses its target raises
    :class:`EntanglementAborted` (``compensation_failed``), as BB84's does."""
    if heralds is None:
        if nodes is None:
            raise ValueError("compensate_fibres: neither nodes nor heralds given")
        heralds = local_heralds(nodes, s)
    opts = polarization_options(
        int(controller.channels),
        target_error=s.compensation_target_error,
        integration_s=s.compensation_integration_s,
        verify_integration_s=s.compensation_verify_s,
        max_acquisitions=s.compensation_max_acquisitions,
        settle_s=0.0,
    )
    where = f"bob's polarization controller {controller.name}"
    cal, voltages, why = _candidate(runs, identities, s.polarization_max_age_s, controller)
    if cal is not None and voltages is not None:
        m = await _check_stored(heralds, controller, voltages, s)
        bad = judge(m, opts)
        check = PolarizationCheck(cal, m, not bad, bad)
        checked = {f"polcal_check_{k}": v for k, v in check.to_results().items()}
        run.log_results(checked)
        if check.holds:
            log.info("fibres: %s, checked: e_Z %.4f, e_X %.4f", why, m.e_z.value, m.e_x.value)
            found = {**checked, "polcal_reuse": why, "calibration_polarization_run": cal.run_id}
            run.log_results(found)
            run.append("polarization_voltages_mv", np.asarray([voltages], dtype=np.int64))
            return found
        why = f"run {cal.run_id}: {check.reason}"  # search on from the stored voltages
    log.info("fibres: compensating (%s)", why)
    # Recorded before the search, so that a search that cannot finish still says why it ran.
    run.log_results({"polcal_reuse": f"not reused: {why}"})
    try:
        comp = await compensate_pairs(
            nodes,
            controller,
            options(s),
            integration_s=s.compensation_integration_s,
            verify_integration_s=s.compensation_verify_s,
            target_error=s.compensation_target_error,
            max_acquisitions=s.compensation_max_acquisitions,
            heralds=heralds,
        )
    except CalibrationError as exc:  # the search could not run to the end (budget, no light)
        reason = EntanglementAbortReason.COMPENSATION_FAILED
        raise EntanglementAborted(reason, f"{where}: {exc}") from None
    run.append("polcal/steps", comp.step_rows())
    run.append("polarization_voltages_mv", np.asarray([comp.voltages_mv], dtype=np.int64))
    found = {f"polcal_{k}": v for k, v in comp.to_results().items() if v is not None}
    found.update(polcal_reuse=f"not reused: {why}", calibration_polarization_run=run.run_id)
    run.log_results(found)  # in the record also when the run aborts below
    if not comp.target_met:
        raise EntanglementAborted(
            EntanglementAbortReason.COMPENSATION_FAILED,
            f"{where}: heralded error fractions e_Z {comp.e_z.value:.3f}, e_X "
            f"{comp.e_x.value:.3f} not below {s.compensation_target_error} "
            f"({comp.stop_reason}); more compensation_max_acquisitions or a longer "
            "compensation_integration_s",
        )
    return found


__all__ = ["compensate_fibres", "local_heralds"]
