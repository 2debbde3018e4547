"""Electrical sync pulses of pulsed sources (a tag every n-th optical pulse)."""

from __future__ import annotations

from fractions import Fraction
from typing import Protocol

import numpy as np

from .clock import NodeClock
from .config import SyncOutputConfig
from .link import Link
from .polarization import F64
from .sample_wcs import Window, pulse_range


class PulsedSource(Protocol):
    @property
    def t0_ps(self) -> Fraction: ...

    @property
    def period_ps(self) -> Fraction: ...


class SyncSource:
    """Sync outputs of one pulsed source: pulse k with ``k % every_n_pulses == 0`` gives a tag."""

    def __init__(
        self,
        source: PulsedSource,
        clock: NodeClock,
        outputs: list[SyncOutputConfig],
        links: list[Link | None],
    ) -> None:
        self.source = source
        self.clock = clock
        self.outputs = outputs
        self.links = links

    def times(self, w: Window) -> list[F64]:
        """Arrival times at the tagger (ps from the window start), one array per output."""
        res: list[F64] = []
        if not self.outputs:
            return res
        k_lo, k_hi, rel_lo, dt = pulse_range(
            self.clock, self.source.t0_ps, self.source.period_ps, w
        )
        for sync, link in zip(self.outputs, self.links, strict=True):
            every = sync.every_n_pulses
            first = -(-k_lo // every) * every
            ks = np.arange(first, max(first, k_hi), every, dtype=np.int64)
            rel: F64 = rel_lo + (ks - k_lo).astype(np.float64) * dt
            if self.clock.wanders:
                rel = rel + self.clock.grid_correction_ps(w.start_ps, rel_lo, rel)
            if link is not None and ks.size:
                rel = rel + link.delays_ps(w.j_lo, w.j_hi)[w.step_index(rel)]
            res.append(rel + sync.delay_ns * 1e3)
        return res

    def longest_delay_ps(self) -> float:
        return max(
            [0.0]
            + [
                s.delay_ns * 1e3 + (link.base_delay_ps if link else 0.0)
                for s, link in zip(self.outputs, self.links, strict=True)
            ]
        )
