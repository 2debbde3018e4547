"""Thorlabs Elliptec ELL14: byte-exact protocol (docs/protocols/thorlabs-elliptec.md) both
ways, errors as the device reports them, several mounts on one bus, and the emulator
through the driver turning the world's half-wave plate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from qhil.drivers.roles import RotationMount
from qhil.drivers.thorlabs.ell14 import ELL14
from qhil.emulators.server import EmulatorHost
from qhil.emulators.thorlabs.ell14 import ELL14Emulator
from qhil.emulators.world import World, load_world_config
from qhil.errors import InstrumentError, InstrumentTimeoutError, ValidationError
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

# The IN record of an ELL14 as real units send it (model 0E, serial, year, firmware,
# thread/hardware 01, travel 0168 = 360 deg, 00023000 = 143360 pulses), with our serial.
INFO = (b"0in", b"0IN0E1140050020241701016800023000\r\n")

CASES = [
    ProtocolCase("info", lambda d: d.identity(), [INFO], "Thorlabs,ELL14,11400500,17"),
    ProtocolCase("status", lambda d: d.status.get(address="0"), [(b"0gs", b"0GS00\r\n")], 0),
    ProtocolCase("position", lambda d: d.position_deg(), [INFO, (b"0gp", b"0PO00000000\r\n")], 0.0),
    # 90 deg = 35840 pulses = 0x8C00
    ProtocolCase(
        "move absolute", lambda d: d.move_to_deg(90.0), [INFO, (b"0ma00008C00", b"0PO00008C00\r\n")]
    ),
    # -45 deg = -17920 pulses, two's complement 0xFFFFBA00; the counter then reads 45 deg
    ProtocolCase(
        "move relative",
        lambda d: d.move_by_deg(-45.0),
        [INFO, (b"0mrFFFFBA00", b"0POFFFFBA00\r\n")],
        -45.0,
    ),
    ProtocolCase("home", lambda d: d.home(), [INFO, (b"0ho0", b"0PO00000000\r\n")]),
    ProtocolCase(
        "velocity set", lambda d: d.velocity.set(50, address="0"), [(b"0sv32", b"0GS00\r\n")]
    ),
    ProtocolCase("velocity", lambda d: d.velocity.get(address="0"), [(b"0gv", b"0GV64\r\n")], 100),
    ProtocolCase(
        "home offset set",
        lambda d: d.home_offset.set(256, address="0"),
        [(b"0so00000100", b"0GS00\r\n")],
    ),
    ProtocolCase(
        "home offset", lambda d: d.home_offset.get(address="0"), [(b"0go", b"0HO00000000\r\n")], 0
    ),
    ProtocolCase(
        "jog step", lambda d: d.jog_step.get(address="0"), [(b"0gj", b"0GJ0000018E\r\n")], 398
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(ELL14, case.exchanges) as drv:
        result = await case.call(drv)
    if isinstance(case.result, float):
        assert result == pytest.approx(case.result, abs=1e-9)
    elif case.result is not None:
        assert result == case.result


EMULATOR_CASES = [c for c in CASES if c.id not in ("move relative", "home offset")]


@pytest.mark.parametrize("case", EMULATOR_CASES, ids=[c.id for c in EMULATOR_CASES])
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(ELL14Emulator(), case.exchanges)


async def test_emulator_moves_relative_homes_and_keeps_its_offset() -> None:
    await run_on_emulator(
        ELL14Emulator(),
        [
            (b"0mrFFFFBA00", b"0POFFFFBA00\r\n"),
            (b"0gp", b"0POFFFFBA00\r\n"),
            (b"0so00000100", b"0GS00\r\n"),
            (b"0go", b"0HO00000100\r\n"),
            (b"0ho1", b"0PO00000000\r\n"),
            (b"0ho", b"0PO00000000\r\n"),  # no direction: the default
            (b"0fw", b"0PO0000018E\r\n"),
            (b"0bw", b"0PO00000000\r\n"),
            (b"0us", b"0GS00\r\n"),
        ],
    )


async def test_emulator_takes_terminated_commands_as_some_clients_send_them() -> None:
    """thorlabs-elliptec and tl-elliptec end each command with CRLF; tl-elliptec sends the
    homing direction as a byte (two hex digits)."""
    await run_on_emulator(
        ELL14Emulator(),
        [
            (b"0ma00008C00\r\n", b"0PO00008C00\r\n"),
            (b"0ho00\r\n", b"0PO00000000\r\n"),
            (b"0ho\r\n", b"0PO00000000\r\n"),
            (b"0in\r\n", INFO[1]),
            (b"0zz\r\n", b"0GS03\r\n"),
            (b"0gs\r\n", b"0GS03\r\n"),
        ],
    )


async def test_emulator_reports_errors_as_the_device() -> None:
    """An unknown command is GS03 (command error), a value out of range GS04; the error
    stays the status until one gs reads it; a stray CR/LF between commands is skipped."""
    await run_on_emulator(
        ELL14Emulator(),
        [
            (b"0zz", b"0GS03\r\n"),
            (b"0gs", b"0GS03\r\n"),
            (b"0gs", b"0GS00\r\n"),
            (b"0sv65", b"0GS04\r\n"),  # 101 % of the maximum velocity
            (b"0gs\r\n", b"0GS04\r\n"),
            (b"0gv", b"0GV64\r\n"),
        ],
    )


async def test_several_mounts_on_one_bus() -> None:
    """Only the addressed device answers; an address nobody has stays silent; ca moves a
    device to a free address, which answers from then on."""
    await run_on_emulator(
        ELL14Emulator(devices={"2": ""}),
        [
            (b"2ma00008C00", b"2PO00008C00\r\n"),
            (b"0gp", b"0PO00000000\r\n"),
            (b"2gp", b"2PO00008C00\r\n"),
            (b"5gp", b""),
            (b"2ca5", b"5GS00\r\n"),
            (b"5gp", b"5PO00008C00\r\n"),
            (b"2gp", b""),
            (b"5ca0", b"5GS04\r\n"),  # taken
        ],
    )


async def test_driver_raises_the_devices_error_code_and_text(emulator_host: EmulatorHost) -> None:
    emu = ELL14Emulator(name="hwp")
    ep = emulator_host.add(emu)
    async with ELL14.open(ep.resource) as mount:
        assert isinstance(mount, RotationMount)
        assert await mount.identity() == "Thorlabs,ELL14,11400500,17"
        emu.faults.error_next = (2, "Mechanical time out")
        with pytest.raises(InstrumentError) as err:
            await mount.move_to_deg(30.0)
        assert err.value.code == 2 and "Mechanical time out" in str(err.value)
        assert "0ma" in str(err.value)
        assert await mount.status.get(address="0") == 2  # still reported, once
        assert await mount.status.get(address="0") == 0
        with pytest.raises(ValidationError):
            await mount.velocity.set(101, address="0")
        with pytest.raises(ValidationError):
            await mount.move_to_deg(math.nan)


async def test_a_device_absent_from_the_bus_times_out_naming_it(
    emulator_host: EmulatorHost,
) -> None:
    ep = emulator_host.add(ELL14Emulator(name="hwp"))
    mount = ELL14.open(ep.resource, timeout_s=0.3)
    await mount.connect()
    try:
        other = mount.on_bus("3")
        with pytest.raises(InstrumentTimeoutError) as err:
            await other.position_deg()
        text = str(err.value)
        assert ep.resource in text and "3in" in text and "\\r\\n" in text
    finally:
        await mount.close()


# --- the emulator through the driver turns the world's plate -----------------------------


def plate_world(**plate: Any) -> World:
    table: dict[str, Any] = {
        "seed": 1,
        "nodes": {
            "alice": {
                "components": {
                    "hwp": {"type": "waveplate", "zero_offset_deg": 1.5, **plate},
                    "hwp2": {"type": "waveplate"},
                    "det": {"type": "detector"},
                }
            }
        },
    }
    return World(load_world_config(table, "test_thorlabs_ell14"), mode="fast")


async def test_moves_turn_the_world_plate_and_take_emulated_time(
    emulator_host: EmulatorHost,
) -> None:
    world = plate_world()
    emu = ELL14Emulator(name="hwp", world=world, component="alice.hwp", devices={"1": "alice.hwp2"})
    ep = emulator_host.add(emu)
    async with ELL14.open(ep.resource) as mount:
        await mount.home()
        t0 = world.now_s
        await mount.move_to_deg(112.5)
        plate = world.waveplate("alice.hwp")
        assert plate.angle_deg == pytest.approx(112.5, abs=360 / 143360)
        assert plate.axis_deg == pytest.approx(114.0, abs=360 / 143360)  # + how it sits
        # 112.5 deg at 430 deg/s plus 50 ms settling, on the world's clock
        assert world.now_s - t0 == pytest.approx(0.05 + 112.5 / 430.0, rel=1e-6)
        assert await mount.position_deg() == pytest.approx(112.5, abs=360 / 143360)
        await mount.velocity.set(50, address="0")  # half speed: the move takes twice as long
        t0 = world.now_s
        await mount.move_to_deg(135.0)
        assert world.now_s - t0 == pytest.approx(0.05 + 22.5 / 215.0, rel=1e-6)
        second = mount.on_bus("1")
        await second.move_to_deg(-22.5)  # taken mod 360
        assert world.waveplate("alice.hwp2").angle_deg == pytest.approx(337.5, abs=1e-2)
        assert plate.angle_deg == pytest.approx(135.0, abs=1e-2)
        await mount.home()
        assert plate.angle_deg == 0.0
        assert await mount.position_deg() == 0.0


async def test_emulator_powers_on_at_the_plates_profile_angle() -> None:
    world = plate_world(angle_deg=45.0)
    await run_on_emulator(
        ELL14Emulator(world=world, component="alice.hwp"), [(b"0gp", b"0PO00004600\r\n")]
    )


@pytest.mark.slow  # the whole entanglement bench comes up (~5 s)
@pytest.mark.qhil_profile("entanglement")
async def test_the_entanglement_bench_turns_each_nodes_plate(qhil_bench: Any) -> None:
    """Each node's hwp instrument is an ELL14 (RotationMount) turning that node's plate."""
    world = qhil_bench.emulator_truth.world
    for node, angle in (("alice", 22.5), ("bob", 67.5)):
        mount = qhil_bench.role(node, RotationMount)
        assert isinstance(mount, ELL14)
        await mount.home()
        await mount.move_to_deg(angle)
        assert await mount.position_deg() == pytest.approx(angle, abs=360 / 143360)
        plate = world.waveplate(f"{node}.hwp")
        assert plate.angle_deg == pytest.approx(angle, abs=360 / 143360)
    assert world.waveplate("alice.hwp").cfg.zero_offset_deg != 0.0


def test_a_bad_bus_layout_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="one hex digit"):
        ELL14Emulator(devices={"G": ""})
    with pytest.raises(ValueError, match="two devices at one address"):
        ELL14Emulator(address="1", devices={"1": ""})
    with pytest.raises(KeyError, match="not a waveplate"):
        ELL14Emulator(world=plate_world(), component="alice.det")


async def test_the_profile_setting_address_picks_the_device(emulator_host: EmulatorHost) -> None:
    """``settings = { address = "1" }`` talks to device 1 of the bus; a bad address is the
    profile's error, naming the field and the file."""
    from qhil.errors import ConfigError
    from qhil.orchestrator.settings import plan_settings

    world = plate_world()
    ep = emulator_host.add(
        ELL14Emulator(name="hwp", address="1", world=world, component="alice.hwp")
    )
    async with ELL14.open(ep.resource) as mount:
        field = "nodes.alice.instruments.hwp"
        for setting in plan_settings(mount, {"address": "1"}, source="x.toml", prefix=field):
            await setting.apply()
        await mount.move_to_deg(10.0)
        assert world.waveplate("alice.hwp").angle_deg == pytest.approx(10.0, abs=0.01)
        (bad,) = plan_settings(mount, {"address": "Z"}, source="x.toml", prefix=field)
        with pytest.raises(
            ConfigError, match=r"x\.toml: nodes\.alice\.instruments\.hwp\.settings\.address"
        ):
            await bad.apply()
