"""Sensitive exchanges (key material): never in logs, a length-only placeholder in the exchange
log, and still replayable byte-exact around it (review #4)."""

from __future__ import annotations

import logging
from typing import ClassVar

import pytest

from qhil.drivers.declarations import Action, Control
from qhil.drivers.keysight.ks33500b import Keysight33500B
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import Int, Numbers
from qhil.emulators.keysight.ks33500b import Keysight33500BEmulator
from qhil.emulators.server import EmulatorHost
from qhil.errors import InstrumentError, ProtocolError, ValidationError
from qhil.testing import expected_protocol
from qhil.transport import Exchange, ExchangeLog, Framing, ProtocolMismatch, ReplayIO, Session

NO_ERROR = (b":SYSTem:ERRor?\n", b'+0,"No error"\n')
DAC = b"SOURce1:DATA:ARBitrary:DAC QKD,11, -23, 31, 47, 59, -61, 73, 89\n"
SECRET = [11, -23, 31, 47, 59, -61, 73, 89]


async def test_sensitive_action_is_kept_out_of_logs_and_exchange_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ExchangeLog()
    caplog.set_level(logging.DEBUG)
    io = ReplayIO([(DAC, b""), NO_ERROR])
    drv = Keysight33500B.open("R::INSTR", io=io, exchange_log=log)
    await drv.session.open()
    await drv.upload_dac(channel=1, name="QKD", data=SECRET)
    await drv.close()
    io.assert_complete()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "-23, 31" not in logged and "<sensitive>" in logged
    assert ":SYSTem:ERRor?" in logged  # the rest is logged as usual
    first, second = log.entries
    assert first.sensitive == (len(DAC), 0) and first.out == b"" and first.inp == b""
    assert second.out == NO_ERROR[0] and second.sensitive is None


async def test_placeholder_replays_any_bytes_of_the_recorded_length(tmp_path) -> None:
    log = ExchangeLog()
    log.record(b"A\n", b"")
    log.record(DAC, b"", sensitive=True)
    log.record(b"B?\n", b"1\n")
    path = tmp_path / "session.jsonl"
    log.save(path)
    assert b"-23" not in path.read_bytes() and b"DATA" not in path.read_bytes()
    loaded = ExchangeLog.load(path)
    assert [e.sensitive for e in loaded] == [None, (len(DAC), 0), None]

    async def calls(s: Session, secret: bytes) -> str:
        await s.write("A")
        await s.write_raw(secret, sensitive=True)
        return await s.query("B?")

    other = DAC.replace(b"11, -23", b"12, -24")  # another pattern, same length
    s = Session("X", Framing("\n", "\n"), io=(io := ReplayIO(loaded)))
    assert await calls(s, other) == "1"
    io.assert_complete()
    s.shutdown()
    s = Session("X", Framing("\n", "\n"), io=ReplayIO(loaded))
    with pytest.raises(ProtocolMismatch) as err:
        await calls(s, DAC[:-2] + b"\n")  # one byte short: the next command shifts
    s.shutdown()
    assert b"-23" not in str(err.value).encode() and "sensitive" in str(err.value)


async def test_session_records_a_placeholder_for_sensitive_writes() -> None:
    log = ExchangeLog()
    io = ReplayIO([(b"A\n", b""), (b"KEYBITS\n", b""), (b"B?\n", b"1\n")])
    s = Session("X", Framing("\n", "\n"), io=io, exchange_log=log)
    await s.write("A")
    await s.write_raw(b"KEYBITS\n", sensitive=True)
    assert await s.query("B?") == "1"
    s.shutdown()
    assert [(e.out, e.inp, e.sensitive) for e in log] == [
        (b"A\n", b"", None),
        (b"", b"", (8, 0)),
        (b"B?\n", b"1\n", None),
    ]


def test_a_redacted_reply_cannot_be_replayed() -> None:
    io = ReplayIO([Exchange(0.0, b"", b"", sensitive=(4, 6))])
    io.write(b"KEY?")
    with pytest.raises(ProtocolMismatch, match="sensitive"):
        io.read_until(b"\n", 1.0)


def test_replay_mismatch_does_not_echo_bytes_written_into_a_placeholder() -> None:
    io = ReplayIO([Exchange(0.0, b"", b"", sensitive=(6, 0)), (b"X\n", b"")])
    with pytest.raises(ProtocolMismatch) as err:
        io.write(b"SECRETY\n")
    assert "SECRET" not in str(err.value) and "<6 sensitive bytes>" in str(err.value)


# --- the option on declarations, honoured by validation, errors and parsing ---


class _Vault(ScpiInstrument):
    framing: ClassVar[Framing] = Framing("\n", "\n")
    key = Control(
        get="KEY?",
        set="KEY {value}",
        value=Numbers(count=3, item=Int(0, 255)),  # type: ignore[arg-type]
        sensitive=True,
        doc="Key bytes.",
    )
    load = Action("LOAD {value}", args={"value": Int(0, 9)}, sensitive=True, doc="Load a slot.")


async def test_sensitive_control_values_stay_out_of_errors() -> None:
    async with expected_protocol(_Vault, []) as drv:
        with pytest.raises(ValidationError) as bad:
            await drv.key.set([17, 300, 42])
        with pytest.raises(ValidationError) as bad_action:
            await drv.load(value=12)
    assert "300" not in str(bad.value) and "<sensitive>" in str(bad.value)
    assert "12" not in str(bad_action.value)
    async with expected_protocol(_Vault, [(b"KEY?\n", b"17,x42,99\n")]) as drv:
        with pytest.raises(ProtocolError) as err:
            await drv.key.get()
    assert "x42" not in str(err.value) and "<sensitive>" in str(err.value)
    set_error = [(b"KEY 17,23,42\n", b""), (b":SYSTem:ERRor?\n", b'-222,"Data out of range"\n')]
    async with expected_protocol(
        _Vault, [*set_error, (b":SYSTem:ERRor?\n", b'0,"No error"\n')]
    ) as drv:
        with pytest.raises(InstrumentError) as ierr:
            await drv.key.set([17, 23, 42])
    assert "23" not in str(ierr.value) and ierr.value.code == -222


async def test_sensitive_control_reads_and_writes_through_sensitive_exchanges() -> None:
    log = ExchangeLog()
    io = ReplayIO(
        [(b"KEY 1,2,3\n", b""), (b":SYSTem:ERRor?\n", b'0,"No error"\n'), (b"KEY?\n", b"1,2,3\n")]
    )
    drv = _Vault.open("V", io=io, exchange_log=log)
    await drv.session.open()
    await drv.key.set([1, 2, 3])
    assert await drv.key.get() == [1, 2, 3]
    await drv.close()
    assert [e.sensitive for e in log] == [(10, 0), None, (5, 6)]


def test_a_sensitive_declaration_needs_a_driver_that_honours_it() -> None:
    from qhil.drivers.instrument import Instrument

    with pytest.raises(TypeError, match="command_sensitive"):

        class _Leaky(Instrument):
            # Its own framing for commands, but nothing for sensitive ones.
            async def command(self, command: str, *, check_errors: bool = True) -> None:
                await self.session.query_until(command, lambda line: line == "OK")

            secret = Action("S {value}", args={"value": Int()}, sensitive=True, doc="x")

    class _Careful(Instrument):
        async def command(self, command: str, *, check_errors: bool = True) -> None:
            await self.session.query_until(command, lambda line: line == "OK")

        async def command_sensitive(self, command: str, *, check_errors: bool = True) -> None:
            await self.session.transaction(command, lambda r: r.line(), sensitive=True)

        secret = Action("S {value}", args={"value": Int()}, sensitive=True, doc="x")

    assert _Careful.secret.sensitive


async def test_keysight_upload_over_tcp_replays_from_its_exchange_log(
    emulator_host: EmulatorHost, tmp_path
) -> None:
    ep = emulator_host.add(Keysight33500BEmulator(name="awg"))
    log = ExchangeLog(ep.resource)
    async with Keysight33500B.open(ep.resource, exchange_log=log, timeout_s=1) as awg:
        await awg.upload_dac(channel=2, name="QKD", data=SECRET)
        await awg.arb_name.set("QKD", channel=2)
    path = tmp_path / "awg.jsonl"
    log.save(path)
    assert b"-61" not in path.read_bytes()
    replay = ReplayIO(ExchangeLog.load(path))
    async with Keysight33500B.open("REPLAY", io=replay) as awg:
        await awg.upload_dac(channel=2, name="QKD", data=SECRET[::-1])  # same length
        await awg.arb_name.set("QKD", channel=2)
    replay.assert_complete()
