"""Single-qubit state tomography from Pauli-basis counts (pure numpy, vectorised).

Counts are arrays of shape ``(..., 3, 2)``: axis -2 the measurement basis in the order of
the Bloch components (``BASES = ("X", "Y", "Z")``), axis -1 the outcome (0 = D/R/H, the
``+1`` eigenstate; 1 = A/L/V). Leading axes are independent states (e.g. the six inputs
of a teleportation run), estimated at once.

Estimator: linear inversion ``r_i = (n0_i - n1_i) / N_i``, then projected onto the Bloch
ball (``r / max(1, |r|)``): for a qubit this is the closest physical state in
Hilbert-Schmidt norm, and equals the maximum-likelihood estimate whenever the linear one
is physical (the likelihood factorises over the three bases, each maximal at its own
frequency). Errors by the delta method on the linear estimate: the three bases are
independent binomials, ``var r_i = (1 - r_i^2) / N_i``, evaluated with the outcome
frequency ``(n0 + 1/2) / (N + 1)`` so a basis whose outcomes all agree (a pure state in
its own eigenbasis) still gets a non-zero error.

Fidelity is Jozsa's (squared), ``F = (1 + r.s + sqrt((1 - |r|^2)(1 - |s|^2))) / 2`` for
Bloch vectors ``r`` and ``s``; ``(1 + r.s) / 2`` for a pure target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Measurement bases in the order of the Bloch vector's components.
BASES: tuple[str, str, str] = ("X", "Y", "Z")

#: The six Pauli eigenstates by their polarization names: Bloch vectors (x, y, z).
PAULI_STATES: dict[str, tuple[float, float, float]] = {
    "H": (0.0, 0.0, 1.0),
    "V": (0.0, 0.0, -1.0),
    "D": (1.0, 0.0, 0.0),
    "A": (-1.0, 0.0, 0.0),
    "R": (0.0, 1.0, 0.0),
    "L": (0.0, -1.0, 0.0),
}

_PAULI = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=np.complex128)


class TomographyError(ValueError):
    """Counts that cannot give a state (wrong shape, negative, a basis never measured)."""


def bloch_vector(state: str | tuple[float, float]) -> np.ndarray:
    """Bloch vector of a named Pauli eigenstate (``"H"`` .. ``"L"``) or of the pure state at
    polar angle ``theta`` (from H) and azimuth ``phi`` (from D towards R), in radians."""
    if isinstance(state, str):
        try:
            return np.array(PAULI_STATES[state.upper()], dtype=float)
        except KeyError:
            raise TomographyError(
                f"state: {state!r} is not one of {', '.join(PAULI_STATES)}"
            ) from None
    theta, phi = (float(v) for v in state)
    if not (math.isfinite(theta) and math.isfinite(phi)):
        raise TomographyError(f"state: Bloch angles must be finite, got {state!r}")
    return np.array(
        [math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)]
    )


def density_matrix(bloch: npt.ArrayLike) -> np.ndarray:
    """``(1 + r.sigma) / 2`` for Bloch vectors of shape ``(..., 3)``: ``(..., 2, 2)``."""
    r = np.asarray(bloch, dtype=float)
    return 0.5 * (np.eye(2) + np.einsum("...i,ijk->...jk", r, _PAULI))


def bloch_of(rho: npt.ArrayLike) -> np.ndarray:
    """Bloch vector ``tr(rho sigma_i)`` of density matrices ``(..., 2, 2)``."""
    m = np.asarray(rho, dtype=np.complex128)
    return np.real(np.einsum("...jk,ikj->...i", m, _PAULI))


def fidelity(bloch: npt.ArrayLike, target: npt.ArrayLike) -> np.ndarray:
    """Jozsa fidelity of the states ``bloch`` and ``target`` (Bloch vectors, broadcast)."""
    r, s = np.asarray(bloch, dtype=float), np.asarray(target, dtype=float)
    rr = np.minimum(np.einsum("...i,...i->...", r, r), 1.0)
    ss = np.minimum(np.einsum("...i,...i->...", s, s), 1.0)
    overlap = np.einsum("...i,...i->...", r, s)
    return np.asarray(0.5 * (1.0 + overlap + np.sqrt((1.0 - rr) * (1.0 - ss))))


@dataclass(frozen=True)
class StateEstimate:
    """Tomography of one or many qubits (leading shape ``S``).

    ``bloch`` is the physical estimate (``S + (3,)``), ``bloch_linear`` the linear
    inversion before projection, ``bloch_std`` its 1-sigma errors, ``shots`` the counts per
    basis (``S + (3,)``)."""

    bloch: np.ndarray
    bloch_linear: np.ndarray
    bloch_std: np.ndarray
    shots: np.ndarray

    @property
    def density_matrix(self) -> np.ndarray:
        return density_matrix(self.bloch)

    @property
    def purity(self) -> np.ndarray:
        """``tr rho^2 = (1 + |r|^2) / 2`` of the physical estimate."""
        return np.asarray(0.5 * (1.0 + np.einsum("...i,...i->...", self.bloch, self.bloch)))

    def fidelity(self, target: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Fidelity with ``target`` (Bloch vectors, broadcast) and its 1-sigma error.

        The error propagates the linear estimate's (independent) component errors through
        the gradient of ``F`` at the physical estimate; for a pure target the gradient is
        ``s / 2`` and the error exact to first order."""
        s = np.broadcast_to(np.asarray(target, dtype=float), self.bloch.shape)
        value = fidelity(self.bloch, s)
        ss = np.einsum("...i,...i->...", s, s)
        rr = np.einsum("...i,...i->...", self.bloch, self.bloch)
        with np.errstate(divide="ignore", invalid="ignore"):
            mixed = np.sqrt(np.maximum(1.0 - ss, 0.0) / np.maximum(1.0 - rr, 0.0))
        mixed = np.where(ss >= 1.0 - 1e-12, 0.0, mixed)
        grad = 0.5 * (s - self.bloch * mixed[..., None])
        std = np.sqrt(np.einsum("...i,...i->...", grad**2, self.bloch_std**2))
        return value, np.asarray(std)


def estimate_state(counts: npt.ArrayLike) -> StateEstimate:
    """Tomography from Pauli counts ``(..., 3, 2)`` (bases X, Y, Z; outcomes +1, -1)."""
    n = np.asarray(counts)
    if n.ndim < 2 or n.shape[-2:] != (3, 2):
        raise TomographyError(f"counts: shape (..., 3, 2) expected, got {n.shape}")
    if not np.issubdtype(n.dtype, np.number) or np.any(n < 0) or not np.all(np.isfinite(n)):
        raise TomographyError("counts: must be finite, non-negative numbers")
    n = n.astype(float)
    shots = n.sum(axis=-1)
    if np.any(shots == 0):
        empty = sorted({BASES[i] for i in np.nonzero(shots == 0)[-1]})
        raise TomographyError(f"counts: no outcome in basis {', '.join(empty)}")
    linear = (n[..., 0] - n[..., 1]) / shots
    norm = np.sqrt(np.einsum("...i,...i->...", linear, linear))
    bloch = linear / np.maximum(norm, 1.0)[..., None]
    p = (n[..., 0] + 0.5) / (shots + 1.0)
    std = np.sqrt(4.0 * p * (1.0 - p) / shots)
    return StateEstimate(bloch=bloch, bloch_linear=linear, bloch_std=std, shots=shots)


def pauli_counts(
    basis: npt.ArrayLike,
    outcome: npt.ArrayLike,
    *,
    groups: npt.ArrayLike | None = None,
    n_groups: int | None = None,
) -> np.ndarray:
    """Counts ``(3, 2)`` (or ``(n_groups, 3, 2)``) from per-shot basis indices (0 = X,
    1 = Y, 2 = Z) and outcomes (0/1); ``groups`` (e.g. the input state's index per shot)
    splits them."""
    b = np.asarray(basis, dtype=np.int64)
    o = np.asarray(outcome, dtype=np.int64)
    if b.shape != o.shape:
        raise TomographyError(f"outcome: shape {o.shape} differs from basis {b.shape}")
    if b.size and (b.min() < 0 or b.max() > 2 or o.min() < 0 or o.max() > 1):
        raise TomographyError("basis must be 0..2 and outcome 0..1")
    if groups is None:
        return np.bincount(b * 2 + o, minlength=6).reshape(3, 2)
    g = np.asarray(groups, dtype=np.int64)
    if g.shape != b.shape:
        raise TomographyError(f"groups: shape {g.shape} differs from basis {b.shape}")
    k = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
    if g.size and (g.min() < 0 or g.max() >= k):
        raise TomographyError(f"groups must be 0..{k - 1}")
    return np.bincount(g * 6 + b * 2 + o, minlength=6 * k).reshape(k, 3, 2)


def mean_fidelity(values: npt.ArrayLike, stds: npt.ArrayLike) -> tuple[float, float]:
    """Unweighted mean of independent fidelities (e.g. over the six inputs) and its error."""
    v, s = np.asarray(values, dtype=float), np.asarray(stds, dtype=float)
    if v.size == 0 or v.shape != s.shape:
        raise TomographyError("mean_fidelity: values and stds must be non-empty, same shape")
    return float(v.mean()), float(np.sqrt(np.sum(s**2)) / v.size)
