"""Settings a bench cannot carry out are refused before any run starts: exit 2, one line
naming entanglement.toml and the field, nothing recorded (the reviewer's findings: tagger
inputs the tagger lacks, a pump current the board refuses, absurd zeros and angles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qhil.cli import main


@pytest.mark.parametrize(
    ("kind", "setting", "field"),
    [
        (
            "chsh",
            "experiments.chsh.alice_channels=[1, 2, 3, 99]",
            "experiments.chsh.alice_channels",
        ),
        (
            "visibility",
            "experiments.visibility.bob_channels=[5, 2, 3, 4]",
            "visibility.bob_channels",
        ),
        ("bbm92", "experiments.bbm92.bob_channels=[1, 2, 3, 77]", "experiments.bbm92.bob_channels"),
        ("chsh", "experiments.chsh.pump_current_ma=1e9", "experiments.chsh.pump_current_ma"),
        ("chsh", "experiments.chsh.pump_current_ma=98", "experiments.chsh.pump_current_ma"),
        ("bbm92", "experiments.bbm92.pump_current_ma=500", "experiments.bbm92.pump_current_ma"),
        ("chsh", "experiments.chsh.crystal_temperature_c=1e6", "chsh.crystal_temperature_c"),
        ("chsh", "experiments.chsh.min_significance=1e300", "experiments.chsh.min_significance"),
        ("chsh", "experiments.chsh.alice_mount_zero_deg=1e300", "chsh.alice_mount_zero_deg"),
        ("visibility", "experiments.visibility.bob_mount_zero_deg=-400", "bob_mount_zero_deg"),
        (
            "chsh",
            "experiments.chsh.alice_angles_deg=[0, 1e308]",
            "experiments.chsh.alice_angles_deg",
        ),
        ("visibility", "experiments.visibility.fixed_angle_deg=1e9", "fixed_angle_deg"),
        (
            "visibility",
            "experiments.visibility.angles_deg=[0, 22.5, 45, 1e300]",
            "experiments.visibility.angles_deg",
        ),
    ],
)
def test_settings_the_bench_cannot_do_are_refused_naming_the_field(
    kind: str, setting: str, field: str, tmp_path: Path
) -> None:
    r = CliRunner().invoke(
        main, ["run", kind, "entanglement", "--set", setting, "--data-dir", str(tmp_path)]
    )
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert "entanglement.toml" in lines[0] and field in lines[0], lines[0]
    assert not (tmp_path / "runs.sqlite").exists()  # no run started


@pytest.mark.parametrize(
    ("kind", "args", "field"),
    [
        (
            "chsh",
            ["--set", "experiments.chsh.integration_s=3600"],
            "experiments.chsh.integration_s",
        ),
        ("chsh", ["--integration", "901"], "--integration"),
        ("visibility", ["--integration", "451"], "--integration"),
    ],
)
def test_acquisitions_over_an_hour_in_total_need_yes(
    kind: str, args: list[str], field: str, tmp_path: Path
) -> None:
    r = CliRunner().invoke(main, ["run", kind, "entanglement", *args, "--data-dir", str(tmp_path)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and field in lines[0] and "--yes" in lines[0], r.output
    assert not (tmp_path / "runs.sqlite").exists()


def test_yes_lets_a_long_acquisition_past_the_check() -> None:
    from qhil.orchestrator.experiments.entanglement.cli import check_settings
    from qhil.orchestrator.profile import load_profile

    prof = load_profile("entanglement", [])
    check_settings("chsh", prof, 901.0, confirmed=True)  # no error
    check_settings("visibility", prof, 450.0)  # 8 points x 450 s = 1 h: allowed


def test_inputs_an_open_tagger_lacks_are_refused_at_bench_open() -> None:
    """A tagger whose input count only the open unit knows: checked when the bench opens."""
    from types import SimpleNamespace

    from qhil.errors import ConfigError
    from qhil.orchestrator.experiments.entanglement.job import nodes_from_bench
    from qhil.orchestrator.experiments.entanglement.settings import ChshSettings

    tagger = SimpleNamespace(name="bob.tagger", channels=2)
    bench: Any = SimpleNamespace(
        role=lambda *a, **k: tagger, profile=SimpleNamespace(source="lab.toml")
    )
    with pytest.raises(ConfigError, match=r"lab.toml: experiments.chsh.alice_channels: input 3"):
        nodes_from_bench(bench, ChshSettings())
