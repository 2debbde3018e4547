"""Clicks caused by an SPDC pair source, sampled only for pairs that can be detected.

Pairs are emitted as a Poisson process (CW) or, per pump pulse, with a negative
binomial number of pairs (``modes`` Schmidt modes: 1 = thermal, many = Poisson).
Each photon is detected with probability <= p_X = heralding x path transmission x
max detector efficiency on its side; only pairs with at least one photon passing
that bound are drawn (thinning a Poisson or negative binomial count keeps its
family). For those pairs the polarization outcomes are drawn from the two-photon
state (local Stokes vectors a, b and correlation tensor T, rotated by each arm's
optics and fibre): the first photon's outcome from its marginal, the second's
from the conditional state; then each analyzer's PBS leak flips an outcome, and
the exact detector efficiency thins the photon. Multi-pair emission, accidental
coincidences and double clicks arise by themselves. An active eavesdropper on an
arm intercepts and resends single photons (see `_outcomes_with_eve`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from .clock import NodeClock
from .detector import JITTER_CLIP_SIGMAS
from .link import Eavesdropper, Link
from .paths import OpticalPath
from .polarization import F64
from .rng import bernoulli_positions
from .sample_wcs import Window, pulse_range
from .sources import SPDCSource


class _Side:
    """One arm: path, bound on detection probability and the analyzer tables in the source frame."""

    def __init__(self, path: OpticalPath, herald: float) -> None:
        self.path = path
        self.herald = herald
        self.eve: Eavesdropper | None = None

    def prepare(self, w: Window) -> None:
        p = self.path
        self.eta = np.array([d.efficiency for d in p.detectors])
        self.eta_max = float(self.eta.max()) if self.eta.size else 0.0
        self.bound = self.herald * p.transmission() * self.eta_max
        self.delays = p.delays_ps(w.j_lo, w.j_hi)
        if p.is_analyzer:
            axes, weights, contrast, basis, sign = p.analyzer_tables()
            rot = p.rotations(w.j_lo, w.j_hi)  # (nj, 3, 3)
            # Analyzer axes pulled back to the source frame: R^T a.
            self.axes_src = np.einsum("jba,nb->jna", rot, axes)  # (nj, nb, 3)
            self.cum_weights = np.cumsum(weights)
            self.leak = (1.0 - contrast) / 2.0
            det_of = -np.ones((len(weights), 2), dtype=np.intp)
            for i, (b, s) in enumerate(zip(basis, sign, strict=True)):
                det_of[b, 0 if s > 0 else 1] = i
            self.det_of = det_of
        self.eve = None
        eve_i = p.eve_index()
        if eve_i is not None:
            link = p.elements[eve_i].element
            assert isinstance(link, Link)
            self.eve = link.eavesdropper
            self.pre_rot = p.rotations(w.j_lo, w.j_hi, 0, eve_i)  # (nj, 3, 3)
            if p.is_analyzer:
                post = p.rotations(w.j_lo, w.j_hi, eve_i)
                axes, *_ = p.analyzer_tables()
                self.post_axes = np.einsum("jba,nb->jna", post, axes)


class SPDCSampler:
    def __init__(
        self,
        src: SPDCSource,
        signal: OpticalPath,
        idler: OpticalPath,
        clock: NodeClock,
        rng: np.random.Generator,
    ) -> None:
        self.src = src
        self.sides = (
            _Side(signal, src.cfg.heralding_efficiency_signal),
            _Side(idler, src.cfg.heralding_efficiency_idler),
        )
        self.clock = clock
        self.rng = rng
        self._corr: tuple[F64, F64, F64] | None = None

    def correlations(self) -> tuple[F64, F64, F64]:
        if self._corr is None:
            self._corr = self.src.correlations()
        return self._corr

    def _pair_times(self, w: Window, p_rel: float) -> F64:
        src, rng = self.src, self.rng
        rate = src.pair_rate_at(w.start_ps * 1e-12)
        if rate <= 0 or p_rel <= 0:
            return np.zeros(0)
        if src.cfg.emission == "cw":
            n = rng.poisson(rate * p_rel * w.length_ps * 1e-12)
            return np.sort(rng.uniform(0.0, w.length_ps, n))
        k_lo, k_hi, rel_lo, dt = pulse_range(self.clock, src.t0_ps, src.period_ps, w)
        assert src.cfg.rep_rate_hz is not None
        mean = rate / src.cfg.rep_rate_hz * p_rel
        modes = src.cfg.modes
        p0 = (1.0 + mean / modes) ** (-modes)
        pos = bernoulli_positions(rng, k_hi - k_lo, 1.0 - p0)
        if pos.size == 0:
            return np.zeros(0)
        times = (rel_lo + pos * dt).astype(np.float64, copy=False)
        if self.clock.wanders:
            times += self.clock.grid_correction_ps(w.start_ps, rel_lo, times)
        if src.cfg.emission_jitter_ps > 0:
            times = (
                times
                + np.clip(rng.standard_normal(times.size), -JITTER_CLIP_SIGMAS, JITTER_CLIP_SIGMAS)
                * src.cfg.emission_jitter_ps
            )
        counts = _truncated_nbinom(rng, modes, mean, pos.size)
        return np.repeat(times, counts)

    def sample(self, w: Window) -> dict[str, list[F64]]:
        """Arrival times (ps from the window start) at each detector, as a list of arrays."""
        rng = self.rng
        out: dict[str, list[F64]] = {d.name: [] for s in self.sides for d in s.path.detectors}
        a_side, b_side = self.sides
        for s in self.sides:
            s.prepare(w)
        pa, pb = a_side.bound, b_side.bound
        p_rel = 1.0 - (1.0 - pa) * (1.0 - pb)
        t = self._pair_times(w, p_rel)
        n = t.size
        if n == 0:
            return out
        u = rng.random(n) * p_rel
        both = u < pa * pb
        has_a = u < pa
        has_b = both | (u >= pa)
        jj = w.step_index(t)
        a_vec, b_vec, tens = self.correlations()

        # Outcomes (+1/-1) and bases of each photon that may be detected.
        outcome = [np.zeros(n, np.intp), np.zeros(n, np.intp)]
        basis = [np.zeros(n, np.intp), np.zeros(n, np.intp)]
        proj = []  # Stokes projection of each side's local vector on its chosen axis
        for x, (s, loc) in enumerate(zip(self.sides, (a_vec, b_vec), strict=True)):
            if s.path.is_analyzer:
                basis[x] = np.searchsorted(
                    s.cum_weights, rng.random(n) * s.cum_weights[-1], "right"
                )
                basis[x] = np.minimum(basis[x], s.cum_weights.size - 1)
                proj.append(s.axes_src[jj, basis[x]] @ loc)
            else:
                proj.append(np.zeros(n))
        eves = [s.eve for s in self.sides]
        if any(e is not None for e in eves):
            outcome = self._outcomes_with_eve(jj, basis, (has_a, has_b), a_vec, b_vec, tens)
        else:
            outcome = self._outcomes(jj, basis, proj, both, tens)

        present = (has_a, has_b)
        for x, s in enumerate(self.sides):
            idx = np.flatnonzero(present[x])
            if idx.size == 0 or s.eta_max <= 0:
                continue
            if s.path.is_analyzer:
                o = outcome[x][idx]
                flip = rng.random(idx.size) < s.leak
                o = np.where(flip, -o, o)
                det = s.det_of[basis[x][idx], np.where(o > 0, 0, 1)]
            else:
                det = np.zeros(idx.size, np.intp)
            ok = det >= 0
            eta_rel = np.where(ok, s.eta[np.maximum(det, 0)] / s.eta_max, 0.0)
            ok &= rng.random(idx.size) < eta_rel
            idx, det = idx[ok], det[ok]
            arrival = t[idx] + s.delays[jj[idx]]
            if self.src.cfg.pair_jitter_ps > 0:
                arrival = (
                    arrival
                    + np.clip(
                        rng.standard_normal(idx.size), -JITTER_CLIP_SIGMAS, JITTER_CLIP_SIGMAS
                    )
                    * self.src.cfg.pair_jitter_ps
                )
            np.maximum(arrival, 0.0, out=arrival)
            for d_i, d in enumerate(s.path.detectors):
                out[d.name].append(arrival[det == d_i])
        return out

    def _outcomes(
        self,
        jj: npt.NDArray[np.intp],
        basis: list[npt.NDArray[np.intp]],
        proj: list[F64],
        both: npt.NDArray[np.bool_],
        tens: F64,
    ) -> list[npt.NDArray[np.intp]]:
        """Ideal outcomes (+1/-1): A from its marginal, B from the state A's outcome leaves."""
        rng = self.rng
        a_side, b_side = self.sides
        n = jj.size
        outcome = [np.zeros(n, np.intp), np.zeros(n, np.intp)]
        ua, ub = rng.random(n), rng.random(n)
        first_a = a_side.path.is_analyzer
        if first_a:
            alpha = np.where(ua < 0.5 * (1.0 + proj[0]), 1, -1)
            outcome[0] = alpha
        if b_side.path.is_analyzer:
            lb = proj[1]
            if first_a:
                # Conditional state of B given A's ideal outcome alpha (only where both arrive).
                ax_a = a_side.axes_src[jj, basis[0]]
                ax_b = b_side.axes_src[jj, basis[1]]
                c = np.einsum("na,ab,nb->n", ax_a, tens, ax_b)
                cond = (lb + alpha * c) / (1.0 + alpha * proj[0])
                pb_plus = np.where(both, 0.5 * (1.0 + cond), 0.5 * (1.0 + lb))
            else:
                pb_plus = 0.5 * (1.0 + lb)
            outcome[1] = np.where(ub < pb_plus, 1, -1)
        return outcome

    def _outcomes_with_eve(
        self,
        jj: npt.NDArray[np.intp],
        basis: list[npt.NDArray[np.intp]],
        present: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
        a_vec: F64,
        b_vec: F64,
        tens: F64,
    ) -> list[npt.NDArray[np.intp]]:
        """Outcomes when an intercept-resend Eve sits on one or both arms.

        Eve (at her link's input) measures a photon in a random BB84 basis of that
        frame and resends a single photon in the state she found: the partner
        collapses to the conditional state, and the resent photon no longer carries
        any correlation. A side Eve missed keeps its entanglement with the other.
        """
        rng = self.rng
        n = jj.size
        loc = (a_vec, b_vec)
        corr = (tens, tens.T)  # corr[x] maps an axis of side x to the partner's vector
        inter = []
        eve_axis_src = []
        eve_state = []  # Eve's resent Stokes vector at the link input (+-1 times her axis)
        for x, s in enumerate(self.sides):
            if s.eve is None:
                inter.append(np.zeros(n, bool))
                eve_axis_src.append(np.zeros((n, 3)))
                eve_state.append(np.zeros((n, 3)))
                continue
            hit = present[x] & (rng.random(n) < s.eve.fraction)
            e_basis = (rng.random(n) < 0.5).astype(np.intp)
            axis_link = np.eye(3)[e_basis]  # Z -> S1, X -> S2 of the link-input frame
            inter.append(hit)
            eve_axis_src.append(np.einsum("nba,nb->na", s.pre_rot[jj], axis_link))
            eve_state.append(axis_link)
        # Source-frame Bloch vector of each photon while still (possibly) entangled.
        vec = [np.broadcast_to(a_vec, (n, 3)).copy(), np.broadcast_to(b_vec, (n, 3)).copy()]
        collapsed = [np.zeros(n, bool), np.zeros(n, bool)]
        for x in (0, 1):
            y = 1 - x
            hit = inter[x]
            if not hit.any():
                continue
            e = eve_axis_src[x]
            proj = np.einsum("na,na->n", vec[x], e)
            sign = np.where(rng.random(n) < 0.5 * (1.0 + proj), 1.0, -1.0)
            # Partner's conditional vector, unless it was already collapsed by the other Eve.
            free = hit & ~collapsed[y]
            cond = (loc[y] + sign[:, None] * (e @ corr[x])) / (1.0 + sign * proj)[:, None]
            vec[y] = np.where(free[:, None], cond, vec[y])
            collapsed[y] |= free
            eve_state[x] = eve_state[x] * sign[:, None]
            collapsed[x] |= hit
        outcome = [np.zeros(n, np.intp), np.zeros(n, np.intp)]
        both_free = ~collapsed[0] & ~collapsed[1]
        proj_free = [
            s.axes_src[jj, basis[x]] @ loc[x] if s.path.is_analyzer else np.zeros(n)
            for x, s in enumerate(self.sides)
        ]
        joint = self._outcomes(jj, basis, proj_free, present[0] & present[1] & both_free, tens)
        for x, s in enumerate(self.sides):
            if not s.path.is_analyzer:
                continue
            # Resent photon: Eve's state through the rest of the path; collapsed partner:
            # its conditional vector through its whole path.
            p_cond = 0.5 * (1.0 + np.einsum("na,na->n", vec[x], s.axes_src[jj, basis[x]]))
            if s.eve is None:
                p_plus = p_cond
            else:
                resent = np.einsum("na,na->n", eve_state[x], s.post_axes[jj, basis[x]])
                p_plus = np.where(inter[x], 0.5 * (1.0 + resent), p_cond)
            own = np.where(rng.random(n) < p_plus, 1, -1)
            outcome[x] = np.where(collapsed[0] | collapsed[1], own, joint[x])
        return outcome


def _truncated_nbinom(rng: np.random.Generator, modes: float, mean: float, size: int) -> np.ndarray:
    """Pair counts >= 1 per pulse: negative binomial (``modes``, ``mean``) conditioned on >= 1."""
    p = modes / (modes + mean)
    dist = stats.nbinom(modes, p)
    n_max = max(2, int(dist.isf(1e-15)) + 1)
    n_max = min(n_max, 10_000)
    k = np.arange(1, n_max + 1)
    pmf = dist.pmf(k)
    cdf = np.cumsum(pmf)
    cdf /= cdf[-1]
    draws = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(draws, n_max - 1) + 1


__all__ = ["SPDCSampler", "math"]
