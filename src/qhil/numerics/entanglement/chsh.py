"""CHSH from coincidence counts: correlators and S with their Poisson errors.

A correlator of one setting pair from the 2 x 2 coincidences of the two outcomes at each
node (``+`` = H-like, ``-`` = V-like)::

    E = (N++ + N-- - N+- - N-+) / N,   var E = (1 - E^2) / N

(each count Poisson and independent, propagated). ``S = sum_i s_i E_i`` over the four
setting pairs with signs ``s`` (default ``(+1, -1, +1, +1)`` for (a, b), (a, b'), (a', b),
(a', b') at a = 0, a' = 45, b = 22.5, b' = 67.5 deg on phi+: S = 2 sqrt(2) V);
``sigma_S = sqrt(sum var E_i)`` (independent acquisitions), and ``(S - 2) / sigma_S``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qhil.numerics.entanglement.errors import EntanglementInputError

DEFAULT_SIGNS = (1, -1, 1, 1)


@dataclass(frozen=True)
class Correlator:
    value: float
    stderr: float
    counts: int


@dataclass(frozen=True)
class ChshResult:
    s: float
    s_stderr: float
    correlators: tuple[Correlator, ...]
    signs: tuple[int, ...]

    @property
    def sigmas_above_2(self) -> float:
        """``(S - 2) / sigma_S``: positive when the local bound is exceeded."""
        return (self.s - 2.0) / self.s_stderr if self.s_stderr > 0 else math.nan


def correlator(counts: npt.ArrayLike) -> Correlator:
    """``E`` and its standard error from a 2 x 2 matrix ``[[N++, N+-], [N-+, N--]]``."""
    c = np.asarray(counts, dtype=np.float64)
    if c.shape != (2, 2):
        raise EntanglementInputError(f"counts: expected a 2 x 2 matrix, got shape {c.shape}")
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise EntanglementInputError("counts: must be finite and >= 0")
    total = float(c.sum())
    if total <= 0:
        raise EntanglementInputError("counts: no coincidences in this setting pair")
    e = float(c[0, 0] + c[1, 1] - c[0, 1] - c[1, 0]) / total
    return Correlator(e, math.sqrt(max(1.0 - e * e, 0.0) / total), int(total))


def chsh(counts: npt.ArrayLike, signs: tuple[int, ...] = DEFAULT_SIGNS) -> ChshResult:
    """S from four 2 x 2 coincidence matrices (shape (4, 2, 2)), one per setting pair."""
    c = np.asarray(counts)
    if c.shape != (4, 2, 2):
        raise EntanglementInputError(f"counts: expected shape (4, 2, 2), got {c.shape}")
    if len(signs) != 4 or any(s not in (1, -1) for s in signs):
        raise EntanglementInputError(f"signs: four of +1/-1 (got {signs!r})")
    cors = tuple(correlator(m) for m in c)
    s = float(sum(sg * k.value for sg, k in zip(signs, cors, strict=True)))
    s_std = math.sqrt(sum(k.stderr**2 for k in cors))
    return ChshResult(s, s_std, cors, tuple(signs))
