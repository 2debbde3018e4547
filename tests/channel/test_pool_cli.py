"""`qhil auth new-pool` and `qhil run bb84 --wc-pool`: bad input is one line, exit 2."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from qhil.cli import main
from qhil.orchestrator.channel.pool import (
    MAGIC,
    PoolRun,
    pool_bits_left,
    replenish_pool_file,
    run_budget_bits,
)


def test_new_pool_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "wc.pool"
    first = CliRunner().invoke(main, ["auth", "new-pool", str(path), "--bits", "8192"])
    assert first.exit_code == 0, first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pool_bits_left(path) == 8192
    before = path.read_bytes()
    again = CliRunner().invoke(main, ["auth", "new-pool", str(path)])
    assert again.exit_code == 2
    assert str(path) in again.output and "Traceback" not in again.output
    assert path.read_bytes() == before


def test_a_run_takes_its_budget_before_it_starts_and_refills_whole_pad_pairs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wc.pool"
    assert (
        CliRunner().invoke(main, ["auth", "new-pool", str(path), "--bits", "4096"]).exit_code == 0
    )
    PoolRun(path)
    assert pool_bits_left(path) == 4096 - run_budget_bits()  # gone from the file already
    assert replenish_pool_file(path, bytes(70)) == 512  # two pairs of 16-byte pads
    assert pool_bits_left(path) == 4096 - run_budget_bits() + 512


def _run(tmp_path: Path, pool: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["run", "bb84", "--wc-pool", str(pool), "--data-dir", str(tmp_path / "d"), *extra],
    )
    return result.exit_code, result.output


def test_bad_pool_files_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    other = tmp_path / "not-a-pool"
    other.write_bytes(b"hello")
    other.chmod(0o600)
    shared = tmp_path / "readable.pool"
    shared.write_bytes(MAGIC + bytes(64))
    shared.chmod(0o644)
    empty = tmp_path / "empty.pool"
    empty.write_bytes(MAGIC + bytes(32))
    empty.chmod(0o600)
    for path, why in ((other, "not a pool file"), (shared, "chmod 600"), (empty, "exhausted")):
        code, out = _run(tmp_path, path)
        assert code == 2, out
        line = out.strip().splitlines()[-1]
        assert str(path) in line and why in line and "Traceback" not in out
    code, out = _run(tmp_path, other, "--auth-key-file", str(other))
    assert code == 2 and "--wc-pool replaces --auth-key-file" in out
