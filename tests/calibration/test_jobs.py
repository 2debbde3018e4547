"""The recorded polarization calibration job: profile -> bench -> routine -> run store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qhil.calibration import Phase, run_polarization_calibration, step_dtype
from qhil.records import RunStore

RANDOM = 'world.links.alice-bob.initial_polarization="random"'


async def test_job_records_a_calibration_run(tmp_path: Path) -> None:
    seen: list[int] = []
    summary = await run_polarization_calibration(
        "default",
        [RANDOM, "bench.seed=55", "world.seed=55"],
        tmp_path,
        on_step=lambda step: seen.append(step.index),
    )
    assert summary.status == "success" and summary.kind == "calibration.polarization"
    res = summary.results
    assert res["target_met"] is True and res["e_z_after"] < 0.01 and res["e_x_after"] < 0.01
    assert res["e_z_before"] + res["e_x_before"] > 0.2
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.kind == "calibration.polarization" and rec.status.value == "success"
    assert rec.seed == 55
    assert {"alice.patterns", "bob.tagger", "bob.polctrl"} <= set(rec.identities)
    assert rec.parameters["channel_map"] == {"H": 1, "V": 2, "D": 3, "A": 4}
    assert rec.results["target_met"] is True
    assert rec.results["e_x_after"] == res["e_x_after"]
    steps = rec.arrays["steps"]
    assert steps.dtype == step_dtype(4)
    assert len(steps) == res["evaluations"] == len(seen)
    assert steps["phase"][0] == Phase.START and steps["phase"][-1] == Phase.VERIFY
    # Two counting gates per measurement; the last row is the verification.
    assert 2 * len(steps) == res["acquisitions"]
    final = [int(steps[-1][f"v{i}_mv"]) for i in range(1, 5)]
    assert rec.arrays["voltages_mv"].tolist() == [final]
    assert final == [res[f"v{i}_mv"] for i in range(1, 5)]
    assert steps["e_z"][-1] == res["e_z_after"]
    # Each channel's half-wave voltage: an array row and per-channel results (the default
    # bench's squeezers have 2000 mV each); the one value older runs hold is their mean.
    half_waves = rec.arrays["half_wave_voltages_mv"]
    assert half_waves.shape == (1, 4)
    assert list(half_waves[0]) == [rec.results[f"half_wave_v{i}_mv"] for i in range(1, 5)]
    assert np.allclose(half_waves[0], 2000.0, rtol=0.02)
    mean = rec.results["half_wave_voltage_mv"]
    assert isinstance(mean, float) and np.isclose(mean, np.mean(half_waves[0]), rtol=1e-12)
    sources = [rec.results[f"half_wave_v{i}_source"] for i in range(1, 5)]
    assert sources.count("scan") == 1 and set(sources) <= {"scan", "line"}
    for i in range(1, 5):
        std = rec.results[f"half_wave_v{i}_std_mv"]
        assert isinstance(std, float) and 0 < std < 40
    assert np.all(steps["integration_s"][:-1] == 2e-3) and steps["integration_s"][-1] == 0.02
    assert summary.as_dict()["run_id"] == summary.run_id


async def test_no_light_fails_the_run_with_its_reason(tmp_path: Path) -> None:
    # Alice's attenuator shutter stays shut: Bob sees only dark counts and background.
    summary = await run_polarization_calibration(
        "default", ["nodes.alice.instruments.attenuator.settings.output=false"], tmp_path
    )
    assert summary.status == "failed"
    assert summary.reason is not None and "too few clicks" in summary.reason
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.status.value == "failed" and "too few clicks" in (rec.reason or "")
    # The start measurement was recorded before the routine gave up.
    assert len(rec.arrays["steps"]) == 1
    assert "voltages_mv" not in rec.array_index
