"""A run from start to finish: what is recorded, and how it ends."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

import qhil
from qhil.records import (
    AmbiguousRunIdError,
    ProfileSnapshot,
    RecordValueError,
    RunNotFoundError,
    RunStateError,
    RunStatus,
    RunStore,
    StoreAccessError,
)


class _Node(BaseModel):
    tagger: str


class _Profile(BaseModel):
    bench: str
    nodes: dict[str, _Node]
    source: str = ""


def test_full_lifecycle_records_everything(store: RunStore, tmp_path: Path) -> None:
    profile_file = tmp_path / "bench.toml"
    profile_file.write_text('bench = "emulated"\n[nodes.alice]\ntagger = "emulated"\n')
    profile = _Profile(bench="emulated", nodes={"alice": _Node(tagger="emulated")})
    tags = np.arange(0, 5000, 7, dtype=np.int64)

    with store.start_run(
        "bb84",
        profile=profile,
        profile_source=profile_file,
        seed=2**70 + 3,  # wider than SQLite's integers: must survive
        parameters={"mu": 0.48, "decoys": (0.1, 0.0), "fibre_km": np.float64(25.0)},
        identities={"alice.tagger": "S-Fifteen,TDC1,0042,2.1\r\n"},
    ) as run:
        assert store.get(run.run_id).status is RunStatus.RUNNING
        run.set_identities({"bob.detector": "S-Fifteen,SPD,7,1.0"})
        run.append("raw/tags", tags[:300])
        run.append("raw/tags", tags[300:])
        for qber in (0.021, 0.019, 0.024):
            run.append("qber_per_block", qber)
        run.log_result("qber", 0.0213, unit="")
        run.log_results(secret_bits=4096, verified=True, note="ok", units={"secret_bits": "bit"})

    record = store.get(run.run_id)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", record.run_id)
    assert record.run_id.startswith(record.started_at.strftime("%Y%m%d-%H%M%S"))
    assert record.kind == "bb84"
    assert record.status is RunStatus.SUCCESS and record.reason is None
    assert record.started_at.tzinfo is not None and record.stopped_at is not None
    assert record.started_at <= record.stopped_at <= datetime.now(UTC)
    assert record.seed == 2**70 + 3
    assert record.parameters == {"mu": 0.48, "decoys": [0.1, 0.0], "fibre_km": 25.0}
    assert record.identities == {
        "alice.tagger": "S-Fifteen,TDC1,0042,2.1",
        "bob.detector": "S-Fifteen,SPD,7,1.0",
    }
    assert record.results == {"qber": 0.0213, "secret_bits": 4096, "verified": True, "note": "ok"}
    assert type(record.results["secret_bits"]) is int
    assert record.result_units == {"secret_bits": "bit"}

    assert record.profile is not None
    assert record.profile.data == {
        "bench": "emulated",
        "nodes": {"alice": {"tagger": "emulated"}},
        "source": "",
    }
    assert record.profile.source_path == str(profile_file.resolve())
    assert record.profile.source_sha256 == hashlib.sha256(profile_file.read_bytes()).hexdigest()

    assert record.software["qhil"] == qhil.__version__
    assert record.software["packages"]["numpy"] == np.__version__

    assert record.array_index["raw/tags"].shape == (tags.size,)
    assert record.array_index["raw/tags"].appends == 2
    np.testing.assert_array_equal(record.arrays["raw/tags"], tags)
    np.testing.assert_array_equal(record.arrays["qber_per_block"], [0.021, 0.019, 0.024])
    assert record.data_path is not None and record.data_path.is_file()


def test_profile_source_is_taken_from_a_profile_that_remembers_it(
    store: RunStore, tmp_path: Path
) -> None:
    profile_file = tmp_path / "lab.toml"
    profile_file.write_text("# lab bench\n")
    profile = _Profile(bench="lab", nodes={}, source=str(profile_file))
    with store.start_run("bb84", profile=profile) as run:
        pass
    snap = store.get(run.run_id).profile
    assert snap is not None and snap.source_path == str(profile_file.resolve())
    assert snap.source_sha256 == hashlib.sha256(b"# lab bench\n").hexdigest()


def test_profile_content_hash_ignores_key_order() -> None:
    a = ProfileSnapshot.capture({"x": 1, "y": {"b": 2, "a": 3}})
    b = ProfileSnapshot.capture({"y": {"a": 3, "b": 2}, "x": 1})
    c = ProfileSnapshot.capture({"y": {"a": 3, "b": 2}, "x": 2})
    assert a.data_sha256 == b.data_sha256 != c.data_sha256
    assert a.source_sha256 is None


def test_exception_marks_run_failed_with_its_text(store: RunStore) -> None:
    with pytest.raises(ZeroDivisionError), store.start_run("calibration.delay") as run:
        run.append("raw/hist", np.zeros(8))
        _ = 1 / 0
    record = store.get(run.run_id)
    assert record.status is RunStatus.FAILED
    assert record.reason == "ZeroDivisionError: division by zero"
    assert record.array_index["raw/hist"].shape == (8,)


def test_keyboard_interrupt_marks_run_aborted(store: RunStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.start_run("bb84") as run:
        raise KeyboardInterrupt
    record = store.get(run.run_id)
    assert (record.status, record.reason) == (RunStatus.ABORTED, "KeyboardInterrupt")


def test_explicit_finish_inside_block_is_kept(store: RunStore) -> None:
    with pytest.raises(RuntimeError), store.start_run("bb84") as run:
        run.abort("operator pressed stop")
        raise RuntimeError("after the abort")
    record = store.get(run.run_id)
    assert (record.status, record.reason) == (RunStatus.ABORTED, "operator pressed stop")


def test_run_without_context_manager(store: RunStore) -> None:
    run = store.start_run("clock_sync")
    run.fail("tagger buffer overflow")
    record = run.record()
    assert (record.status, record.reason) == (RunStatus.FAILED, "tagger buffer overflow")
    assert record.data_path is None and len(record.arrays) == 0


def test_finished_run_refuses_writes_and_second_finish(store: RunStore) -> None:
    with store.start_run("bb84") as run:
        pass
    with pytest.raises(RunStateError, match="finished"):
        run.append("raw/tags", np.arange(3))
    with pytest.raises(RunStateError, match="finished"):
        run.log_result("qber", 0.1)
    with pytest.raises(RunStateError, match="already finished"):
        run.finish("failed", "again")


def test_finish_status_must_be_final(store: RunStore) -> None:
    run = store.start_run("bb84")
    with pytest.raises(RecordValueError, match="not 'running'"):
        run.finish("running")
    with pytest.raises(ValueError):
        run.finish("exploded")
    run.finish()
    assert store.get(run.run_id).status is RunStatus.SUCCESS


async def test_async_context_and_append(store: RunStore) -> None:
    async with store.start_run("entanglement.chsh") as run:
        rows = await run.aappend("raw/coincidences", np.ones((4, 2), dtype=np.int32))
        assert rows == 4
    record = store.get(run.run_id)
    assert record.status is RunStatus.SUCCESS
    assert record.array_index["raw/coincidences"].shape == (4, 2)


async def test_cancellation_marks_run_aborted(store: RunStore) -> None:
    started = asyncio.Event()
    ids: list[str] = []

    async def experiment() -> None:
        async with store.start_run("bb84") as run:
            ids.append(run.run_id)
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(experiment())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = store.get(ids[0])
    assert (record.status, record.reason) == (RunStatus.ABORTED, "cancelled")


def test_get_by_unique_prefix_and_errors(store: RunStore) -> None:
    runs = [store.start_run("bb84") for _ in range(3)]
    for run in runs:
        run.finish()
    target = runs[1].run_id
    others = [r.run_id for r in runs if r.run_id != target]
    unique = next(n for n in range(1, 21) if not any(o.startswith(target[:n]) for o in others))
    assert store.get(target).run_id == target
    assert store.get(target[:unique]).run_id == target
    with pytest.raises(AmbiguousRunIdError, match="matches 3 runs"):
        store.get(target[:8])  # the date: shared by all three
    with pytest.raises(RunNotFoundError, match="no run '19990101'"):
        store.get("19990101")
    with pytest.raises(RunNotFoundError):
        store.get("")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "bb 84"}, "run kind 'bb 84'"),
        ({"kind": "bb84", "seed": 1.5}, "seed must be an integer"),
        ({"kind": "bb84", "parameters": {"alice": {"mu": {0.1}}}}, r"parameters\.alice\.mu"),
        ({"kind": "bb84", "parameters": {"big": np.zeros(100_000)}}, r"parameters\.big"),
        ({"kind": "bb84", "identities": {"tagger": 42}}, r"identities\.tagger"),
        ({"kind": "bb84", "profile_source": "x.toml"}, "without the validated profile"),
    ],
)
def test_bad_start_arguments_are_named(store: RunStore, kwargs: dict, message: str) -> None:
    with pytest.raises(RecordValueError, match=message):
        store.start_run(**kwargs)
    assert store.list_runs() == []


def test_results_must_be_scalars(store: RunStore) -> None:
    with store.start_run("bb84") as run:
        with pytest.raises(RecordValueError, match=r"results\.hist"):
            run.log_result("hist", np.arange(4))
        with pytest.raises(RecordValueError, match="units given"):
            run.log_results(qber=0.1, units={"rate": "Hz"})
        run.log_result("qber", np.float32(0.25))
        run.log_result("qber", 0.5)  # a later value replaces the earlier one
    assert store.get(run.run_id).results == {"qber": 0.5}


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from qhil.records import StoreVersionError

    RunStore(tmp_path)
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreVersionError, match="schema version 99"):
        RunStore(tmp_path)


def test_store_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreAccessError, match=r"run store .*/f: exists and is not a directory"):
        RunStore(tmp_path / "f")


def test_default_data_dir_follows_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qhil.records import default_data_dir, default_key_dir

    monkeypatch.setenv("QHIL_DATA_DIR", str(tmp_path / "q"))
    assert default_data_dir() == tmp_path / "q"
    assert default_key_dir() == tmp_path / "q" / "keys"
    monkeypatch.delenv("QHIL_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "qhil"
    store = RunStore()
    assert store.data_dir == tmp_path / "xdg" / "qhil" and store.db_path.is_file()
