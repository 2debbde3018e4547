"""docs/protocols/qhil-hsc.md and qhil-qmc.md write the error codes as the emulators send
them (SCPI: device-specific codes positive, no '+'), and say a query in error gets no reply."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qhil.emulators.qhil import hsc, qmc

DOCS = Path(__file__).resolve().parents[3] / "docs" / "protocols"
ROW = re.compile(r'^\| `([+-]?\d+),"([^";]*)')


@pytest.mark.parametrize(
    ("doc", "codes"),
    [
        ("qhil-hsc.md", {hsc.NO_FREE_MODE: "No free mode", hsc.MEMORY_OFF: "Memory off"}),
        ("qhil-qmc.md", dict([qmc.MODE_OCCUPIED, qmc.MODE_EMPTY, qmc.MEMORY_OFF])),
    ],
)
def test_error_tables_match_the_emulator(doc: str, codes: dict[int, str]) -> None:
    text = (DOCS / doc).read_text()
    rows = [m.groups() for line in text.splitlines() if (m := ROW.match(line))]
    positive = {code: name for code, name in rows if not code.startswith("-")}
    assert positive == {str(c): name for c, name in codes.items()}, "as the emulator sends"
    assert "exactly one line" not in text and "a query in error: no reply" in text
