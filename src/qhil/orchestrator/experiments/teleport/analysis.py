"""From a teleportation run's shot rows to the receiver's states and fidelities.

Per input: Pauli counts of the shots whose measurement returned an outcome, tomography
(linear inversion projected onto the Bloch ball), the fidelity with the input and its
1-sigma error. Over the inputs: the mean fidelity (with six Pauli eigenstates, the
Bloch-sphere average) against ``(2 F + 1) / 3``, ``F`` the mean estimated fidelity of
the pairs used (exact for a Werner resource; the estimate is the network's, from measured
link parameters). Used by the job and by the plots (from the record alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.numerics.tomography import (
    StateEstimate,
    TomographyError,
    bloch_vector,
    estimate_state,
    mean_fidelity,
    pauli_counts,
)


def werner_teleportation_fidelity(pair_fidelity: float) -> float:
    """Average teleportation fidelity over a Werner pair of fidelity F: ``(2F + 1) / 3``."""
    return (2.0 * pair_fidelity + 1.0) / 3.0


@dataclass(frozen=True)
class TeleportAnalysis:
    inputs: tuple[str, ...]
    targets: np.ndarray  # (k, 3) Bloch vectors of the inputs
    counts: np.ndarray  # (k, 3, 2)
    estimate: StateEstimate
    fidelity: np.ndarray  # (k,)
    fidelity_std: np.ndarray  # (k,)
    pair_fidelity: float  # mean estimated fidelity of the pairs used
    shots: int
    measured: int

    @property
    def predicted(self) -> float:
        return werner_teleportation_fidelity(self.pair_fidelity)

    @property
    def average(self) -> tuple[float, float]:
        return mean_fidelity(self.fidelity, self.fidelity_std)

    def to_results(self) -> dict[str, Any]:
        avg, avg_std = self.average
        out: dict[str, Any] = {
            "inputs": ",".join(self.inputs),
            "shots": self.shots,
            "measured_shots": self.measured,
            "pair_fidelity": _finite(self.pair_fidelity),
            "predicted_fidelity": _finite(self.predicted),
            "average_fidelity": avg,
            "average_fidelity_std": avg_std,
            # None (not NaN) when undefined: results are printed as strict JSON
            "average_z": (avg - self.predicted) / avg_std if avg_std > 0 else None,
        }
        for k, name in enumerate(self.inputs):
            key = name.replace(",", ";")
            out[f"fidelity_{key}"] = float(self.fidelity[k])
            out[f"fidelity_{key}_std"] = float(self.fidelity_std[k])
            for axis, v in zip("xyz", self.estimate.bloch[k], strict=True):
                out[f"bloch_{axis}_{key}"] = float(v)
        return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def input_target(name: str) -> np.ndarray:
    """Bloch vector of an input as the run names it: ``H`` .. ``L`` or ``theta;phi``."""
    if ";" in name:
        theta, phi = (float(v) for v in name.split(";"))
        return bloch_vector((theta, phi))
    return bloch_vector(name)


def analyse(rows: npt.NDArray[Any], inputs: tuple[str, ...]) -> TeleportAnalysis:
    """Tomography per input of the recorded shot rows (``SHOT_DTYPE``)."""
    ok = rows["outcome"] >= 0
    counts = pauli_counts(
        rows["basis"][ok], rows["outcome"][ok], groups=rows["input"][ok], n_groups=len(inputs)
    )
    try:
        est = estimate_state(counts)
    except TomographyError as exc:
        raise TomographyError(f"too few measured shots for tomography: {exc}") from None
    targets = np.stack([input_target(n) for n in inputs])
    f, f_std = est.fidelity(targets)
    used = rows["bell_outcome"] >= 0
    pair_f = float(rows["pair_fidelity"][used].mean()) if used.any() else float("nan")
    return TeleportAnalysis(
        inputs=inputs,
        targets=targets,
        counts=counts,
        estimate=est,
        fidelity=np.atleast_1d(f),
        fidelity_std=np.atleast_1d(f_std),
        pair_fidelity=pair_f,
        shots=int(rows.size),
        measured=int(ok.sum()),
    )
