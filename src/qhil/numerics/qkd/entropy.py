"""Binary Shannon entropy, the currency of every key-length formula."""

from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import NDArray


@overload
def binary_entropy(p: float) -> float: ...
@overload
def binary_entropy(p: NDArray[np.float64]) -> NDArray[np.float64]: ...


def binary_entropy(p: float | NDArray[np.float64]) -> float | NDArray[np.float64]:
    """h(p) = -p log2 p - (1-p) log2(1-p), with h(0) = h(1) = 0.

    Values outside [0, 1] are a caller bug and raise ``ValueError``.
    """
    arr = np.asarray(p, dtype=np.float64)
    if np.any((arr < 0.0) | (arr > 1.0)) or np.any(np.isnan(arr)):
        raise ValueError(f"binary_entropy: probability must lie in [0, 1] (got {p!r})")
    q = np.clip(arr, 1e-300, 1.0)
    r = np.clip(1.0 - arr, 1e-300, 1.0)
    out = -(arr * np.log2(q)) - (1.0 - arr) * np.log2(r)
    if np.ndim(out) == 0:
        return float(out)
    return out
