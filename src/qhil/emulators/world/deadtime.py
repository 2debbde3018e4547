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

Late additions (afterpulses) go through `DeadTimeFilter`: adding events can only
change the registration inside the clusters (runs of events less than ``tau``
apart) that they join, so only those are recomputed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]
IntArr = npt.NDArray[np.intp]

_MAX_ROUNDS = 12
_SEGMENT = 1 << 15


def _close(t: F64, tau: float) -> IntArr:
    """Indices i >= 1 of sorted ``t`` with t[i] - t[i-1] < tau."""
    return np.flatnonzero(np.diff(t) < tau) + 1


def nonparalysable_mask(
    t: F64, tau: float, last: float = -np.inf, close_all: IntArr | None = None
) -> BoolArr:
    """Mask of registered events among sorted times ``t``; ``last`` = previous registered time.

    ``close_all``: `_close` of ``t``, if already known.
    """
    n = t.size
    if n == 0 or tau <= 0:
        return np.ones(n, dtype=bool)
    # Events still inside the dead time of the previous batch's last click are lost.
    first = int(np.searchsorted(t, last + tau, side="left"))
    if first >= n:
        return np.zeros(n, dtype=bool)
    tt = t[first:]
    # Round 1 on the whole stream with cheap passes: events with a gap >= tau before
    # them lead; the rest (few, unless the detector saturates) are decided in small rounds.
    if close_all is None:
        close = _close(tt, tau)
    else:
        close = close_all[close_all > first] - first if first else close_all
    keep = np.ones(n, dtype=bool)
    keep[:first] = False
    if close.size == 0:
        return keep
    keep[first + close] = False
    run_start = np.empty(close.size, dtype=bool)
    run_start[0] = True
    np.not_equal(np.diff(close), 1, out=run_start[1:])
    if run_start.all():
        # Isolated close pairs (the usual case): each follows a registered run head.
        return keep
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


class DeadTimeFilter:
    """Registration of one batch's sorted events ``t`` under a non-paralysable dead time
    ``tau`` (``last``: the previous registered time), open to a few late additions."""

    def __init__(self, t: F64, tau: float, last: float = -np.inf) -> None:
        self.t, self.tau, self.last = t, tau, last
        self._close = _close(t, tau) if tau > 0 and t.size else np.zeros(0, np.intp)
        self.keep = nonparalysable_mask(t, tau, last, self._close)
        self._clusters: tuple[IntArr, IntArr] | None = None
        self.extra = np.zeros(0)  # added events, in the order they were added
        self.extra_keep = np.zeros(0, bool)
        self._extra_at = np.zeros(0, np.intp)  # their insertion points in t

    def _cluster_of(self, j: IntArr) -> tuple[IntArr, IntArr]:
        """First and last index of the cluster of ``t`` (alone) holding each index ``j``."""
        if self._clusters is None:
            c = self._close
            if c.size:
                brk = np.flatnonzero(np.diff(c) != 1)
                firsts = np.concatenate([c[:1], c[brk + 1]]) - 1
                lasts = np.concatenate([c[brk], c[-1:]])
            else:
                firsts = lasts = np.zeros(0, np.intp)
            self._clusters = (firsts, lasts)
        firsts, lasts = self._clusters
        k = np.searchsorted(firsts, j, side="right") - 1
        kk = np.maximum(k, 0)
        inside = (k >= 0) & (j <= lasts[kk]) if firsts.size else np.zeros(j.size, bool)
        lo = np.where(inside, firsts[kk] if firsts.size else j, j)
        hi = np.where(inside, lasts[kk] if lasts.size else j, j)
        return lo, hi

    def add(self, new: F64) -> BoolArr:
        """Add events (sorted); return which of them register.

        Events of ``t`` whose cluster has no added event within ``tau`` keep their
        registration: nothing outside a cluster is within ``tau`` of it. The clusters
        within ``tau`` of any added event, with all added events, form a stream of whole
        clusters of the merged stream, recomputed on its own.
        """
        if new.size == 0:
            return np.zeros(0, bool)
        t, tau = self.t, self.tau
        x = np.concatenate([self.extra, new])  # earlier additions first (ties: stable order)
        if tau <= 0:
            self.extra, self.extra_keep = x, np.ones(x.size, bool)
            return np.ones(new.size, bool)
        # Base events next to an added one (its neighbours in t), if closer than tau.
        n = t.size
        i = np.concatenate([self._extra_at, np.searchsorted(t, new, side="right")])
        self._extra_at = i
        left = np.maximum(i - 1, 0)
        right = np.minimum(i, n - 1)
        near = np.concatenate(
            [left[(i > 0) & (x - t.take(left) < tau)], right[(i < n) & (t.take(right) - x < tau)]]
        )
        lo, hi = self._cluster_of(np.unique(near))
        first = np.ones(lo.size, bool)
        first[1:] = lo[1:] != lo[:-1]
        lo, hi = lo[first], hi[first]
        lengths = hi - lo + 1
        base = np.arange(int(lengths.sum())) + np.repeat(
            lo - (np.cumsum(lengths) - lengths), lengths
        )
        local = np.concatenate([t.take(base), x])
        o = np.argsort(local, kind="stable")  # ties: base events first, as if inserted after
        reg = np.empty(local.size, bool)
        reg[o] = nonparalysable_mask(local.take(o), tau, self.last)
        self.keep[base] = reg[: base.size]
        self.extra, self.extra_keep = x, reg[base.size :]
        return self.extra_keep[x.size - new.size :]

    def registered(self) -> F64:
        """Registered times: those of ``t`` (sorted), then the registered additions."""
        reg = self.t[self.keep]
        if not self.extra_keep.any():
            return reg
        return np.concatenate([reg, self.extra[self.extra_keep]])


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
