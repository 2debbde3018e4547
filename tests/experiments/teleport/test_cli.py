"""qhil run teleport's bad input (a whole run from the command line: test_bench.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from qhil.cli import main


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--state", "Q"], "--state"),
        (["--shots", "2"], "--shots"),
        (["--to", "carol"], "--to"),
        (["--min-fidelity", "1.5"], "--min-fidelity"),
        (["--min-fidelity", "nan"], "--min-fidelity"),
        (["--from", "alice", "--to", "alice"], "--to"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], field: str) -> None:
    result = CliRunner().invoke(
        main, ["run", "teleport", "repeater", *args, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and line.startswith("qhil: error:") and field in line
    assert not list(tmp_path.rglob("*.json*")), "no run recorded"


def test_profile_defaults_to_the_repeater_bench(tmp_path: Path) -> None:
    # without PROFILE the repeater bench's nodes are known (default.toml has no repeater)
    args = ["run", "teleport", "--from", "repeater", "--to", "repeater"]
    result = CliRunner().invoke(main, [*args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "'repeater' is --from itself" in result.output, result.output
