"""A run whose process dies is read as incomplete, with the data it had committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from qhil.records import RunStatus, RunStore
from qhil.records.clock import to_iso, utc_now
from qhil.records.liveness import lock_is_held

from .record_worker import BLOCK

WORKER = Path(__file__).with_name("record_worker.py")


@contextmanager
def worker(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        assert proc.stderr is not None
        pytest.fail(f"worker printed nothing; stderr:\n{proc.stderr.read()}")
    return line


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_sigkilled_run_reads_incomplete_with_data_intact(store: RunStore) -> None:
    blocks = 7
    with worker("crash", str(store.data_dir), str(blocks)) as proc:
        run_id = first_line(proc)
        live = store.get(run_id)
        assert live.status is RunStatus.RUNNING  # the owner holds its lock
        assert live.owner.pid == proc.pid
        # readable while the owner still holds the file open for writing
        np.testing.assert_array_equal(live.arrays["raw/tags"], np.arange(blocks * BLOCK))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    record = store.get(run_id)
    assert record.status is RunStatus.INCOMPLETE
    assert record.reason is not None and f"owner process {proc.pid}" in record.reason
    assert record.stopped_at is None
    assert record.seed == 11 and record.parameters == {"blocks": blocks}
    assert record.results == {"blocks_done": blocks}
    tags = record.arrays["raw/tags"]
    np.testing.assert_array_equal(tags, np.arange(blocks * BLOCK))
    np.testing.assert_allclose(record.arrays["qber"], 0.01 * np.arange(blocks))
    assert [r.run_id for r in store.list_runs(status="incomplete")] == [run_id]
    assert store.list_runs(status="running") == []


def _blocks_committed(store: RunStore, run_id: str) -> int:
    info = store.get(run_id).array_index.get("raw/tags")
    return 0 if info is None else info.shape[0] // BLOCK


@pytest.mark.slow
def test_kill_at_random_moments_of_appending_leaves_a_clean_prefix(store: RunStore) -> None:
    # The kill lands anywhere in resize / write / flush / index update: whatever the
    # index committed must read back exactly, never a torn or zero-filled tail. The worker
    # appends without pause, so killing as soon as a chosen number of blocks is committed
    # hits it mid-append; the number varies per round (fixed seed), not a wall-clock sleep.
    rng = np.random.default_rng(20261126)
    committed = []
    for at_least in rng.integers(1, 40, size=8):
        with worker("stream", str(store.data_dir)) as proc:
            run_id = first_line(proc)
            wait_until(
                lambda run_id=run_id, n=at_least: _blocks_committed(store, run_id) >= n,
                f"{at_least} blocks",
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        record = store.get(run_id)
        assert record.status is RunStatus.INCOMPLETE
        tags = record.arrays["raw/tags"]
        assert tags.size == record.array_index["raw/tags"].shape[0] > 0
        assert tags.size % BLOCK == 0 and tags.size >= at_least * BLOCK
        np.testing.assert_array_equal(tags, np.arange(tags.size))
        committed.append(tags.size)
    assert len(committed) == 8


def test_lock_is_held_while_running_and_gone_after_finish(store: RunStore) -> None:
    run = store.start_run("bb84")
    lock = store.data_dir / "locks" / f"{run.run_id}.lock"
    assert lock_is_held(lock) is True
    run.finish()
    assert not lock.exists()
    assert lock_is_held(lock) is False
    assert store.get(run.run_id).status is RunStatus.SUCCESS


def test_heartbeat_advances_while_running_and_stops_after(store: RunStore) -> None:
    run = store.start_run("bb84")
    first = store.get(run.run_id).owner.heartbeat_at
    wait_until(lambda: store.get(run.run_id).owner.heartbeat_at > first, "a heartbeat")
    run.finish()
    last = store.get(run.run_id).owner.heartbeat_at
    assert last == store.get(run.run_id).stopped_at
    # No beat can land after the finish: the beating thread is stopped and joined by
    # finish() itself (so this holds at once, whatever the scheduling), and a beat that
    # was already under way when finish() ran cannot move a finished run's stamp.
    beaters = [t for t in threading.enumerate() if t.name == f"qhil-run-{run.run_id}"]
    assert beaters == []
    run._beat()  # a late beat, as the thread would have made it
    assert store.get(run.run_id).owner.heartbeat_at == last


def _pretend_remote(store: RunStore, run_id: str, heartbeat_age_s: float) -> None:
    beat = utc_now() - timedelta(seconds=heartbeat_age_s)
    with store.database.writing() as conn:
        conn.execute(
            "UPDATE runs SET owner_host = 'far-away-host', owner_pid = 1, heartbeat_at = ? "
            "WHERE run_id = ?",
            (to_iso(beat), run_id),
        )


def test_remote_owner_is_judged_by_heartbeat_age(tmp_path: Path) -> None:
    writer = RunStore(tmp_path, heartbeat_interval_s=60.0, stale_after_s=120.0)
    reader = RunStore(tmp_path, heartbeat_interval_s=1.0, stale_after_s=10.0)
    run = writer.start_run("bb84")
    try:
        # the owner's own 60 s interval wins over the reader's 10 s: 4 x 60 s
        _pretend_remote(writer, run.run_id, heartbeat_age_s=200.0)
        assert reader.get(run.run_id).status is RunStatus.RUNNING
        _pretend_remote(writer, run.run_id, heartbeat_age_s=300.0)
        stale = reader.get(run.run_id)
        assert stale.status is RunStatus.INCOMPLETE
        assert (
            stale.reason is not None
            and "no heartbeat from owner process 1 on far-away-host" in stale.reason
        )
    finally:
        run.finish()


def test_remote_fresh_heartbeat_means_running(store: RunStore) -> None:
    run = store.start_run("bb84")
    try:
        _pretend_remote(store, run.run_id, heartbeat_age_s=0.0)
        assert store.get(run.run_id).status is RunStatus.RUNNING
    finally:
        run.finish()


def test_same_host_owner_without_lock_file_is_incomplete(store: RunStore) -> None:
    # e.g. the lock directory was cleaned while the owner was already dead
    run = store.start_run("bb84")
    with store.database.writing() as conn:
        conn.execute("UPDATE runs SET owner_pid = ? WHERE run_id = ?", (os.getpid(), run.run_id))
    run._lock.release()  # simulate: the lock is gone, the row still says running
    record = store.get(run.run_id)
    assert record.status is RunStatus.INCOMPLETE
    run._heartbeat.stop()
