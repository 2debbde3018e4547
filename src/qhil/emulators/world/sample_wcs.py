"""Clicks caused by a weak-coherent transmitter, sampled only where they happen.

Per pulse k, the photon number is Poisson(mu_k); each photon independently reaches
detector d with probability u_d (path transmission x analyzer routing for the
pulse's polarization x detector efficiency). By Poisson splitting, detector d then
clicks with probability p_d = 1 - exp(-mu_k u_d), independently of the other
detectors, so double clicks and empty pulses arise by themselves. Per batch:

1. bound P(any click) = 1 - exp(-mu_k sum_d u_d) by its maximum Q over pulse types
   and time steps; draw *candidate* pulses with probability Q (geometric skips: cost
   ~ N Q, never ~ N);
2. for each candidate, look up its symbol, intensity (and fluctuation), Eve's
   action and the fibre state at its time, and draw one uniform v on [0, Q). The
   outcome is the interval v falls in: [0, P(only d_0 clicks)), then P(only d_1), ...
   (one click), then up to P(any) (two or more: the pattern is drawn from the
   independent Bernoullis conditioned on >= 2, sequentially over the detectors),
   beyond P(any) no click.

Candidates are processed in chunks of a few thousand, so every working array stays
in the CPU cache and nothing large is allocated per batch.

Per-pulse randomness that several detectors or batches must agree on (intensity
noise, Eve's choices) is counter-based: a pure function of the pulse index.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from .bank import Arrivals, DetArr
from .clock import NodeClock
from .detector import JITTER_CLIP_SIGMAS
from .link import Link
from .paths import OpticalPath
from .polarization import BB84_STOKES, F64
from .rng import POSITION_CHUNK, derive_key, hash_normal, hash_uniform
from .sources import WeakCoherentTransmitter

I64 = npt.NDArray[np.int64]
# Intensity fluctuations are Gaussian, clipped at this many sigma (so bounds are exact).
_NOISE_CLIP = 6.0
# A candidate's uniform is located first by its top bits (2^_CELL_BITS cells per symbol);
# with 12 bits, about 0.1 % of candidates fall in a cell an interval end crosses.
_CELL_BITS = 12
_STRADDLE = 255
# Outcome codes of a candidate in the sampler: a detector's bank number (one click), or:
_NONE = 65533
_MULTI = 65534
_UNDECIDED = 65535  # its cell is straddled: decide exactly
_GAP_BITS = 64 - _CELL_BITS
_TOP_SHIFT = np.uint64(_GAP_BITS)
_LOW_BITS = np.uint64((1 << _GAP_BITS) - 1)


@dataclass(frozen=True)
class Window:
    """A stretch of true time [start_ps, start_ps + length_ps) on the slow-process grid."""

    start_ps: int
    length_ps: int
    step_ps: int

    @property
    def j_lo(self) -> int:
        return self.start_ps // self.step_ps

    @property
    def j_hi(self) -> int:
        return (self.start_ps + self.length_ps - 1) // self.step_ps

    @property
    def nj(self) -> int:
        return self.j_hi - self.j_lo + 1

    def step_index(self, rel: F64) -> npt.NDArray[np.intp]:
        """Grid step (0..nj-1 within the window) of times ``rel`` ps after the start."""
        offset = self.start_ps - self.j_lo * self.step_ps
        j = np.floor((rel + offset) / self.step_ps).astype(np.intp)
        return np.clip(j, 0, self.nj - 1)


def pulse_range(
    clock: NodeClock, t0_ps: Fraction, period_ps: Fraction, w: Window
) -> tuple[int, int, float, float]:
    """(k_lo, k_hi, rel_lo, dt): pulses k in [k_lo, k_hi) leave in the window, pulse k at
    ``rel_lo + (k - k_lo) * dt`` ps after its start (true time)."""
    na = clock.node_of_true(w.start_ps)
    nb = clock.node_of_true(w.start_ps + w.length_ps)
    k_lo = math.ceil((na - t0_ps) / period_ps)
    k_hi = math.ceil((nb - t0_ps) / period_ps)
    rel_lo = float(clock.true_of_node(t0_ps + k_lo * period_ps) - w.start_ps)
    return k_lo, k_hi, rel_lo, float(period_ps) / clock.rate


def _candidate_chunks(rng: np.random.Generator, n: int, q: float) -> Iterator[tuple[I64, I64, F64]]:
    """Sorted candidate positions in [0, n) (each pulse independently with probability q), in
    chunks, with `_CELL_BITS` independent random bits per candidate and a free float buffer
    as long.

    One 64-bit word per candidate: its low 52 bits give the geometric gap before it by
    inversion, floor(-ln(U) / -ln(1 - q)) + 1 with U = (low | 1) / 2^52 in (0, 1) (odd
    numerators: a grid of 2^-51); its top 12 bits are returned (the cell of the
    candidate's outcome uniform).
    """
    bitgen = rng.bit_generator
    chunk = POSITION_CHUNK
    if n <= 0 or q <= 0:
        return
    if q >= 1:
        for s in range(0, n, chunk):
            size = min(n, s + chunk) - s
            top = (bitgen.random_raw(size) >> _TOP_SHIFT).view(np.int64)
            yield np.arange(s, s + size, dtype=np.int64), top, np.empty(size)
        return
    scale = -1.0 / math.log1p(-q)
    # -ln(U) = GAP_BITS ln 2 - ln(low), in units of 1/scale; + 1: the gap's own + 1.
    offset = _GAP_BITS * math.log(2.0) * scale + 1.0
    cap = scale > 1e15  # -ln(U) <= 36.1
    last = -1
    while True:
        mean = (n - 1 - last) * q
        size = min(chunk, int(mean + 6 * math.sqrt(mean) + 16))
        raw = bitgen.random_raw(size)
        top = (raw >> _TOP_SHIFT).view(np.int64)
        raw &= _LOW_BITS
        pos = raw.view(np.int64)
        pos |= 1  # U = low / 2^52 on odd numerators: in (0, 1), the log stays finite
        x = np.log(pos, dtype=np.float64)
        x *= -scale
        x += offset
        if cap:
            # A gap past the end ends the stream; capping keeps tiny q from overflowing int64.
            np.minimum(x, float(n), out=x)
        pos[:] = x  # floor: the gaps are >= 1
        pos[0] += last
        np.cumsum(pos, out=pos)
        if pos[-1] >= n:
            cut = int(np.searchsorted(pos, n))
            if cut:
                yield pos[:cut], top[:cut], x[:cut]
            return
        last = int(pos[-1])
        yield pos, top, x


def _wrap_sorted(x: I64, period: int) -> None:
    """``x %= period`` in place for sorted non-negative ``x``: subtract the period from
    each suffix past a multiple of it (the cut points found before any change); a
    remainder when there are many (a pattern much shorter than the positions' span)."""
    if x.size == 0 or int(x[-1]) < period:
        return
    wraps = int(x[-1]) // period
    if wraps > 4:
        np.remainder(x, period, out=x)
        return
    cuts = np.searchsorted(x, np.arange(1, wraps + 1) * period, side="left")
    for c in cuts.tolist():
        x[c:] -= period


def _thresholds(lam: F64) -> F64:
    """Ends of the outcome intervals of a pulse on [0, P(any click)).

    ``lam`` (..., D): mean number of photons detector d would detect. Returns (..., D + 1):
    cumulative probabilities that only d_0, only d_0 or only d_1, ... clicks, then P(any);
    the last interval is two or more clicks.
    """
    tot = lam.sum(axis=-1, keepdims=True)
    p_any = -np.expm1(-tot)
    single = -np.expm1(-lam)
    single *= np.exp(lam - tot)  # the others stay dark
    cum = np.cumsum(single, axis=-1)
    np.minimum(cum, p_any, out=cum)  # rounding must not make the multi-click interval negative
    return np.concatenate([cum, p_any], axis=-1)


def _cell_outcomes(
    ends: F64, codes: npt.NDArray[np.uint16] | None = None, straddle: int = _STRADDLE
) -> npt.NDArray[np.uint8] | npt.NDArray[np.uint16]:
    """Outcome of a uniform u on [0, 1) by (symbol, cell of u) at every step of the window.

    ``ends`` (steps, symbols, D + 1): interval ends on [0, 1], ascending along the last
    axis. Cell c is [c, c + 1) / 2^bits; an end at or below the cell (at every step)
    always counts, one at or above its top never does; a cell some end crosses (the fibre
    drifts between steps) is marked ``straddle`` and decided exactly. Returns the
    flattened (symbols x cells) table of interval numbers (0..D + 1, uint8), or of
    ``codes[interval]`` if given.
    """
    n = 1 << _CELL_BITS
    n_sym, n_ends = ends.shape[1], ends.shape[2]
    # End b counts for cells c >= ceil(max * n) and not for c < floor(min * n).
    always = np.clip(np.ceil(ends.max(axis=0) * n), 0, n).astype(np.intp)  # (n_sym, D + 1)
    never = np.clip(np.floor(ends.min(axis=0) * n), 0, n).astype(np.intp)
    # Outcome b on the cells from where end b - 1 always counts to where end b does.
    edges = np.zeros((n_sym, n_ends + 2), np.intp)
    np.maximum.accumulate(always, axis=1, out=edges[:, 1:-1])
    edges[:, -1] = n
    runs = np.diff(edges, axis=1).ravel()
    values = np.arange(n_ends + 1, dtype=np.uint8) if codes is None else codes
    out = np.repeat(np.tile(values, n_sym), runs)
    # Cells [never, always) of an end are crossed by it.
    row = (np.arange(n_sym) * n)[:, None]
    lo = (never + row).ravel()
    width = np.maximum(always - never, 0).ravel()
    if width.any():
        crossed = np.arange(int(width.sum())) + np.repeat(lo - (np.cumsum(width) - width), width)
        out[crossed] = straddle
    return out


def _multi_clicks(rng: np.random.Generator, lam: F64) -> npt.NDArray[np.bool_]:
    """Click patterns (m, D) of pulses known to make two or more clicks: the independent
    Bernoullis p_d = 1 - exp(-lam_d) conditioned on >= 2 successes, drawn detector by
    detector from the conditional probabilities."""
    m, n_det = lam.shape
    p = -np.expm1(-lam)
    # at1[:, d] / at2[:, d]: P(>= 1 / >= 2 clicks among detectors d..D-1); column D is empty.
    at1 = np.zeros((m, n_det + 1))
    at1[:, :n_det] = -np.expm1(-np.cumsum(lam[:, ::-1], axis=1)[:, ::-1])
    at2 = np.zeros((m, n_det + 1))
    for d in range(n_det - 1, -1, -1):
        at2[:, d] = p[:, d] * at1[:, d + 1] + (1.0 - p[:, d]) * at2[:, d + 1]
    u = rng.random((m, n_det))
    need = np.full(m, 2, np.intp)
    clicks = np.zeros((m, n_det), bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(n_det):
            pd = p[:, d]
            cond = np.where(
                need == 2, pd * at1[:, d + 1] / at2[:, d], np.where(need == 1, pd / at1[:, d], pd)
            )
            # 0/0 only where rounding emptied the tail: the remaining clicks are certain.
            cond[~np.isfinite(cond)] = 1.0
            clicks[:, d] = u[:, d] < cond
            need = np.maximum(need - clicks[:, d], 0)
    return clicks


@functools.cache
def _patterns(n_det: int) -> tuple[npt.NDArray[np.bool_], F64, F64]:
    """The click patterns with at least two clicks (P, D), and as 0/1 matrices (D, P) of
    clicks and of silences."""
    codes = np.arange(1 << n_det)
    bits = ((codes[:, None] >> np.arange(n_det)) & 1).astype(bool)
    bits = bits[bits.sum(axis=1) >= 2]
    return (
        bits,
        np.ascontiguousarray(bits.T, dtype=float),
        np.ascontiguousarray(~bits.T, dtype=float),
    )


def _multi_click_table(lam: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Click patterns of pulses known to make two or more clicks, as a table.

    ``lam`` (rows, D): mean detected photons per detector. Returns the cumulative
    distribution (rows, P) of the P patterns with at least two clicks (the independent
    Bernoullis p_d = 1 - exp(-lam_d) conditioned on >= 2 successes) and the patterns (P, D).
    """
    bits, clicks, silent = _patterns(lam.shape[-1])
    # log P(pattern) = sum over detectors of log p_d (clicks) or -lam_d (silences).
    log_p = -np.expm1(-lam)
    np.maximum(log_p, 1e-300, out=log_p)  # p_d = 0: a vanishing, not a missing, probability
    np.log(log_p, out=log_p)
    prob = log_p @ clicks
    prob -= lam @ silent
    np.exp(prob, out=prob)
    cdf = np.cumsum(prob, axis=-1)
    cdf /= np.maximum(cdf[:, -1:], 1e-300)
    return cdf, bits


# Multi-click patterns are tabulated per (step, symbol) up to this many detectors.
_TABLE_MAX_DETECTORS = 8


class WCSSampler:
    """Samples one transmitter's clicks along its path."""

    def __init__(
        self,
        tx: WeakCoherentTransmitter,
        path: OpticalPath,
        clock: NodeClock,
        rng: np.random.Generator,
        key: int,
        det_index: npt.NDArray[np.intp],
    ) -> None:
        self.tx = tx
        self.path = path
        self.clock = clock
        self.rng = rng
        self.key = key
        # Bank index of each of the path's detectors.
        self.det_index = det_index
        self.source = -1  # the world's number for this transmitter (tags its arrivals)
        if det_index.size and int(det_index.max()) >= _NONE:
            raise ValueError(f"too many detectors in one bank ({int(det_index.max()) + 1})")

    @staticmethod
    def _steps(bounds_pos: F64 | None, pos: I64) -> npt.NDArray[np.intp]:
        """Grid step (within the window) of pulse positions."""
        if bounds_pos is None:
            return np.zeros(pos.size, np.intp)
        return np.searchsorted(bounds_pos, pos, side="right") - 1

    def sample(self, w: Window) -> list[Arrivals]:
        """Arrivals at the path's detectors (times in ps from the window start): the pulses
        with one click in time order, then those with several."""
        tx, path, rng = self.tx, self.path, self.rng
        dets = path.detectors
        n_det = len(dets)
        out: list[Arrivals] = []
        mus = tx.current_mus()
        eta = np.array([d.efficiency for d in dets])
        if mus.max() <= 0 or eta.max() <= 0:
            return out
        k_lo, k_hi, rel_lo, dt = pulse_range(self.clock, tx.t0_ps, tx.period_ps, w)
        n = k_hi - k_lo
        if n <= 0:
            return out
        j_lo, j_hi, nj = w.j_lo, w.j_hi, w.nj
        prepared = tx.state_contrast * BB84_STOKES  # (4, 3)
        eve_i = path.eve_index()
        r_total = path.rotations(j_lo, j_hi)  # (nj, 3, 3)
        s_orig = np.einsum("jab,pb->jpa", r_total, prepared)
        # u[j, code, d]: probability that one photon of a pulse of this code reaches d and clicks.
        u_tab = path.transmission() * path.route(s_orig) * eta
        sigma_i = tx.cfg.intensity_noise_rel
        mu_cap = float(mus.max()) * (1.0 + _NOISE_CLIP * sigma_i)
        mu_max = [mu_cap] * 4
        if eve_i is not None:
            link = path.elements[eve_i].element
            assert isinstance(link, Link)
            eve = link.eavesdropper
            t_pre = path.transmission(0, eve_i, terminal=False)
            r_pre = path.rotations(j_lo, j_hi, 0, eve_i)
            s_eve = np.einsum("jab,pb->jpa", path.rotations(j_lo, j_hi, eve_i), BB84_STOKES)
            u_eve = path.transmission(eve_i) * path.route(s_eve) * eta
            u_tab = np.concatenate([u_tab, u_eve], axis=1)
            mu_max += [eve.resend_mu if eve.resend_mu is not None else mu_cap * t_pre] * 4
        n_code = u_tab.shape[1]
        u_tot = u_tab.sum(axis=2)  # (nj, n_code)
        # Bound on P(any click) over every pulse of the window.
        q_any = float(-np.expm1(-(np.asarray(mu_max)[None, :] * u_tot).max()))
        if q_any <= 0:
            return out

        pattern = tx._pattern
        lut = self.det_index
        # Outcome code of each interval: one click at detector d, several, none.
        code_of = np.array([*lut.tolist(), _MULTI, _NONE], np.uint16)
        p_len = pattern.size
        p_mask = p_len - 1 if p_len & (p_len - 1) == 0 else -1
        n_sym = 4 * mus.size
        sym_code = np.arange(n_sym) & 3
        u_flat = u_tab.reshape(-1, n_det)
        # Arrival time of pulse position pos: pos * dt + offset of its grid step.
        arr_off = path.delays_ps(j_lo, j_hi) + rel_lo
        # First position of each grid step (and the end): positions are sorted, so every
        # chunk's steps are runs whose lengths come from one searchsorted.
        bounds_pos = None
        if nj > 1:
            bounds_rel = (j_lo + np.arange(1, nj)) * w.step_ps - w.start_ps
            bounds_pos = np.concatenate([[-1.0], np.ceil((bounds_rel - rel_lo) / dt), [np.inf]])
        lam_tab: F64 | None = None
        if eve_i is None and sigma_i == 0:
            # The per-pulse physics is a table over (step, symbol); the outcome of a
            # candidate mostly a lookup by (symbol, cell of its uniform).
            lam_tab = mus[np.arange(n_sym) >> 2][None, :, None] * u_tab[:, sym_code, :]
            ends = _thresholds(lam_tab) / q_any  # (nj, n_sym, D + 1) on the unit interval
            cells = _cell_outcomes(ends, code_of, _UNDECIDED)
        static_delay = bool(np.all(arr_off == arr_off[0]))
        jitter = tx.cfg.emission_jitter_ps
        clip = jitter > 0 or float(arr_off.min()) < 0
        # Arrivals stay in pulse order unless jitter or a delay step back reorders them.
        ordered = jitter == 0 and bool(np.all(np.diff(arr_off) > -dt))
        # One-click arrivals written in place (no per-chunk arrays to join): room for the
        # expected number of candidates plus 6 sigma, grown in the unlikely case it fills.
        cap = int(n * q_any + 6.0 * math.sqrt(n * q_any) + 16)
        single_t = np.empty(cap)
        # Bank indices as int16 while they fit: less to move in the bank's passes.
        single_d: DetArr = np.empty(cap, np.int16 if int(lut.max(initial=0)) < 1 << 15 else np.intp)
        multi_lam: list[F64] = []
        multi_row: list[npt.NDArray[np.intp]] = []  # (step, symbol) rows of lam_tab
        multi_t: list[F64] = []
        multi_at: list[npt.NDArray[np.intp]] = []
        # Decided straddled candidates with one click: out of line, with their places.
        late_t: list[F64] = []
        late_d: list[npt.NDArray[np.intp]] = []
        late_at: list[npt.NDArray[np.intp]] = []
        n_single = 0

        for pos, top, buf in _candidate_chunks(rng, n, q_any):
            m = pos.size
            if lam_tab is not None and p_mask < 0:
                # Pattern index k mod L without an integer division (~10 ms per 100 ms
                # block at 8 M pulses): the sorted positions cross a multiple of L at most
                # a few times. ``k`` itself is not needed here, only its buffer (below).
                k = kp = np.add(pos, k_lo % p_len)
                _wrap_sorted(kp, p_len)
            else:
                k = pos + k_lo
                if p_mask >= 0:
                    kp = np.bitwise_and(k, p_mask, out=k if lam_tab is not None else None)
                else:
                    kp = np.remainder(k, p_len)
            arrival = np.multiply(pos, dt, out=buf)
            if self.clock.wanders:  # the pulses' true times on a wandering clock
                arrival += self.clock.grid_correction_ps(w.start_ps, rel_lo, arrival + rel_lo)
            # Grid-step run lengths, when the delay drifts or the general path needs steps.
            counts = None
            if bounds_pos is not None and (lam_tab is None or not static_delay):
                counts = np.diff(np.searchsorted(pos, bounds_pos))
            if counts is None or static_delay:
                arrival += arr_off[0]
            else:
                arrival += np.repeat(arr_off, counts)
            if jitter > 0:
                jit = rng.standard_normal(m)
                np.clip(jit, -JITTER_CLIP_SIGMAS, JITTER_CLIP_SIGMAS, out=jit)
                jit *= jitter
                arrival += jit
            if clip:
                np.maximum(arrival, 0.0, out=arrival)

            # One uniform u on [0, 1) per candidate: the outcome is the number of interval
            # ends (in units of Q) at or below it.
            if lam_tab is not None:
                # The candidate's random top bits are the cell of its uniform u.
                sym = pattern.take(kp)
                cell = np.left_shift(sym, _CELL_BITS, out=k, dtype=np.int64)  # k is free
                cell |= top
                outcome = cells.take(cell)
            else:
                sym = pattern.take(kp)
                code = sym_code.take(sym)
                mu_k = mus.take(sym >> 2)
                if sigma_i > 0:
                    z = np.clip(hash_normal(self.key, 5, k), -_NOISE_CLIP, _NOISE_CLIP)
                    mu_k = mu_k * np.maximum(0.0, 1.0 + sigma_i * z)
                jx = (
                    np.zeros(m, np.intp)
                    if counts is None
                    else np.repeat(np.arange(nj, dtype=np.intp), counts)
                )
                if eve_i is not None:
                    lk = derive_key(self.key, "eve@" + link.name)
                    inter = hash_uniform(lk, 1, k) < eve.fraction
                    if inter.any():
                        ki = k[inter]
                        e_basis = (hash_uniform(lk, 2, ki) >= 0.5).astype(np.intp)
                        mu_in = mu_k[inter] * t_pre
                        got = hash_uniform(lk, 3, ki) < -np.expm1(-mu_in)
                        s_in = np.einsum("nab,nb->na", r_pre[jx[inter]], prepared[code[inter]])
                        p0 = 0.5 * (1.0 + s_in[np.arange(ki.size), e_basis])
                        e_bit = (hash_uniform(lk, 4, ki) >= p0).astype(np.intp)
                        code[inter] = 4 + 2 * e_basis + e_bit
                        mu_e = (
                            np.full(ki.size, eve.resend_mu) if eve.resend_mu is not None else mu_in
                        )
                        mu_k[inter] = np.where(got, mu_e, 0.0)
                lam = mu_k[:, None] * u_flat.take(jx * n_code + code, axis=0)
                u = rng.random(m)
                outcome = code_of.take((u[:, None] >= _thresholds(lam) / q_any).sum(axis=1))
            one = np.flatnonzero(outcome < _NONE)
            end = n_single + one.size
            if end > single_t.size:
                single_t = np.concatenate([single_t[:n_single], np.empty(end + cap)])
                single_d = np.concatenate(
                    [single_d[:n_single], np.empty(end + cap, single_d.dtype)]
                )
            # (with ``out``, mode "raise" would buffer; the indices are in range)
            np.take(arrival, one, out=single_t[n_single:end], mode="clip")
            single_d[n_single:end] = outcome.take(one)
            rest = np.flatnonzero(outcome > _NONE)  # several clicks, or undecided
            if rest.size:
                kind = outcome.take(rest)
                multi = rest[kind == _MULTI]
                odd = rest[kind == _UNDECIDED]
                if odd.size:
                    assert lam_tab is not None and ends is not None
                    # Decide exactly: the uniform's cell plus fresh low bits, against the
                    # interval ends at the candidate's own step.
                    c_odd = cell.take(odd)
                    u = (c_odd & ((1 << _CELL_BITS) - 1)) + rng.random(odd.size)
                    u *= 1.0 / (1 << _CELL_BITS)
                    e = ends[self._steps(bounds_pos, pos.take(odd)), c_odd >> _CELL_BITS]
                    decided = code_of.take((u[:, None] >= e).sum(axis=1))
                    now_one = decided < _NONE
                    if now_one.any():
                        late = odd[now_one]
                        late_t.append(arrival.take(late))
                        late_d.append(decided[now_one].astype(np.intp))
                        late_at.append(np.searchsorted(one, late) + n_single)
                    now_multi = odd[decided == _MULTI]
                    if now_multi.size:
                        # Two sorted runs: a stable sort merges them.
                        multi = np.sort(np.concatenate([multi, now_multi]), kind="stable")
                if multi.size:
                    # Where they fit among the one-click pulses (a hint for the merge).
                    multi_at.append(np.searchsorted(one, multi) + n_single)
                    if lam_tab is not None:
                        jm = self._steps(bounds_pos, pos.take(multi))
                        multi_row.append(jm * n_sym + (cell.take(multi) >> _CELL_BITS))
                    else:
                        multi_lam.append(lam[multi])
                    multi_t.append(arrival.take(multi))
            n_single += one.size
        singles = Arrivals(single_t[:n_single], single_d[:n_single], ordered, None, self.source)
        out.append(singles)
        if multi_t:
            # Two or more clicks are rare: their patterns are drawn once per batch.
            if lam_tab is not None and n_det <= _TABLE_MAX_DETECTORS:
                # One uniform per pulse against its (step, symbol) pattern distribution.
                multi_cdf, bits = _multi_click_table(lam_tab.reshape(-1, n_det))
                row = np.concatenate(multi_row)
                u = rng.random(row.size)
                # The pattern's number: how many of its row's cumulative ends lie at or
                # below u, counted a column (pattern) at a time: no (pulses x patterns)
                # array and its row sums.
                ends_of = np.ascontiguousarray(multi_cdf[:, :-1].T)
                pattern_no = np.zeros(row.size, np.intp)
                for col in ends_of:
                    pattern_no += u >= col.take(row)
                clicks = bits.take(pattern_no, axis=0)
            elif lam_tab is not None:
                lam_rows = lam_tab.reshape(-1, n_det).take(np.concatenate(multi_row), axis=0)
                clicks = _multi_clicks(rng, lam_rows)
            else:
                clicks = _multi_clicks(rng, np.concatenate(multi_lam))
            # np.nonzero's order (by pulse, then detector) from the flat indices: cheaper.
            pulse, d = np.divmod(np.flatnonzero(clicks), n_det)
            late_t.append(np.concatenate(multi_t).take(pulse))
            late_d.append(lut.take(d))
            late_at.append(np.concatenate(multi_at).take(pulse))
        if late_t:
            at = (singles.t, np.concatenate(late_at)) if ordered else None
            out.append(
                Arrivals(
                    np.concatenate(late_t), np.concatenate(late_d), hint=at, source=self.source
                )
            )
        return out
