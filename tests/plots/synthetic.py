"""Run records written through the records API, with the arrays each run kind records
(the same dtypes as the experiments and calibrations), for the plot tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qhil.calibration.delays import CHANNEL_DTYPE
from qhil.calibration.detector_efficiency import GATE_DTYPE
from qhil.calibration.mean_photon_number import READING_DTYPE
from qhil.calibration.polarization import step_dtype
from qhil.orchestrator.experiments.bb84.alice import BLOCK_ROW as ALICE_ROW
from qhil.orchestrator.experiments.bb84.bob import BLOCK_ROW as BOB_ROW
from qhil.records import RunStore

TAU0_S = 0.5


def clock_sync_truth(n: int = 240, seed: int = 5) -> dict[str, np.ndarray]:
    """A tracked offset (random-walk clock) with white measurement noise, a loss of lock
    at intervals 100-109 and a re-acquisition, one row per tracking interval."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n) + 0.5) * TAU0_S
    truth = 1.25e9 + 48_000.0 * t + np.cumsum(rng.normal(scale=3.0, size=n))
    stderr = np.full(n, 20.0)
    measured = truth + rng.normal(scale=20.0, size=n)
    tracked = truth + rng.normal(scale=6.0, size=n)
    locked = np.ones(n, dtype=bool)
    locked[100:110] = False
    measured[100:110] = np.nan
    return {
        "track/t_s": t,
        "track/offset_tracked_ps": tracked,
        "track/offset_measured_ps": measured,
        "track/stderr_ps": stderr,
        "track/counts": np.where(locked, 400, 3).astype(np.int64),
        "track/significance": np.where(locked, 25.0, 1.5),
        "track/locked": locked,
        "track/frequency_ppb": 48_000.0 + rng.normal(scale=2.0, size=n),
        "track/truth_offset_ps": truth,
    }


def record_clock_sync(data: Path, columns: dict[str, np.ndarray] | None = None) -> str:
    columns = clock_sync_truth() if columns is None else columns
    store = RunStore(data)
    with store.start_run("clock_sync", parameters={"tracking_interval_s": TAU0_S}) as run:
        n = len(next(iter(columns.values())))
        for start in range(0, n, 60):  # appended as the run goes
            for name, values in columns.items():
                run.append(name, values[start : start + 60])
        run.log_results(
            {
                "method": "one-way",
                "offset_s": 1.25e-3,
                "offset_stderr_s": 2e-12,
                "frequency_offset_ppb": 48_000.0,
                "lock_losses": 1,
                "reacquisitions": 1,
            }
        )
        return run.run_id


def _rows(dtype: np.dtype[Any], n: int, rng: np.random.Generator, **fields: Any) -> np.ndarray:
    rows = np.zeros(n, dtype=dtype)
    for name in dtype.names or ():
        rows[name] = fields[name] if name in fields else rng.integers(1, 100, size=n)
    return rows


def record_bb84(data: Path, *, used: bool = True, kind: str = "bb84") -> str:
    rng = np.random.default_rng(3)
    n = 12
    flag = np.full(n, 1 if used else 0)
    sifted = rng.integers(20_000, 21_000, size=n)
    errors = rng.binomial(sifted, 0.01)
    bob = _rows(
        BOB_ROW,
        n,
        rng,
        block=np.arange(n),
        used=flag,
        test_sifted=sifted,
        test_errors=errors,
        qber_test=errors / sifted,
        significance=rng.normal(30, 2, size=n),
        drift_ppm=rng.normal(0.5, 0.001, size=n),
    )
    alice = _rows(ALICE_ROW, n, rng, block=np.arange(n), used=flag)
    readings = np.zeros(33, dtype=READING_DTYPE)
    readings["level"] = np.repeat([0, 1, 2], 11)
    readings["reading"] = np.tile(np.arange(11), 3)
    readings["power_w"] = np.repeat([6e-9, 1.2e-9, 1e-11], 11) * rng.normal(1, 0.01, size=33)
    readings["kept"] = readings["reading"] > 0
    store = RunStore(data)
    params = {
        "pattern_length": 65536,
        "rep_rate_hz": 80e6,
        "max_qber": 0.11,
        "mus": [0.5, 0.1, 0.0],
    }
    with store.start_run(kind, parameters=params) as run:
        run.append("mucal_readings", readings)
        run.append("mucal_mus", np.array([[0.5, 0.1, 0.001]]))
        run.append("mucal_mus_std", np.array([[0.01, 0.003, 0.002]]))
        for b in range(n):
            if kind != "bb84.alice":
                run.append("bob/block", bob[b : b + 1])
            if kind != "bb84.bob":
                run.append("alice/block", alice[b : b + 1])
        run.log_results({"secret_bits": 123_456, "sifted_bits": 240_000, "gain_signal": 0.17})
        return run.run_id


def record_calibrations(data: Path) -> dict[str, str]:
    """One run of each calibration kind, with its scan / fit arrays."""
    rng = np.random.default_rng(4)
    store = RunStore(data)
    ids = {}
    with store.start_run("calibration.polarization", parameters={"target_error": 0.01}) as run:
        steps = _rows(step_dtype(4), 30, rng, step=np.arange(30), phase=np.repeat([0, 1, 2], 10))
        steps["e_z"] = np.geomspace(0.5, 0.004, 30)
        steps["e_x"] = np.geomspace(0.4, 0.005, 30)
        run.append("steps", steps)
        ids["calibration.polarization"] = run.run_id
    with store.start_run("calibration.detector_efficiency") as run:
        gates = _rows(GATE_DTYPE, 7, rng, gate=np.arange(7), light=np.array([1] * 5 + [0] * 2))
        gates["integration_s"] = 0.2
        run.append("gates", gates)
        run.append("relative", np.array([[1.01, 0.98, 1.05, 0.96]]))
        run.append("relative_std", np.array([[0.002, 0.002, 0.002, 0.002]]))
        ids["calibration.detector_efficiency"] = run.run_id
    with store.start_run("calibration.delays", parameters={"reference": "H"}) as run:
        channels = _rows(CHANNEL_DTYPE, 4, rng, detector=np.arange(4), channel=np.arange(1, 5))
        channels["delay_ps"] = [0.0, 8.0, 120_000.0, -10.0]
        channels["delay_std_ps"] = 20.0
        run.append("channels", channels)
        ids["calibration.delays"] = run.run_id
    with store.start_run("calibration.mean_photon_number") as run:
        readings = np.zeros(6, dtype=READING_DTYPE)
        readings["level"] = [0, 0, 1, 1, 2, 2]
        readings["power_w"] = [6e-9, 6e-9, 1e-9, 1e-9, 0.0, -1e-13]
        readings["kept"] = True
        run.append("readings", readings)
        run.append("mus", np.array([[0.5, 0.1, -0.0001]]))
        run.append("mus_std", np.array([[0.01, 0.003, 0.002]]))
        ids["calibration.mean_photon_number"] = run.run_id
    return ids
