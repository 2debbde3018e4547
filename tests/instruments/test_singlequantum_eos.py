"""Single Quantum Eos: byte-exact protocol (docs/protocols/singlequantum-eos.md), two ports, faults.

Client messages are the exact ``json.dumps`` text the vendor's and QCoDeS's clients
send; server messages follow the shapes those clients parse (``\\x17`` after each).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time

import pytest

from qhil.drivers.roles import Detector
from qhil.drivers.singlequantum.eos import Eos, counts_resource_for, parse_count_line
from qhil.emulators.server import EmulatorHost
from qhil.emulators.singlequantum.eos import EosEmulator, JsonObjectFramer
from qhil.errors import (
    ConnectionLostError,
    InstrumentError,
    InstrumentTimeoutError,
    ValidationError,
)
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator
from qhil.transport.replay import ReplayIO

E = b"\x17"


async def _bias(d: Eos) -> None:
    await d.set_bias_currents([12.0, 8.0, 3.0, 8.0])


CASES = [
    ProtocolCase(
        "measurement period",
        lambda d: d.set_measurement_period(20),
        [
            (
                b'{"command": "SetMeasurementPeriod", "label": "InptMeasurementPeriod", "value": 20}',
                b'{"label": "InptMeasurementPeriod", "value": 20}' + E,
            )
        ],
    ),
    ProtocolCase(
        "bias currents",
        _bias,
        [
            (
                b'{"command": "SetAllBiasCurrents", "label": "BiasCurrent", '
                b'"value": [12.0, 8.0, 3.0, 8.0]}',
                b'{"label": "BiasCurrent", "value": [12.0, 8.0, 3.0, 8.0]}' + E,
            )
        ],
    ),
    ProtocolCase(
        "trigger levels",
        lambda d: d.set_trigger_levels([23.0, 24.0, 25.0, 26.0]),
        [
            (
                b'{"command": "SetAllTriggerLevels", "label": "TriggerLevel", '
                b'"value": [23.0, 24.0, 25.0, 26.0]}',
                b'{"label": "TriggerLevel", "value": [23.0, 24.0, 25.0, 26.0]}' + E,
            )
        ],
    ),
    ProtocolCase(
        "enable",
        lambda d: d.set_enabled(True),
        [
            (
                b'{"command": "DetectorEnable", "label": "DetectorEnable", "value": true}',
                b'{"label": "DetectorEnable", "value": true}' + E,
            )
        ],
    ),
    ProtocolCase(
        "bias voltage",
        lambda d: d.bias_voltages(),
        [
            (
                b'{"request": "BiasVoltage"}',
                b'{"label": "BiasVoltage", "value": {"value": [0.0, 0.0, 0.0, 0.0], "unit": "mV"}}'
                + E,
            )
        ],
        [0.0, 0.0, 0.0, 0.0],
    ),
    ProtocolCase(
        "auto-IV state",
        lambda d: d.auto_calibration_running(),
        [
            (
                b'{"request": "StartAutoIV"}',
                b'{"label": "StartAutoIV", "value": {"value": false}}' + E,
            )
        ],
        False,
    ),
    ProtocolCase(
        "labelProps",
        lambda d: d.request_label("NumberOfDetectors"),
        [
            (
                b'{"request": "labelProps", "value": "None"}',
                b'{"label": "InptMeasurementPeriod", "value": {"value": 100, "unit": "ms"}}'
                + E
                + b'{"label": "NumberOfDetectors", "value": {"value": 4}}'
                + E,
            )
        ],
        4,
        emulator_exact=False,  # the emulator lists every label; see the dump test
    ),
]


def _driver_with_four(io: ReplayIO) -> Eos:
    drv = Eos.open("TCPIP0::192.168.1.1::12000::SOCKET", io=io, counts_io=ReplayIO([]))
    drv.n_detectors = 4
    return drv


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    io = ReplayIO(case.exchanges)
    drv = _driver_with_four(io)
    await drv.session.open()
    try:
        result = await case.call(drv)
    finally:
        await drv.close()
    io.assert_complete()
    if case.result is not None:
        assert result == case.result


@pytest.mark.parametrize("case", [c for c in CASES if c.emulator_exact], ids=lambda c: c.id)
async def test_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(EosEmulator(), case.exchanges)


async def test_label_dump_lists_every_label_the_clients_read() -> None:
    reply = await EosEmulator(n_detectors=2).respond(b'{"request": "labelProps", "value": "None"}')
    parts = reply.decode().split("\x17")
    assert parts[-1] == ""
    dump = {m["label"]: m["value"] for m in map(json.loads, parts[:-1])}
    for label in (
        "NumberOfDetectors",
        "InptMeasurementPeriod",
        "BiasCurrent",
        "TriggerLevel",
        "BiasVoltage",
        "DetectorEnable",
        "StartAutoIV",
        "BiasCurrentAutoIV",
        "IVScanEnable",
        "iv_scan_history",
        "ic_scan_history",
    ):
        assert isinstance(dump[label], dict) and "value" in dump[label], label
    assert dump["NumberOfDetectors"]["value"] == 2
    assert dump["BiasCurrent"]["value"] == [0.0, 0.0]
    assert set(dump["temperature_long_memory"]) >= {"T", "T2", "x", "BoardTemp1", "BoardTemp2"}


async def test_emulator_reports_errors_as_error_labels() -> None:
    await run_on_emulator(
        EosEmulator(),
        [
            (
                b'{"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [1.0, 2.0]}',
                b'{"label": "Error", "value": "SetAllBiasCurrents needs 4 values in '
                b'(-90.9, 90.9) uA"}' + E,
            ),
            (
                b'{"command": "SetMeasurementPeriod", "label": "InptMeasurementPeriod", "value": 5}',
                b'{"label": "Error", "value": "SetMeasurementPeriod: value \'5\' not allowed"}' + E,
            ),
            (
                b'{"command": "Selfdestruct"}',
                b'{"label": "Error", "value": "unknown message '
                b'{\\"command\\": \\"Selfdestruct\\"}"}' + E,
            ),
        ],
    )


async def test_vendor_only_messages() -> None:
    emu = EosEmulator(n_detectors=2)
    # The vendor client sends DarkCountsAutoIV without a label, and IV-scan settings bare.
    await run_on_emulator(
        emu,
        [
            (
                b'{"command": "DarkCountsAutoIV", "value": [50, 60]}',
                b'{"label": "DarkCountsAutoIV", "value": [50.0, 60.0]}' + E,
            ),
            (b'{"label": "IVScanEnd", "value": 12}', b'{"label": "IVScanEnd", "value": 12.0}' + E),
        ],
    )
    reply = await emu.respond(b'{"request": "IVHistory"}')
    labels = [json.loads(p)["label"] for p in reply.decode().split("\x17")[:-1]]
    assert labels == ["iv_scan_history", "ic_scan_history"]


async def test_error_message_is_an_instrument_error() -> None:
    io = ReplayIO(
        [
            (
                b'{"command": "DetectorEnable", "label": "DetectorEnable", "value": false}',
                b'{"label": "Error", "value": "cryostat warm"}' + E,
            )
        ]
    )
    drv = _driver_with_four(io)
    await drv.session.open()
    with pytest.raises(InstrumentError) as err:
        await drv.set_enabled(False)
    await drv.close()
    assert err.value.code == "Error" and err.value.text == "cryostat warm"


async def test_bad_values_refused_before_any_byte() -> None:
    async with expected_protocol(Eos, []) as drv:
        drv.n_detectors = 4
        with pytest.raises(ValidationError):
            await drv.set_bias_currents([1.0, 2.0])  # one per detector
        with pytest.raises(ValidationError):
            await drv.set_bias_currents([1.0, 2.0, 3.0, 95.0])
        with pytest.raises(ValidationError):
            await drv.set_measurement_period(5)
        with pytest.raises(ValidationError):
            await drv.counts(0.001)


def test_counts_port_follows_the_control_host() -> None:
    assert counts_resource_for("TCPIP0::192.168.1.1::12000::SOCKET") == (
        "TCPIP0::192.168.1.1::12345::SOCKET"
    )
    with pytest.raises(ValidationError):
        counts_resource_for("GPIB0::3::INSTR")
    assert parse_count_line("1700000000100,523,12,0,7\n").counts == [523, 12, 0, 7]


async def test_framer_splits_back_to_back_objects() -> None:
    reader = asyncio.StreamReader()
    framer = JsonObjectFramer(reader)
    reader.feed_data(b'{"a": "}{"}{"b": [1, {"c": "\\""}]}  {"d"')
    reader.feed_data(b": 1}garbage{}")
    reader.feed_eof()
    got = [await framer.next() for _ in range(6)]
    assert got == [
        b'{"a": "}{"}',
        b'{"b": [1, {"c": "\\""}]}',
        b'{"d": 1}',
        b"garbage",
        b"{}",
        None,
    ]


def test_implements_the_detector_role() -> None:
    drv = Eos.open("TCPIP0::127.0.0.1::12000::SOCKET")
    assert isinstance(drv, Detector)
    assert drv.counts_session is not None
    assert drv.counts_session.resource == "TCPIP0::127.0.0.1::12345::SOCKET"
    drv.session.shutdown()
    drv.counts_session.shutdown()


def _serve(host: EmulatorHost, emu: EosEmulator) -> tuple[str, str]:
    control = host.add(emu)
    counts = host.add(emu.counts)
    return control.resource, counts.resource


async def test_driver_over_tcp_both_ports(emulator_host: EmulatorHost) -> None:
    emu = EosEmulator(name="eos", n_detectors=3)
    control, counts = _serve(emulator_host, emu)
    async with Eos.open(control, counts_resource=counts) as eos:
        assert eos.n_detectors == 3 and eos.period_ms == 100
        await eos.set_bias_currents([10.0, 11.5, 12.0])
        assert await eos.bias_currents() == [10.0, 11.5, 12.0]
        assert emu.bias_ua == [10.0, 11.5, 12.0]
        await eos.set_bias(9.0)
        assert await eos.bias() == 9.0
        assert await eos.counts(0.02) == [0, 0, 0]  # nothing wired: no clicks
        assert emu.period_ms == 20
        records = await eos.records(3)
        steps = [b.timestamp_ms - a.timestamp_ms for a, b in itertools.pairwise(records)]
        assert all(len(r.counts) == 3 for r in records) and steps == [0.0, 0.0]  # no world: t fixed


async def test_label_updates_reach_every_control_client(emulator_host: EmulatorHost) -> None:
    emu = EosEmulator(name="eos")
    ep = emulator_host.add(emu)
    host, port = ep.address.split(":")
    with (
        socket.create_connection((host, int(port)), timeout=2) as a,
        socket.create_connection((host, int(port)), timeout=2) as b,
    ):
        # Both clients registered (not a fixed sleep: the emulator's thread may be slow).
        deadline = time.monotonic() + 5
        while len(emu._control_writers) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(emu._control_writers) == 2
        a.sendall(b'{"command": "DetectorEnable", "label": "DetectorEnable", "value": true}')
        expected = b'{"label": "DetectorEnable", "value": true}' + E
        assert a.recv(1000) == expected
        assert b.recv(1000) == expected


async def test_faults_reach_the_driver_as_typed_errors(emulator_host: EmulatorHost) -> None:
    emu = EosEmulator(name="eos")
    control, counts = _serve(emulator_host, emu)
    async with Eos.open(control, counts_resource=counts, timeout_s=0.5) as eos:
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tout:
            await eos.set_enabled(True)
        assert tout.value.termination == "\x17" and tout.value.resource == control
        assert tout.value.command is not None and "DetectorEnable" in tout.value.command
        emu.faults.error_next = ("Error", "bias out of range")
        with pytest.raises(InstrumentError) as err:
            await eos.set_bias(5.0)
        assert err.value.text == "bias out of range"
        emu.faults.drop_next = True
        with pytest.raises(ConnectionLostError):
            await eos.set_bias(5.0)
        await eos.set_bias(6.0)  # reconnected by itself
        assert emu.bias_ua == [6.0] * 4


# --- bias and enable move the physics ------------------------------------------------------


async def test_bias_sets_efficiency_and_counts(emulator_host: EmulatorHost) -> None:
    import math

    from qhil.emulators.world import World
    from qhil.emulators.world.config import load_world_file

    world = World(load_world_file("tests/instruments/data/misc_bench.toml"), seed=5)
    emu = EosEmulator(name="eos", world=world, detectors=["lab.snspd1", "lab.snspd2"])
    control, counts = _serve(emulator_host, emu)
    async with Eos.open(control, counts_resource=counts) as eos:
        assert eos.n_detectors == 2
        await eos.set_bias(20.0)
        assert await eos.counts(0.05) == [0, 0]  # detectors not enabled: no bias, no clicks
        await eos.set_enabled(True)
        high = await eos.counts(0.05)
        eta_high = world.truth.detector_efficiency("lab.snspd1")
        await eos.set_bias(16.0)
        low = await eos.counts(0.05)
        eta_low = world.truth.detector_efficiency("lab.snspd1")
    assert eta_low < eta_high
    for ch in range(2):
        # Given n = low + high, low ~ Binomial(n, p) with p from the efficiency ratio
        # (dark counts are < 1 % here); two-sided 99.9 % normal interval.
        n = low[ch] + high[ch]
        p = eta_low / (eta_low + eta_high)
        assert n > 1000
        assert abs(low[ch] - n * p) < 3.2905 * math.sqrt(n * p * (1 - p)), (ch, low, high)


@pytest.mark.fidelity
# Its count thread parses the empty read of a closed socket as a number and dies at close.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_qcodes_websq_driver_drives_the_emulator() -> None:
    """QCoDeS-contrib's Single Quantum driver (written by the vendor), unmodified.

    It takes the control port as an argument but connects to the count stream at
    port 12345 of the same address, so both are served on a loopback address of
    their own (127.0.0.0/8 is all loopback) to leave the fixed port free of clashes.
    """
    sq = pytest.importorskip("qcodes_contrib_drivers.drivers.SingleQuantum.SingleQuantum")
    address = f"127.{(time.time_ns() // 1000) % 200 + 20}.{(time.time_ns() // 7) % 250 + 1}.7"
    emu = EosEmulator(name="eos", n_detectors=4)
    with EmulatorHost(address) as host:
        control = host.add(emu)
        host.add(emu.counts, port=12345)
        websq = sq.WebSQControlqcode(
            f"websq_{time.time_ns()}", address=address, port=int(control.address.split(":")[1])
        )
        try:
            assert websq.number_of_detectors() == 4
            websq.measurement_periode(20)
            websq.detectors()  # its getter enables the detectors (set_cmd is None)
            websq.bias_current([1.0, 2.0, 3.0, 4.0])
            websq.trigger_level([5.0, 6.0, 7.0, 8.0])
            deadline = time.monotonic() + 5
            while emu.trigger_mv != [5.0, 6.0, 7.0, 8.0] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert emu.period_ms == 20 and emu.enabled
            assert emu.bias_ua == [1.0, 2.0, 3.0, 4.0]
            assert emu.trigger_mv == [5.0, 6.0, 7.0, 8.0]
            assert websq.bias_current() == [1.0, 2.0, 3.0, 4.0]  # from the broadcast
            assert websq.measurement_periode() == 20
            websq.npts(3)
            data = websq.counters()
            assert data.shape == (5, 3)  # time stamp row + one row per detector
        finally:
            threads = (websq.comm.talk, websq.comm.cnts)
            for thread in threads:
                thread.close()
            websq.close()
            # Let its threads die here, where their warning is expected, not in a later test.
            for thread in threads:
                thread.join(timeout=5)
