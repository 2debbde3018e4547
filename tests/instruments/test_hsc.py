"""qhil HSC-1 heralding station and QMC-1's network commands: protocol both ways
(docs/protocols/qhil-hsc.md, docs/protocols/qhil-qmc.md), typed errors, faults."""

from __future__ import annotations

import math
from typing import Any

import pytest

from qhil.drivers.qhil.hsc import HSC, parse_result
from qhil.drivers.qhil.qmc import QMC
from qhil.drivers.roles import HeraldingStation, HeraldResult, NetworkMemory
from qhil.emulators.qhil.hsc import HSCEmulator
from qhil.emulators.qhil.qmc import QMCEmulator
from qhil.emulators.server import EmulatorHost
from qhil.emulators.world.quantum import MemoryParameters
from qhil.errors import InstrumentError, InstrumentTimeoutError, ProtocolError, ValidationError
from qhil.testing import ProtocolCase, expected_protocol, run_on_emulator

NO_ERROR = (b":SYSTem:ERRor?\n", b'0,"No error"\n')
# The emulator's own link (DEFAULT_LINK): 1 km arms, emission 0.3, detection 0.9, 10 us cycle.
ETA = 0.3 * 10 ** (-0.2 / 10) * 0.9
FIRST = HeraldResult(True, 5, "psi+", 0, 0, 9.9e-05)  # seed 0's first herald

HSC_CASES = [
    ProtocolCase(
        "idn",
        lambda d: d.identity(),
        [(b"*IDN?\n", b"QHIL,HSC-1,HSC00001,1.0\n")],
        "QHIL,HSC-1,HSC00001,1.0",
    ),
    ProtocolCase(
        "period",
        lambda d: d.attempt_period_s.get(),
        [(b"HERald:PERiod?\n", b"+1.980000000E-05\n")],
        2 * 4.9e-6 + 10e-6,
    ),
    ProtocolCase(
        "stated success probability",
        lambda d: d.success_probability.get(),
        [(b"HERald:PROBability?\n", b"+3.324279509E-02\n")],
        0.03324279509,
    ),
    ProtocolCase(
        "ends",
        lambda d: d.ends.get(),
        [(b"HERald:ENDS?\n", b"a.memory,b.memory\n")],
        ("a.memory", "b.memory"),
    ),
    ProtocolCase(
        "entangle",
        lambda d: d.entangle(1000000),
        [
            (b"HERald:ENTangle 1000000\n", b""),
            (b"HERald:RESult?\n", b"1,5,PSI+,0,0,+9.900000000E-05\n"),
            NO_ERROR,
        ],
        FIRST,
    ),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-9))
    if isinstance(b, HeraldResult):
        return a == HeraldResult(**{**b.__dict__, "elapsed_s": a.elapsed_s}) and _same(
            a.elapsed_s, b.elapsed_s
        )
    return bool(a == b)


@pytest.mark.parametrize("case", HSC_CASES, ids=[c.id for c in HSC_CASES])
async def test_hsc_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(HSC, case.exchanges) as drv:
        result = await case.call(drv)
    assert _same(result, case.result), result


@pytest.mark.parametrize("case", HSC_CASES, ids=[c.id for c in HSC_CASES])
async def test_hsc_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(HSCEmulator(), case.exchanges)


def test_stated_probability_is_barrett_kok_from_the_configuration() -> None:
    assert HSCEmulator().station.success_probability == pytest.approx(0.5 * ETA**2, rel=1e-12)


FULL = [
    (b"HERald:ENTangle 10\n", b""),
    (b"HERald:RESult?\n", b"0,0,NONE,-1,-1,+0.000000000E+00\n"),
    (b":SYSTem:ERRor?\n", b'201,"No free mode;a.memory"\n'),
    NO_ERROR,
]


async def test_no_free_mode_is_a_typed_error_naming_the_memory() -> None:
    async with expected_protocol(HSC, FULL) as drv:
        with pytest.raises(InstrumentError) as err:
            await drv.entangle(10)
    assert err.value.code == 201 and err.value.text == "No free mode;a.memory"
    assert err.value.command == "HERald:ENTangle 10"
    # The emulator, its four modes each side filled by four heralds, says the same bytes.
    emu = HSCEmulator()
    fill = [(b"HERald:ENTangle 1000000;:SYSTem:ERRor?\n", b'0,"No error"\n')] * 4
    await run_on_emulator(emu, [*fill, *FULL])


async def test_memory_off_is_a_typed_error() -> None:
    emu = HSCEmulator()
    emu.station.memory("b.memory").set_power(False, 0.0)
    await run_on_emulator(
        emu,
        [
            (b"HERald:ENTangle 10\n", b""),
            (b"HERald:RESult?\n", b"0,0,NONE,-1,-1,+0.000000000E+00\n"),
            (b"SYST:ERR?\n", b'202,"Memory off;b.memory"\n'),
        ],
    )


async def test_failed_run_reports_every_attempt_and_the_time_it_took() -> None:
    emu = HSCEmulator()
    # Seed 0 needs 5 attempts to its first herald: 3 fail, in 3 periods of bench time.
    await run_on_emulator(
        emu,
        [
            (b"HER:ENT 3;:HER:RES?\n", b"0,3,NONE,-1,-1,+5.940000000E-05\n"),
            (b"SYST:ERR?\n", b'0,"No error"\n'),
        ],
    )
    assert emu.clock.now_s == pytest.approx(3 * 1.98e-5, abs=1e-15)


@pytest.mark.parametrize(
    "reply",
    ["1,5,NONE,0,0,+1E-3", "0,5,PSI+,-1,-1,+1E-3", "1,5,PSI+,0,-1,+1E-3", "1,5,PHI+,0,0,1E-3"],
)
def test_inconsistent_results_do_not_parse(reply: str) -> None:
    assert parse_result(reply) is None


async def test_garbled_result_is_a_protocol_error() -> None:
    exchanges = [(b"HERald:ENTangle 1\n", b""), (b"HERald:RESult?\n", b"1,1,PSI+\n"), NO_ERROR]
    async with expected_protocol(HSC, exchanges) as drv:
        with pytest.raises(ProtocolError):
            await drv.entangle(1)


async def test_bad_attempt_count_refused_before_any_byte() -> None:
    async with expected_protocol(HSC, []) as drv:
        for bad in (0, -3, 10**9):
            with pytest.raises(ValidationError):
                await drv.entangle(bad)


async def test_hsc_over_tcp_plays_its_role_and_times_out_naming_the_command(
    emulator_host: EmulatorHost,
) -> None:
    emu = HSCEmulator(name="hsc")
    ep = emulator_host.add(emu)
    async with HSC.open(ep.resource, timeout_s=0.5) as hsc:
        assert isinstance(hsc, HeraldingStation)
        result = await hsc.entangle(1000)
        assert result == FIRST
        emu.faults.stall_next = 2  # the command and the result query: nothing comes back
        with pytest.raises(InstrumentTimeoutError) as tout:
            await hsc.entangle(1000)
        assert tout.value.command == "HERald:RESult?"


# --- QMC-1's network commands ------------------------------------------------------------

PARAMS = MemoryParameters(n_modes=4)


async def _off(d: QMC) -> bool:
    await d.power.set(False)
    return await d.power.get()


async def _store_d_measure_x(d: QMC) -> int | None:
    await d.set_input("D")
    await d.store(1)
    return await d.measure(1, "X")


async def _bloch_r_measure_y(d: QMC) -> tuple[str, int | None]:
    await d.set_input_bloch(math.pi / 2, math.pi / 2)  # R = (H + iV)/sqrt 2
    await d.store(2)
    return await d.get_input(), await d.measure(2, "Y")


QMC_CASES = [
    ProtocolCase(
        "Bloch-angle input, stored and measured",
        _bloch_r_measure_y,
        [
            (b"QMEMory:INPut:BLOCh 1.570796327,1.570796327\n", b""),
            NO_ERROR,
            (b"QMEMory:STORe 2\n", b""),
            NO_ERROR,
            (b"QMEMory:INPut?\n", b"BLOC\n"),
            (b"QMEMory:MEASure? 2,Y\n", b"0\n"),
        ],
        ("BLOCH", 0),
    ),
    ProtocolCase(
        "measure an empty mode",
        lambda d: d.measure(0, "Z"),
        [(b"QMEMory:MEASure? 0,Z\n", b"NONE\n")],
        None,
    ),
    ProtocolCase(
        "measure a stored D in X",
        _store_d_measure_x,
        [
            (b"QMEMory:INPut D\n", b""),
            NO_ERROR,
            (b"QMEMory:STORe 1\n", b""),
            NO_ERROR,
            (b"QMEMory:MEASure? 1,X\n", b"0\n"),
        ],
        0,
    ),
    ProtocolCase(
        "bell-state measurement of empty modes",
        lambda d: d.bell_measure(0, 1),
        [(b"QMEMory:BELL? 0,1\n", b"NONE\n")],
        None,
    ),
    ProtocolCase(
        "purify with nothing to purify",
        lambda d: d.purify(2, 3),
        [(b"QMEMory:PURify? 2,3\n", b"NONE\n")],
        None,
    ),
    ProtocolCase(
        "teleport from an empty mode",
        lambda d: d.teleport(0),
        [(b"QMEMory:TELeport? 0\n", b"NONE\n")],
        None,
    ),
    ProtocolCase(
        "power off",
        _off,
        [(b"QMEMory:POWer 0\n", b""), NO_ERROR, (b"QMEMory:POWer?\n", b"0\n")],
        False,
    ),
]


@pytest.mark.parametrize("case", QMC_CASES, ids=[c.id for c in QMC_CASES])
async def test_qmc_driver_sends_documented_bytes(case: ProtocolCase) -> None:
    async with expected_protocol(QMC, case.exchanges) as drv:
        result = await case.call(drv)
    assert result == case.result


@pytest.mark.parametrize("case", QMC_CASES, ids=[c.id for c in QMC_CASES])
async def test_qmc_emulator_answers_documented_bytes(case: ProtocolCase) -> None:
    await run_on_emulator(QMCEmulator(parameters=PARAMS), case.exchanges)


@pytest.mark.parametrize(
    ("call", "wire", "code", "text"),
    [
        (lambda d: d.pauli(0, "X"), b"QMEMory:PAULi 0,X\n", 102, "Mode empty"),
        (lambda d: d.twirl(0, 11), b"QMEMory:TWIRl 0,11\n", 102, "Mode empty"),
        (lambda d: d.store(0), b"QMEMory:STORe 0\n", 103, "Memory off"),
    ],
)
async def test_qmc_typed_errors_both_ways(call: Any, wire: bytes, code: int, text: str) -> None:
    reply = f'{code},"{text}"\n'.encode()
    exchanges = [(wire, b""), (b":SYSTem:ERRor?\n", reply), NO_ERROR]
    async with expected_protocol(QMC, exchanges) as drv:
        with pytest.raises(InstrumentError) as err:
            await call(drv)
    assert (err.value.code, err.value.text) == (code, text)
    off = [(b"QMEM:POW OFF\n", b"")] if code == 103 else []
    await run_on_emulator(QMCEmulator(parameters=PARAMS), [*off, *exchanges])


async def test_teleport_with_the_bell_input_answers_none_and_says_why() -> None:
    await run_on_emulator(
        QMCEmulator(parameters=PARAMS),
        [
            (b"QMEM:INP D;:QMEM:STOR 0;:QMEM:INP BELL;:QMEM:TEL? 0\n", b"NONE\n"),
            (
                b"SYST:ERR?\n",
                b'-221,"Settings conflict;input is BELL, not a single-photon state"\n',
            ),
        ],
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.bell_measure(1, 1),
        lambda d: d.purify(0, 0),
        lambda d: d.twirl(0, 12),
        lambda d: d.pauli(0, "H"),
        lambda d: d.measure(0, "W"),
        lambda d: d.set_input_bloch(4.0, 0.0),
        lambda d: d.set_input_bloch(0.0, -0.1),
    ],
)
async def test_qmc_bad_values_refused_before_any_byte(call: Any) -> None:
    async with expected_protocol(QMC, []) as drv:
        with pytest.raises(ValidationError):
            await call(drv)


async def test_qmc_power_off_loses_a_stored_qubit_and_plays_network_memory(
    emulator_host: EmulatorHost,
) -> None:
    ep = emulator_host.add(QMCEmulator(name="qmc", parameters=PARAMS))
    async with QMC.open(ep.resource) as qmc:
        assert isinstance(qmc, NetworkMemory)
        await qmc.set_input("H")
        await qmc.store(0)
        await qmc.power.set(False)
        assert await qmc.status.get() == "EMPT,EMPT,EMPT,EMPT"
        assert await qmc.measure(0, "Z") is None
        assert await qmc.last_outcome.get() == "EMPTY"
        await qmc.power.set(True)
        await qmc.store(0)
        assert await qmc.measure(0, "Z") == 0
        assert not math.isnan(await qmc.last_storage_time_s.get())


async def test_documented_example_session() -> None:
    await run_on_emulator(
        HSCEmulator(),
        [
            (b"*IDN?\n", b"QHIL,HSC-1,HSC00001,1.0\n"),
            (b"HER:PER?;PROB?\n", b"+1.980000000E-05;+3.324279509E-02\n"),
            (b"HER:ENT 1000000\n", b""),
            (b"HER:RES?\n", b"1,5,PSI+,0,0,+9.900000000E-05\n"),
            (b"SYST:ERR?\n", b'0,"No error"\n'),
        ],
    )


@pytest.mark.slow  # a fresh interpreter's imports: ~1.5 s idle, more on a busy machine
def test_a_bench_that_never_uses_its_memories_never_imports_qutip() -> None:
    """qutip costs ~1.3 s of start-up: a world with memories and their controllers must not
    import it until a memory command arrives (a BB84 run never sends one)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from qhil.emulators.world import World, load_world_config\n"
        "from qhil.emulators.qhil.qmc import QMCEmulator\n"
        "table = {'nodes': {'a': {'components': {'m': {'type': 'quantum_memory'}}}}}\n"
        "world = World(load_world_config(table, 'test'))\n"
        "QMCEmulator(world=world, component='a.m'); QMCEmulator().reset()\n"
        "print('qutip' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


async def test_realtime_attempts_wait_on_the_clock_for_what_they_took() -> None:
    """In realtime mode the run's attempts x period pass on the (injected) wall clock before
    the result answers, and the emulator awaits it rather than blocking."""
    from qhil.emulators.qhil.hsc import DEFAULT_LINK
    from qhil.emulators.world import World, load_world_config

    wall = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        wall[0] += seconds

    world = World(
        load_world_config(DEFAULT_LINK, "test"),
        mode="realtime",
        time_fn=lambda: wall[0],
        sleep_fn=sleep,
    )
    emu = HSCEmulator(world=world, component="a.station")
    await run_on_emulator(
        emu, [(b"HER:ENT 1000000;:HER:RES?\n", b"1,5,PSI+,0,0,+9.900000000E-05\n")]
    )
    assert sum(slept) == pytest.approx(5 * 1.98e-5) and world.clock.now_s == pytest.approx(9.9e-5)
    # The pair is in both memories, stored for the herald's round trip (2 x 1 km x 4.9 us/km).
    mem = world.memory("b.memory")
    assert mem.storage_time(0, world.clock.now_ps * 1e-12) == pytest.approx(9.8e-6, abs=1e-12)


async def test_entangle_starts_without_moving_time_and_the_result_waits_for_the_herald() -> None:
    """``ENTangle`` answers at once and leaves the clock where it was (the attempts run from
    that moment); ``RESult?`` takes the clock to the herald (two stations: test_repeater_physics.py,
    docs/protocols/qhil-hsc.md)."""
    from qhil.emulators.qhil.hsc import DEFAULT_LINK
    from qhil.emulators.world import World, load_world_config

    world = World(load_world_config(DEFAULT_LINK, "test"), seed=0)
    emu = HSCEmulator(world=world, component="a.station")
    await run_on_emulator(emu, [(b"HER:ENT 1000000\n", b"")])
    assert world.clock.now_ps == 0
    await run_on_emulator(emu, [(b"HER:RES?\n", b"1,5,PSI+,0,0,+9.900000000E-05\n")])
    assert world.clock.now_s == pytest.approx(9.9e-5)
    assert world.memory("a.memory").storage_time(0, world.clock.now_s) == pytest.approx(9.8e-6)
