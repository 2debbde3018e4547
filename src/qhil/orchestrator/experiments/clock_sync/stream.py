"""Each node reads its own tagger continuously, one tracking interval at a time.

:func:`tag_chunks` hands out consecutive chunks of one tagger's stream: timestamps in
the tagger's own stream timebase (one counter reset at the start; continuous across
chunks), so that an offset tracked from chunk to chunk means something. Only the
:class:`~qhil.drivers.roles.TimeTagger` role is used (its continuous ``stream``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.drivers.roles import TagBlock, TimeTagger
from qhil.orchestrator.experiments.clock_sync.errors import ClockSyncAborted, SyncAbortReason

I64 = npt.NDArray[np.int64]
PS_PER_S = 10**12


@dataclass(frozen=True)
class Chunk:
    """One slice of a node's stream: ``[start_ps, stop_ps)`` of its tagger's stream time."""

    index: int
    start_ps: int
    stop_ps: int
    timestamps_ps: I64
    channels: npt.NDArray[np.int16]

    def on(self, channels: tuple[int, ...] | None) -> I64:
        """The timestamps of the given inputs (None: all), sorted."""
        if channels is None:
            return self.timestamps_ps
        return self.timestamps_ps[np.isin(self.channels, np.asarray(channels))]


def _checked(block: TagBlock, node: str, tagger: TimeTagger) -> TagBlock:
    if block.lost:
        raise ClockSyncAborted(
            SyncAbortReason.BUFFER_OVERFLOW,
            f"{node}'s tagger {tagger.name} lost {block.lost} events (its buffer "
            "overflowed): the stream has gaps; lower the count rates (pump current, "
            "detector thresholds) or read it in shorter chunks (tracking_interval_s)",
        )
    return block


async def tag_chunks(
    tagger: TimeTagger, node: str, total_s: float, chunk_s: float
) -> AsyncGenerator[Chunk, None]:
    """Consecutive chunks of ``chunk_s`` of stream time, ``total_s`` in all (the role's
    ``stream``: one acquisition, one timebase); the stream stops when this is closed."""
    blocks = tagger.stream(total_s, chunk_s)
    try:
        index = 0
        async for block in blocks:
            _checked(block, node, tagger)
            start = int(block.meta.get("t_start_ps", 0))
            stop = int(block.meta.get("t_stop_ps", start + round(chunk_s * PS_PER_S)))
            yield Chunk(index, start, stop, block.timestamps_ps, block.channels)
            index += 1
    finally:
        await _close(blocks)


async def _close(blocks: Any) -> None:
    aclose = getattr(blocks, "aclose", None)
    if aclose is not None:
        await aclose()
