"""qhil run chsh / visibility: JSON summary, the run record and its plots, bad input (exit 2),
an abort (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.records import RunStore

from .support import overrides


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.mark.slow  # bench bring-up and 4 x 0.3 s of pairs: ~8-12 s
def test_chsh_json_summary_record_and_plot(tmp_path: Path) -> None:
    args = ["run", "chsh", "entanglement", "--integration", "0.3", "--json"]
    r = CliRunner().invoke(
        main, [*args, *_sets(overrides(7)), "--data-dir", str(tmp_path)], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["status"] == "success"
    for key in ("s", "s_stderr", "sigmas_above_2", "e0", "e3", "accidentals", "window_ps"):
        assert isinstance(out[key], int | float), key
    assert out["acquired_s"] == pytest.approx(1.2)
    assert out["truth_s"] > 2.6  # emulated: the world's 2 sqrt(2) V
    (record,) = RunStore(tmp_path, readonly=True).list_runs()
    assert record.kind == "chsh" and record.run_id == out["run_id"]
    arrays = dict(record.arrays.items())
    assert arrays["points/matrix"].shape == (4, 4, 4)
    assert np.array_equal(arrays["chsh/counts"], arrays["points/matrix"][:, :2, :2])
    assert list(arrays["points/alice_axis_deg"]) == [0.0, 0.0, 22.5, 22.5]
    assert list(arrays["points/bob_axis_deg"]) == [11.25, 33.75, 11.25, 33.75]
    assert [Path(p).name for p in out["plots"]] == ["chsh.png"]
    assert Path(out["plots"][0]).stat().st_size > 10_000


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
