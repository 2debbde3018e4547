"""The recorded teleport job over a fake network (the request API's calls, the numpy fake
memories): record, results, a typed request error ending the run failed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qhil.orchestrator.experiments.network as network_pkg
from qhil.errors import ConfigError
from qhil.orchestrator.experiments.network import RequestTimeout
from qhil.orchestrator.experiments.teleport.job import parse_states, run_teleport_job
from qhil.orchestrator.experiments.teleport.protocol import INPUTS, SHOT_DTYPE
from qhil.records import RunStore

from .fakes import FakeWorld

Z99_9 = 3.2905


class FakeNetwork:
    def __init__(self, world: FakeWorld, fail_after: int | None = None) -> None:
        self.world = world
        self.fail_after = fail_after
        self.requests: list[Any] = []

        async def identities() -> dict[str, str]:
            return {"alice.memory": "FAKE"}

        self.bench = type("B", (), {"identities": staticmethod(identities)})()

    async def create(self, request: Any) -> list[Any]:
        self.requests.append(request)
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            raise RequestTimeout("link alice-repeater: 1000 attempts heralded nothing", request)
        return [await self.world.deliver()]

    async def release(self, pair: Any) -> None:
        await self.world.release(pair)

    def memory(self, node: str) -> FakeWorld:
        return self.world


def _patch(monkeypatch: pytest.MonkeyPatch, net: FakeNetwork) -> None:
    @contextlib.asynccontextmanager
    async def fake_open(*args: Any, **kw: Any) -> AsyncIterator[FakeNetwork]:
        yield net

    monkeypatch.setattr(network_pkg, "open_network", fake_open)


def test_job_records_shots_and_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakeNetwork(FakeWorld(0.85, np.random.default_rng(9)))
    _patch(monkeypatch, net)
    summary = asyncio.run(run_teleport_job("repeater", data_dir=tmp_path, shots=60))
    assert summary.status == "success", summary.reason
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.kind == "teleport" and rec.status == "success"
    rows = rec.arrays["shots"]
    assert rows.dtype == SHOT_DTYPE and rows.size == 360
    assert len(net.requests) == 360
    assert all(r.local == "alice" and r.remote == "bob" and r.pairs == 1 for r in net.requests)
    res = rec.results
    assert res["inputs"] == ",".join(INPUTS)
    assert res["predicted_fidelity"] == pytest.approx(0.9)
    assert abs(res["average_fidelity"] - 0.9) < Z99_9 * res["average_fidelity_std"]
    assert summary.as_dict()["kind"] == "teleport"


def test_request_error_fails_the_run_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch(monkeypatch, FakeNetwork(FakeWorld(0.9, np.random.default_rng(1)), fail_after=70))
    summary = asyncio.run(run_teleport_job("repeater", data_dir=tmp_path, shots=30))
    assert summary.status == "failed"
    assert summary.reason is not None and summary.reason.startswith("RequestTimeout: link alice")
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.status == "failed" and rec.reason == summary.reason
    assert rec.arrays["shots"].size == 60  # the chunks written before the error


def test_bloch_angles_refused_by_a_controller_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch(monkeypatch, FakeNetwork(FakeWorld(0.9, np.random.default_rng(1))))
    with pytest.raises(ConfigError, match="--state.*not Bloch angles"):
        asyncio.run(run_teleport_job("repeater", data_dir=tmp_path, states=("1;0.5",), shots=3))


def test_unknown_node_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--to.*no node 'carol'"):
        asyncio.run(run_teleport_job("repeater", data_dir=tmp_path, receiver="carol"))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (None, INPUTS),
        ("all", INPUTS),
        ("h, D", ("H", "D")),
        ("1.5;0.25", ("1.5;0.25",)),
        ("0;-1", ("0;5.28319",)),  # azimuth taken modulo 2 pi, as the controller wants it
    ],
)
def test_parse_states(text: str | None, want: tuple[str, ...]) -> None:
    assert parse_states(text) == want


@pytest.mark.parametrize("text", ["Q", "H,H", "1;x", "1;2;3", "3.2;0", "-0.1;0"])
def test_parse_states_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--state"):
        parse_states(text)
