"""The qhil command and bench profiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pyvisa
import serial

from qhil.errors import ConfigError
from qhil.orchestrator.profile import load_profile

QHIL = [sys.executable, "-m", "qhil.cli"]


def test_help_and_version() -> None:
    out = subprocess.run([*QHIL, "--help"], capture_output=True, text=True, check=True).stdout
    assert "emulate" in out and "catalogue" in out
    from qhil import __version__

    out = subprocess.run([*QHIL, "--version"], capture_output=True, text=True, check=True).stdout
    assert __version__ in out


def test_emulate_json_lists_instruments_that_answer() -> None:
    proc = subprocess.Popen(
        [*QHIL, "emulate", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        n = len(load_profile().instruments())
        rows = [json.loads(proc.stdout.readline()) for _ in range(n)]
        by_model = {r["model"]: r for r in rows}
        assert {"TSL-570", "EPC-400"} <= set(by_model)
        for r in rows:
            assert {"name", "model", "resource", "address"} <= set(r)
        rm = pyvisa.ResourceManager("@py")
        laser = rm.open_resource(
            by_model["TSL-570"]["resource"],
            write_termination="\r",
            read_termination="\r",
            timeout=10000,  # generous: the whole bench shares a loaded machine
        )
        assert laser.query("*IDN?").startswith("SANTEC,TSL-570")
        laser.close()
        with serial.serial_for_url(
            by_model["EPC-400"]["address"], baudrate=9600, timeout=10
        ) as port:
            port.write(b"M?\r\n")
            assert port.readline() == b"Work Mode: DC\r\n"
            assert port.readline() == b"Done\r\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def test_default_profile_is_valid() -> None:
    prof = load_profile()
    assert prof.bench.name and len(prof.instruments()) >= 3


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        (
            '[bench]\nname="x"\n[nodes.a.instruments.l]\nmodel="nope.nope"\n',
            "nodes.a.instruments.l.model",
        ),
        (
            '[bench]\nname="x"\n[nodes.a.instruments.l]\nmodel="santec.tsl570"\ncolour="red"\n',
            "nodes.a.instruments.l.colour",
        ),
        ("[nodes.a]\n", "bench"),
        (
            '[bench]\nname="x"\n[nodes.a.instruments.l]\nmodel="santec.tsl570"\ntimeout_s=-1\n',
            "nodes.a.instruments.l.timeout_s",
        ),
    ],
)
def test_malformed_profile_names_field_and_file(tmp_path: Path, toml: str, field: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_profile(str(p))
    assert err.value.field == field and str(p) in str(err.value)


def test_cli_reports_profile_errors_clearly(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[bench]\nname="x"\n[nodes.a.instruments.l]\nmodel="nope"\n')
    r = subprocess.run(
        [*QHIL, "profile", "show", str(p)], capture_output=True, text=True, env=os.environ
    )
    assert r.returncode == 2 and "nodes.a.instruments.l.model" in r.stderr and str(p) in r.stderr


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    prof = load_profile(
        None, ["bench.seed=7", 'nodes.alice.instruments.laser.emulator.command_set="scpi"']
    )
    assert prof.bench.seed == 7
    assert prof.nodes["alice"].instruments["laser"].emulator["command_set"] == "scpi"
    with pytest.raises(ConfigError, match=r"bench\.seed"):
        load_profile(None, ["bench.seed=notanumber"])


def test_runs_list_and_show(tmp_path: Path) -> None:
    from qhil.records import RunStore

    store = RunStore(tmp_path)
    with store.start_run(kind="bb84", seed=3, parameters={"mu": 0.5}) as run:
        run.log_result("qber", 0.021)
    env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [*QHIL, "runs", "list"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert run.run_id in out and "success" in out
    shown = subprocess.run(
        [*QHIL, "runs", "show", run.run_id[:15], "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    record = json.loads(shown)
    assert record["run_id"] == run.run_id and record["parameters"]["mu"] == 0.5
    missing = subprocess.run(
        [*QHIL, "runs", "show", "nope"], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "nope" in missing.stderr


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).parents[2].joinpath("hw_profiles").glob("*.toml")),
    ids=lambda p: p.name,
)
def test_every_shipped_profile_is_valid(path: Path) -> None:
    prof = load_profile(str(path))
    assert prof.instruments(), f"{path.name} names no instruments"


@pytest.mark.parametrize("override", ["bench.name.x=1", "bench.name.x.y=1"])
def test_override_into_a_value_names_the_value(override: str) -> None:
    with pytest.raises(ConfigError, match="'bench.name': it is a value"):
        load_profile(None, [override])


@pytest.mark.slow
def test_calibrate_polarization_cli_compensates_a_random_fibre(tmp_path: Path) -> None:
    env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path)}
    cmd = [*QHIL, "calibrate", "polarization", "--json"]
    cmd += ["--set", 'world.links.alice-bob.initial_polarization="random"']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "success" and out["target_met"] is True
    assert out["e_z_before"] > out["target_error"]  # a random fibre needed compensating
    runs = subprocess.run(
        [*QHIL, "runs", "list", "--json"], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(runs.stdout)[0]["kind"] == "calibration.polarization"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "kind"), [("detectors", "detector_efficiency"), ("delays", "delays")]
)
def test_calibrate_cli_records_a_run(tmp_path: Path, command: str, kind: str) -> None:
    env = {**os.environ, "QHIL_DATA_DIR": str(tmp_path)}
    r = subprocess.run(
        [*QHIL, "calibrate", command, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "success" and out["kind"] == f"calibration.{kind}"
    shown = subprocess.run(
        [*QHIL, "runs", "show", out["run_id"], "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(shown.stdout)["status"] == "success"
