"""The acquisition goes in chunks, each with its own clock model (the clocks wander: one
linear model over 10 s lost ~9 % of the pairs on the emulated bench)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qhil.orchestrator.experiments.bbm92 import job as job_module
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings


def test_chunks_cover_the_duration() -> None:
    assert BBM92Settings(duration_s=5.0, chunk_s=2.0).chunks() == [2.0, 2.0, 1.0]
    assert BBM92Settings(duration_s=4.0, chunk_s=2.0).chunks() == [2.0, 2.0]
    assert BBM92Settings(duration_s=1.5, chunk_s=2.0).chunks() == [1.5]


@pytest.mark.asyncio
async def test_each_chunk_is_acquired_with_the_previous_model_as_prior(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[float, Any]] = []

    class Acq:
        def __init__(self, i: int) -> None:
            self.model = f"model {i}"

    async def fake(nodes: Any, d: float, options: Any, *, prior: Any = None) -> Acq:
        calls.append((d, prior))
        return Acq(len(calls))

    monkeypatch.setattr(job_module, "acquire_pairs", fake)
    acqs = await job_module.acquire_chunks(None, BBM92Settings(duration_s=5.0, chunk_s=2.0))  # type: ignore[arg-type]
    assert len(acqs) == 3
    assert calls == [(2.0, None), (2.0, "model 1"), (1.0, "model 2")]


@pytest.mark.asyncio
async def test_each_chunk_is_recorded_as_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed mid-acquisition keeps the chunks it had (they were appended only after
    the last chunk before)."""
    appended: list[str] = []
    done = 0

    class Run:
        def append(self, name: str, rows: Any) -> None:
            appended.append(name)

    class Acq:
        model = None
        z = np.zeros((4, 4))
        coincidences = SimpleNamespace(matrix=z, accidentals=z, singles_a=z[0], singles_b=z[0])

    async def fake(nodes: Any, d: float, options: Any, *, prior: Any = None) -> Acq:
        nonlocal done
        done += 1
        if done == 3:
            raise KeyboardInterrupt  # the process goes while acquiring the third chunk
        return Acq()

    monkeypatch.setattr(job_module, "acquire_pairs", fake)
    s = BBM92Settings(duration_s=5.0, chunk_s=2.0)
    with pytest.raises(KeyboardInterrupt):
        await job_module.acquire_chunks(None, s, job_module._chunk_recorder(Run()))  # type: ignore[arg-type]
    assert appended.count("acquisition/matrix") == 2


def test_inputs_an_open_tagger_lacks_are_refused_at_bench_open() -> None:
    from qhil.errors import ConfigError

    tagger = SimpleNamespace(name="alice.tagger", channels=3)
    bench: Any = SimpleNamespace(
        role=lambda *a, **k: tagger, profile=SimpleNamespace(source="lab.toml")
    )
    with pytest.raises(ConfigError, match=r"experiments.bbm92.alice_channels: input 4"):
        job_module.nodes_for_bbm92(bench, BBM92Settings())
