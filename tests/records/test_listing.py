"""Finding runs again: filters, order, limits, and the text/JSON the CLI prints."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from qhil.records import (
    RecordValueError,
    RunStatus,
    RunStore,
    format_run_detail,
    format_run_table,
    run_to_json_dict,
    runs_to_json_list,
)


@pytest.fixture
def populated(store: RunStore) -> dict[str, str]:
    ids = {}
    with store.start_run("bb84", seed=1) as run:
        run.log_result("qber", 0.02)
    ids["bb84"] = run.run_id
    with store.start_run("calibration.detector_efficiency") as run:
        run.log_result("efficiency", 0.81)
    ids["cal_eff"] = run.run_id
    run = store.start_run("calibration.delay")
    run.fail("tagger timeout")
    ids["cal_delay"] = run.run_id
    ids["live"] = store.start_run("bb84").run_id  # left running: owned by this process
    return ids


def test_newest_first_and_oldest_first(store: RunStore, populated: dict[str, str]) -> None:
    newest = [r.run_id for r in store.list_runs()]
    assert newest == [populated[k] for k in ("live", "cal_delay", "cal_eff", "bb84")]
    assert [r.run_id for r in store.list_runs(newest_first=False)] == newest[::-1]
    assert [r.run_id for r in store.list_runs(limit=2)] == newest[:2]
    assert store.list_runs(limit=0) == []
    latest = store.latest(kind="calibration.*")
    assert latest is not None and latest.run_id == populated["cal_delay"]


def test_filters(store: RunStore, populated: dict[str, str]) -> None:
    def ids(**kw: object) -> set[str]:
        return {r.run_id for r in store.list_runs(**kw)}  # type: ignore[arg-type]

    assert ids(kind="bb84") == {populated["bb84"], populated["live"]}
    assert ids(kind="calibration.*") == {populated["cal_eff"], populated["cal_delay"]}
    assert ids(status="failed") == {populated["cal_delay"]}
    assert ids(status=["success", RunStatus.FAILED]) == {
        populated["bb84"],
        populated["cal_eff"],
        populated["cal_delay"],
    }
    assert ids(status="running") == {populated["live"]}
    assert ids(status="incomplete") == set()
    assert ids(kind="bb84", status="success") == {populated["bb84"]}
    cal = store.get(populated["cal_eff"])
    assert ids(since=cal.started_at) == {
        populated["cal_eff"],
        populated["cal_delay"],
        populated["live"],
    }
    assert ids(until=cal.started_at) == {populated["bb84"]}
    assert ids(since=cal.started_at, until=cal.started_at + timedelta(microseconds=1)) == {
        populated["cal_eff"]
    }
    with pytest.raises(RecordValueError, match="statuses are running, success"):
        store.list_runs(status="done")


def test_limit_counts_judged_statuses(store: RunStore, populated: dict[str, str]) -> None:
    # "running" rows are judged before the limit applies: the live run counts as running
    assert [r.run_id for r in store.list_runs(status="running", limit=1)] == [populated["live"]]
    assert store.list_runs(status="incomplete", limit=1) == []


def test_table(store: RunStore, populated: dict[str, str]) -> None:
    lines = format_run_table(store.list_runs()).splitlines()
    assert lines[0].split() == [
        "RUN",
        "ID",
        "KIND",
        "STATUS",
        "STARTED",
        "(UTC)",
        "DURATION",
        "SEED",
    ]
    assert len(lines) == 5
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[populated["bb84"]][1:3] == ["bb84", "success"]
    assert rows[populated["bb84"]][-1] == "1"
    assert rows[populated["cal_delay"]][1:3] == ["calibration.delay", "failed"]
    assert rows[populated["live"]][2] == "running" and rows[populated["live"]][5] == "-"
    # columns line up: every status starts at the same offset
    assert len({line.index(line.split()[2]) for line in lines[1:]}) == 1
    assert format_run_table([]) == "no runs"


def test_detail_text(store: RunStore) -> None:
    with store.start_run(
        "bb84",
        seed=42,
        profile={"bench": {"name": "emulated"}},
        parameters={"alice": {"mu": 0.48}},
        identities={"alice.laser": "SANTEC,TSL-570,00001,0026.0026.0011"},
    ) as run:
        run.append("raw/tags", np.arange(12).reshape(6, 2))
        run.log_result("key_rate", 1234.5, unit="bit/s")
    text = format_run_detail(store.get(run.run_id))
    for expected in (
        f"run id     {run.run_id}",
        "status     success",
        "seed       42",
        "alice.laser  SANTEC,TSL-570,00001,0026.0026.0011",
        "alice.mu  0.48",
        "key_rate  1234.5 bit/s",
        "raw/tags  int64 6x2  (1 append)",
        "keys: none",
        "profile: (built in code)",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_json_exports_are_strict_json(store: RunStore, populated: dict[str, str]) -> None:
    with store.start_run("bb84") as run:
        run.log_results(qber=float("nan"), rate=float("inf"), n=3)
    exported = run_to_json_dict(store.get(run.run_id))
    text = json.dumps(exported, allow_nan=False)
    back = json.loads(text)
    assert back["results"] == {"qber": "NaN", "rate": "Infinity", "n": 3}
    assert back["run_id"] == run.run_id and back["status"] == "success"
    # The duration is exactly stop minus start as the export itself records them.
    started, stopped = (datetime.fromisoformat(back[k]) for k in ("started_at", "stopped_at"))
    assert back["duration_s"] == (stopped - started).total_seconds()
    # the database keeps the real float
    assert np.isnan(store.get(run.run_id).results["qber"])  # type: ignore[arg-type]
    listed = runs_to_json_list(store.list_runs())
    assert listed[0]["run_id"] == run.run_id and len(listed) == 5
    json.dumps(listed, allow_nan=False)
