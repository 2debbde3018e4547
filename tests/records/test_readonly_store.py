"""Reading a store that cannot be written, and store errors that name the path (issue 14, item 6).

The tests run as root, for whom ``chmod`` forbids nothing; the read-only store here is
made immutable with ``chattr +i`` (which stops root too), and the test is skipped only
where that does not stop a write (checked by trying one). The read-only connection itself
is checked to refuse writes everywhere.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.records import RunStore, StoreAccessError, database

_WRITE_RUN = """
import sys
import numpy as np
from qhil.records import RunStore
with RunStore(sys.argv[1]).start_run("test.readonly", seed=5) as run:
    run.append("raw/tags", np.arange(100, dtype=np.int64))
    run.log_result("qber", 0.02)
    print(run.run_id)
"""


def _record_run(data: Path) -> str:
    """One finished run, written by another process (which closes the index on exit)."""
    out = subprocess.run(
        [sys.executable, "-c", _WRITE_RUN, str(data)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _chattr(flag: str, root: Path) -> bool:
    chattr = shutil.which("chattr")
    if chattr is None:
        return False
    return subprocess.run([chattr, "-R", flag, str(root)], capture_output=True).returncode == 0


@contextlib.contextmanager
def immutable(root: Path) -> Iterator[None]:
    """``root`` and everything in it immutable, for root too; skip where that is not possible."""
    try:
        if not _chattr("+i", root):
            pytest.skip("chattr +i is not available here")
        try:
            (root / "probe").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("chattr +i does not stop writes here")
        yield
    finally:
        _chattr("-i", root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _data(root: Path) -> dict[str, bytes]:
    """The store's content: every file but SQLite's WAL reader files, which a reader of a
    WAL database creates where it may (an empty log, the shared-memory index)."""
    return {
        name: data
        for name, data in _files(root).items()
        if not name.endswith("-shm") and not (name.endswith("-wal") and not data)
    }


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}"
    )
    return result.exit_code, result.stdout, result.stderr


def test_runs_list_and_show_read_an_immutable_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_id = _record_run(data)
    before = _files(data)
    assert not (data / "runs.sqlite-wal").exists()  # the writer checkpointed on exit
    with immutable(data):
        code, out, err = _cli("runs", "list", "--data-dir", str(data))
        assert code == 0, err
        assert run_id in out
        code, out, err = _cli("runs", "show", run_id, "--json", "--data-dir", str(data))
        assert code == 0, err
        assert '"qber": 0.02' in out
        store = RunStore(data, readonly=True)
        record = store.get(run_id)
        with record.arrays as arrays:  # HDF5 opened read-only
            np.testing.assert_array_equal(arrays["raw/tags"], np.arange(100))
        store.close()
    assert _files(data) == before


def _killed_writer(data: Path) -> str:
    """A writer killed mid-run: its committed rows are left in ``runs.sqlite-wal``."""
    worker = Path(__file__).with_name("record_worker.py")
    proc = subprocess.Popen(
        [sys.executable, str(worker), "crash", str(data), "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()
    assert (data / "runs.sqlite-wal").stat().st_size > 0
    return run_id


def test_an_immutable_store_left_with_a_pending_log_is_read(tmp_path: Path) -> None:
    """Frozen with rows still in its log, the store reads whole (those rows included)."""
    data = tmp_path / "data"
    run_id = _killed_writer(data)
    before = _files(data)
    with immutable(data):
        store = RunStore(data, readonly=True)
        record = store.get(run_id)
        assert record.status.value == "incomplete"
        assert record.results == {"blocks_done": 3}
        assert record.array_index["raw/tags"].shape == (3000,)
        store.close()
    assert _files(data) == before


@pytest.mark.parametrize("pending_log", [True, False])
def test_where_sqlite_cannot_read_in_place_the_store_still_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pending_log: bool
) -> None:
    """SQLite's mode=ro fails on some read-only stores (a WAL index without a usable -shm):
    then immutable=1 if no rows wait in the log, else a private copy of index and log."""
    data = tmp_path / "data"
    run_id = _killed_writer(data) if pending_log else _record_run(data)
    real = database._probe
    opened: list[tuple[Path, str]] = []

    def probe(path: Path, mode: str, shown: Path) -> sqlite3.OperationalError | None:
        opened.append((path, mode))
        if path == data / "runs.sqlite" and mode == "ro":
            return sqlite3.OperationalError("unable to open database file")
        return real(path, mode, shown)

    monkeypatch.setattr(database, "_probe", probe)
    before = _data(data)
    store = RunStore(data, readonly=True)
    record = store.get(run_id)
    assert record.results == ({"blocks_done": 3} if pending_log else {"qber": 0.02})
    path, mode = opened[-1]
    if pending_log:  # read from a copy, which goes with the store
        assert mode == "ro" and path != data / "runs.sqlite"
        store.close()
        del store
        gc.collect()
        assert not path.parent.exists()
    else:
        assert (path, mode) == (data / "runs.sqlite", "immutable")
    assert _data(data) == before


def test_a_readonly_store_refuses_every_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _record_run(data)
    before = _data(data)
    store = RunStore(data, readonly=True)
    with pytest.raises(StoreAccessError, match=rf"run index {data / 'runs.sqlite'}: .*read-only"):
        store.start_run("test.readonly")
    with store.database.reading() as conn, pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM results")  # the connection itself is read-only
    assert len(store.list_runs()) == 1
    store.close()
    assert _data(data) == before


def test_a_missing_data_dir_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    for args in (["runs", "list"], ["runs", "show", "x"]):
        code, _, err = _cli(*args, "--data-dir", str(missing))
        assert code == 2
        assert err.strip() == f"qhil: error: run store {missing}: no such directory"
    assert not missing.exists()  # reading created nothing


@pytest.mark.parametrize("readonly", [True, False])
def test_a_corrupt_index_is_one_error_naming_it(tmp_path: Path, readonly: bool) -> None:
    data = tmp_path / "data"
    data.mkdir()
    index = data / "runs.sqlite"
    index.write_bytes(b"this is not an sqlite database, just bytes " * 100)
    with pytest.raises(StoreAccessError, match=rf"run index {index}: .*corrupt"):
        RunStore(data, readonly=readonly)
    code, _, err = _cli("runs", "list", "--data-dir", str(data))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"qhil: error: run index {index}: ")
