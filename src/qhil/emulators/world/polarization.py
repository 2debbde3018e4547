"""Polarization as rotations of the Stokes vector (the Poincare sphere).

Conventions: Stokes S1 = H/V (|H> = |0>, expectation of sigma_z), S2 = D/A (sigma_x),
S3 = R/L (sigma_y). A lossless polarization element is an SU(2) Jones matrix, i.e.
a rotation of the Stokes vector; we carry it as a unit quaternion (w, x, y, z) =
rotation by 2 acos(w) about (x, y, z) in Stokes space, which composes cheaply and
vectorises (prefix products for random walks).

A photon with Stokes vector s (|s| <= 1, < 1 for a partly mixed state) passing a
polarizer along unit Stokes axis a is transmitted with probability (1 + s.a) / 2.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
C128 = npt.NDArray[np.complex128]

STOKES_H = np.array([1.0, 0.0, 0.0])
STOKES_D = np.array([0.0, 1.0, 0.0])
STOKES_R = np.array([0.0, 0.0, 1.0])

# BB84 state index p = basis * 2 + bit: H, V, D, A.
BB84_STOKES: F64 = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])

_SIGMA_STOKES = np.array(
    [
        [[1, 0], [0, -1]],  # S1 <-> sigma_z
        [[0, 1], [1, 0]],  # S2 <-> sigma_x
        [[0, -1j], [1j, 0]],  # S3 <-> sigma_y
    ],
    dtype=np.complex128,
)

QUAT_IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def quat_mul(a: F64, b: F64) -> F64:
    """Hamilton product a * b (apply b first, then a), vectorised over leading axes."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = aw * bw - ax * bx - ay * by - az * bz
    out[..., 1] = aw * bx + ax * bw + ay * bz - az * by
    out[..., 2] = aw * by - ax * bz + ay * bw + az * bx
    out[..., 3] = aw * bz + ax * by - ay * bx + az * bw
    return out


def quat_from_rotvec(v: npt.ArrayLike) -> F64:
    """Quaternion of the rotation by |v| about v/|v| (Stokes space)."""
    v = np.asarray(v, dtype=float)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(x/2)/x -> 1/2 for small x (series keeps tiny steps exact).
    scale = np.where(angle > 1e-8, np.sin(half) / np.where(angle > 0, angle, 1.0), 0.5)
    return np.concatenate([np.cos(half), v * scale], axis=-1)


def quat_about(axis: npt.ArrayLike, angle: npt.ArrayLike) -> F64:
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    return quat_from_rotvec(axis * np.asarray(angle, dtype=float)[..., None])


def quat_to_matrix(q: F64) -> F64:
    """3x3 Stokes rotation matrix of quaternion(s) q."""
    q = np.asarray(q, dtype=float)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty((*q.shape[:-1], 3, 3))
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - w * z)
    out[..., 0, 2] = 2 * (x * z + w * y)
    out[..., 1, 0] = 2 * (x * y + w * z)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - w * x)
    out[..., 2, 0] = 2 * (x * z - w * y)
    out[..., 2, 1] = 2 * (y * z + w * x)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def quat_to_jones(q: F64) -> C128:
    """SU(2) Jones matrix U = w 1 - i (x sigma_S1 + y sigma_S2 + z sigma_S3)."""
    qa = np.asarray(q, dtype=float)
    w = qa[..., 0, None, None]
    vec = np.einsum("...k,kij->...ij", qa[..., 1:], _SIGMA_STOKES)
    return np.asarray(w * np.eye(2) - 1j * vec, dtype=np.complex128)


def jones_to_quat(u: npt.ArrayLike) -> F64:
    """Quaternion of a 2x2 unitary (any global phase is removed)."""
    ua = np.asarray(u, dtype=np.complex128)
    det = np.linalg.det(ua)
    ua = ua / np.sqrt(det)[..., None, None]
    w = np.real(ua[..., 0, 0] + ua[..., 1, 1]) / 2
    x = -np.imag(ua[..., 0, 0] - ua[..., 1, 1]) / 2
    y = -np.imag(ua[..., 0, 1] + ua[..., 1, 0]) / 2
    z = np.real(ua[..., 1, 0] - ua[..., 0, 1]) / 2
    q = np.stack([w, x, y, z], axis=-1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def stokes_of_jones(psi: npt.ArrayLike) -> F64:
    """Stokes vector of a normalised Jones vector (H, V amplitudes)."""
    psi = np.asarray(psi, dtype=np.complex128)
    return np.real(np.einsum("...i,kij,...j->...k", psi.conj(), _SIGMA_STOKES, psi))


def prefix_rotations(increments: F64, start: F64) -> F64:
    """q_j = d_j * ... * d_1 * start for j = 1..n, vectorised (Hillis-Steele scan)."""
    acc = np.array(increments, dtype=float, copy=True)
    n = acc.shape[0]
    shift = 1
    while shift < n:
        acc[shift:] = quat_mul(acc[shift:], acc[:-shift].copy())
        shift *= 2
    out = quat_mul(acc, np.broadcast_to(start, acc.shape))
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def random_quaternion(rng: np.random.Generator) -> F64:
    """A rotation drawn uniformly (Haar) from SO(3)."""
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def waveplate_quat(angle_rad: npt.ArrayLike, retardance_rad: npt.ArrayLike) -> F64:
    """A waveplate with fast axis at ``angle_rad`` from H: rotation about (cos 2t, sin 2t, 0)."""
    t = np.asarray(angle_rad, dtype=float)
    axis = np.stack([np.cos(2 * t), np.sin(2 * t), np.zeros_like(t)], axis=-1)
    return quat_about(axis, retardance_rad)


def linear_axis(angle_rad: float) -> F64:
    """Stokes axis of a linear polarizer at ``angle_rad`` from H."""
    return np.array([np.cos(2 * angle_rad), np.sin(2 * angle_rad), 0.0])


def rotvec_of_quat(q: F64) -> F64:
    """Rotation vector (axis * angle, angle in [0, pi]) of quaternion(s)."""
    q = np.asarray(q, dtype=float)
    q = np.where(q[..., :1] < 0, -q, q)
    vec = q[..., 1:]
    s = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., :1])
    return np.where(s > 1e-15, vec / np.where(s > 0, s, 1.0) * angle, 2 * vec)
