"""The `qhil` entry point's allocator setting (issue 12): big buffers reused, not re-faulted."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
from click.testing import CliRunner

from qhil import cli

# A 32 MB buffer allocated, filled and freed 5 times; the child prints its minor page faults.
_CHILD = """
import resource, sys
from qhil.cli import keep_big_allocations
if sys.argv[1] == "on":
    assert keep_big_allocations()
bytearray(32 << 20)  # the first one faults its pages in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    bytearray(32 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="a glibc malloc setting",
)


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@glibc_only
def test_freed_big_buffers_are_reused_without_page_faults() -> None:
    # 5 x 8,192 pages of 4 KiB: without the setting each buffer is mapped afresh.
    assert _faults("off") > 30_000
    assert _faults("on") < 2_000


def test_every_command_applies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(cli, "keep_big_allocations", lambda: calls.append(1) or True)
    result = CliRunner().invoke(cli.main, ["catalogue"])
    assert result.exit_code == 0, result.output
    assert calls == [1]
