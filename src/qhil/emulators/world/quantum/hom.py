"""Hong-Ou-Mandel interference of two single photons at a beam splitter.

Two photons enter the two input ports of a beam splitter of reflectivity R
(transmissivity T = 1 - R). M = |<psi1|psi2>|^2 is the overlap of their
spectral-temporal-polarization modes. The probability of one photon in each
output port is

    P_c = R^2 + T^2 - 2 R T M,

so at a 50:50 splitter P_c = (1 - M)/2 and the HOM visibility
V = 1 - P_c(M) / P_c(0) = 2 R T M / (R^2 + T^2) equals M.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from ._qutip import qt

FloatArray = npt.NDArray[np.float64]


def _unit(value: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(value, dtype=float)
    if np.any((arr < 0.0) | (arr > 1.0)):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return arr


def hom_coincidence_probability(
    overlap: npt.ArrayLike, reflectivity: npt.ArrayLike = 0.5
) -> FloatArray:
    """P_c = R^2 + T^2 - 2 R T M; (1 - V)/2 at a 50:50 splitter, where V = M."""
    m = _unit(overlap, "overlap")
    r = _unit(reflectivity, "reflectivity")
    t = 1.0 - r
    return np.asarray(r**2 + t**2 - 2.0 * r * t * m)


def hom_visibility(overlap: npt.ArrayLike, reflectivity: npt.ArrayLike = 0.5) -> FloatArray:
    """Dip visibility 1 - P_c(M)/P_c(0) = 2 R T M / (R^2 + T^2)."""
    m = _unit(overlap, "overlap")
    r = _unit(reflectivity, "reflectivity")
    t = 1.0 - r
    return np.asarray(2.0 * r * t * m / (r**2 + t**2))


def hom_dip(
    delay: npt.ArrayLike,
    spectral_width: float,
    overlap_at_zero: float = 1.0,
    reflectivity: float = 0.5,
) -> FloatArray:
    """Coincidence probability against relative delay for Gaussian spectra.

    ``spectral_width`` is the rms angular-frequency width sigma_w (rad/s) of each
    photon's spectral intensity; the overlap falls as exp(-sigma_w^2 delay^2).
    ``overlap_at_zero`` holds the other distinguishabilities (polarization, spectra).
    """
    if not spectral_width > 0.0:
        raise ValueError(f"spectral_width must be > 0 rad/s, got {spectral_width!r}")
    tau = np.asarray(delay, dtype=float)
    overlap = _unit(overlap_at_zero, "overlap_at_zero") * np.exp(-((spectral_width * tau) ** 2))
    return hom_coincidence_probability(overlap, reflectivity)


def hom_coincidence_probability_fock(overlap: float, reflectivity: float = 0.5) -> float:
    """The same probability from a Fock-space model in qutip (a reference for tests).

    Four modes: input ports a, b, each with an internal mode e and its orthogonal
    e'. Photon 1 is in a_e, photon 2 in sqrt(M) b_e + sqrt(1 - M) b_e'. The beam
    splitter mixes a and b separately in e and e'.
    """
    m = float(_unit(overlap, "overlap"))
    r = float(_unit(reflectivity, "reflectivity"))
    cutoff = 3  # at most two photons per mode
    dims = [cutoff] * 4  # a_e, a_e', b_e, b_e'
    a_e, a_f, b_e, b_f = (
        qt.tensor(*[qt.destroy(cutoff) if i == k else qt.qeye(cutoff) for i in range(4)])
        for k in range(4)
    )
    vacuum = qt.tensor(*[qt.basis(cutoff, 0)] * 4)
    psi_in = a_e.dag() * (np.sqrt(m) * b_e.dag() + np.sqrt(1.0 - m) * b_f.dag()) * vacuum
    theta = np.arccos(np.sqrt(1.0 - r))  # cos^2 theta = T
    generator = theta * (a_e.dag() * b_e - b_e.dag() * a_e + a_f.dag() * b_f - b_f.dag() * a_f)
    psi_out = generator.expm() * psi_in
    # Projector onto one photon in port a (either internal mode) and one in port b.
    coincidence = 0 * qt.qeye(dims)
    for na_e, na_f, nb_e, nb_f in itertools.product(range(cutoff), repeat=4):
        if na_e + na_f == 1 and nb_e + nb_f == 1:
            coincidence = coincidence + qt.basis(dims, [na_e, na_f, nb_e, nb_f]).proj()
    return float(np.real(complex(psi_out.dag() * coincidence * psi_out)))
