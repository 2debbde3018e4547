"""Wall-clock stage timers of a BB84 run, for benchmarks: no effect on what a run computes.

The parties wrap their per-block stages in :func:`stage` (``"pattern"``, ``"upload"``,
``"acquisition"``, ``"alignment"``, ...). Nothing is kept unless a caller collects:

    with collect_stages() as times:
        await run_bb84(...)
    times.seconds["alignment"]

The collector lives in a context variable, so it reaches the parties' tasks and their
worker threads (``asyncio.to_thread`` copies the context) and no other run sees it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class StageTimes:
    """Accumulated wall seconds and call counts per stage name, and when (``time.time()``)
    each stage was first entered."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    first_entered: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1


_COLLECTOR: ContextVar[StageTimes | None] = ContextVar("qhil_bb84_stage_times", default=None)


@contextmanager
def collect_stages() -> Iterator[StageTimes]:
    """Collect the stage timers of everything run in this context (and tasks started in it)."""
    times = StageTimes()
    token = _COLLECTOR.set(times)
    try:
        yield times
    finally:
        _COLLECTOR.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the enclosed code as stage ``name`` when someone collects (else nearly free)."""
    times = _COLLECTOR.get()
    if times is None:
        yield
        return
    times.first_entered.setdefault(name, time.time())
    t0 = time.perf_counter()
    try:
        yield
    finally:
        times.add(name, time.perf_counter() - t0)
