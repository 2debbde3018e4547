"""Timestamps on the classical channel, compactly and losslessly.

Bob sends Alice his raw timestamps, not histograms: the acquisition searches
+-0.5 s and +-100 ppm with no prior, which needs both full streams (as qcrypto's
chopper/pfind and S-Fifteen's fpfind do); a histogram would have to be built
around an offset nobody knows yet. The stream goes as the differences between
consecutive timestamps (small, positive numbers), zlib-compressed: about 2-3 bytes
per tag instead of 8.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted, SyncAbortReason

I64 = npt.NDArray[np.int64]


def pack_timestamps(t: I64) -> dict[str, Any]:
    """A payload for :func:`unpack_timestamps`: first stamp, count, compressed differences."""
    t = np.asarray(t, dtype=np.int64)
    first = int(t[0]) if t.size else 0
    diffs = np.diff(t, prepend=first).astype("<i8")
    return {"first": first, "n": int(t.size), "diffs": zlib.compress(diffs.tobytes(), 1)}


def unpack_timestamps(payload: dict[str, Any]) -> I64:
    """The timestamps :func:`pack_timestamps` packed; a malformed payload aborts as the peer's."""
    try:
        raw = zlib.decompress(payload["diffs"])
        n = int(payload["n"])
        diffs = np.frombuffer(raw, dtype="<i8")
        if diffs.size != n or (n and np.any(diffs[1:] < 0)):
            raise ValueError(f"{diffs.size} differences for {n} stamps, or not sorted")
        return int(payload["first"]) + np.cumsum(diffs, dtype=np.int64)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ClockSyncAborted(
            SyncAbortReason.PEER_FAILED, f"malformed timestamps from the peer: {exc}"
        ) from None
