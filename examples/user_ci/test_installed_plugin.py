"""A user's own CI with qhil installed: the pytest plugin's fixtures and the shipped profiles.

Not part of qhil's test suite (it lives outside ``tests/``): ``scripts/check_wheel.sh`` copies
it to a temporary directory and runs it there with a fresh virtualenv's pytest, against the
installed wheel and with pytest-asyncio in its default strict mode, as a user's CI would;
``tests/foundation/test_profile_location.py`` runs it the same way against the development
install. It needs ``pip install 'qhil[testing]'`` (pytest, pytest-asyncio).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pyvisa

from qhil.drivers.roles import Attenuator, PhotonSource
from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.server import EmulatorHost
from qhil.orchestrator.profile import packaged_profiles_dir

# A bench of the user's own, in ./hw_profiles of the directory the tests run in.
USER_BENCH = """
[bench]
name = "user-laser-bench"

[nodes.lab.instruments.laser]
model = "santec.tsl570"
"""


@pytest.fixture(autouse=True)
def user_bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run each test in a fresh directory holding ./hw_profiles/user_laser.toml."""
    (tmp_path / "hw_profiles").mkdir()
    (tmp_path / "hw_profiles" / "user_laser.toml").write_text(USER_BENCH, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_emulator_host_serves_an_instrument_to_pyvisa(emulator_host: EmulatorHost) -> None:
    ep = emulator_host.add(TSL570Emulator(name="laser", seed=1))
    inst = pyvisa.ResourceManager("@py").open_resource(
        ep.resource, write_termination="\r", read_termination="\r", timeout=2000
    )
    try:
        assert inst.query("*IDN?").startswith("SANTEC,TSL-570,")
    finally:
        inst.close()


@pytest.mark.asyncio
async def test_qhil_bench_serves_the_shipped_default_profile(qhil_bench: Any) -> None:
    shipped = (packaged_profiles_dir() / "default.toml").resolve()
    assert Path(qhil_bench.profile.source) == shipped
    att = qhil_bench.role("alice", Attenuator)
    await att.set_attenuation_db(3.0)
    assert await att.attenuation_db() == pytest.approx(3.0)


@pytest.mark.asyncio
@pytest.mark.qhil_profile("user_laser", overrides=["bench.seed=7"])
async def test_qhil_bench_takes_a_user_profile_from_hw_profiles(
    qhil_bench: Any, user_bench_dir: Path
) -> None:
    assert Path(qhil_bench.profile.source) == user_bench_dir / "hw_profiles" / "user_laser.toml"
    assert qhil_bench.profile.bench.seed == 7
    laser = qhil_bench.role("lab", PhotonSource)
    await laser.set_wavelength_nm(1551.5)
    assert await laser.wavelength() == pytest.approx(1551.5)
