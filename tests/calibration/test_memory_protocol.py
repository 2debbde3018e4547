"""QMC-1 analyser and sequenced cycles (docs/protocols/qhil-qmc.md, ``ANALyzer``, ``CYCLe?``):
the driver's bytes, the emulator's bytes (the documented example included), refusals, and
the physics of the counts against the world's storage channel (two-sided binomial tests at
99.9 % confidence, fixed seeds)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from qhil.drivers.qhil.qmc import QMC, CycleCounts
from qhil.emulators.qhil.qmc import QMCEmulator
from qhil.emulators.server import EmulatorHost
from qhil.emulators.world import World, load_world_config
from qhil.emulators.world.quantum import MemoryParameters
from qhil.errors import InstrumentError, InstrumentTimeoutError, ValidationError
from qhil.testing import expected_protocol, run_on_emulator

NO_ERROR = (b":SYSTem:ERRor?\n", b'0,"No error"\n')
# The protocol document's example device: a memory that only dephases, T2 = 1 ms.
PARAMS = MemoryParameters(n_modes=4, t2_s=1e-3)


async def test_driver_sends_documented_bytes_for_analyser_and_cycles() -> None:
    exchanges = [
        (b"QMEMory:ANALyzer X\n", b""),
        NO_ERROR,
        (b"QMEMory:ANALyzer?\n", b"X\n"),
        (b"QMEMory:CYCLe? 2,1000\n", b"1000,683,317\n"),
    ]
    async with expected_protocol(QMC, exchanges) as drv:
        await drv.analyzer_basis.set("X")
        assert await drv.analyzer_basis.get() == "X"
        counts = await drv.cycle(2, 1000)
    assert counts == CycleCounts(1000, 1000, 683, 317) and counts.retrieved == 1000


@pytest.mark.parametrize(
    "call",
    [
        lambda d: d.analyzer_basis.set("W"),
        lambda d: d.cycle(0, 0),
        lambda d: d.cycle(0, 1_000_001),
        lambda d: d.cycle(64, 10),
    ],
)
async def test_bad_analyser_or_cycle_values_refused_before_any_byte(call: object) -> None:
    async with expected_protocol(QMC, []) as drv:
        with pytest.raises(ValidationError):
            await call(drv)  # type: ignore[operator]


async def test_emulator_answers_the_documented_example() -> None:
    emu = QMCEmulator(parameters=PARAMS)
    await run_on_emulator(
        emu,
        [
            (b"QMEM:ANAL?\n", b"Z\n"),  # power-on
            (b"QMEM:INP D;ANAL X;READ:DEL 1e-3\n", b""),
            (b"QMEM:CYCL? 0,1000\n", b"1000,683,317\n"),
            (b"QMEM:ANAL?;:QMEM:STAT?\n", b"X;EMPT,EMPT,EMPT,EMPT\n"),
            (b"QMEM:CYCL? 0,0\n", b""),
            (b"QMEM:ANAL W\n", b""),
            (b"QMEM:STOR 1;:QMEM:CYCL? 1,10\n", b""),
            (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b"SYST:ERR?\n", b'-113,"Undefined header"\n'),
            (b"SYST:ERR?\n", b'101,"Mode occupied"\n'),
            (b"SYST:ERR?\n", b'0,"No error"\n'),
            (b"*RST;:QMEM:ANAL?\n", b"Z\n"),
        ],
    )
    # 1000 cycles of 1 ms each ran on the emulator's clock.
    assert emu.clock.now_s == pytest.approx(1.0, abs=1e-9)


async def test_cycle_on_an_occupied_mode_is_the_instruments_error(
    emulator_host: EmulatorHost,
) -> None:
    ep = emulator_host.add(QMCEmulator(name="qmc", parameters=PARAMS))
    async with QMC.open(ep.resource, timeout_s=0.2) as qmc:
        await qmc.store(3)
        with pytest.raises(InstrumentError) as err:
            await qmc.cycle(3, 5)  # no reply: the driver reads the error queue
        await qmc.input_state.set("H")  # and nothing else was left queued
        assert await qmc.cycle(2, 5) == CycleCounts(5, 5, 5, 0)
    assert err.value.code == 101 and err.value.text == "Mode occupied"
    assert err.value.command == "QMEMory:CYCLe? 3,5"


def _world(**memory: float) -> World:
    table = {
        "seed": 7,
        "nodes": {"lab": {"components": {"qm": {"type": "quantum_memory", **memory}}}},
    }
    return World(load_world_config(table, "test_memory_protocol"), mode="fast")


async def test_cycle_counts_follow_the_storage_channel(emulator_host: EmulatorHost) -> None:
    # A Bell half relaxes towards H under T1 (P(H) = 1/2 + gamma/2, gamma = 1 - exp(-t/T1));
    # a stored R keeps coherence exp(-t/T2) in the Y basis; retrieval w r exp(-t/tau).
    w, r, tau, t1, t2, t = 0.8, 0.6, 2e-3, 4e-3, 2e-3, 1.5e-3
    world = _world(
        write_efficiency=w, read_efficiency=r, efficiency_decay_time_s=tau, t1_s=t1, t2_s=t2
    )
    ep = emulator_host.add(QMCEmulator(name="qmc", world=world, component="lab.qm", seed=11))
    n = 4000
    async with QMC.open(ep.resource) as qmc:
        await qmc.set_readout_delay_s(t)
        await qmc.input_state.set("BELL")
        await qmc.analyzer_basis.set("Z")
        bell = await qmc.cycle(0, n)
        await qmc.input_state.set("R")
        await qmc.analyzer_basis.set("Y")
        right = await qmc.cycle(0, n)
    assert world.clock.now_s == pytest.approx(2 * n * t, rel=1e-9)
    gamma = -math.expm1(-t / t1)
    for counts, p0 in ((bell, 0.5 + gamma / 2), (right, (1 + math.exp(-t / t2)) / 2)):
        assert stats.binomtest(counts.stored, n, w).pvalue > 1e-3, counts
        eff = w * r * math.exp(-t / tau)
        assert stats.binomtest(counts.retrieved, n, eff).pvalue > 1e-3, counts
        assert stats.binomtest(counts.port0, counts.retrieved, p0).pvalue > 1e-3, (counts, p0)
    # Power: the Bell half is not left unpolarized, the R not left pure.
    assert stats.binomtest(bell.port0, bell.retrieved, 0.5).pvalue < 1e-3
    assert stats.binomtest(right.port0, right.retrieved, 1.0 - 1e-9).pvalue < 1e-3


@pytest.mark.parametrize("call", ["retrieve", "cycle"])
async def test_a_stalled_read_out_waits_the_sessions_timeout_plus_the_delay(
    emulator_host: EmulatorHost, call: str
) -> None:
    # The caller's timeout (0.2 s), not the class default (2 s), plus the programmed
    # storage time(s); the error names the resource, the command and what it waited for.
    emu = QMCEmulator(name="qmc", parameters=PARAMS)
    ep = emulator_host.add(emu)
    async with QMC.open(ep.resource, timeout_s=0.2) as qmc:
        await qmc.set_readout_delay_s(1e-3)
        await qmc.store(0)
        emu.faults.stall_next = 1
        with pytest.raises(InstrumentTimeoutError) as tout:
            await (qmc.retrieve(0) if call == "retrieve" else qmc.cycle(1, 100))
    waited = "0.201 s" if call == "retrieve" else "0.3 s"
    assert f"timed out after {waited}" in str(tout.value), str(tout.value)
    assert tout.value.resource == ep.resource
