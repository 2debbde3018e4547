"""Value types: numbers with unit suffixes, strict reply patterns, SCPI specials (review #6)."""

from __future__ import annotations

import math
import re

import pytest

from qhil.drivers.values import (
    FREQUENCY_SUFFIXES,
    LENGTH_SUFFIXES,
    Float,
    Int,
    ScpiReal,
    SuffixError,
    nr3,
    split_number,
)
from qhil.errors import ProtocolError
from qhil.testing import expected_protocol

WAVELENGTH = Float(1480, 1640, scale=1e-9, suffixes=LENGTH_SUFFIXES)


@pytest.mark.parametrize(
    ("text", "nm"),
    [
        ("1.55E-6", 1550.0),
        ("1550NM", 1550.0),
        ("1550 nm", 1550.0),
        ("1.55um", 1550.0),
        ("0.00155MM", 1550.0),
        ("1550000PM", 1550.0),
        ("1.55e-6 M", 1550.0),
    ],
)
def test_declared_unit_suffixes_scale_to_the_wire_unit(text: str, nm: float) -> None:
    assert WAVELENGTH.parse(text) == pytest.approx(nm, rel=1e-12)


@pytest.mark.parametrize("text", ["1550XM", "1550 THZ", "0.5e", "3MW"])
def test_an_unknown_suffix_is_refused(text: str) -> None:
    with pytest.raises(SuffixError):
        WAVELENGTH.parse(text)


def test_a_float_without_declared_suffixes_takes_none() -> None:
    with pytest.raises(SuffixError):
        Float().parse("3MW")
    assert Float().parse(" -2.5e1 ") == -25.0
    assert Float(suffixes=FREQUENCY_SUFFIXES, scale=1e12).parse("193.4THZ") == pytest.approx(193.4)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "--1", "e5", "1,5", "1550N M"])
def test_malformed_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Float().parse(text)


def test_split_number_gives_the_number_and_its_suffix() -> None:
    assert split_number(" +1.5E-3 mW ") == (1.5e-3, "MW")
    assert split_number("7") == (7.0, "")
    with pytest.raises(ValueError):
        split_number("MW")


@pytest.mark.parametrize("value", [Float(), Float(suffixes=LENGTH_SUFFIXES), Int(), ScpiReal()])
@pytest.mark.parametrize("reply", ["MAX", "MINimum", "DEF", "1e", "5 dBm", "1550NM", "INF"])
def test_reply_patterns_take_bare_numbers_only(value: object, reply: str) -> None:
    assert re.fullmatch(value.reply_pattern, reply, re.IGNORECASE) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("value", "reply"), [(Float(), "+1.55000000E-006"), (Int(), "+12")])
def test_reply_patterns_take_the_numbers_instruments_send(value: object, reply: str) -> None:
    assert re.fullmatch(value.reply_pattern, reply)  # type: ignore[attr-defined]


@pytest.mark.parametrize("reply", [b"MAX\r", b"1e\r", b"5 dBm\r", b"\r"])
async def test_a_malformed_reply_is_a_protocol_error(reply: bytes) -> None:
    from qhil.drivers.santec.tsl570 import TSL570

    async with expected_protocol(TSL570, [(b":POWer?\r", reply)]) as drv:
        with pytest.raises(ProtocolError, match="POWer"):
            await drv.power_setpoint.get()


def test_scpi_real_reads_infinity_and_nan_and_sends_inf() -> None:
    v = ScpiReal(1, 1e4, infinite=True)
    assert v.parse("+9.9E+37") == math.inf and math.isnan(v.parse("9.91E37"))
    assert v.parse("-9.9E37") == -math.inf and v.parse("INFinity") == math.inf
    assert v.format(math.inf) == "INF" and v.format(50) == "50"


def test_nr3_is_the_sign_eight_decimals_three_digit_exponent_form() -> None:
    assert nr3(1.55e-6) == "+1.55000000E-006"
    assert nr3(-12.5) == "-1.25000000E+001"
    assert nr3(0.0) == "+0.00000000E+000"


def test_keysight_declarations_carry_their_unit_suffixes() -> None:
    from qhil.drivers.keysight.ks33500b import Keysight33500B as K

    assert K.frequency_hz.value.parse("80 MHZ") == 80e6
    assert K.amplitude_vpp.value.parse("500mVpp") == pytest.approx(0.5)
    assert K.output_load_ohm.value.parse("5KOHM") == 5e3
    with pytest.raises(SuffixError):
        K.offset_v.value.parse("1VPP")  # an offset is volts, not peak-to-peak
