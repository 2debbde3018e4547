"""The fixtures qhil's pytest plugin gives users."""

from __future__ import annotations

from typing import Any

import pytest

from qhil.drivers.roles import Attenuator, PolarizationController


async def test_qhil_bench_fixture_serves_the_default_bench(qhil_bench: Any) -> None:
    att = qhil_bench.role("alice", Attenuator)
    await att.set_attenuation_db(3.0)
    assert await att.attenuation_db() == pytest.approx(3.0)
    pc = qhil_bench.role("bob", PolarizationController)
    await pc.set_voltages_mv([10, 20, 30, 40])
    assert await pc.voltages_mv() == [10, 20, 30, 40]


@pytest.mark.qhil_profile("default", overrides=["bench.seed=99"])
async def test_qhil_bench_fixture_takes_a_profile_and_overrides(qhil_bench: Any) -> None:
    assert qhil_bench.profile.bench.seed == 99
