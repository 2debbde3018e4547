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

`JointDeadTime` applies the rule to several detectors in one time-ordered stream and
takes late additions (afterpulses): adding events can only change the registration
inside the clusters (runs of same-detector events less than ``tau`` apart) that they
join, so only those are recomputed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]
IntArr = npt.NDArray[np.intp]

_MAX_ROUNDS = 12
_SEGMENT = 1 << 15
# Up to this many detectors, each one's events are selected by a pass of their own.
_FEW_DETECTORS = 8


def _close(t: F64, tau: float) -> IntArr:
    """Indices i >= 1 of sorted ``t`` with t[i] - t[i-1] < tau."""
    return np.flatnonzero(np.diff(t) < tau) + 1


def nonparalysable_mask(t: F64, tau: float, last: float = -np.inf) -> BoolArr:
    """Mask of registered events among sorted times ``t``; ``last`` = previous registered time."""
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
    close = _close(tt, tau)
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


def _segmented_mask(seg: F64, det: IntArr, tau_of: F64) -> BoolArr:
    """`nonparalysable_mask` of sorted ``seg`` whose detectors lie in disjoint segments
    (time + detector x span): one call per distinct dead time."""
    taus = tau_of.take(det)
    first = float(taus[0]) if taus.size else 0.0
    if taus.size == 0 or bool(np.all(taus == first)):
        return nonparalysable_mask(seg, first)
    out = np.empty(seg.size, dtype=bool)
    for tau in np.unique(taus):
        m = taus == tau
        out[m] = nonparalysable_mask(seg[m], float(tau))
    return out


class JointDeadTime:
    """Non-paralysable dead time of several detectors whose events form ONE time-ordered
    stream, open to a few late additions (afterpulses).

    ``t``: sorted times (within [0, span - 2 max(tau) - 1)); ``det``: each event's detector
    (0..n-1; -1 marks a void event, which neither registers nor blocks); ``tau_of`` and
    ``last_of``: each detector's dead time and previous registered time. Events inside the
    dead time of ``last_of`` are made void (``det`` is modified in place).

    An event registers unless a registered event of its detector lies less than tau before
    it. Events with no same-detector event within tau before them are registered at once;
    the rest (a few percent, unless detectors saturate) are found by looking back lag by lag
    at a shrinking set of candidates, then resolved cluster by cluster, each detector's
    clusters in their own segment (time + detector x span) of one sorted array.
    """

    def __init__(
        self, t: F64, det: IntArr, tau_of: F64, last_of: F64, span: float, voids: bool = True
    ) -> None:
        """``voids``: whether ``det`` may already hold -1 (False saves a few passes)."""
        self.t, self.det, self.span = t, det, span
        n_det = tau_of.size
        # Index -1 (void) reads the extra last entry: no dead time, no history.
        self.tau_of = np.append(tau_of, 0.0)
        self.tau_max = float(tau_of.max()) if n_det else 0.0
        ends = np.append(last_of + tau_of, -np.inf)
        self._ends = ends
        n = t.size
        horizon = float(ends.max())
        if n and horizon > t[0]:
            p = int(np.searchsorted(t, horizon, side="left"))
            head = det[:p]
            lost = t[:p] < ends.take(head)
            if lost.any():
                head[lost] = -1
                voids = True
        self._voids = voids
        self.keep = det >= 0 if voids else np.ones(n, dtype=bool)
        self.extra_t = np.zeros(0)
        self.extra_d = np.zeros(0, np.intp)
        self.extra_keep = np.zeros(0, bool)
        self._lo = self._hi = np.zeros(0, np.intp)
        self._added_seg = np.zeros(0)  # live additions, time + detector x span, sorted
        self._touched = np.zeros(0, bool)  # base events resolved with additions (a mask)
        # Cluster members (events with a same-detector event within tau, either way),
        # ordered by (detector, time), and where each cluster starts and ends.
        self._members = np.zeros(0, np.intp)
        self._by_index = np.zeros(0, np.intp)
        self._rank = np.zeros(0, np.intp)
        self._first = self._last = np.zeros(0, np.intp)
        self._cluster = np.zeros(0, np.intp)
        self._sorted_index = np.zeros(0, np.intp)
        if n < 2 or self.tau_max <= 0:
            return
        members, d_m, seg = self._cluster_members()
        if members.size == 0:
            return
        reg = _segmented_mask(seg, d_m, self.tau_of)
        self.keep[members[~reg]] = False
        # Cluster boundaries: a new detector, or a gap of at least tau.
        start = np.ones(members.size, dtype=bool)
        start[1:] = (d_m[1:] != d_m[:-1]) | (np.diff(seg) >= self.tau_of.take(d_m[1:]))
        first = np.flatnonzero(start)
        self._first = first
        self._last = np.append(first[1:], members.size) - 1
        self._members = members
        self._cluster = np.cumsum(start) - 1
        # Members by event index (one sorted run per detector: a cheap merge), and where each sits in
        # `members`.
        self._by_index = np.argsort(members, kind="stable")
        self._sorted_index = members.take(self._by_index)

    def _cluster_members(self) -> tuple[IntArr, IntArr, F64]:
        """Cluster members (events with an event of their detector less than its tau before
        or after them), ordered by (detector, time), their detectors, and their times +
        detector x span.

        Each detector's events in time order (a selection per detector, or for many detectors
        one stable sort on the detector: 16-bit keys sort by radix, in linear time), then one
        pass over their gaps: no look-back over the other detectors' events in between.
        """
        t, det, span = self.t, self.det, self.span
        n_det = self.tau_of.size - 1
        if n_det <= _FEW_DETECTORS:
            runs = [np.flatnonzero(det == k) for k in range(n_det)]
        else:
            order = np.argsort(det.astype(np.int16), kind="stable")
            ends = np.cumsum(np.bincount(det + 1, minlength=n_det + 1))  # voids (-1) first
            runs = [order[ends[k] : ends[k + 1]] for k in range(n_det)]
        members: list[IntArr] = []
        segs: list[F64] = []
        for k, idx in enumerate(runs):
            tau = float(self.tau_of[k])
            tk = t.take(idx)
            pairs = np.flatnonzero(np.diff(tk) < tau)
            if pairs.size == 0:
                continue
            member = np.zeros(idx.size, dtype=bool)
            member[pairs] = True
            member[pairs + 1] = True
            members.append(idx[member])
            segs.append(tk[member] + k * span)
        if not members:
            return np.zeros(0, np.intp), np.zeros(0, det.dtype), np.zeros(0)
        sizes = [m.size for m in members]
        d_m = np.repeat(np.array([det.take(m[0]) for m in members], det.dtype), sizes)
        return np.concatenate(members), d_m, np.concatenate(segs)

    def _clusters_of(self, idx: IntArr) -> IntArr:
        """Event indices of the whole clusters holding events ``idx`` (an event in no
        cluster stands alone)."""
        if self._members.size == 0 or idx.size == 0:
            return idx
        pos = np.minimum(np.searchsorted(self._sorted_index, idx), self._sorted_index.size - 1)
        inside = self._sorted_index.take(pos) == idx
        cl = np.unique(self._cluster.take(self._by_index.take(pos[inside])))
        lo, hi = self._first.take(cl), self._last.take(cl) + 1
        lengths = hi - lo
        ranks = np.arange(int(lengths.sum())) + np.repeat(
            lo - (np.cumsum(lengths) - lengths), lengths
        )
        return np.union1d(idx[~inside], self._members.take(ranks))

    def add(self, new_t: F64, new_d: IntArr, after: IntArr | None = None) -> BoolArr:
        """Add events (any order; detectors >= 0); return which of them register.

        ``after``: for each new event, an index of ``t`` at or before which no event is
        later than it minus its dead time (an afterpulse's parent): its neighbours are then
        found by stepping forward from there instead of a binary search.

        A new event with no event of its detector within tau (either way) registers and
        changes nothing. The others are resolved with the clusters they join; when they
        touch what an earlier addition touched, every addition so far is re-resolved with
        all the clusters near any of them (earlier events first among ties).
        """
        if new_t.size == 0:
            return np.zeros(0, bool)
        t = self.t
        tau_new = self.tau_of.take(new_d)
        # Base events within tau of each new event: indices [lo, hi) of t.
        if after is None:
            lo = np.searchsorted(t, new_t - tau_new, side="right")
        else:
            lo = _step_to(t, after, new_t - tau_new, right=True)
        hi = _step_to(t, lo, new_t + tau_new, right=False)
        n_old = self.extra_t.size
        all_t = np.concatenate([self.extra_t, new_t])
        all_d = np.concatenate([self.extra_d, new_d])
        self._lo = np.concatenate([self._lo, lo])
        self._hi = np.concatenate([self._hi, hi])
        self.extra_t, self.extra_d = all_t, all_d
        keep_new = self._add_isolated(new_t, new_d, tau_new, lo, hi)
        if keep_new is None:
            keep_new = self._resolve_all()[n_old:]
        else:
            self.extra_keep = np.concatenate([self.extra_keep, keep_new])
        return keep_new

    def _near_base(self, lo: IntArr, hi: IntArr, d: IntArr) -> tuple[IntArr, IntArr]:
        """(owner, index): base events of the same detector in [lo, hi) of each event."""
        lengths = np.maximum(hi - lo, 0)
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, np.intp), np.zeros(0, np.intp)
        idx = np.arange(total) + np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
        owner = np.repeat(np.arange(lo.size), lengths)
        match = np.flatnonzero(self.det.take(idx) == d.take(owner))
        return owner.take(match), idx.take(match)

    def _add_isolated(
        self, new_t: F64, new_d: IntArr, tau_new: F64, lo: IntArr, hi: IntArr
    ) -> BoolArr | None:
        """Registration of new events resolved with only what they touch, or None when
        they touch an earlier addition or what one touched (then all is re-resolved)."""
        span = self.span
        alive = new_t >= self._ends.take(new_d)
        seg_new = new_t + new_d * span
        # Earlier additions of the same detector within tau: re-resolve everything.
        if self._added_seg.size:
            p = np.searchsorted(self._added_seg, seg_new)
            left = self._added_seg.take(np.maximum(p - 1, 0))
            right = self._added_seg.take(np.minimum(p, self._added_seg.size - 1))
            if np.any(
                alive & ((np.abs(seg_new - left) < tau_new) | (np.abs(right - seg_new) < tau_new))
            ):
                return None
        owner, near = self._near_base(lo, hi, new_d)
        touches = np.zeros(new_t.size, dtype=bool)
        touches[owner] = True
        # New events of the same detector within tau of each other (by radix on the
        # detector: the new events come sorted by time).
        live = np.flatnonzero(alive)
        by_det = np.argsort(new_d.take(live).astype(np.int16), kind="stable")
        order = live.take(by_det)
        if np.any(np.diff(seg_new.take(order)) < 0):  # not sorted by time after all
            order = live.take(np.argsort(seg_new.take(live), kind="stable"))
        close = np.diff(seg_new.take(order)) < tau_new.take(order[1:])
        touches[order[1:][close]] = True
        touches[order[:-1][close]] = True
        touches &= alive
        keep = alive.copy()
        involved = np.flatnonzero(touches)
        if involved.size:
            near = np.unique(near[touches.take(owner)])
            base = self._clusters_of(near)
            if self._touched.size and self._touched.take(base).any():
                return None
            x_t, x_d = new_t.take(involved), new_d.take(involved)
            reg = self._solve(base, x_t, x_d)
            keep[involved] = reg[base.size :]
            self._mark_touched(base)
        added = seg_new.take(order)  # sorted
        self._added_seg = np.sort(np.concatenate([self._added_seg, added]), kind="stable")
        return keep

    def _mark_touched(self, base: IntArr) -> None:
        """Remember base events resolved together with additions."""
        if base.size:
            if self._touched.size == 0:
                self._touched = np.zeros(self.t.size, bool)
            self._touched[base] = True

    def _solve(self, base: IntArr, x_t: F64, x_d: IntArr) -> BoolArr:
        """Resolve base events ``base`` (whole clusters) with added events on their own;
        updates ``keep`` of the base events, returns the registration of base then added."""
        t, det, span = self.t, self.det, self.span
        seg = np.concatenate([t.take(base) + det.take(base) * span, x_t + x_d * span])
        d_all = np.concatenate([det.take(base), x_d])
        order = np.argsort(seg, kind="stable")
        reg = np.empty(seg.size, dtype=bool)
        reg[order] = _segmented_mask(seg.take(order), d_all.take(order), self.tau_of)
        self.keep[base] = reg[: base.size]
        return reg

    def _resolve_all(self) -> BoolArr:
        """Re-resolve every addition so far with all the clusters near any of them."""
        all_t, all_d = self.extra_t, self.extra_d
        # Additions inside the dead time left by the previous batch are void.
        alive = np.flatnonzero(all_t >= self._ends.take(all_d))
        x_t, x_d = all_t.take(alive), all_d.take(alive)
        _, near = self._near_base(self._lo.take(alive), self._hi.take(alive), x_d)
        base = self._clusters_of(np.unique(near))
        reg = self._solve(base, x_t, x_d)
        self.extra_keep = np.zeros(all_t.size, dtype=bool)
        self.extra_keep[alive] = reg[base.size :]
        self._touched = np.zeros(0, bool)
        self._mark_touched(base)
        self._added_seg = np.sort(x_t + x_d * self.span)
        return self.extra_keep


def _step_to(t: F64, start: IntArr, target: F64, right: bool) -> IntArr:
    """First index i >= ``start`` of sorted ``t`` with t[i] > target (``right``) or
    t[i] >= target, every index before ``start`` failing it: a forward scan, for targets a
    few events after their start."""
    pos = start.copy()
    n = t.size
    act = np.flatnonzero(pos < n)
    while act.size:
        tv = t.take(pos.take(act))
        more = tv <= target.take(act) if right else tv < target.take(act)
        act = act[more]
        pos[act] += 1
        act = act[pos.take(act) < n]
    return pos
