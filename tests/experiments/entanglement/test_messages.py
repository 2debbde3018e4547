"""What the entanglement commands say: the zeros used in --json, a hint towards the
entanglement profile when a node is missing, a plain line when a stream is read again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.errors import TransportError
from qhil.orchestrator.experiments.entanglement import acquisition
from qhil.orchestrator.experiments.entanglement.job import ChshSummary, VisibilitySummary


@pytest.mark.parametrize("cls", [ChshSummary, VisibilitySummary])
def test_the_json_summary_says_which_mount_zeros_were_used(cls: Any) -> None:
    zeros = {"mount_zero_source": "settings", "alice_mount_zero_deg": 1.5, "bob_mount_zero_deg": 0}
    out = cls("r", "success", None, zeros).as_dict()
    assert {k: out[k] for k in zeros} == zeros


@pytest.mark.parametrize("kind", ["chsh", "visibility", "bbm92"])
def test_a_missing_node_points_at_the_entanglement_profile(kind: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["run", kind, "--data-dir", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "no node" in r.output and "profile 'entanglement'" in r.output, r.output


def test_a_stream_read_again_is_a_plain_retrying_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    async def read(tagger: Any, node: str, duration_s: float, chunk_s: float) -> Any:
        calls.append(node)
        if len(calls) == 1:
            raise TransportError("tdc1", "timestamp stream corrupt: restart the stream")
        return [], []

    monkeypatch.setattr(acquisition, "_read", read)
    opts: Any = type("Opts", (), {"stream_attempts": 3, "chunk_s": 0.1})()
    nodes: Any = type("Nodes", (), {"alice_tagger": None, "bob_tagger": None})()
    with caplog.at_level(logging.INFO, logger=acquisition.__name__):
        asyncio.run(acquisition._both_streams(nodes, 0.1, opts))
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert shown == ["pair acquisition: retrying both taggers' streams (attempt 2 of 3)"]
