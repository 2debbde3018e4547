"""Entanglement numerics (pure numpy): cross-node coincidences, visibility, CHSH."""

from qhil.numerics.entanglement.chsh import (
    DEFAULT_SIGNS,
    ChshResult,
    Correlator,
    chsh,
    correlator,
)
from qhil.numerics.entanglement.coincidences import (
    OUTCOMES,
    CrossNodeCoincidences,
    PeakFit,
    cross_node_coincidences,
    fit_peak,
    outcome_index,
)
from qhil.numerics.entanglement.errors import EntanglementInputError, NoCoincidencePeakError
from qhil.numerics.entanglement.visibility import FringeFit, fit_fringe

__all__ = [
    "DEFAULT_SIGNS",
    "OUTCOMES",
    "ChshResult",
    "Correlator",
    "CrossNodeCoincidences",
    "EntanglementInputError",
    "FringeFit",
    "NoCoincidencePeakError",
    "PeakFit",
    "chsh",
    "correlator",
    "cross_node_coincidences",
    "fit_fringe",
    "fit_peak",
    "outcome_index",
]
