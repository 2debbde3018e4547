"""pytest plugin (registered as ``qhil``): fixtures for emulated instruments.

A user's own CI can write::

    def test_my_routine(emulator_host):
        ep = emulator_host.add(TSL570Emulator(seed=1))
        ...  # point any VISA client at ep.resource

Each test gets a fresh host, so emulator state never leaks between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qhil.emulators.server import EmulatorHost


@pytest.fixture
def emulator_host() -> Iterator[EmulatorHost]:
    """A started EmulatorHost, stopped (and its emulators gone) after the test."""
    with EmulatorHost() as host:
        yield host
