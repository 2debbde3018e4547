"""The open-source Elliptec clients, unmodified, against our ELL14 emulator on a pty:
``elliptec`` (PyPI, David Roesel) and pyLabLib's ``Thorlabs.ElliptecMotor``. Both talk to
two mounts on one bus, turning the world's half-wave plates."""

from __future__ import annotations

from typing import Any

import pytest

from qhil.emulators.server import EmulatorHost
from qhil.emulators.thorlabs.ell14 import ELL14Emulator
from qhil.emulators.world import World, load_world_config

pytestmark = pytest.mark.fidelity


def two_plates() -> World:
    comps: dict[str, Any] = {
        "hwp": {"type": "waveplate"},
        "qwp": {"type": "waveplate", "retardance_waves": 0.25},
        "det": {"type": "detector"},
    }
    table = {"seed": 1, "nodes": {"alice": {"components": comps}}}
    return World(load_world_config(table, "test_elliptec_ell14"), mode="fast")


def bus(host: EmulatorHost) -> tuple[World, str]:
    world = two_plates()
    emu = ELL14Emulator(name="ell", world=world, component="alice.hwp", devices={"1": "alice.qwp"})
    return world, host.add(emu).address


def test_roesel_elliptec_rotators_drive_the_emulator(emulator_host: EmulatorHost) -> None:
    elliptec = pytest.importorskip("elliptec")
    world, port = bus(emulator_host)
    controller = elliptec.Controller(port, debug=False)
    try:
        hwp = elliptec.Rotator(controller, address="0", debug=False)
        qwp = elliptec.Rotator(controller, address="1", debug=False)
        assert hwp.motor_type == 14 and hwp.pulse_per_rev == 143360 and hwp.range == 360
        assert hwp.serial_no == "11400500" and qwp.serial_no == "11400501"
        hwp.home()
        assert hwp.set_angle(22.5) == pytest.approx(22.5, abs=0.01)
        assert world.waveplate("alice.hwp").angle_deg == pytest.approx(22.5, abs=0.01)
        assert qwp.set_angle(45.0) == pytest.approx(45.0, abs=0.01)
        assert hwp.shift_angle(-10.0) == pytest.approx(12.5, abs=0.01)
        assert hwp.get_angle() == pytest.approx(12.5, abs=0.01)
        assert world.waveplate("alice.qwp").angle_deg == pytest.approx(45.0, abs=0.01)
        hwp.set_home_offset(1.0)
        assert hwp.get_home_offset() == pytest.approx(1.0, abs=0.01)
        assert hwp.get("status") == ("0", "GS", "0")
    finally:
        controller.close_connection()


@pytest.mark.slow  # importing pyLabLib's Thorlabs package takes ~3 s of CPU (shared with the EPC04 test)
def test_pylablib_elliptec_motor_drives_the_emulator(emulator_host: EmulatorHost) -> None:
    thorlabs = pytest.importorskip("pylablib.devices.Thorlabs")
    world, port = bus(emulator_host)
    # Its query first empties the input by reading until the timeout: keep that short.
    motor = thorlabs.ElliptecMotor((port, 9600), addrs=[0, 1], timeout=0.25)
    try:
        assert motor.get_connected_addrs() == [0, 1]
        info = motor.get_device_info(addr=0)
        assert (info.model_no, info.travel, info.pulse) == (14, 360, 143360)
        assert motor.home(addr=0) is True
        assert motor.move_to(67.5, addr=0) is True
        assert motor.get_position(addr=0) == pytest.approx(67.5, abs=0.01)
        assert world.waveplate("alice.hwp").angle_deg == pytest.approx(67.5, abs=0.01)
        assert motor.move_by(-45.0, addr=1) is True
        assert world.waveplate("alice.qwp").angle_deg == pytest.approx(315.0, abs=0.01)
        assert motor.get_status(addr=1) == "ok"
        assert motor.set_velocity(60, addr=0) == 60
    finally:
        motor.close()


def test_tapping_thorlabs_elliptec_ellx_drives_the_emulator(emulator_host: EmulatorHost) -> None:
    """thorlabs-elliptec (PyPI): ELLx, CRLF after each command, a status/position poll in its
    own thread, non-blocking moves waited for; a second ELLx shares the port (multi-drop)."""
    te = pytest.importorskip("thorlabs_elliptec")
    world, port = bus(emulator_host)
    hwp = te.ELLx(port, x=14, device_id=0)
    qwp = te.ELLx(hwp, x=14, device_id=1)
    try:
        assert hwp.model_number == "ELL14/M" and hwp.serial_number == "11400500"
        assert hwp.travel == 360 and qwp.serial_number == "11400501"
        hwp.home(blocking=True)
        hwp.move_absolute(45.0, blocking=True)
        assert hwp.get_position() == pytest.approx(45.0, abs=0.01)
        assert world.waveplate("alice.hwp").angle_deg == pytest.approx(45.0, abs=0.01)
        qwp.move_relative(-30.0, blocking=True)
        assert qwp.get_position() == pytest.approx(-30.0, abs=0.01)
        assert world.waveplate("alice.qwp").angle_deg == pytest.approx(330.0, abs=0.01)
        assert hwp.status == te.ELLStatus.OK
    finally:
        qwp.close()
        hwp.close()


def test_tl_elliptec_devices_drive_the_emulator(emulator_host: EmulatorHost) -> None:
    """tl-elliptec (PyPI): one ElliptecBus worker owning the port, a device class per model
    chosen from the IN reply, the rotary stages' pulses-per-revolution correction."""
    tl = pytest.importorskip("tl_elliptec")
    world, port = bus(emulator_host)
    with tl.ElliptecBus(port, timeout=2.0) as shared:
        hwp = tl.create_device(shared, "0")
        qwp = tl.create_device(shared, "1")
        assert isinstance(hwp, tl.ELL14) and isinstance(qwp, tl.ELL14)
        assert hwp.pulses_per_unit == pytest.approx(143360 / 360)
        assert hwp.home() == pytest.approx(0.0)
        assert hwp.move_absolute(30.0) == pytest.approx(30.0, abs=0.01)
        assert world.waveplate("alice.hwp").angle_deg == pytest.approx(30.0, abs=0.01)
        assert qwp.move_absolute(90.0) == pytest.approx(90.0, abs=0.01)
        assert hwp.get_position() == pytest.approx(30.0, abs=0.01)
        assert world.waveplate("alice.qwp").angle_deg == pytest.approx(90.0, abs=0.01)
        assert hwp.get_status() == tl.StatusCode.OK
