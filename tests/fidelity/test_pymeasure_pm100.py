"""PyMeasure's Thorlabs PM100USB driver, unmodified, against our PM100D emulator."""

from __future__ import annotations

import pytest

from qhil.emulators.server import EmulatorHost
from qhil.emulators.thorlabs.pm100d import PM100DEmulator
from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_file
from qhil.orchestrator.profile import load_profile

pytestmark = pytest.mark.fidelity
thorlabs = pytest.importorskip("pymeasure.instruments.thorlabs")


def test_pymeasure_pm100usb_drives_the_emulator(emulator_host: EmulatorHost) -> None:
    # The default bench's meter on Alice's monitor tap.
    world = World(load_world_file(load_profile("default").source))
    head = world.component("alice.powermeter")
    emu = PM100DEmulator(name="pm", world=world, component="alice.powermeter")
    ep = emulator_host.add(emu)
    # USBTMC ends messages itself; on a socket the console's "\n" must be given.
    pm = thorlabs.ThorlabsPM100USB(
        ep.resource, write_termination="\n", read_termination="\n", timeout=2000
    )
    try:
        assert pm.id.startswith("Thorlabs,PM100D,")
        assert pm.sensor_name == "S155C"
        assert pm.is_power_sensor and pm.wavelength_settable and not pm.is_energy_sensor
        assert pm.wavelength == pytest.approx(1550.0)
        pm.wavelength = 1310
        assert pm.wavelength == pytest.approx(1310.0)
        pm.wavelength = 5000  # PyMeasure truncates to the sensor's range (SENS:CORR:WAV? MAX)
        assert pm.wavelength == pytest.approx(1700.0)
        pm.wavelength = 1550
        # The light the transmitter's pattern makes, as this sensor reads it (+- its noise).
        want = head.optical_power_w() * (1 + head.calibration_error_rel) + head.cfg.dark_offset_w
        assert pm.power == pytest.approx(want, abs=6 * head.cfg.noise_w)
        assert pm.check_errors() == []
    finally:
        pm.adapter.close()
