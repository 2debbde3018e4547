"""Declarations: one template renders the driver's bytes and matches the emulator's input."""

from __future__ import annotations

import pytest

from qhil.drivers.declarations import Template, scpi_keyword_regex
from qhil.drivers.santec.tsl570 import TSL570
from qhil.drivers.values import Bool, Enum, Float, Int, NumericSuffix
from qhil.errors import ValidationError


def test_scpi_keyword_accepts_exactly_short_and_long_forms() -> None:
    import re

    rx = re.compile(scpi_keyword_regex("WAVelength"), re.IGNORECASE)
    assert rx.fullmatch("WAV") and rx.fullmatch("wavelength") and rx.fullmatch("Wav")
    assert not rx.fullmatch("WAVE") and not rx.fullmatch("WA")


@pytest.mark.parametrize(
    "line",
    [":WAV 1.55E-06", "WAV 1.55e-6", ":wavelength 1.55E-06", ":WAVelength   1.55E-06"],
)
def test_scpi_template_matches_every_legal_spelling(line: str) -> None:
    t = TSL570.wavelength_nm.set_template
    assert t is not None
    assert t.match(line) is not None


def test_optional_nodes_are_matched_but_never_sent() -> None:
    t = TSL570.power_setpoint.set_template
    assert t is not None
    assert t.render(value=5) == ":POWer 5.00000000E+00"
    assert t.match(":POW:LEV 5") is not None and t.match(":POW 5") is not None


def test_render_validates_before_formatting() -> None:
    t = Template("V{channel},{value}", {"channel": Int(1, 4), "value": Int(-5000, 5000)})
    assert t.render(channel=3, value=2500) == "V3,2500"
    with pytest.raises(ValidationError, match="channel must be an integer in \\[1, 4\\]"):
        t.render(channel=5, value=0)
    with pytest.raises(ValidationError, match="value") as info:
        t.render(channel=1, value=6000)
    # The command as a manual writes it, not a raw format string (a review saw "{value}").
    assert str(info.value).startswith("V<channel>,<value>: 6000 is not allowed")
    assert t.parse("V3,-250") == {"channel": 3, "value": -250}
    assert t.match("V3,2500X") is None


def test_value_types_round_trip() -> None:
    f = Float(0, 10, fmt="{:.3f}", scale=1e-3)
    assert f.format(5) == "0.005"
    assert f.parse("0.005") == pytest.approx(5)
    assert Bool().parse("ON") is True and Bool().format(False) == "0"
    e = Enum({"dBm": "0", "mW": "1"})
    assert e.parse("+1") == "mW" and e.format("dBm") == "0"
    with pytest.raises(ValueError):
        e.validate("W")
    assert Int(0, 10, step=2).validate(4) == 4
    with pytest.raises(ValueError):
        Int(0, 10, step=2).validate(3)


def test_every_declared_command_has_an_emulator_handler() -> None:
    """Driver and emulator cannot drift: the emulator covers the driver's whole grammar."""
    from qhil.catalogue import CATALOGUE

    for entry in CATALOGUE.values():
        drv, emu = entry.driver_class(), entry.emulator_class()
        handled = {r.key.split(".")[0] for r in emu.routes}
        missing = set(drv.declarations()) - handled
        assert not missing, f"{entry.model}: no emulator handler for {sorted(missing)}"


# --- SCPI headers built from nodes (review #5) ---


@pytest.mark.parametrize(
    "line",
    ["FREQ?", ":FREQ?", "WAV:FREQ?", ":WAV:FREQ?", ":wavelength:frequency?", "  :Freq?  "],
)
def test_header_starting_with_an_optional_node_matches_with_and_without_it(line: str) -> None:
    t = Template("[:WAVelength]:FREQuency?", scpi=True)
    assert t.match(line) == {}


@pytest.mark.parametrize("line", ["WAV?", ":WAV:WAV:FREQ?", "WAV:FREQ", "::FREQ?", "WAVE:FREQ?"])
def test_header_with_an_optional_node_rejects_other_headers(line: str) -> None:
    assert Template("[:WAVelength]:FREQuency?", scpi=True).match(line) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (":SYST:ERR?", True),
        ("SYSTEM:ERROR:NEXT?", True),
        (":SYST:ERR:NEXT?", True),
        (":SYST:NEXT?", False),
        (":WAV:SWE:REP", False),
    ],
)
def test_optional_node_in_the_middle_or_at_the_end(line: str, expected: bool) -> None:
    assert (Template(":SYSTem:ERRor[:NEXT]?", scpi=True).match(line) is not None) is expected


def test_optional_node_between_mandatory_ones() -> None:
    t = Template(":WAVelength:SWEep[:STATe]:REPeat", scpi=True)
    for line in (":WAV:SWE:REP", "WAV:SWE:STAT:REP", ":wavelength:sweep:state:repeat"):
        assert t.match(line) == {}, line
    assert t.match(":WAV:SWE:STAT") is None


def test_common_commands_take_no_root_colon() -> None:
    t = Template("*IDN?", scpi=True)
    assert t.match("*idn?") == {} and t.match(":*IDN?") is None


def test_field_inside_the_header_keeps_later_keywords_in_both_forms() -> None:
    t = Template(
        "SOURce{channel}:FUNCtion {value}",
        {"channel": NumericSuffix(1, 2), "value": Int()},
        scpi=True,
    )
    assert t.render(channel=2, value=3) == "SOURce2:FUNCtion 3"
    for line in ("SOUR2:FUNC 3", "source2:function 3", ":SOURce2:FUNC 3"):
        assert t.parse(line) == {"channel": 2, "value": 3}, line
    assert t.parse("SOUR:FUNC 3") == {"channel": 1, "value": 3}  # no suffix: channel 1
    assert t.match("SOUR:FUNC:FUNC 3") is None
    # A narrower suffix pattern keeps other channels out of the header altogether.
    narrow = Template(
        "SOURce{channel}:FUNCtion?", {"channel": NumericSuffix(1, 2, pattern="[12]?")}, scpi=True
    )
    assert narrow.match("SOUR3:FUNC?") is None and narrow.parse("SOUR2:FUNC?") == {"channel": 2}
    with pytest.raises(ValidationError, match="channel"):
        t.render(channel=3, value=1)


def test_optional_node_with_a_field_is_sent_and_may_be_left_out() -> None:
    t = Template(
        "[SOURce{channel}:]FUNCtion:ARBitrary?", {"channel": NumericSuffix(1, 2)}, scpi=True
    )
    assert t.render(channel=2) == "SOURce2:FUNCtion:ARBitrary?"
    assert t.parse("FUNC:ARB?") == {"channel": 1}
    assert t.parse("SOUR2:FUNC:ARB?") == {"channel": 2}
    assert t.parse(":source2:function:arbitrary?") == {"channel": 2}
    # Optional nodes without a field are matched but never sent.
    assert Template("[:SOURce]:POWer?", scpi=True).render() == ":POWer?"


def test_header_suffix_after_a_mandatory_keyword() -> None:
    t = Template("OUTPut{channel}:LOAD?", {"channel": NumericSuffix(1, 2)}, scpi=True)
    assert t.render(channel=1) == "OUTPut1:LOAD?"
    assert t.parse("OUTP2:LOAD?") == {"channel": 2}
    assert t.parse("outp:load?") == {"channel": 1}
    assert t.match("OUTP2:LOAD") is None and t.match("OUTP2?") is None


def test_malformed_scpi_template_is_refused_with_its_text() -> None:
    with pytest.raises(TypeError, match=r"\[\[:A\]:B\]:C"):
        Template("[[:A]:B]:C", scpi=True).regex()
    with pytest.raises(TypeError, match=r":A\[:B"):
        Template(":A[:B", scpi=True).regex()


async def test_emulator_takes_relative_header_after_optional_root_node() -> None:
    from qhil.emulators.santec.tsl570 import TSL570Emulator
    from qhil.testing import run_on_emulator

    emu = TSL570Emulator(command_set="legacy")
    await run_on_emulator(
        emu,
        [
            (b":WAV 1550;FREQ?\r", b"193.41449\r"),
            (b"FREQ?\r", b"193.41449\r"),
            (b"WAV:FREQ?\r", b"193.41449\r"),
            (b"SYST:ERR?\r", b'0,"No error"\r'),
        ],
    )


def test_keysight_driver_uses_the_core_declarations() -> None:
    import importlib

    from qhil.drivers.declarations import Action, Control, Measurement
    from qhil.drivers.keysight.ks33500b import Keysight33500B

    for name, decl in Keysight33500B.declarations().items():
        assert type(decl) in (Control, Measurement, Action), name
        assert all(type(t) is Template for t in decl.templates()), name
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("qhil.drivers.keysight.channel_templates")
