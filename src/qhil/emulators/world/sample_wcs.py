"""Clicks caused by a weak-coherent transmitter, sampled only where they happen.

Per pulse k, the photon number is Poisson(mu_k); each photon independently reaches
detector d with probability u_d (path transmission x analyzer routing for the
pulse's polarization x detector efficiency). By Poisson splitting, detector d then
clicks with probability 1 - exp(-mu_k u_d), independently of the other detectors,
so double clicks and empty pulses arise by themselves. Per batch:

1. bound each detector's click probability by its maximum over pulse types and
   time steps; draw *candidate* pulses with the probability Q that at least one
   bound fires (geometric skips: cost ~ N Q, never ~ N);
2. for each candidate, look up its symbol, intensity (and fluctuation), Eve's
   action and the fibre state at its time, and accept it with P(any click) / Q;
3. for accepted pulses draw the click pattern from the independent Bernoullis
   conditioned on "at least one" (sequentially over the few detectors).

Per-pulse randomness that several detectors or batches must agree on (intensity
noise, Eve's choices) is counter-based: a pure function of the pulse index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from .clock import NodeClock
from .detector import JITTER_CLIP_SIGMAS
from .link import Link
from .paths import OpticalPath
from .polarization import BB84_STOKES, F64
from .rng import derive_key, hash_normal, hash_uniform
from .sources import WeakCoherentTransmitter

I64 = npt.NDArray[np.int64]
# Intensity fluctuations are Gaussian, clipped at this many sigma (so bounds are exact).
_NOISE_CLIP = 6.0


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


def _zero_truncated_poisson(lam: F64, u: F64) -> npt.NDArray[np.int64]:
    """Poisson(lam) conditioned on >= 1, by inverse CDF of ``u`` uniform on [0, 1 - exp(-lam))."""
    term = np.exp(-lam)
    term *= lam
    rest = np.flatnonzero(u >= term)
    n = np.ones(lam.size, np.int64)
    if rest.size == 0:
        return n
    lam_r, u_r, term_r = lam.take(rest), u.take(rest), term.take(rest)
    cum_r = term_r.copy()
    j = 1
    while rest.size and j < 200:
        j += 1
        term_r = term_r * lam_r / j
        cum_r = cum_r + term_r
        n[rest] = j
        still = u_r >= cum_r
        rest, lam_r, u_r, term_r, cum_r = (
            rest[still],
            lam_r[still],
            u_r[still],
            term_r[still],
            cum_r[still],
        )
    return n


def _steps_of(w: Window, pos: I64, rel_lo: float, dt: float) -> npt.NDArray[np.intp] | None:
    """Grid step (within the window) of each sorted pulse position, as runs (no per-pulse math)."""
    if w.nj == 1:
        return None
    bounds_rel = (w.j_lo + np.arange(1, w.nj)) * w.step_ps - w.start_ps
    bounds_pos = np.ceil((bounds_rel - rel_lo) / dt)
    cut = np.searchsorted(pos, bounds_pos, side="left")
    counts = np.diff(np.concatenate([[0], cut, [pos.size]]))
    return np.repeat(np.arange(w.nj, dtype=np.intp), counts)


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


def _positions(rng: np.random.Generator, n: int, q: float) -> I64:
    """Sorted indices in [0, n) each selected independently with probability q.

    Gaps are geometric, drawn as floor(Exp / -log(1 - q)) + 1 (cheaper than rng.geometric).
    """
    if n <= 0 or q <= 0:
        return np.zeros(0, np.int64)
    if q >= 1:
        return np.arange(n, dtype=np.int64)
    scale = -1.0 / math.log1p(-q)
    mean = n * q
    size = int(mean + 6 * math.sqrt(mean) + 16)
    chunks: list[I64] = []
    last = -1
    while last < n:
        gaps = rng.standard_exponential(size)
        gaps *= scale
        pos = np.floor(gaps, out=gaps).astype(np.int64)
        pos += 1
        np.cumsum(pos, out=pos)
        pos += last
        chunks.append(pos)
        last = int(pos[-1])
    allpos = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return allpos[: np.searchsorted(allpos, n)]


class WCSSampler:
    """Samples one transmitter's clicks along its path."""

    def __init__(
        self,
        tx: WeakCoherentTransmitter,
        path: OpticalPath,
        clock: NodeClock,
        rng: np.random.Generator,
        key: int,
    ) -> None:
        self.tx = tx
        self.path = path
        self.clock = clock
        self.rng = rng
        self.key = key

    def sample(self, w: Window) -> dict[str, F64]:
        """Arrival times (ps from the window start) at each detector of the path."""
        tx, path, rng = self.tx, self.path, self.rng
        dets = path.detectors
        n_det = len(dets)
        out: dict[str, F64] = {d.name: np.zeros(0) for d in dets}
        mus = tx.current_mus()
        eta = np.array([d.efficiency for d in dets])
        if mus.max() <= 0 or eta.max() <= 0:
            return out
        k_lo, k_hi, rel_lo, dt = pulse_range(self.clock, tx.t0_ps, tx.period_ps, w)
        n = k_hi - k_lo
        if n <= 0:
            return out
        j_lo, j_hi = w.j_lo, w.j_hi
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
        pos = _positions(rng, n, q_any)
        if pos.size == 0:
            return out

        # Candidate pulses: symbol and time step (pos is sorted, so steps are runs).
        k = pos + k_lo
        pattern = tx._pattern
        p_len = pattern.size
        if p_len & (p_len - 1) == 0:
            sym = pattern.take(k & (p_len - 1))
        else:
            sym = pattern.take(np.remainder(k, p_len))
        jj = _steps_of(w, pos, rel_lo, dt)
        n_sym = 4 * mus.size
        sym_code = np.arange(n_sym) & 3
        fast = eve_i is None and sigma_i == 0
        if fast:
            # Tables over (step, symbol): the whole per-pulse physics is two lookups.
            row = sym.astype(np.intp)
            if jj is not None:
                row += jj * n_sym
            lam_tab = (mus[np.arange(n_sym) >> 2][None, :] * u_tot[:, sym_code]).ravel()
            pany_tab = -np.expm1(-lam_tab)
            draw = rng.random(pos.size)
            draw *= q_any
            acc = np.flatnonzero(draw < pany_tab.take(row))
            if acc.size == 0:
                return out
            pos, row, draw = pos.take(acc), row.take(acc), draw.take(acc)
            lam = lam_tab.take(row)
            shape = u_tab[:, sym_code, :]  # (nj, n_sym, D)
        else:
            code = sym_code.take(sym)
            mu_k = mus.take(sym >> 2)
            if sigma_i > 0:
                z = np.clip(hash_normal(self.key, 5, k), -_NOISE_CLIP, _NOISE_CLIP)
                mu_k = mu_k * np.maximum(0.0, 1.0 + sigma_i * z)
            if eve_i is not None:
                jx = jj if jj is not None else np.zeros(pos.size, np.intp)
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
                    mu_e = np.full(ki.size, eve.resend_mu) if eve.resend_mu is not None else mu_in
                    mu_k[inter] = np.where(got, mu_e, 0.0)
            row = code if jj is None else jj * n_code + code
            lam = mu_k * u_tot.ravel().take(row)
            draw = rng.random(pos.size)
            draw *= q_any
            acc = np.flatnonzero(draw < -np.expm1(-lam))
            if acc.size == 0:
                return out
            pos, row, lam, draw = pos.take(acc), row.take(acc), lam.take(acc), draw.take(acc)
            shape = u_tab
        if jj is not None:
            jj = jj.take(acc)
        m = pos.size

        # Photons detected in the pulse, given at least one: zero-truncated Poisson(lam).
        # Given acceptance, ``draw`` is uniform on [0, P(any)): it is the inverse-CDF draw.
        n_ph = _zero_truncated_poisson(lam, draw)
        # Which detector each photon goes to: categorical over the row's detector weights.
        cum = np.cumsum(shape, axis=-1).reshape(-1, n_det)
        cum_cols = [np.ascontiguousarray(cum[:, d]) for d in range(n_det - 1)]
        tot_c = np.ascontiguousarray(cum[:, -1]).take(row)

        def assign(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
            r = row.take(rows)
            v = rng.random(rows.size) * tot_c.take(rows)
            det = np.zeros(rows.size, np.intp)
            for col in cum_cols:
                det += v > col.take(r)
            return det

        det_first = assign(np.arange(m))
        arrival = pos * dt
        delays = path.delays_ps(j_lo, j_hi)
        if jj is None:
            arrival += rel_lo + float(delays[0])
        else:
            arrival += (delays + rel_lo).take(jj)
        if tx.cfg.emission_jitter_ps > 0:
            jit = rng.standard_normal(m)
            np.clip(jit, -JITTER_CLIP_SIGMAS, JITTER_CLIP_SIGMAS, out=jit)
            arrival += jit * tx.cfg.emission_jitter_ps
        np.maximum(arrival, 0.0, out=arrival)

        multi = np.flatnonzero(n_ph > 1)
        if multi.size == 0:
            for d, det in enumerate(dets):
                out[det.name] = arrival[det_first == d]
            return out
        extra_rows: list[npt.NDArray[np.intp]] = []
        extra_dets: list[npt.NDArray[np.intp]] = []
        left = multi
        counts = n_ph.take(multi) - 1
        while left.size:
            extra_rows.append(left)
            extra_dets.append(assign(left))
            counts -= 1
            keep = counts > 0
            left, counts = left[keep], counts[keep]
        rows = np.concatenate([multi, *extra_rows])
        dets_all = np.concatenate([det_first.take(multi), *extra_dets])
        pairs = np.unique(rows * n_det + dets_all)
        single = np.ones(m, bool)
        single[multi] = False
        for d, det in enumerate(dets):
            first = arrival[single & (det_first == d)]
            more = arrival.take(pairs[pairs % n_det == d] // n_det)
            out[det.name] = np.sort(np.concatenate([first, more]), kind="stable")
        return out
