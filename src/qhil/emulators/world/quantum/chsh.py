"""CHSH value of a photon pair: exact, optimal, and estimated from counts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ._qutip import Qobj
from .analyzers import Basis, linear_analyzer
from .pair_statistics import correlation, pair_matrix, sample_joint_counts

# Analyzer angles (a0, a1, b0, b1) in rad that reach 2 sqrt(2) for |Phi+>.
CHSH_ANGLES: tuple[float, float, float, float] = (0.0, np.pi / 4, np.pi / 8, -np.pi / 8)
# S = E(a0,b0) + E(a0,b1) + E(a1,b0) - E(a1,b1), settings in that order.
CHSH_SIGNS = np.array([1.0, 1.0, 1.0, -1.0])


def chsh_settings(
    angles: tuple[float, float, float, float] = CHSH_ANGLES,
) -> tuple[Basis, Basis]:
    """Alice's and Bob's linear-analyzer bases for the four CHSH settings, shape (4, 2, 2)."""
    a0, a1, b0, b1 = angles
    return linear_analyzer([a0, a0, a1, a1]), linear_analyzer([b0, b1, b0, b1])


def chsh_value(
    state: Qobj | npt.ArrayLike, angles: tuple[float, float, float, float] = CHSH_ANGLES
) -> float:
    """S for linear analyzers at ``angles``; 2 sqrt(2) V for the white-noise |Phi+> pair."""
    basis_a, basis_b = chsh_settings(angles)
    return float(np.dot(CHSH_SIGNS, correlation(state, basis_a, basis_b)))


def max_chsh_value(state: Qobj | npt.ArrayLike) -> float:
    """Largest S over all projective settings (Horodecki criterion): 2 sqrt(u1 + u2),
    u1, u2 the two largest eigenvalues of T^T T with T_ij = <sigma_i sigma_j>."""
    rho = pair_matrix(state)
    paulis = (
        np.array([[0, 1], [1, 0]], dtype=complex),
        np.array([[0, -1j], [1j, 0]], dtype=complex),
        np.array([[1, 0], [0, -1]], dtype=complex),
    )
    t = np.array([[np.trace(rho @ np.kron(si, sj)).real for sj in paulis] for si in paulis])
    u = np.sort(np.linalg.eigvalsh(t.T @ t))[::-1]
    return float(2.0 * np.sqrt(max(u[0] + u[1], 0.0)))


class ChshEstimate(NamedTuple):
    value: float
    std_error: float


def sample_chsh_counts(
    state: Qobj | npt.ArrayLike,
    shots_per_setting: int,
    rng: np.random.Generator,
    angles: tuple[float, float, float, float] = CHSH_ANGLES,
) -> npt.NDArray[np.int64]:
    """Outcome counts (4 settings, 2, 2) for ``shots_per_setting`` detected pairs each."""
    basis_a, basis_b = chsh_settings(angles)
    return sample_joint_counts(state, basis_a, basis_b, shots_per_setting, rng)


def chsh_from_counts(counts: npt.ArrayLike) -> ChshEstimate:
    """S and its standard error from counts (4, 2, 2) in the order of :data:`CHSH_SIGNS`.

    Each E is a mean of N values +-1, so var(E) = (1 - E^2) / N.
    """
    c = np.asarray(counts, dtype=float)
    if c.shape != (4, 2, 2):
        raise ValueError(f"CHSH counts must have shape (4, 2, 2), got {c.shape}")
    n = c.sum(axis=(1, 2))
    if np.any(n == 0):
        raise ValueError(f"every CHSH setting needs counts, got totals {n.astype(int).tolist()}")
    e = (c[:, 0, 0] + c[:, 1, 1] - c[:, 0, 1] - c[:, 1, 0]) / n
    return ChshEstimate(float(np.dot(CHSH_SIGNS, e)), float(np.sqrt(np.sum((1.0 - e**2) / n))))


def chsh_std_error(
    state: Qobj | npt.ArrayLike,
    shots_per_setting: int,
    angles: tuple[float, float, float, float] = CHSH_ANGLES,
) -> float:
    """Standard error of S estimated from ``shots_per_setting`` pairs per setting."""
    basis_a, basis_b = chsh_settings(angles)
    e = correlation(state, basis_a, basis_b)
    return float(np.sqrt(np.sum((1.0 - e**2) / shots_per_setting)))
