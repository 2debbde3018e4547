"""OZ Optics EPC-400: byte-exact protocol (docs/protocols/ozoptics-epc400.md) and the serial path."""

from __future__ import annotations

import pytest
import pyvisa
import serial

from qhil.drivers.ozoptics.epc400 import EPC400, ChannelOutputs
from qhil.emulators.ozoptics.epc400 import EPC400Emulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

# Reply lines as in QMI's unit test (pasted from a real session), with our emulator's state.
CASES = [
    ProtocolCase(
        "V?",
        lambda d: d.voltages_mv(),
        [(b"V?\r\n", b"Voltage(mV): CH1 +0  CH2 +0  CH3 +0  CH4 +0\r\nDone\r\n")],
        [0, 0, 0, 0],
    ),
    ProtocolCase(
        "V3,2500",
        lambda d: d.voltage.set(2500, channel=3),
        [(b"V3,2500\r\n", b"Set CH3 DC Voltage at: 2500mV\r\nDone\r\n")],
    ),
    ProtocolCase(
        "VH4",
        lambda d: d.voltage_high(channel=4),
        [(b"VH4\r\n", b"Set CH4 DC Voltage at: 5000mV\r\nDone\r\n")],
    ),
    ProtocolCase(
        "F?",
        lambda d: d.frequencies.get(),
        [(b"F?\r\n", b"Frequency(Hz): CH1 007  CH2 017  CH3 037  CH4 071\r\nDone\r\n")],
        [7, 17, 37, 71],
    ),
    ProtocolCase(
        "F2,47",
        lambda d: d.frequency.set(47, channel=2),
        [(b"F2,47\r\n", b"Set CH2 AC Frequency at: 47Hz\r\nDone\r\n")],
    ),
    ProtocolCase("M?", lambda d: d.mode.get(), [(b"M?\r\n", b"Work Mode: DC\r\nDone\r\n")], "dc"),
    ProtocolCase("MAC", lambda d: d.mode.set("ac"), [(b"MAC\r\n", b"Set To AC Mode\r\nDone\r\n")]),
    ProtocolCase(
        "WF2",
        lambda d: d.waveform.set("triangle"),
        [(b"WF2\r\n", b"Set AC Waveform at: Triangle\r\nDone\r\n")],
    ),
    ProtocolCase(
        "ENVF1",
        lambda d: d.dc_in_ac_mode.set(True),
        [(b"ENVF1\r\n", b"Enable DC Voltage Output at AC Mode\r\nDone\r\n")],
    ),
    ProtocolCase(
        "SAVE", lambda d: d.save(), [(b"SAVE\r\n", b"Write Setting to Flash memory\r\nDone\r\n")]
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(EPC400, case.exchanges) as drv:
        result = await case.call(drv)
    if case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(EPC400Emulator(), case.exchanges)


async def test_error_line_becomes_instrument_error() -> None:
    async with expected_protocol(EPC400, [(b"V1,4000\r\n", b"Error!\r\n")]) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.voltage.set(4000, channel=1)
    assert err.value.code == "Error!" and err.value.command == "V1,4000"


async def test_emulator_refuses_out_of_range_and_unknown() -> None:
    await run_on_emulator(
        EPC400Emulator(),
        [
            (b"V1,6000\r\n", b"Error!\r\n"),
            (b"V5,100\r\n", b"Error!\r\n"),
            (b"HELLO\r\n", b"Error!\r\n"),
        ],
    )


async def test_set_voltages_validates_all_before_sending_any() -> None:
    async with expected_protocol(EPC400, []) as drv:
        with pytest.raises(ValidationError):
            await drv.set_voltages_mv([100, 200, 9000, 0])


def test_pyserial_sees_the_epc_framing(emulator_host: EmulatorHost) -> None:
    ep = emulator_host.add(EPC400Emulator(name="epc"))
    with serial.serial_for_url(ep.address, baudrate=9600, timeout=2) as port:
        port.write(b"V3,-1200\r\n")
        assert port.readline() == b"Set CH3 DC Voltage at: -1200mV\r\n"
        assert port.readline() == b"Done\r\n"
        port.write(b"V?\r\n")
        assert port.readline() == b"Voltage(mV): CH1 +0  CH2 +0  CH3 -1200  CH4 +0\r\n"
        assert port.readline() == b"Done\r\n"


def test_pyvisa_asrl_resource_reaches_the_pty(emulator_host: EmulatorHost) -> None:
    ep = emulator_host.add(EPC400Emulator(name="epc"))
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(
        ep.resource, write_termination="\r\n", read_termination="\r\n", timeout=2000
    )
    try:
        assert inst.query("M?") == "Work Mode: DC"
        assert inst.read() == "Done"
    finally:
        inst.close()


async def test_driver_over_pty_with_faults(emulator_host: EmulatorHost) -> None:
    emu = EPC400Emulator(name="epc")
    ep = emulator_host.add(emu)
    async with EPC400.open(ep.resource, timeout_s=0.5) as epc:
        await epc.set_voltages_mv([100, -200, 300, -400])
        assert await epc.voltages_mv() == [100, -200, 300, -400]
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as err:
            await epc.mode.get()
        assert err.value.command == "M?" and err.value.termination == "\r\n"
        emu.faults.error_next = ("Error!", "")
        with pytest.raises(InstrumentError):
            await epc.waveform.get()
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await epc.mode.get()
        # The pty came back at the same path (as after a replug): the next call reconnects.
        assert await epc.mode.get() == "dc"


# --- commands the referenced clients send (review #9) ---

# Two lines and no Done (the text is our choice: no source shows it).
RESET_REPLY = b"Reset Device\r\nEPC OEM Driver V2.10\r\n"


async def test_vf_query_reports_each_channel_and_the_dc_in_ac_switch() -> None:
    # Reply text as in QMI's unit test; QMI parses it with CH.-([VF]) and 'enabled' in ...
    emu = EPC400Emulator()
    await run_on_emulator(
        emu,
        [
            (b"VF?\r\n", b"Hz<->Volt at AC Mode is disabled: CH1-F,CH2-F,CH3-F,CH4-F\r\nDone\r\n"),
            (b"ENVF1\r\n", b"Enable DC Voltage Output at AC Mode\r\nDone\r\n"),
            (b"VF2\r\n", b"Set CH2 output to: Volt (if possible)\r\nDone\r\n"),
            (b"VF1\r\n", b"Set CH1 output to: Volt (if possible)\r\nDone\r\n"),
            (b"VF?\r\n", b"Hz<->Volt at AC Mode is enabled: CH1-V,CH2-V,CH3-F,CH4-F\r\nDone\r\n"),
        ],
    )


async def test_driver_reads_the_channel_outputs() -> None:
    reply = b"Hz<->Volt at AC Mode is enabled: CH1-V,CH2-V,CH3-F,CH4-F\r\nDone\r\n"
    async with expected_protocol(EPC400, [(b"VF?\r\n", reply)]) as drv:
        status = await drv.channel_outputs.get()
    assert status == ChannelOutputs(dc_in_ac_mode=True, volt=(True, True, False, False))


@pytest.mark.parametrize("command", [b"RESET", b"RST"])
async def test_soft_reset_answers_two_lines_without_done_and_reloads_the_preset(
    command: bytes,
) -> None:
    # [S4] sends RST, [S5] RESET; both read exactly two lines and no Done.
    emu = EPC400Emulator()
    await run_on_emulator(
        emu,
        [
            (b"V1,1000\r\n", b"Set CH1 DC Voltage at: 1000mV\r\nDone\r\n"),
            (b"SAVE\r\n", b"Write Setting to Flash memory\r\nDone\r\n"),
            (b"V1,-2000\r\n", b"Set CH1 DC Voltage at: -2000mV\r\nDone\r\n"),
            (b"MAC\r\n", b"Set To AC Mode\r\nDone\r\n"),
            (command + b"\r\n", RESET_REPLY),
            (b"V?\r\n", b"Voltage(mV): CH1 +1000  CH2 +0  CH3 +0  CH4 +0\r\nDone\r\n"),
            (b"M?\r\n", b"Work Mode: DC\r\nDone\r\n"),
        ],
    )


async def test_driver_soft_reset_reads_exactly_two_lines() -> None:
    async with expected_protocol(EPC400, [(b"RESET\r\n", RESET_REPLY)]) as drv:
        await drv.reset()
    async with expected_protocol(EPC400, [(b"RST\r\n", RESET_REPLY)]) as drv:
        await drv.restart()
