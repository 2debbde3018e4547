"""Bad input on the command line: one line on stderr naming the option or field, exit 2.

Issue 14, items 7, 8 and 10: these cases gave tracebacks (``--duration inf``,
``runs list --limit -1``, ports out of range), waited in silence (``emulate`` on a lab
profile), started an 11-day run without a word (``--duration 1e6``), or said the wrong
thing (a short key reported as "not a hexadecimal string"). Every case here fails before
any instrument is opened: ``open_bench`` is replaced by a trap that fails the test.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.orchestrator.profile import load_profile

QHIL = [sys.executable, "-m", "qhil.cli"]
DEFAULT = Path(__file__).parents[2] / "hw_profiles" / "default.toml"


@pytest.fixture
def no_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command gets as far as opening instruments."""
    import qhil.orchestrator.jobs as jobs

    def trap(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the command opened the bench; it should have refused first")

    monkeypatch.setattr(jobs, "open_bench", trap)


def invoke(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stderr)."""
    result = CliRunner().invoke(main, args, env={"QHIL_DATA_DIR": str(tmp_path / "data")})
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}"
    )
    return result.exit_code, result.stderr


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qhil: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, err)


def key_file(tmp_path: Path, hex_text: str) -> Path:
    p = tmp_path / "psk.hex"
    p.write_text(hex_text)
    p.chmod(0o600)
    return p


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["run", "bb84", "--duration", "inf"], ["--duration", "finite"]),
        (["run", "bb84", "--duration", "nan"], ["--duration", "finite"]),
        (["run", "bb84", "--duration", "-1"], ["--duration"]),
        (["run", "bb84", "--duration", "0"], ["--duration"]),
        (["run", "bb84", "--duration", "soon"], ["--duration", "soon"]),
        (["runs", "list", "--limit", "-1"], ["--limit", "-1"]),
        (["runs", "list", "--limit", "many"], ["--limit"]),
        (["run", "bb84", "--peer-timeout", "inf"], ["--peer-timeout"]),
        (["run", "bb84", "--peer-timeout", "1e300"], ["--peer-timeout", "at most"]),
        (["runs", "list", "--limit", "99999999999999999999"], ["--limit"]),
        (["runs", "list", "--data-dir", ""], ["--data-dir", "empty"]),
        (["run", "bb84", "--data-dir", " "], ["--data-dir", "empty"]),
        (["run", "bb84", "--key-dir", "/dev/null"], ["--key-dir", "not a directory"]),
        (["calibrate", "delays", "--data-dir", ""], ["--data-dir", "empty"]),
        (["profile", "show", "--set", "bench.seed"], ["bench.seed", "path=value"]),
    ],
)
def test_bad_option_values_are_one_line_errors(
    tmp_path: Path, no_bench: None, args: list[str], names: list[str]
) -> None:
    code, err = invoke(args, tmp_path)
    assert_one_line_error(code, err, *names)


@pytest.mark.parametrize(
    ("option", "address", "names"),
    [
        ("--listen", "127.0.0.1:99999", ["--listen", "99999", "0..65535"]),
        ("--connect", "127.0.0.1:99999", ["--connect", "99999", "1..65535"]),
        ("--connect", "127.0.0.1:0", ["--connect", "1..65535"]),
        ("--connect", "127.0.0.1", ["--connect", "HOST:PORT"]),
        ("--connect", ":7000", ["--connect", "HOST:PORT"]),
        ("--connect", "127.0.0.1:-5", ["--connect", "HOST:PORT"]),
        ("--connect", "no-such-host.invalid:7000", ["--connect", "does not resolve"]),
    ],
)
def test_bad_addresses_are_one_line_errors(
    tmp_path: Path, no_bench: None, option: str, address: str, names: list[str]
) -> None:
    key = key_file(tmp_path, secrets.token_hex(32))
    party = "alice" if option == "--listen" else "bob"
    args = ["run", "bb84", "--party", party, option, address, "--auth-key-file", str(key)]
    code, err = invoke(args, tmp_path)
    assert_one_line_error(code, err, *names)


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--party", "bob", "--auth-key-file", "KEY"], ["--connect"]),
        (
            ["--party", "alice", "--connect", "127.0.0.1:7000", "--auth-key-file", "KEY"],
            ["--listen"],
        ),
        (["--connect", "127.0.0.1:7000"], ["--party"]),
        (["--party", "alice"], ["--auth-key-file"]),
        (["--auth-key-file", "DIR"], ["--auth-key-file", "directory"]),
        (["--auth-key-file", "MISSING"], ["--auth-key-file", "does not exist"]),
    ],
)
def test_inconsistent_party_options_are_one_line_errors(
    tmp_path: Path, no_bench: None, extra: list[str], names: list[str]
) -> None:
    key = key_file(tmp_path, secrets.token_hex(32))
    swap = {"KEY": str(key), "DIR": str(tmp_path), "MISSING": str(tmp_path / "nope.hex")}
    code, err = invoke(["run", "bb84", *[swap.get(x, x) for x in extra]], tmp_path)
    assert_one_line_error(code, err, *names)


def test_a_very_long_acquisition_needs_yes(tmp_path: Path, no_bench: None) -> None:
    """``--duration 1e6`` is 11.6 days: refused, saying so, unless --yes is given."""
    code, err = invoke(["run", "bb84", "--duration", "1e6"], tmp_path)
    assert_one_line_error(code, err, "--duration", "11.6 days", "--yes")
    # The same bound holds for a profile's own duration or block count.
    code, err = invoke(["run", "bb84", "--set", "experiments.bb84.duration_s=1e7"], tmp_path)
    assert_one_line_error(code, err, "experiments.bb84", "--yes", str(DEFAULT))
    # Above a year not even with --yes (1e308 s overflowed the block count: a traceback).
    code, err = invoke(["run", "bb84", "--duration", "1e308", "--yes"], tmp_path)
    assert_one_line_error(code, err, "--duration", "qhil starts none longer than 365 days")
    # With --yes it goes on to open the bench (here: the trap, so an AssertionError).
    result = CliRunner().invoke(
        main,
        ["run", "bb84", "--duration", "1e6", "--yes"],
        env={"QHIL_DATA_DIR": str(tmp_path / "data")},
    )
    assert isinstance(result.exception, AssertionError) and "opened the bench" in str(
        result.exception
    )


def test_emulate_on_a_lab_profile_says_there_is_nothing_to_serve(tmp_path: Path) -> None:
    """It used to wait for Ctrl-C in silence; now it exits 2 at once, naming the profile."""
    lab = Path(__file__).parents[2] / "hw_profiles" / "lab_example.toml"
    r = subprocess.run([*QHIL, "emulate", str(lab)], capture_output=True, text=True, timeout=60)
    assert_one_line_error(r.returncode, r.stderr, str(lab), "no emulated instruments")
    assert r.stdout == ""


def test_a_short_auth_key_is_reported_as_short(tmp_path: Path, no_bench: None) -> None:
    key = key_file(tmp_path, "abcd1234\n")
    args = ["run", "bb84", "--party", "bob", "--connect", "127.0.0.1:7000"]
    code, err = invoke([*args, "--auth-key-file", str(key)], tmp_path)
    assert_one_line_error(code, err, str(key), "too short", "4 bytes", "8 hex digits", "16 bytes")
    assert "not a hexadecimal" not in err
    key = key_file(tmp_path, "zz" * 32)
    code, err = invoke([*args, "--auth-key-file", str(key)], tmp_path)
    assert_one_line_error(code, err, str(key), "not a hexadecimal string")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiments.bb84.max_qber=0.7", "experiments.bb84.max_qber"),
        ("experiments.bb84.channel_map.H=2", "channel_map"),
        ("experiments.bb84.duration_s=inf", "experiments.bb84.duration_s"),
        ("experiments.bb84.blocks=3", "experiments.bb84"),  # both blocks and duration_s
        ("experiments.bb84.colour=1", "experiments.bb84.colour"),
        ("experiments.bb48.blocks=3", "experiments.bb48"),
        ("experiments.calibration.polarization.target_error=2", "polarization.target_error"),
        ("experiments.calibration.delays.period_pulses=1", "delays.period_pulses"),
        ("experiments.calibration.focus.x=1", "experiments.calibration.focus"),
        ("world.links.alice-bob.length_km=inf", "world.links.alice-bob.length_km"),
        ("nodes.alice.instruments.laser.timeout_s=inf", "nodes.alice.instruments.laser.timeout_s"),
        ("bench.seed=-1", "bench.seed"),
        ("experiments.bb84.duration_s=1e308", "experiments.bb84.duration_s"),
        (
            "nodes.alice.instruments.laser.settings.wavelength_nm=5000",
            "nodes.alice.instruments.laser.settings.wavelength_nm",
        ),
        (
            "nodes.bob.instruments.snspd.settings.colour=1",
            "nodes.bob.instruments.snspd.settings.colour",
        ),
    ],
)
def test_profile_show_validates_what_run_validates(
    tmp_path: Path, no_bench: None, override: str, field: str
) -> None:
    """``profile show`` gives the same one-line error as ``run bb84`` (it did not look at
    ``[experiments]`` at all, nor reject NaN/inf or a negative seed)."""
    shown = invoke(["profile", "show", "--set", override], tmp_path)
    assert_one_line_error(*shown, field, str(DEFAULT))
    ran = invoke(["run", "bb84", "--set", override], tmp_path)
    assert ran == shown


def test_a_directory_as_profile_is_a_one_line_error(tmp_path: Path, no_bench: None) -> None:
    folder = tmp_path / "bench.toml"
    folder.mkdir()
    code, err = invoke(["profile", "show", str(folder)], tmp_path)
    assert_one_line_error(code, err, str(folder), "directory")


def test_shipped_profiles_still_load() -> None:
    assert load_profile().experiments["bb84"]


def test_errors_through_a_real_process_are_one_line(tmp_path: Path) -> None:
    """The in-process runner above, checked against the installed entry point."""
    for args, name in (
        (["run", "bb84", "--duration", "inf"], "--duration"),
        (["runs", "list", "--limit", "-1"], "--limit"),
        (["profile", "show", "--set", "experiments.bb84.max_qber=0.7"], "bb84.max_qber"),
    ):
        r = subprocess.run(
            [*QHIL, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "QHIL_DATA_DIR": str(tmp_path / "data")},
        )
        assert_one_line_error(r.returncode, r.stderr, name)


def test_emulate_refuses_a_profile_it_could_not_write_before_serving(tmp_path: Path) -> None:
    """It served the bench, then failed writing with a FileNotFoundError traceback."""
    target = tmp_path / "no" / "such" / "lab.toml"
    code, err = invoke(["emulate", "--write-profile", str(target)], tmp_path)
    assert_one_line_error(code, err, "--write-profile", str(target), "no such directory")


def test_a_binary_auth_key_file_is_not_a_traceback(tmp_path: Path, no_bench: None) -> None:
    key = tmp_path / "psk.hex"
    key.write_bytes(b"\xff\xfe" * 32)
    key.chmod(0o600)
    args = ["run", "bb84", "--party", "bob", "--connect", "127.0.0.1:7000"]
    code, err = invoke([*args, "--auth-key-file", str(key)], tmp_path)
    assert_one_line_error(code, err, str(key), "not a hexadecimal string")


@pytest.mark.parametrize("args", [[], ["run"], ["runs"]])
def test_a_bare_group_shows_its_help_not_an_error(tmp_path: Path, args: list[str]) -> None:
    code, err = invoke(args, tmp_path)
    assert code == 2 and err.startswith("Usage: ") and "qhil: error" not in err
