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
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], field: str) -> None:
    result = CliRunner().invoke(
        main, ["run", "teleport", "repeater", *args, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and line.startswith("qhil: error:") and field in line
