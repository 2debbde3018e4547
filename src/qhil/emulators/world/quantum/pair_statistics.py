"""Measurement statistics of a photon pair, vectorised for the click sampler.

Everything here takes the pair's 4x4 density matrix (a qutip Qobj or a numpy
array; qubit 0 = Alice) and bases from :mod:`.analyzers`, and returns numpy
arrays. Call it once per acquisition window with arrays of settings, never per
photon.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._qutip import Qobj
from .analyzers import BASIS_X, BASIS_Z
from .density import as_density_matrix
from .states import BellState, bell_dm

FloatArray = npt.NDArray[np.float64]


def pair_matrix(state: Qobj | npt.ArrayLike) -> npt.NDArray[np.complex128]:
    """The pair's density matrix as a 4x4 complex numpy array (checked)."""
    if isinstance(state, Qobj):
        rho = as_density_matrix(state)
        if rho.dims[0] != [2, 2]:
            raise ValueError(f"a pair state must have two qubits, got dims {rho.dims[0]}")
        return np.asarray(rho.full(), dtype=np.complex128)
    matrix = np.asarray(state, dtype=np.complex128)
    if matrix.shape != (4, 4):
        raise ValueError(f"a pair density matrix must be 4x4, got shape {matrix.shape}")
    if abs(np.trace(matrix) - 1.0) > 1e-8:
        raise ValueError(f"a pair density matrix must have unit trace, got {np.trace(matrix)}")
    return matrix


def joint_probabilities(
    state: Qobj | npt.ArrayLike, basis_a: npt.ArrayLike, basis_b: npt.ArrayLike
) -> FloatArray:
    """P(i, j): Alice gets outcome i in ``basis_a`` and Bob outcome j in ``basis_b``.

    Bases have shape (..., 2, 2) and broadcast against each other; the result has
    shape (..., 2, 2) and sums to 1 over the last two axes.
    """
    rho = pair_matrix(state).reshape(2, 2, 2, 2)
    a = np.asarray(basis_a, dtype=np.complex128)
    b = np.asarray(basis_b, dtype=np.complex128)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    # P(i, j) = sum conj(a_ik) a_im rho[k l, m n] conj(b_jl) b_jn, as two matrix
    # products: Alice's outcome i leaves Bob the operator m_i[(l n)]; batched
    # matmul beats a five-operand einsum several times over.
    alice = (a.conj()[..., :, None] * a[..., None, :]).reshape(*a.shape[:-2], 2, 4)
    bob_given_alice = alice @ rho.transpose(0, 2, 1, 3).reshape(4, 4)
    bob = (b.conj()[..., :, None] * b[..., None, :]).reshape(*b.shape[:-2], 2, 4)
    p = np.broadcast_to(bob_given_alice, (*lead, 2, 4)) @ np.swapaxes(
        np.broadcast_to(bob, (*lead, 2, 4)), -1, -2
    )
    return np.clip(p.real, 0.0, 1.0)


def werner_joint_probabilities(
    visibility: npt.ArrayLike, theta_a: npt.ArrayLike, theta_b: npt.ArrayLike
) -> FloatArray:
    """Closed form of :func:`joint_probabilities` for the white-noise |Phi+> pair of
    visibility V and linear analyzers: P(i, j) = (1 + s_i s_j V cos 2(ta - tb)) / 4."""
    v = np.asarray(visibility, dtype=float)
    e = v * np.cos(2.0 * (np.asarray(theta_a, dtype=float) - np.asarray(theta_b, dtype=float)))
    same, diff = (1.0 + e) / 4.0, (1.0 - e) / 4.0
    return np.stack([np.stack([same, diff], axis=-1), np.stack([diff, same], axis=-1)], axis=-2)


def correlation(
    state: Qobj | npt.ArrayLike, basis_a: npt.ArrayLike, basis_b: npt.ArrayLike
) -> FloatArray:
    """E = P(same) - P(different) for the two analyzers."""
    p = joint_probabilities(state, basis_a, basis_b)
    return np.asarray(p[..., 0, 0] + p[..., 1, 1] - p[..., 0, 1] - p[..., 1, 0])


def pair_qber(
    state: Qobj | npt.ArrayLike, basis: npt.ArrayLike, bell: BellState = "phi+"
) -> FloatArray:
    """Error rate when both measure in ``basis`` and expect the correlations of ``bell``.

    ``basis`` must be one in which the Bell state is perfectly (anti)correlated, as
    Z and X are for all four Bell states.
    """
    ideal = correlation(bell_dm(bell), basis, basis)
    if np.any(np.abs(np.abs(ideal) - 1.0) > 1e-9):
        raise ValueError(f"the Bell state {bell} is not perfectly correlated in this basis")
    p = joint_probabilities(state, basis, basis)
    disagree = p[..., 0, 1] + p[..., 1, 0]
    agree = p[..., 0, 0] + p[..., 1, 1]
    return np.asarray(np.where(ideal > 0, disagree, agree))


def bbm92_pair_qber(state: Qobj | npt.ArrayLike, bell: BellState = "phi+") -> tuple[float, float]:
    """Z- and X-basis error rates (e_Z, e_X) of one pair for BBM92 with nominal ``bell``.

    For the white-noise pair of visibility V both are (1 - V)/2.
    """
    return float(pair_qber(state, BASIS_Z, bell)), float(pair_qber(state, BASIS_X, bell))


def sample_joint_counts(
    state: Qobj | npt.ArrayLike,
    basis_a: npt.ArrayLike,
    basis_b: npt.ArrayLike,
    shots: npt.ArrayLike,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Multinomial outcome counts (..., 2, 2) for ``shots`` detected pairs per setting."""
    p = joint_probabilities(state, basis_a, basis_b)
    flat = p.reshape(*p.shape[:-2], 4)
    flat = flat / flat.sum(axis=-1, keepdims=True)
    n = np.broadcast_to(np.asarray(shots, dtype=np.int64), flat.shape[:-1])
    counts = rng.multinomial(n, flat)
    return np.asarray(counts, dtype=np.int64).reshape(p.shape)
