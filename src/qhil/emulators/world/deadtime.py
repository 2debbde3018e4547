"""Non-paralysable dead time on sorted event times, vectorised.

An event is registered if no registered event lies within ``tau`` before it.
Rounds: every event whose predecessor (among still-undecided events) is at least
``tau`` earlier is surely registered (a "leader"); the undecided events within
``tau`` after a leader are surely lost. Each round decides at least the first
undecided event; a sparse stream needs 1-3 rounds. A saturated stream (rate * tau
>> 1) would need many, so after a few rounds the remaining events go to pointer
doubling over "next event at least tau later", which is exact as well: no
registered event lies within tau before any undecided event, so the undecided ones
only interact with each other.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]

_MAX_ROUNDS = 12
_SEGMENT = 1 << 15


def nonparalysable_mask(t: F64, tau: float, last: float = -np.inf) -> BoolArr:
    """Mask of registered events among sorted times ``t``; ``last`` = previous registered time."""
    n = t.size
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    if tau <= 0:
        keep[:] = True
        return keep
    # Events still inside the dead time of the previous batch's last click are lost.
    first = int(np.searchsorted(t, last + tau, side="left"))
    if first >= n:
        return keep
    tt = t[first:]
    # Round 1 on the whole stream with cheap passes: events with a gap >= tau before
    # them lead; the rest (few, unless the detector saturates) are decided in small rounds.
    close = np.flatnonzero(np.diff(tt) < tau) + 1
    keep[first:] = True
    if close.size == 0:
        return keep
    keep[first + close] = False
    run_start = np.empty(close.size, dtype=bool)
    run_start[0] = True
    np.not_equal(np.diff(close), 1, out=run_start[1:])
    heads = close[run_start][np.cumsum(run_start) - 1] - 1
    undecided = tt[close] - tt[heads] >= tau
    idx = close[undecided] + first
    u = t[idx]
    for _ in range(_MAX_ROUNDS):
        if u.size == 0:
            return keep
        lead = np.empty(u.size, dtype=bool)
        lead[0] = True
        np.greater_equal(np.diff(u), tau, out=lead[1:])
        keep[idx[lead]] = True
        # Latest leader at or before each undecided event.
        pos = np.where(lead, np.arange(u.size), 0)
        np.maximum.accumulate(pos, out=pos)
        decided = lead | (u - u[pos] < tau)
        rest = ~decided
        idx, u = idx[rest], u[rest]
    if u.size:
        keep[idx[_orbit(u, tau)]] = True
    return keep


def _orbit(u: F64, tau: float) -> npt.NDArray[np.intp]:
    """Indices registered in sorted ``u`` by the sequential rule, via pointer doubling."""
    out: list[npt.NDArray[np.intp]] = []
    start = 0
    n = u.size
    last = -np.inf
    while start < n:
        seg = u[start : start + _SEGMENT]
        first = int(np.searchsorted(seg, last + tau, side="left"))
        if first >= seg.size:
            start += seg.size
            continue
        seg_idx = _segment_orbit(seg, tau, first)
        out.append(seg_idx + start)
        last = float(seg[seg_idx[-1]])
        start += seg.size
    return np.concatenate(out) if out else np.zeros(0, dtype=np.intp)


def _segment_orbit(seg: F64, tau: float, first: int) -> npt.NDArray[np.intp]:
    m = seg.size
    nxt = np.searchsorted(seg, seg + tau, side="left").astype(np.intp)
    # Sentinel m maps to itself.
    jump = np.append(nxt, m)
    tables = [jump]
    steps = 1
    while steps < m:
        jump = jump[jump]
        tables.append(jump)
        steps *= 2
    members = np.array([first], dtype=np.intp)
    for table in reversed(tables):
        nxt_members = table[members]
        members = np.union1d(members, nxt_members[nxt_members < m])
    return members
