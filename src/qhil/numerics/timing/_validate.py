"""Argument checks shared by the timing functions (clear errors, no silent casts)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing.errors import TimingInputError

Timestamps = npt.NDArray[np.int64]


def as_timestamps(values: npt.ArrayLike, name: str, *, check_sorted: bool = True) -> Timestamps:
    """Return ``values`` as a 1-D int64 array, refusing floats and unsorted input.

    Floats are refused rather than rounded: a picosecond timestamp that arrives as
    a float has usually lost precision already (float64 holds ps exactly only up
    to ~2.5 hours).
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise TimingInputError(f"{name}: expected a 1-D array of timestamps, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TimingInputError(
            f"{name}: expected integer picosecond timestamps, got dtype {arr.dtype}"
        )
    arr = arr.astype(np.int64, copy=False)
    # Sortedness is O(n) to check and every algorithm here relies on it.
    if check_sorted and arr.size > 1 and bool(np.any(arr[1:] < arr[:-1])):
        first = int(np.flatnonzero(arr[1:] < arr[:-1])[0])
        raise TimingInputError(
            f"{name}: timestamps must be sorted ascending (element {first + 1} = "
            f"{int(arr[first + 1])} follows {int(arr[first])})"
        )
    return arr


def positive_int(value: int, name: str) -> int:
    """Check ``value`` is an integer > 0 and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise TimingInputError(f"{name}: must be a positive integer (got {value!r})")
    return int(value)


def positive_float(value: float, name: str) -> float:
    """Check ``value`` is a finite number > 0 and return it as ``float``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TimingInputError(f"{name}: must be a positive number (got {value!r})") from None
    if not np.isfinite(f) or f <= 0:
        raise TimingInputError(f"{name}: must be a positive finite number (got {value!r})")
    return f


def whole_ps(value: float, name: str) -> int:
    """Round a picosecond quantity to the nearest integer, refusing NaN/inf."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TimingInputError(f"{name}: must be a number of picoseconds (got {value!r})") from None
    if not np.isfinite(f):
        raise TimingInputError(f"{name}: must be finite (got {value!r})")
    if isinstance(value, int | np.integer):
        return int(value)
    return round(f)
