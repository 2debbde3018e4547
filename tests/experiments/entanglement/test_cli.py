"""qhil run chsh / visibility: bad input (exit 2), an abort (exit 3); the JSON summary, record
and plot of a whole run are checked in test_compensated.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.records import RunStore

from .support import overrides


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.mark.parametrize(
    ("kind", "setting", "field"),
    [
        ("chsh", "experiments.chsh.signs=[1, 1, 1, 0]", "experiments.chsh.signs"),
        ("chsh", 'experiments.chsh.bob_mount="nope"', "experiments.chsh.bob_mount"),
        (
            "visibility",
            "experiments.visibility.angles_deg=[0, 90, 180, 270]",
            "experiments.visibility.angles_deg",
        ),
        ("visibility", "experiments.visibility.alice_channels=[1, 1, 2, 3]", "alice_channels"),
        ("visibility", "experiments.visibility.n_sigma=-1", "experiments.visibility.n_sigma"),
        (
            "chsh",
            'experiments.chsh.polarization_controller="nope"',
            "experiments.chsh.polarization_controller",
        ),
        (
            "visibility",
            "experiments.visibility.compensation_target_error=0.7",
            "experiments.visibility.compensation_target_error",
        ),
    ],
)
def test_bad_settings_are_one_line_errors_naming_file_and_field(
    kind: str, setting: str, field: str, tmp_path: Path
) -> None:
    r = CliRunner().invoke(
        main, ["run", kind, "entanglement", "--set", setting, "--data-dir", str(tmp_path)]
    )
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert "entanglement.toml" in lines[0] and field in lines[0], lines[0]


@pytest.mark.slow  # bench bring-up and one 0.3 s acquisition
def test_a_pump_below_threshold_aborts_with_no_peak(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main,
        [
            "run",
            "visibility",
            "entanglement",
            "--integration",
            "0.3",
            "--json",
            "--no-plots",
            *_sets(overrides(8, ("experiments.visibility.pump_current_ma=15",))),
            "--data-dir",
            str(tmp_path),
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 3, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["status"] == "aborted" and out["reason"].startswith("no_peak:"), out
    (record,) = RunStore(tmp_path, readonly=True).list_runs()
    assert record.status == "aborted"
