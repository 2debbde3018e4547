"""Drift tracking between BBM92 chunks (bbm92/tracking.py), at the chunk level with fakes:
a fibre whose rotation walks away chunk by chunk, acquisitions that count its D/A errors,
and a compensation that undoes the rotation (the search itself, on the emulated bench,
takes tens of seconds: its own tests are elsewhere)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qhil.calibration.binomial import ErrorFraction
from qhil.calibration.errors import CalibrationError
from qhil.orchestrator.experiments.bbm92 import job as job_module
from qhil.orchestrator.experiments.bbm92 import tracking as tracking_module
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings
from qhil.orchestrator.experiments.bbm92.tracking import ChunkTracker, da_errors, verified_level

BAND = 0.03  # a compensated fibre's D/A QBER stays below this (1 % floor + noise)


class Run:
    def __init__(self) -> None:
        self.rows: dict[str, list[np.ndarray]] = {}

    def append(self, name: str, rows: np.ndarray) -> None:
        self.rows.setdefault(name, []).append(rows)

    def table(self, name: str) -> np.ndarray:
        return np.concatenate(self.rows.get(name, [np.zeros(0)]))


class Fibre:
    """Bob's fibre: its rotation grows by ``step`` rad per chunk; a compensation zeroes it."""

    def __init__(self, step: float, seed: int = 7, reach: float = 0.0) -> None:
        self.step = step
        self.reach = reach  # where a compensation leaves the rotation (0: undone)
        self.theta = 0.0
        self.rng = np.random.default_rng(seed)
        self.qber: list[float] = []  # each chunk's measured D/A QBER

    async def acquire(self, nodes: Any, d: float, options: Any, *, prior: Any = None) -> Any:
        n = 4000
        e = 0.01 + math.sin(self.theta) ** 2
        k = int(self.rng.binomial(n, e))
        m = np.zeros((4, 4), dtype=np.int64)
        m[2, 2], m[3, 3] = (n - k) // 2, n - k - (n - k) // 2
        m[2, 3], m[3, 2] = k // 2, k - k // 2
        self.qber.append(k / n)
        self.theta += self.step
        return SimpleNamespace(matrix=m, model=None)

    async def compensate(self, nodes: Any, controller: Any, opts: Any, **kw: Any) -> Any:
        self.theta = self.reach
        e = 0.01 + math.sin(self.reach) ** 2
        ef = ErrorFraction(round(4000 * e), 4000)
        after = SimpleNamespace(e_z=ef, e_x=ef)
        return SimpleNamespace(after=after, confidence=0.95, target_met=e < 0.02, acquisitions=12)


def settings(**kw: Any) -> BBM92Settings:
    return BBM92Settings(duration_s=16.0, chunk_s=2.0, **kw)


START = {"polcal_e_x_after_hi": 0.013}  # the start's compensation verified e_X <= 1.3 %


def test_the_test_basis_errors_are_the_da_block() -> None:
    m = np.arange(16).reshape(4, 4)
    assert da_errors(m) == (10 + 11 + 14 + 15, 11 + 14)


def test_the_level_comes_from_the_compensation_or_its_check() -> None:
    assert verified_level({"polcal_e_x_after_hi": 0.02}) == 0.02
    reused = verified_level({"polcal_check_e_x": 0.01, "polcal_check_e_x_clicks": 1000})
    assert reused is not None and 0.01 < reused < 0.02
    assert verified_level({}) is None


@pytest.mark.asyncio
async def test_drift_is_tracked_and_without_tracking_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With tracking: the rising QBER fires the test, bob re-compensates, it comes back.
    fibre = Fibre(step=0.12)
    monkeypatch.setattr(job_module, "acquire_pairs", fibre.acquire)
    monkeypatch.setattr(tracking_module, "compensate_pairs", fibre.compensate)
    run = Run()
    s = settings()
    tracker = ChunkTracker(None, object(), s, run, START)  # type: ignore[arg-type]
    acqs = await job_module.acquire_chunks(None, s, tracker=tracker)  # type: ignore[arg-type]
    assert len(acqs) == 8
    rec = run.table("recompensation")
    assert tracker.recompensations >= 1 and len(rec) == tracker.recompensations
    assert (rec["ok"] == 1).all() and (rec["qber_x"] > rec["expected_x"]).all()
    tracked = run.table("tracking")
    assert list(tracked["chunk"]) == list(range(8))
    fired = [c for c in tracked["chunk"][tracked["triggered"] == 1] if c < 7]  # 7: the last
    assert fired == list(rec["chunk"])
    # each chunk right after a re-compensation is back in band
    assert all(fibre.qber[c + 1] < BAND for c in rec["chunk"] if c + 1 < 8)
    assert tracker.results()["tracking_recompensation_acquisitions"] == 12 * len(rec)
    tracked_qber = fibre.qber

    # The same seed without tracking: the later chunks are out of band.
    fibre = Fibre(step=0.12)
    monkeypatch.setattr(job_module, "acquire_pairs", fibre.acquire)
    await job_module.acquire_chunks(None, s)  # type: ignore[arg-type]
    assert all(q > BAND for q in fibre.qber[4:])
    assert max(tracked_qber) < max(fibre.qber)


@pytest.mark.asyncio
async def test_a_stable_fibre_never_triggers(monkeypatch: pytest.MonkeyPatch) -> None:
    fibre = Fibre(step=0.0)
    monkeypatch.setattr(job_module, "acquire_pairs", fibre.acquire)
    monkeypatch.setattr(tracking_module, "compensate_pairs", fibre.compensate)
    run = Run()
    tracker = ChunkTracker(None, object(), settings(), run, START)  # type: ignore[arg-type]
    await job_module.acquire_chunks(None, settings(), tracker=tracker)  # type: ignore[arg-type]
    assert tracker.recompensations == 0 and "recompensation" not in run.rows


@pytest.mark.asyncio
async def test_a_failed_recompensation_is_recorded_and_not_retried_every_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fibre = Fibre(step=0.0)
    fibre.theta = 0.35  # jumped once, after the compensation
    monkeypatch.setattr(job_module, "acquire_pairs", fibre.acquire)

    async def fails(*a: Any, **kw: Any) -> Any:
        raise CalibrationError("no light")

    monkeypatch.setattr(tracking_module, "compensate_pairs", fails)
    run = Run()
    tracker = ChunkTracker(None, object(), settings(), run, START)  # type: ignore[arg-type]
    await job_module.acquire_chunks(None, settings(), tracker=tracker)  # type: ignore[arg-type]
    rec = run.table("recompensation")
    assert len(rec) == 1 and rec["ok"][0] == 0 and tracker.failed == 1


def test_tracking_follows_the_compensation_setting() -> None:
    class Bench:
        def role(self, *a: Any, **kw: Any) -> object:
            return object()

    on = tracking_module.tracker_for(Bench(), None, settings(), Run(), START)  # type: ignore[arg-type]
    assert on is not None
    off = settings(track_polarization=False)
    assert tracking_module.tracker_for(Bench(), None, off, Run(), START) is None  # type: ignore[arg-type]
    none = settings(compensate_polarization=False)
    assert tracking_module.tracker_for(Bench(), None, none, Run(), START) is None  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_recompensation_that_misses_its_target_keeps_the_expected_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its high level is no reference: taken as expected it would stop the tracking."""
    fibre = Fibre(step=0.0, reach=0.4)  # each search leaves ~16 % of errors
    fibre.theta = 0.4
    monkeypatch.setattr(job_module, "acquire_pairs", fibre.acquire)
    monkeypatch.setattr(tracking_module, "compensate_pairs", fibre.compensate)
    run = Run()
    tracker = ChunkTracker(None, object(), settings(), run, START)  # type: ignore[arg-type]
    await job_module.acquire_chunks(None, settings(), tracker=tracker)  # type: ignore[arg-type]
    rec = run.table("recompensation")
    assert len(rec) == 7 and (rec["target_met"] == 0).all()  # not after the last chunk
    assert (run.table("tracking")["expected_x"] == START["polcal_e_x_after_hi"]).all()


@pytest.mark.asyncio
@pytest.mark.parametrize("continuous", [False, True])
async def test_after_the_last_chunk_only_a_continuous_run_recompensates(
    monkeypatch: pytest.MonkeyPatch, continuous: bool
) -> None:
    """A one-off run has no chunk left to profit from it; --continuous's next key does."""
    fibre = Fibre(step=0.0)
    fibre.theta = 0.4
    monkeypatch.setattr(job_module, "acquire_pairs", fibre.acquire)
    monkeypatch.setattr(tracking_module, "compensate_pairs", fibre.compensate)
    run = Run()
    one = BBM92Settings(duration_s=2.0, chunk_s=2.0)
    tracker = ChunkTracker(None, object(), one, run, START, continuous=continuous)  # type: ignore[arg-type]
    await job_module.acquire_chunks(None, one, tracker=tracker)  # type: ignore[arg-type]
    assert run.table("tracking")["triggered"][0] == 1
    assert tracker.recompensations == int(continuous)
