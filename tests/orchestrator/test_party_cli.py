"""Party mode and job lifecycle from the command line (issue 14, items 9 and 10).

A party used to wait 120 s in silence for a peer that was not there; a wrong pre-shared
key exited 2 (the README says 3); SIGTERM left the run ``incomplete`` and its temporary
directory behind, as kill -9 leaves ``qhil-emu-*`` directories; the party summary printed
``qber: null`` and a rate of 0 on success; ``--data-dir`` did not take the keys along.

The emulated bench runs in this test process as the "hardware", serving a profile with
its live addresses; each party opens only its own node's instruments from it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from qhil.cli import main
from qhil.emulators.bench import EmulatedBench
from qhil.emulators.tempdirs import OWNER_FILE, remove_stale_emulator_dirs
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

QHIL = [sys.executable, "-m", "qhil.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(path: Path) -> Path:
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A profile addressing the running emulated bench, as ``qhil emulate --write-profile``."""
    folder = tmp_path_factory.mktemp("lab")
    with EmulatedBench(load_profile()) as bench:
        path = folder / "lab.toml"
        path.write_bytes(tomli_w.dumps(bench.addressed_profile()).encode())
        yield path


def _stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("qhil: ")]


def test_bob_says_where_he_waits_and_gives_up_after_the_peer_timeout(
    lab: Path, tmp_path: Path
) -> None:
    port = _free_port()  # nothing listens there
    args = ["run", "bb84", str(lab), "--party", "bob", "--connect", f"127.0.0.1:{port}"]
    args += ["--auth-key-file", str(_key(tmp_path / "psk.hex")), "--peer-timeout", "1"]
    r = CliRunner().invoke(main, args, env={"QHIL_DATA_DIR": str(tmp_path / "data")})
    assert r.exit_code == 2, r.output
    lines = _stderr_lines(r.stderr)
    assert lines[0] == (
        f"qhil: bob: connecting to alice at 127.0.0.1:{port}, waiting up to 1 s for her to listen"
    )
    assert lines[-1].startswith("qhil: error: ") and f"127.0.0.1:{port}" in lines[-1]
    assert "gave up after 1 s (--peer-timeout)" in lines[-1]


def test_alice_says_where_she_listens_and_gives_up_after_the_peer_timeout(
    lab: Path, tmp_path: Path
) -> None:
    args = ["run", "bb84", str(lab), "--party", "alice", "--listen", "127.0.0.1:0"]
    args += ["--auth-key-file", str(_key(tmp_path / "psk.hex")), "--peer-timeout", "1"]
    args += ["--set", "experiments.bb84.verify_mus=false"]  # only the waiting is tested here
    r = CliRunner().invoke(main, args, env={"QHIL_DATA_DIR": str(tmp_path / "data")})
    assert r.exit_code == 2, r.output
    lines = _stderr_lines(r.stderr)
    assert lines[0].startswith("qhil: alice: listening on 127.0.0.1:")
    assert lines[0].endswith("waiting up to 1 s for bob to connect")
    assert lines[-1].startswith("qhil: error: alice: bob did not connect to 127.0.0.1:")
    assert "within 1 s (--peer-timeout)" in lines[-1]


@pytest.mark.slow
def test_a_wrong_pre_shared_key_exits_3_at_both_parties(lab: Path, tmp_path: Path) -> None:
    """Authentication failures exit 3, as the README says (they exited 2), recorded aborted."""
    port = _free_port()
    env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path / "data")}
    # Alice cannot tell a wrong-key Bob from an attacker's hello: she keeps listening for
    # the real one until --peer-timeout, then exits 3. Bob starts first and is retrying
    # (<= 1 s apart) when she listens, so her 5 s cover his hello on a loaded host; a
    # shared 15 s spent ~10 s of CI idle waiting for a Bob who had long been turned away.
    alice_key, bob_key = _key(tmp_path / "a.hex"), _key(tmp_path / "b.hex")  # not the same

    def start(party: str, where: str, key: Path, peer_timeout: str) -> subprocess.Popen[str]:
        args = ["--party", party, where, f"127.0.0.1:{port}", "--auth-key-file", str(key)]
        return subprocess.Popen(
            [*QHIL, "run", "bb84", str(lab), "--json", *args, "--peer-timeout", peer_timeout],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    procs: list[subprocess.Popen[str]] = []
    try:
        bob = start("bob", "--connect", bob_key, "120")
        procs.append(bob)
        assert bob.stderr is not None
        bob_said = ""
        while line := bob.stderr.readline():
            bob_said += line
            if "bob: connecting to alice" in line:
                break
        alice = start("alice", "--listen", alice_key, "5")
        procs.append(alice)
        outs = [p.communicate(timeout=600) for p in (alice, bob)]
    finally:
        for p in procs:  # only if a wait above failed
            if p.poll() is None:
                p.kill()
                p.communicate()
    outs[1] = (outs[1][0], bob_said + outs[1][1])
    for p, (out, err) in zip((alice, bob), outs, strict=True):
        assert p.returncode == 3, out + err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "aborted"
        assert summary["reason"].startswith("authentication_failed: ")
        assert "Traceback" not in err
    records = RunStore(tmp_path / "data").list_runs()
    assert sorted(r.kind for r in records) == ["bb84.alice", "bb84.bob"]
    assert all(r.status.value == "aborted" for r in records)


@pytest.mark.slow
def test_party_summaries_report_the_measured_qber_and_key_rate(lab: Path, tmp_path: Path) -> None:
    """Each party knows the QBER and the rate from the public tally; it printed null / 0."""
    import asyncio

    from qhil.orchestrator.jobs import run_bb84_party_job

    port = _free_port()
    key = _key(tmp_path / "psk.hex")
    common = {
        "auth_key_file": key,
        "duration_s": 0.1,  # enough light for a finite key (as the two-process test)
        "data_dir": tmp_path / "data",
        "peer_timeout_s": 300.0,
    }

    async def both() -> list:
        return list(
            await asyncio.gather(
                run_bb84_party_job(
                    "alice",
                    str(lab),
                    listen=f"127.0.0.1:{port}",
                    **common,  # type: ignore[arg-type]
                ),
                run_bb84_party_job(
                    "bob",
                    str(lab),
                    connect=f"127.0.0.1:{port}",
                    **common,  # type: ignore[arg-type]
                ),
            )
        )

    alice, bob = (s.as_dict() for s in asyncio.run(both()))
    assert alice["status"] == bob["status"] == "success", (alice["reason"], bob["reason"])
    for s in (alice, bob):
        assert s["qber"] is not None and 0.0 <= s["qber"] < 0.11
        assert s["secret_bits"] > 0 and s["secret_key_rate_bps"] > 0.0
        acquisition = s["results"]["acquisition_s"]
        assert s["secret_key_rate_bps"] == pytest.approx(s["secret_bits"] / acquisition)
    assert alice["qber"] == bob["qber"] and alice["secret_bits"] == bob["secret_bits"]
    assert alice["alice_key_sha256"] == bob["bob_key_sha256"] is not None
    assert "bob_key_sha256" not in alice["results"] and "alice_key_sha256" not in bob["results"]
    # --data-dir holds the keys too (they went to the home directory)
    assert len(list((tmp_path / "data" / "keys").iterdir())) >= 2


def test_keys_go_under_the_data_dir_unless_a_key_dir_is_given(tmp_path: Path) -> None:
    from qhil.orchestrator.jobs import output_stores
    from qhil.records import default_key_dir

    assert default_key_dir(tmp_path / "d") == tmp_path / "d" / "keys"
    _, keys = output_stores(tmp_path / "d", None)
    assert Path(keys.directory) == tmp_path / "d" / "keys"
    _, keys = output_stores(tmp_path / "d", tmp_path / "k")
    assert Path(keys.directory) == tmp_path / "k"


def _emulator_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("qhil-emu-*"))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_records_the_run_aborted_and_removes_its_temporary_directory(
    tmp_path: Path, signum: signal.Signals
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    data = tmp_path / "data"
    env = {**os.environ, "QHIL_DATA_DIR": str(data), "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [*QHIL, "run", "bb84", "--duration", "30", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # Wait (by state, not by time) until the run has recorded data: then terminate it.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            runs = RunStore(data).list_runs() if (data / "runs.sqlite").exists() else []
            if runs and runs[0].data_path is not None and _emulator_dirs(tmp):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be terminated"
        assert _emulator_dirs(tmp), "the bench's emulators made no temporary directory"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and f"terminated by {signum.name}" in err
    (record,) = RunStore(data).list_runs()
    assert record.status.value == "aborted"
    assert record.reason == f"terminated by signal ({signum.name})"
    assert record.data_path is not None and record.array_index  # data so far kept
    assert _emulator_dirs(tmp) == []


def test_stale_emulator_directories_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        made = {}
        for name, pid in (("dead", dead.pid), ("live", live.pid), ("mine", os.getpid())):
            d = tmp_path / f"qhil-emu-{name}"
            d.mkdir()
            (d / OWNER_FILE).write_text(f"{pid}\n")
            made[name] = d
        # Without a pid file (a plain EmulatorHost): stale only when its pty links dangle.
        made["dangling"] = tmp_path / "qhil-emu-dangling"
        made["dangling"].mkdir()
        (made["dangling"] / "bob.polctrl").symlink_to("/dev/pts/no-such-terminal")
        made["unknown"] = tmp_path / "qhil-emu-unknown"
        made["unknown"].mkdir()
        (tmp_path / "other").mkdir()
        removed = remove_stale_emulator_dirs(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert sorted(removed) == sorted([made["dead"], made["dangling"]])
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"qhil-emu-live", "qhil-emu-mine", "qhil-emu-unknown", "other"}


@pytest.mark.slow
def test_a_bench_started_after_kill_9_removes_the_dead_ones_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [*QHIL, "emulate", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # serving
        (left,) = _emulator_dirs(tmp)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        proc.communicate(timeout=60)
    assert left.exists()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    with EmulatedBench(load_profile()):
        (now,) = _emulator_dirs(tmp)
        assert now != left
    assert _emulator_dirs(tmp) == []


def test_a_handshake_failing_authentication_aborts_the_in_process_run(tmp_path: Path) -> None:
    """A forged hello is an authentication failure like any other message: the run is
    recorded aborted (exit 3 from the CLI), not a failed run with an escaping error."""
    import asyncio

    from qhil.orchestrator.jobs import run_bb84_job

    def flip_hello(frame: bytes) -> list[bytes]:
        return [frame[:-1] + bytes([frame[-1] ^ 0x01])]

    summary = asyncio.run(
        run_bb84_job(
            None,
            ["experiments.bb84.calibrate_polarization=false", "experiments.bb84.verify_mus=false"],
            duration_s=0.05,
            data_dir=tmp_path / "data",
            key_dir=tmp_path / "keys",
            tamper_alice_to_bob=flip_hello,
        )
    )
    assert summary.status == "aborted" and summary.reason is not None
    assert summary.reason.startswith("authentication_failed: ")
    record = RunStore(tmp_path / "data").get(summary.run_id)
    assert record.status.value == "aborted" and record.reason == summary.reason


def test_a_plain_emulator_host_marks_its_directory_with_its_pid() -> None:
    """Every host (the emulator_host fixture's too, not only a bench's) writes its owner's
    pid, so a kill -9 leaves a directory the next start recognises as stale."""
    from qhil.emulators.server import EmulatorHost

    with EmulatorHost() as host:
        directory = Path(host._dir)
        assert (directory / OWNER_FILE).read_text().strip() == str(os.getpid())
