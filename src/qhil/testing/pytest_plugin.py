"""pytest plugin (registered as ``qhil``): fixtures for emulated instruments and benches.

A user's own CI can write::

    def test_my_routine(emulator_host):
        ep = emulator_host.add(TSL570Emulator(seed=1))
        ...  # point any VISA client at ep.resource

    @pytest.mark.asyncio  # not needed with asyncio_mode = "auto"
    @pytest.mark.qhil_profile("my_bench", overrides=["world.links.ab.length_km=25"])
    async def test_my_experiment(qhil_bench):
        laser = qhil_bench.role("alice", PhotonSource)
        ...

Each test gets fresh emulators (and a fresh world), so no state leaks between tests.
A profile is a path, or a name in ``./hw_profiles`` or among qhil's shipped profiles
(``default`` when the test has no ``qhil_profile`` mark). ``qhil_bench`` is async: it needs
pytest-asyncio (``pip install 'qhil[testing]'``), in its default strict mode as in auto mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from qhil.emulators.server import EmulatorHost

try:
    from pytest_asyncio import fixture as async_fixture

    HAVE_PYTEST_ASYNCIO = True
except ImportError:  # qhil_bench then says what to install; emulator_host works without it
    HAVE_PYTEST_ASYNCIO = False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "qhil_profile(name, overrides=[]): bench profile for the qhil_bench fixture "
        "(a path, or a name in ./hw_profiles or qhil's shipped profiles; default: 'default')",
    )


@pytest.fixture
def emulator_host() -> Iterator[EmulatorHost]:
    """A started EmulatorHost, stopped (and its emulators gone) after the test."""
    with EmulatorHost() as host:
        yield host


async def _qhil_bench(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A connected and configured bench from a profile; emulated instruments are served for it."""
    from qhil.orchestrator.bench import open_bench

    marker = request.node.get_closest_marker("qhil_profile")
    name = marker.args[0] if marker and marker.args else None
    overrides = list(marker.kwargs.get("overrides", [])) if marker else []
    async with open_bench(name, overrides) as bench:
        yield bench


def _qhil_bench_needs_pytest_asyncio() -> None:
    pytest.fail(
        "qhil_bench is an async fixture and needs pytest-asyncio: pip install 'qhil[testing]'",
        pytrace=False,
    )


# A plain @pytest.fixture on an async generator is served only in pytest-asyncio's auto mode;
# in its default strict mode (a user's CI without our ini) pytest refuses the test.
qhil_bench = (
    async_fixture(_qhil_bench, name="qhil_bench")
    if HAVE_PYTEST_ASYNCIO
    else pytest.fixture(_qhil_bench_needs_pytest_asyncio, name="qhil_bench")
)
