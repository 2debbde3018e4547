"""The plots of real runs on the emulated bench, redrawn from a copy of the data directory
alone: the profile file is deleted and the original data directory removed first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qhil.orchestrator.profile import packaged_profiles_dir
from qhil.plots import specs_for, write_plots

from .test_cli import invoke
from .test_plots import check_png, moved

pytestmark = pytest.mark.slow

CALIBRATIONS = ("polarization", "detectors", "delays", "mean-photon-number")


def test_every_recorded_kind_redraws_from_the_record_alone(tmp_path: Path) -> None:
    profile = tmp_path / "bench.toml"
    shutil.copy(packaged_profiles_dir() / "default.toml", profile)
    data = tmp_path / "data"
    common = ["--json", "--data-dir", str(data)]
    r = invoke(["run", "bb84", str(profile), "--duration", "0.05", *common], tmp_path)
    assert r.exit_code in (0, 3), r.stderr
    drawn_at_the_end = json.loads(r.stdout)["plots"]  # the end-of-run hook drew them
    assert [Path(p).stem for p in drawn_at_the_end] == [
        "blocks",
        "intensities",
        "gain",
        "tracking",  # the default bench tracks the drift
        "mean_photon_numbers",
    ]
    for name in CALIBRATIONS:
        r = invoke(["calibrate", name, str(profile), "--no-plots", *common], tmp_path)
        assert r.exit_code == 0, r.stderr
    profile.unlink()
    store = moved(data, tmp_path)
    records = store.list_runs()
    assert sorted(r.kind for r in records) == [
        "bb84",
        "calibration.delays",
        "calibration.detector_efficiency",
        "calibration.mean_photon_number",
        "calibration.polarization",
    ]
    for record in records:
        report = write_plots(record, tmp_path / "out" / record.kind)
        specs = [s for s in specs_for(record.kind) if s.drawable(record)]
        assert [p.stem for p in report.written] == [s.name for s in specs], record.kind
        for spec, path in zip(specs, report.written, strict=True):
            check_png(path, spec.pixels)
