"""qhil run bbm92: bad input is one line naming the field and the file (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from qhil.cli import main


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("experiments.bbm92.max_qber=0.7", "experiments.bbm92.max_qber"),
        ("experiments.bbm92.duration_s=-1", "experiments.bbm92.duration_s"),
        ("experiments.bbm92.bob_tagger=nowhere", "experiments.bbm92.bob_tagger"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path: Path, setting: str, says: str) -> None:
    out = CliRunner().invoke(
        main,
        ["run", "bbm92", "entanglement", "--set", setting, "--data-dir", str(tmp_path)],
    )
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0] and "entanglement.toml" in lines[0]
    assert "Traceback" not in out.output
