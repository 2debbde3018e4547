"""pyLabLib's OZ Optics EPC04 driver, unmodified, against our EPC-400 emulator on a pty."""

from __future__ import annotations

import pytest

from qhil.emulators.ozoptics.epc400 import EPC400Emulator
from qhil.emulators.server import EmulatorHost

pytestmark = pytest.mark.fidelity
OZOptics = pytest.importorskip("pylablib.devices.OZOptics")


def test_pylablib_epc04_drives_the_emulator(emulator_host: EmulatorHost) -> None:
    emu = EPC400Emulator(name="epc")
    ep = emulator_host.add(emu)
    epc = OZOptics.EPC04((ep.address, 9600))
    try:
        epc.set_voltage(0, 1.5)  # pyLabLib: 0-based channel, volts; sends V1,1500
        epc.set_voltage(2, -0.25)
        assert emu.voltages == [1500, 0, -250, 0]
        assert list(epc.get_voltages()) == pytest.approx([1.5, 0.0, -0.25, 0.0])
        epc.set_mode("ac")
        assert epc.get_mode() == "ac"
        epc.set_frequency(1, 47)
        assert list(epc.get_frequencies()) == [7, 47, 37, 71]
        epc.save_preset()
    finally:
        epc.close()
