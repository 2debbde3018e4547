"""Entanglement distribution on a two-node bench: the shared pair acquisition, two-photon
visibility fringes and the CHSH Bell test (issue 10). See README.md."""

from qhil.orchestrator.experiments.entanglement.acquisition import (
    CoincidenceOptions,
    EntanglementNodes,
    PairAcquisition,
    acquire_pairs,
    clock_model,
)
from qhil.orchestrator.experiments.entanglement.errors import (
    EntanglementAborted,
    EntanglementAbortReason,
)
from qhil.orchestrator.experiments.entanglement.experiments import (
    ChshOutcome,
    VisibilityResult,
    run_chsh,
    run_visibility,
)
from qhil.orchestrator.experiments.entanglement.settings import (
    AcquisitionSettings,
    ChshSettings,
    VisibilitySettings,
)

__all__ = [
    "AcquisitionSettings",
    "ChshOutcome",
    "ChshSettings",
    "CoincidenceOptions",
    "EntanglementAbortReason",
    "EntanglementAborted",
    "EntanglementNodes",
    "PairAcquisition",
    "VisibilityResult",
    "VisibilitySettings",
    "acquire_pairs",
    "clock_model",
    "run_chsh",
    "run_visibility",
]
