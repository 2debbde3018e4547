"""Issue 15 acceptance: ``qhil calibrate history detectors`` after several detector
calibrations shows each detector's efficiency with errors that match the world's truth,
drift over days included (``world.age_days``, ``efficiency_drift_per_day``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from qhil.calibration import run_detector_efficiency_calibration
from qhil.cli import main
from qhil.emulators.world import World, load_world_config
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

DRIFT = "world.nodes.bob.components.det_v.efficiency_drift_per_day=-0.01"  # -1 %/day
SHORT = ("experiments.calibration.detector_efficiency.gates=2",)  # CI time: ~0.4 s of light


def _truth(overrides: list[str]) -> np.ndarray:
    """The relative efficiencies H, V, D, A the world of ``overrides`` has."""
    prof = load_profile("default", overrides)
    assert prof.world is not None
    world = World(load_world_config(prof.world, prof.source), mode="fast")
    eta = np.array([world.truth.detector_efficiency(f"bob.det_{d}") for d in "hvda"])
    return 4 * eta / eta.sum()


def _history(data: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["calibrate", "history", *args, "--data-dir", str(data)])
    return r.exit_code, r.output


@pytest.mark.slow
async def test_history_shows_the_drifting_efficiencies_with_honest_errors(tmp_path: Path) -> None:
    days = [0.0, 15.0, 30.0]
    truths = []
    for age in days:
        overrides = [DRIFT, f"world.age_days={age}", *SHORT]
        summary = await run_detector_efficiency_calibration("default", overrides, tmp_path)
        assert summary.status == "success", summary.reason
        truths.append(_truth(overrides))
    code, out = _history(tmp_path, "detectors", "--json", "--plot")
    assert code == 0, out
    doc = json.loads(out)
    cals = doc["history"]["detectors"]
    assert len(cals) == 3 and Path(doc["plots"][0]).stat().st_size > 0
    z_limit = stats.norm.ppf(1 - 0.001 / 2)  # two-sided 99.9 % per value (12 values)
    for cal, truth in zip(cals, truths, strict=True):
        q = cal["quantities"]
        assert list(q) == ["relative_h", "relative_v", "relative_d", "relative_a"]
        value = np.array([q[k]["value"] for k in q])
        std = np.array([q[k]["std"] for k in q])
        assert np.all(std > 0)
        z = (value - truth) / std
        assert np.all(np.abs(z) < z_limit), (z, value, truth)
    # the drift is seen: det_v lost ~30 % in 30 days (relative to the mean of the four)
    v = [c["quantities"]["relative_v"]["value"] for c in cals]
    assert v[0] > v[1] > v[2] and truths[2][1] < 0.8 * truths[0][1]

    code, text = _history(tmp_path, "detectors")
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "detectors (3 calibrations)"
    assert lines[1].split() == [
        "RUN",
        "ID",
        "MADE",
        "(UTC)",
        "relative_h",
        "relative_v",
        "relative_d",
        "relative_a",
    ]
    assert all(row.count("±") == 4 for row in lines[2:5])


def test_unknown_kind_is_one_line_exit_2(tmp_path: Path) -> None:
    RunStore(tmp_path)  # an empty store
    code, out = _history(tmp_path, "nonsense")
    assert code == 2
    (line,) = out.strip().splitlines()
    assert line.startswith(
        "qhil: error: calibrate history: unknown calibration kind 'nonsense'; known: "
    )
    assert "detectors" in line and "polarization" in line
    code, out = _history(tmp_path)
    assert code == 0 and out.strip() == "no calibrations"


def test_no_drift_or_day_zero_leaves_the_world_as_it_was() -> None:
    base = _truth([])
    assert np.array_equal(_truth(["world.age_days=30"]), base)  # bit-identical without drift
    assert np.array_equal(_truth([DRIFT]), base)  # day 0: the configured values
