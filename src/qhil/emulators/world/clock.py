"""Time: the world's one simulated timeline and each node's own clock.

True (simulated) time is counted in integer picoseconds from power-on. A node's
clock reads ``offset + (1 + drift) * t + Phi(t)``: two nodes' timestamps disagree
exactly as in a two-site experiment. ``Phi`` is the clock's wander, the integral of
a random walk of frequency (`Wander`); without wander it is 0 and the clock is
linear. Scalar conversions are exact (fractions; the wander's phase, a float, is
taken exactly as that float), array conversions are float64 offsets from an exact
integer base.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

from .errors import WorldTimeError
from .rng import hash_normal

PS_PER_S = 10**12
Mode = Literal["fast", "realtime"]
F64 = npt.NDArray[np.float64]

#: Grid of the frequency random walk: knots every 10 ms (frequency linear between them,
#: phase quadratic). Random-walk FM matters at averaging times well above this.
WANDER_STEP_PS = 10**10
#: Knots generated at once (a block: 10.24 s of clock).
WANDER_BLOCK = 1024
#: Whole blocks kept (~17 min of clock, 1 MB per node).
WANDER_CACHE_BLOCKS = 100
#: Largest wander accepted (ppb per sqrt(s)): far beyond an uncompensated crystal (~10).
MAX_WANDER_PPB_PER_SQRT_S = 1000.0


def seconds_to_ps(t_s: float) -> int:
    return round(Fraction(t_s) * PS_PER_S)


class Wander:
    """A standard Wiener process B(t) (B(0) = 0, Var B(t) = t / 1 s) and its integral,
    on knots every `WANDER_STEP_PS`, as a pure function of ``key``.

    Knot i's increment is a counter-based normal draw of (key, i), so the trajectory
    never depends on which times were asked for, in what order or chunks. Knots come in
    blocks of `WANDER_BLOCK`; block j starts from block j - 1's end values, which are
    kept for every block reached (16 bytes per block), so a block is generated again
    identically whenever needed. Only the last `WANDER_CACHE_BLOCKS` blocks used are kept
    whole: memory stays bounded however long the run. Between knots B is linear and its
    integral quadratic. Before power-on (t < 0) both are 0.
    """

    def __init__(self, key: int) -> None:
        self.key = key
        # B and its integral (ps sqrt(s)) at the first knot of each block reached.
        self._start = np.zeros((1, 2))
        self._n_starts = 1
        self._blocks: OrderedDict[int, tuple[F64, F64]] = OrderedDict()

    def _generate(self, j: int) -> tuple[F64, F64]:
        """Block j's B and integral at knots j B .. (j + 1) B (both ends included)."""
        b0, ib0 = self._start[j]
        z = hash_normal(self.key, 0, np.arange(j * WANDER_BLOCK, (j + 1) * WANDER_BLOCK))
        z *= math.sqrt(WANDER_STEP_PS / PS_PER_S)
        b = np.empty(WANDER_BLOCK + 1)
        b[0] = b0
        np.cumsum(z, out=b[1:])
        b[1:] += b0
        ib = np.empty(WANDER_BLOCK + 1)
        ib[0] = ib0
        np.cumsum((b[:-1] + b[1:]) * (0.5 * WANDER_STEP_PS), out=ib[1:])  # exact: B linear
        ib[1:] += ib0
        return b, ib

    def _block(self, j: int) -> tuple[F64, F64]:
        while self._n_starts <= j:  # blocks never reached yet: in order, for their starts
            self._cached(self._n_starts - 1)
        return self._cached(j)

    def _cached(self, j: int) -> tuple[F64, F64]:
        got = self._blocks.get(j)
        if got is not None:
            self._blocks.move_to_end(j)
            return got
        got = self._generate(j)
        if j + 1 == self._n_starts:  # the first time block j is made: where j + 1 starts
            if self._n_starts == self._start.shape[0]:
                self._start = np.concatenate([self._start, np.zeros_like(self._start)])
            self._start[self._n_starts] = got[0][-1], got[1][-1]
            self._n_starts += 1
        self._blocks[j] = got
        while len(self._blocks) > WANDER_CACHE_BLOCKS:
            self._blocks.popitem(last=False)
        return got

    def _knots(self, t_ps: npt.ArrayLike) -> tuple[F64, F64, F64, F64]:
        """(B at the knot before t, B at the knot after, the integral at the knot before,
        time since the knot before) for true times ``t_ps``."""
        t = np.maximum(np.asarray(t_ps, dtype=np.float64), 0.0)
        i = np.floor(t * (1.0 / WANDER_STEP_PS)).astype(np.int64)
        u = t - i * float(WANDER_STEP_PS)
        if i.size == 0:
            return u, u, u, u
        j_lo = int(i.min()) // WANDER_BLOCK
        j_hi = int(i.max()) // WANDER_BLOCK
        if j_lo == j_hi:
            b, ib = self._block(j_lo)
        else:  # a query across blocks: their knots side by side
            parts = [self._block(j) for j in range(j_lo, j_hi + 1)]
            b = np.concatenate([p[0][:-1] for p in parts] + [parts[-1][0][-1:]])
            ib = np.concatenate([p[1][:-1] for p in parts] + [parts[-1][1][-1:]])
        k = i - j_lo * WANDER_BLOCK
        return b[k], b[k + 1], ib[k], u

    def value(self, t_ps: npt.ArrayLike) -> F64:
        """B(t), sqrt(s)."""
        b0, b1, _, u = self._knots(t_ps)
        return np.asarray(b0 + (b1 - b0) * (u * (1.0 / WANDER_STEP_PS)))

    def integral_ps(self, t_ps: npt.ArrayLike) -> F64:
        """Integral of B from 0 to t, ps sqrt(s)."""
        b0, b1, ib0, u = self._knots(t_ps)
        slope = (b1 - b0) * (0.5 / WANDER_STEP_PS)
        return np.asarray(ib0 + u * (b0 + slope * u))


class NodeClock:
    """A node's clock: ``node = offset + (1 + drift) * true + Phi(true)``, in picoseconds.

    ``Phi`` is the integral of the wander W(t) = ``wander_ppb_per_sqrt_s`` * 1e-9 * B(t),
    B a standard Wiener process drawn from ``key`` (the node's own stream), so the clock's
    fractional frequency is ``drift + W(t)`` (random-walk FM from power-on).
    """

    def __init__(
        self,
        node: str,
        offset_s: float,
        drift_ppm: float,
        wander_ppb_per_sqrt_s: float = 0.0,
        key: int = 0,
    ) -> None:
        self.node = node
        self.offset_s = offset_s
        self.drift_ppm = drift_ppm
        self._walk = Wander(key)
        self.wander_ppb_per_sqrt_s = wander_ppb_per_sqrt_s

    @property
    def offset_s(self) -> float:
        return float(self._offset_ps / PS_PER_S)

    @offset_s.setter
    def offset_s(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"{self.node} clock offset must be finite, got {value!r}")
        self._offset_ps = Fraction(value) * PS_PER_S

    @property
    def drift_ppm(self) -> float:
        return float(self._drift * 10**6)

    @drift_ppm.setter
    def drift_ppm(self, value: float) -> None:
        if not (math.isfinite(value) and abs(value) < 1e5):
            raise ValueError(f"{self.node} clock drift must be finite and < 1e5 ppm, got {value!r}")
        self._drift = Fraction(value) / 10**6
        self._scale = 1 + self._drift  # exact: node picoseconds per true picosecond
        self._rate = float(self._scale)

    @property
    def wander_ppb_per_sqrt_s(self) -> float:
        return self._wander_ppb

    @wander_ppb_per_sqrt_s.setter
    def wander_ppb_per_sqrt_s(self, value: float) -> None:
        if not (math.isfinite(value) and 0.0 <= value <= MAX_WANDER_PPB_PER_SQRT_S):
            raise ValueError(
                f"{self.node} clock wander must be in [0, {MAX_WANDER_PPB_PER_SQRT_S:g}] "
                f"ppb/sqrt(s), got {value!r}"
            )
        # The same walk B(t) whatever its size: changing it rescales one trajectory.
        self._wander_ppb = float(value)
        self._sigma = self._wander_ppb * 1e-9

    @property
    def wanders(self) -> bool:
        return self._sigma != 0.0

    @property
    def rate(self) -> float:
        """Nominal node seconds per true second, ``1 + drift``: the wander left out (at an
        instant: `rate_at`; over a stretch: `node_delta_ps`)."""
        return self._rate

    # -- the wander ----------------------------------------------------------------------

    def wander(self, t_ps: npt.ArrayLike) -> F64:
        """W(t): the fractional frequency's departure from ``drift`` at true times ``t_ps``."""
        return self._walk.value(t_ps) * self._sigma if self.wanders else np.zeros(np.shape(t_ps))

    def phase_ps(self, t_ps: npt.ArrayLike) -> F64:
        """Phi(t) = integral of W from power-on to true times ``t_ps`` (ps of node time)."""
        if not self.wanders:
            return np.zeros(np.shape(t_ps))
        return self._walk.integral_ps(t_ps) * self._sigma

    def _phase(self, t_ps: Fraction | int) -> Fraction:
        return Fraction(float(self.phase_ps(float(t_ps)))) if self.wanders else Fraction(0)

    def rate_at(self, t_ps: Fraction | int) -> float:
        """Node seconds per true second at the instant ``t_ps``: ``1 + drift + W(t)``."""
        if not self.wanders:
            return self._rate
        return float(self._scale + Fraction(float(self.wander(float(t_ps)))))

    # -- conversions ---------------------------------------------------------------------

    def node_of_true(self, t_ps: Fraction | int) -> Fraction:
        if not self.wanders:
            return self._offset_ps + self._scale * t_ps
        return self._offset_ps + self._scale * t_ps + self._phase(t_ps)

    def true_of_node(self, tau_ps: Fraction | int) -> Fraction:
        t = (tau_ps - self._offset_ps) / self._scale
        if not self.wanders:
            return t
        # Fixed point of t = (tau - offset - Phi(t)) / scale: the error shrinks by |W| (<< 1)
        # per pass, so a few passes reach the float resolution of Phi.
        first = t
        for _ in range(8):
            nxt = first - self._phase(t) / self._scale
            if abs(nxt - t) < Fraction(1, 10**6):
                return nxt
            t = nxt
        return t

    def node_of_true_f(self, t_ps: F64) -> F64:
        """`node_of_true` of many true times, in float64 ps (~0.1 ps at an hour)."""
        out = float(self._offset_ps) + t_ps * self._rate
        if self.wanders:
            out = out + self.phase_ps(t_ps)
        return np.asarray(out)

    def true_of_node_f(self, tau_ps: F64) -> F64:
        """`true_of_node` of many node times, in float64 ps."""
        first = (tau_ps - float(self._offset_ps)) / self._rate
        t = first
        if self.wanders:  # the fixed point of `true_of_node`, vectorised
            for _ in range(4):
                t = first - self.phase_ps(t) / self._rate
        return np.asarray(t)

    def node_delta_ps(self, base_ps: int, rel_ps: F64) -> F64:
        """Node time elapsed from true time ``base_ps`` to ``base_ps + rel_ps`` (float ps)."""
        out = rel_ps * self._rate
        if self.wanders:
            out += self.wander_delta_ps(base_ps, rel_ps)
        return np.asarray(out)

    def wander_delta_ps(self, base_ps: int, rel_ps: F64) -> F64:
        """Phi(base + rel) - Phi(base): the wander's part of `node_delta_ps` (0 without)."""
        if not self.wanders:
            return np.zeros(np.shape(rel_ps))
        base = float(base_ps)
        d = self._walk.integral_ps(np.add(rel_ps, base)) - self._walk.integral_ps(base)
        return np.asarray(d * self._sigma)

    def grid_correction_ps(self, base_ps: int, anchor_ps: float, rel_ps: F64) -> F64:
        """What to add to true times ``rel_ps`` (ps after ``base_ps``) of points of a grid
        evenly spaced on this clock (pulses), placed at the nominal `rate` from the grid
        point at ``anchor_ps`` (placed exactly), for each to fall at its node time: the
        wander's phase gained since the anchor, in true ps (0 without wander)."""
        if not self.wanders:
            return np.zeros(np.shape(rel_ps))
        base = float(base_ps)
        ref = self._walk.integral_ps(base + anchor_ps)
        gain = self._sigma / self._rate
        # t = rel - (Phi(t) - Phi(anchor)) / rate: each pass gains a factor |W| (<< 1).
        corr = np.zeros(np.shape(rel_ps))
        for _ in range(3):
            corr = (ref - self._walk.integral_ps(np.add(rel_ps, base) + corr)) * gain
        return np.asarray(corr)

    def to_node_ps(
        self, base_ps: int, rel_ps: npt.NDArray[np.float64], bin_ps: int = 1
    ) -> npt.NDArray[np.int64]:
        """Timestamps (int64 ps, floored to ``bin_ps`` bins of the node clock) of true times
        ``base_ps + rel_ps``."""
        node_base = self.node_of_true(base_ps)
        ib = math.floor(node_base)
        q0, r0 = divmod(ib, bin_ps)
        frac = float(node_base - ib) + r0
        if self.wanders:
            bins = np.floor((frac + self.node_delta_ps(base_ps, rel_ps)) / bin_ps)
        else:
            bins = np.floor((frac + rel_ps * self.rate) / bin_ps)
        return (bins.astype(np.int64) + q0) * bin_ps


class SimClock:
    """The world's present, in simulated seconds since power-on.

    ``fast``: time moves only when told (`advance_to`, `elapse`), instantly.
    ``realtime``: time follows the wall clock since `reset`; `elapse` sleeps
    asyncio-wise. ``time_fn``/``sleep_fn`` are injectable for tests.
    """

    def __init__(
        self,
        mode: Mode = "fast",
        time_fn: Callable[[], float] = time.monotonic,
        sleep_fn: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if mode not in ("fast", "realtime"):
            raise ValueError(f"mode must be 'fast' or 'realtime', got {mode!r}")
        self.mode: Mode = mode
        self._time_fn = time_fn
        self._sleep_fn = sleep_fn
        self.reset()

    def reset(self) -> None:
        self._now_ps = 0
        self._wall0 = self._time_fn()

    @property
    def now_ps(self) -> int:
        if self.mode == "fast":
            return self._now_ps
        wall = max(0, round((self._time_fn() - self._wall0) * PS_PER_S))
        self._now_ps = max(self._now_ps, wall)
        return self._now_ps

    @property
    def now_s(self) -> float:
        return self.now_ps / PS_PER_S

    def advance_to_ps(self, t_ps: int) -> None:
        """Let time run to ``t_ps`` (fast mode); realtime mode cannot run ahead of the wall."""
        if t_ps <= self.now_ps:
            return
        if self.mode == "realtime":
            raise WorldTimeError(
                f"simulated time {t_ps / PS_PER_S:.9g} s is in the future (now "
                f"{self.now_s:.9g} s) and the clock is in realtime mode: await "
                "world.clock.elapse(...) or a reader's read_async(...) instead"
            )
        self._now_ps = t_ps

    def advance_to(self, t_s: float) -> None:
        self.advance_to_ps(seconds_to_ps(t_s))

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise WorldTimeError(f"cannot advance by a negative time ({seconds} s)")
        self.advance_to_ps(self.now_ps + seconds_to_ps(seconds))

    async def wait_until_ps(self, t_ps: int) -> None:
        """Return once simulated time has reached ``t_ps`` (fast: at once, moving time)."""
        if self.mode == "fast":
            self.advance_to_ps(t_ps)
            return
        while (remaining := t_ps - self.now_ps) > 0:
            await self._sleep_fn(remaining / PS_PER_S)

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass (realtime: as long on the wall clock)."""
        if seconds < 0:
            raise WorldTimeError(f"cannot elapse a negative time ({seconds} s)")
        await self.wait_until_ps(self.now_ps + seconds_to_ps(seconds))
