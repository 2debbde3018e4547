"""Two processes writing to one store at once leave a consistent, complete store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from qhil.records import RunStatus, RunStore

from .record_worker import BLOCK

WORKER = Path(__file__).with_name("record_worker.py")


def test_two_processes_write_runs_concurrently(store: RunStore, tmp_path: Path) -> None:
    runs_each = 15
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                "write",
                str(store.data_dir),
                tag,
                str(runs_each),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    # this process reads (and judges liveness) while the two write
    while any(p.poll() is None for p in procs):
        for record in store.list_runs():
            assert record.status in (RunStatus.RUNNING, RunStatus.SUCCESS)
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    printed = {tag: out.split() for tag, (out, _) in zip("ab", outputs, strict=True)}

    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    records = store.list_runs(newest_first=False)
    assert len(records) == 2 * runs_each
    # the writers really overlapped (else this test would prove nothing about concurrency)
    order = "".join(r.kind[-1] for r in records)
    assert "ab" in order and "ba" in order, order
    assert len({r.run_id for r in records}) == 2 * runs_each
    for tag in "ab":
        mine = store.list_runs(kind=f"test.concurrent.{tag}", newest_first=False)
        assert [r.run_id for r in mine] == printed[tag]
        assert [r.seed for r in mine] == list(range(runs_each))
        for record in mine:
            assert record.status is RunStatus.SUCCESS
            assert record.results == {"blocks": 5, "writer": tag}
            assert record.identities == {f"{tag}.tagger": f"qhil,worker-{tag},{record.seed},1"}
            np.testing.assert_array_equal(record.arrays["raw/tags"], np.arange(5 * BLOCK))
