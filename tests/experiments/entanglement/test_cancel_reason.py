"""A cancel that lands while both taggers stream keeps its reason (what ``qhil run`` records
on SIGINT/SIGTERM): before, a stream that ended in an error as the cancel reached it made
the acquisition raise a bare CancelledError, and the run was recorded "cancelled"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qhil.errors import TransportError
from qhil.orchestrator.experiments.entanglement import acquisition

REASON = "terminated by signal (SIGTERM)"


@pytest.mark.parametrize("ending", ["transport error", "cancelled"])
def test_a_cancel_during_the_streams_keeps_its_reason(
    ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def read(tagger: Any, node: str, duration_s: float, chunk_s: float) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # the stream's abort goes out
            if ending == "transport error" and node == "bob":
                raise TransportError("tdc1", "stream cut short") from None
            raise
        return [], []

    monkeypatch.setattr(acquisition, "_read", read)
    opts: Any = type("Opts", (), {"stream_attempts": 3, "chunk_s": 0.1})()
    nodes: Any = type("Nodes", (), {"alice_tagger": None, "bob_tagger": None})()

    async def main() -> tuple[Any, ...]:
        task = asyncio.create_task(acquisition._both_streams(nodes, 0.1, opts))
        await asyncio.sleep(0.05)
        task.cancel(REASON)
        try:
            await task
        except asyncio.CancelledError as exc:
            return exc.args
        return ()

    assert asyncio.run(main()) == (REASON,)
