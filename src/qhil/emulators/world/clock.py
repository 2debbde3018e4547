"""Time: the world's one simulated timeline and each node's own clock.

True (simulated) time is counted in integer picoseconds from power-on. A node's
clock reads ``offset + (1 + drift_ppm * 1e-6) * t``: two nodes' timestamps
disagree exactly as in a two-site experiment. Scalar conversions are exact
(fractions), array conversions are float64 offsets from an exact integer base.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

from .errors import WorldTimeError

PS_PER_S = 10**12
Mode = Literal["fast", "realtime"]


def seconds_to_ps(t_s: float) -> int:
    return round(Fraction(t_s) * PS_PER_S)


class NodeClock:
    """A node's clock: ``node = offset + (1 + drift) * true``, in picoseconds."""

    def __init__(self, node: str, offset_s: float, drift_ppm: float) -> None:
        self.node = node
        self.offset_s = offset_s
        self.drift_ppm = drift_ppm

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
    def rate(self) -> float:
        """Node seconds per true second."""
        return self._rate

    def node_of_true(self, t_ps: Fraction | int) -> Fraction:
        return self._offset_ps + self._scale * t_ps

    def true_of_node(self, tau_ps: Fraction | int) -> Fraction:
        return (tau_ps - self._offset_ps) / self._scale

    def to_node_ps(
        self, base_ps: int, rel_ps: npt.NDArray[np.float64], bin_ps: int = 1
    ) -> npt.NDArray[np.int64]:
        """Timestamps (int64 ps, floored to ``bin_ps`` bins of the node clock) of true times
        ``base_ps + rel_ps``."""
        node_base = self.node_of_true(base_ps)
        ib = math.floor(node_base)
        q0, r0 = divmod(ib, bin_ps)
        frac = float(node_base - ib) + r0
        bins = np.floor((frac + rel_ps * self.rate) / bin_ps).astype(np.int64)
        return (bins + q0) * bin_ps


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
