"""The text summary of run/calibrate: a value that was not measured reads '-', not 'None'."""

from __future__ import annotations

import pytest

from qhil.cli import _echo_fields


def test_unmeasured_values_read_as_dash(capsys: pytest.CaptureFixture[str]) -> None:
    _echo_fields({"status": "aborted", "qber": None, "secret_bits": 0, "key_committed": False})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{'status':<28} aborted",
        f"{'qber':<28} -",
        f"{'secret_bits':<28} 0",  # zero is a value, not a missing one
        f"{'key_committed':<28} False",
    ]
