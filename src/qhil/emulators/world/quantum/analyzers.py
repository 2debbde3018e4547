"""Measurement bases for polarization qubits, as plain numpy arrays.

A basis is a complex array of shape (..., 2, 2): row i is the ket of outcome i
(outcome 0 = the analyzer's transmitted port). Leading dimensions broadcast, so
one array can hold a basis per window (e.g. a basis rotated by a drifting fibre).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Basis = npt.NDArray[np.complex128]


def linear_analyzer(theta: npt.ArrayLike) -> Basis:
    """Linear polarizer at angle ``theta`` (rad) from H: outcome 0 = cos t |H> + sin t |V>."""
    t = np.asarray(theta, dtype=float)
    c, s = np.cos(t), np.sin(t)
    rows = np.stack([np.stack([c, s], axis=-1), np.stack([-s, c], axis=-1)], axis=-2)
    return rows.astype(np.complex128)


def bloch_analyzer(polar: npt.ArrayLike, azimuth: npt.ArrayLike) -> Basis:
    """Projective measurement along the Bloch (Poincare) vector (polar, azimuth), in rad.

    ``linear_analyzer(t)`` equals ``bloch_analyzer(2 t, 0)``; circular is polar pi/2,
    azimuth pi/2.
    """
    half = np.asarray(polar, dtype=float) / 2.0
    phase = np.exp(1j * np.asarray(azimuth, dtype=float))
    c, s = np.cos(half), np.sin(half)
    c, s, phase = np.broadcast_arrays(c, s, phase)
    up = np.stack([c + 0j, phase * s], axis=-1)
    down = np.stack([-np.conj(phase) * s, c + 0j], axis=-1)
    return np.stack([up, down], axis=-2).astype(np.complex128)


BASIS_Z: Basis = linear_analyzer(0.0)  # H / V
BASIS_X: Basis = linear_analyzer(np.pi / 4)  # D / A


def rotate_basis(basis: npt.ArrayLike, unitary: npt.ArrayLike) -> Basis:
    """The basis that, measured on rho, gives the statistics of ``basis`` on U rho U^dagger.

    Use it to put a channel's polarization rotation U (shape (..., 2, 2)) into the
    analyzer instead of into the state.
    """
    a = np.asarray(basis, dtype=np.complex128)
    u = np.asarray(unitary, dtype=np.complex128)
    # <a_i| U rho U^+ |a_i> = <b_i| rho |b_i> with b_i = U^+ a_i, i.e. row vectors a @ conj(U).
    return np.asarray(np.einsum("...ij,...jk->...ik", a, np.conj(u)), dtype=np.complex128)
