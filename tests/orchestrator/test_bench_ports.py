"""Bench runtime: multi-port instruments get every port, emulated or real."""

from __future__ import annotations

from pathlib import Path

import pytest

from qhil.emulators.bench import EmulatedBench
from qhil.errors import ConfigError
from qhil.orchestrator.addresses import resolve_extra_resources
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.bench_errors import BenchConnectError
from qhil.orchestrator.profile import load_profile

from ._bench_support import closed_port, io_threads, settle

SNSPD = """
[bench]
name = "ports"

[nodes.bob.instruments.snspd]
model = "singlequantum.eos"
{snspd}

[nodes.bob.instruments.polctrl]
model = "ozoptics.epc400"
"""


def _profile(tmp_path: Path, snspd: str = "") -> Path:
    path = tmp_path / "ports.toml"
    path.write_text(SNSPD.format(snspd=snspd))
    return path


async def test_emulated_instrument_gets_its_emulators_further_ports(tmp_path: Path) -> None:
    profile = load_profile(str(_profile(tmp_path)))
    with EmulatedBench(profile) as emulated:
        served = emulated.extra_addresses()[("bob", "snspd")]
        assert set(served) == {"counts"}
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        member = next(m for m in bench.instruments if m.key == "bob.snspd")
        assert member.extra_resources == served
        snspd = bench.instrument("bob", "snspd")
        await bench.connect(timeout_s=10)
        try:
            counts = snspd.counts_session  # type: ignore[attr-defined]
            assert counts.resource == served["counts"] and counts.is_open
            ids = await bench.identities()
            assert ids["bob.snspd"].startswith("Single Quantum,Eos")
        finally:
            await bench.close()
        assert not counts.is_open and not snspd.session.is_open
        resources = [r for m in bench.instruments for r in m.resources]
        assert served["counts"] in resources
        await settle(lambda: not io_threads(resources))
        assert io_threads(resources) == []


async def test_unreachable_further_port_is_named_in_the_error(tmp_path: Path) -> None:
    dead = f"TCPIP0::127.0.0.1::{closed_port()}::SOCKET"
    path = _profile(tmp_path, f'extra_resources = {{ counts = "{dead}" }}')
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated:
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        assert bench.instrument("bob", "snspd").counts_session.resource == dead  # type: ignore[attr-defined]
        with pytest.raises(BenchConnectError) as caught:
            await bench.connect(timeout_s=10)
    err = caught.value
    assert list(err.errors) == ["bob.snspd"] and err.succeeded == ["bob.polctrl"]
    line = next(x for x in str(err).splitlines() if x.strip().startswith("bob.snspd"))
    assert f"counts {dead}" in line and "cannot open" in line


def test_further_ports_of_a_lab_profile_pass_through() -> None:
    lab = load_profile("lab_detection")
    extras = resolve_extra_resources(lab)
    spec = lab.nodes["bob"].instruments["snspd"]
    assert extras == {("bob", "snspd"): spec.extra_resources}


async def test_port_the_driver_does_not_have_is_a_config_error(tmp_path: Path) -> None:
    path = _profile(tmp_path, 'extra_resources = { histogram = "TCPIP0::10.0.0.1::9::SOCKET" }')
    profile = load_profile(str(path))
    with EmulatedBench(profile) as emulated, pytest.raises(ConfigError) as caught:
        Bench(profile, emulated.addresses(), emulated.extra_addresses())
    assert caught.value.field == "nodes.bob.instruments.snspd.extra_resources.histogram"
    assert caught.value.source == str(path) and "counts" in caught.value.problem


def test_emulated_port_the_emulator_does_not_serve_is_a_config_error(tmp_path: Path) -> None:
    path = _profile(tmp_path, 'extra_resources = { histogram = "emulated" }')
    profile = load_profile(str(path))
    with pytest.raises(ConfigError) as caught:
        resolve_extra_resources(profile, {("bob", "snspd"): {"counts": "TCPIP0::h::1::SOCKET"}})
    assert caught.value.field == "nodes.bob.instruments.snspd.extra_resources.histogram"
    assert "serves: counts" in caught.value.problem
