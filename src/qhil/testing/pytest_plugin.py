"""pytest plugin (registered as ``qhil``): fixtures for emulated instruments and benches.

A user's own CI can write::

    def test_my_routine(emulator_host):
        ep = emulator_host.add(TSL570Emulator(seed=1))
        ...  # point any VISA client at ep.resource

    @pytest.mark.qhil_profile("my_bench", overrides=["world.links.ab.length_km=25"])
    async def test_my_experiment(qhil_bench):
        laser = qhil_bench.role("alice", PhotonSource)
        ...

Each test gets fresh emulators (and a fresh world), so no state leaks between tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from qhil.emulators.server import EmulatorHost


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qhil_profile(name, overrides=[]): bench profile for the qhil_bench fixture "
        "(default: hw_profiles/default.toml)",
    )


@pytest.fixture
def emulator_host() -> Iterator[EmulatorHost]:
    """A started EmulatorHost, stopped (and its emulators gone) after the test."""
    with EmulatorHost() as host:
        yield host


@pytest.fixture
async def qhil_bench(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A connected and configured bench from a profile; emulated instruments are served for it."""
    from qhil.orchestrator.bench import open_bench

    marker = request.node.get_closest_marker("qhil_profile")
    name = marker.args[0] if marker and marker.args else None
    overrides = list(marker.kwargs.get("overrides", [])) if marker else []
    async with open_bench(name, overrides) as bench:
        yield bench
