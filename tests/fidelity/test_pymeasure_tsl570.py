"""PyMeasure's TSL-570 driver, unmodified, against our emulator (as against the laser)."""

from __future__ import annotations

import pytest

from qhil.emulators.santec.tsl570 import TSL570Emulator
from qhil.emulators.server import EmulatorHost

pytestmark = pytest.mark.fidelity
santec = pytest.importorskip("pymeasure.instruments.santec")


def test_pymeasure_tsl570_drives_the_emulator(emulator_host: EmulatorHost) -> None:
    emu = TSL570Emulator(name="laser", command_set="scpi")
    ep = emulator_host.add(emu)
    # Terminations as the TSL documents them; PyMeasure leaves them to the user.
    laser = santec.TSL570(ep.resource, write_termination="\r", read_termination="\r", timeout=2000)
    try:
        assert laser.id.startswith("SANTEC,TSL-570")
        assert laser.command_set == "SCPI"
        laser.wavelength_setpoint = 1.5505e-6  # SCPI set: metres
        assert laser.wavelength_setpoint == pytest.approx(1.5505e-6)
        assert emu.wavelength == pytest.approx(1550.5)
        laser.output_enabled = True
        assert laser.output_enabled is True
        laser.power_unit = "mW"
        laser.power_setpoint = 2.0
        assert laser.power_setpoint == pytest.approx(2.0)
        assert laser.power == pytest.approx(2.0, rel=0.01)  # monitored power follows the setpoint
        laser.sweep_speed = 50
        assert laser.sweep_speed == 50
        laser.command_set = "Legacy"
        assert laser.wavelength_setpoint == pytest.approx(1550.5)  # Legacy answers in nm
        assert laser.check_errors() == []
    finally:
        laser.adapter.close()
