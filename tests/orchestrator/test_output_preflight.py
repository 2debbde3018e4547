"""Every output location is checked before the first photon (issue 14 item 5).

An unwritable key or data directory used to be found only after the whole run, with a
traceback, and the key was lost. Now the job refuses before any instrument is opened,
with a one-line error naming the path (CLI exit 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qhil.errors import QhilError
from qhil.orchestrator import jobs


@pytest.fixture
def no_bench(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fails the test if a job opens its bench (instruments) at all."""
    opened: list[Any] = []

    def refuse(*args: Any, **kw: Any) -> Any:
        opened.append(args)
        raise AssertionError("the bench was opened before the outputs were checked")

    monkeypatch.setattr(jobs, "open_bench", refuse)
    return opened


def blocked(tmp_path: Path) -> Path:
    """A path no one can create a directory at (its parent is a file; root or not)."""
    f = tmp_path / "a-file"
    f.write_text("")
    return f / "sub"


@pytest.mark.parametrize("party", [None, "alice", "bob"])
async def test_an_unwritable_key_directory_stops_the_job_before_the_bench(
    tmp_path: Path, no_bench: list[Any], party: str | None
) -> None:
    bad = blocked(tmp_path)
    with pytest.raises(QhilError, match=rf"key directory {bad} cannot be created") as err:
        if party is None:
            await jobs.run_bb84_job(data_dir=tmp_path / "data", key_dir=bad)
        else:
            key = tmp_path / "auth.hex"
            key.write_text("ab" * 32)
            key.chmod(0o600)
            await jobs.run_bb84_party_job(
                party,
                None,
                auth_key_file=key,
                data_dir=tmp_path / "data",
                key_dir=bad,
                connect="127.0.0.1:9",
            )
    assert "\n" not in str(err.value)
    assert no_bench == []


async def test_a_key_directory_removed_before_the_run_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_bench: list[Any]
) -> None:
    # The directory can be made but not written (a read-only mount, say).
    keys = tmp_path / "keys"
    monkeypatch.setattr(os, "open", _failing_probe_open(os.open, keys))
    with pytest.raises(QhilError, match=rf"key directory {keys} is not writable: Read-only"):
        await jobs.run_bb84_job(data_dir=tmp_path / "data", key_dir=keys)
    assert no_bench == []


def _failing_probe_open(real: Any, directory: Path) -> Any:
    def fake(path: Any, *args: Any, **kw: Any) -> int:
        if Path(path).parent == directory and Path(path).name.startswith(".probe-"):
            raise OSError(30, "Read-only file system")
        return int(real(path, *args, **kw))

    return fake


async def test_an_unwritable_data_directory_stops_the_job_before_the_bench(
    tmp_path: Path, no_bench: list[Any]
) -> None:
    bad = blocked(tmp_path)
    with pytest.raises(QhilError, match=rf"data directory {bad} is not writable"):
        await jobs.run_bb84_job(data_dir=bad, key_dir=tmp_path / "keys")
    assert no_bench == []


def test_cli_reports_an_unwritable_key_directory_in_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = blocked(tmp_path)
    env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "qhil.cli", "run", "bb84", "--json", "--key-dir", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""
