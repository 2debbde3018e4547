"""Declarations: one template renders the driver's bytes and matches the emulator's input."""

from __future__ import annotations

import pytest

from qhil.drivers.declarations import Template, scpi_keyword_regex
from qhil.drivers.santec.tsl570 import TSL570
from qhil.drivers.values import Bool, Enum, Float, Int
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
    with pytest.raises(ValidationError, match="value"):
        t.render(channel=1, value=6000)
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
