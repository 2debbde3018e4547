"""Keysight (Agilent) 33500B / 33600A waveform generator as Alice's BB84 pattern source.

Protocol: docs/protocols/keysight-33500b.md (SCPI over a LAN socket, port 5025,
``\\n`` both ways; ``SYST:ERR?`` answers ``+0,"No error"``). Channel-less forms
act on channel 1; the driver always names the channel (``SOURce2:...``,
``OUTPut2``).

Role PatternGenerator: :meth:`load_pattern` turns a per-pulse symbol pattern into
two arbitrary waveforms, one sample per pulse (encoding in
:mod:`qhil.drivers.keysight.bb84_pattern`: channel 1 drives the polarization
modulator, channel 2 the intensity modulator), uploads them as definite-length
int16 blocks (``DATA:ARB:DAC``, big-endian after ``FORM:BORD NORM``), selects
them, sets the sample rate to the pulse rate and restarts both together.

A BB84 pattern is key material: every upload goes out with ``sensitive=True``
(never in logs or exchange logs), and the driver refuses to upload a pattern it
has uploaded before in this session (a fresh random pattern per block). It keeps
only keyed digests of past patterns (HMAC-SHA-256, a random key per driver), never
the patterns.
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from qhil.drivers.declarations import Action, Control
from qhil.drivers.keysight import bb84_pattern
from qhil.drivers.scpi import ScpiInstrument
from qhil.drivers.values import (
    FREQUENCY_SUFFIXES,
    Bool,
    Float,
    Int,
    Keyword,
    NumericSuffix,
    ScpiReal,
    Value,
    ValueTypeError,
)
from qhil.errors import QhilError, ValidationError
from qhil.transport.framing import Framing

#: Points per arbitrary waveform: 8 minimum; 16 MSa with the memory option (per channel).
MIN_POINTS = 8
MAX_POINTS = 16 * 1024 * 1024
#: Sample rate limits of the family (33500B: 160 MSa/s, 33600A: 250 MSa/s).
SAMPLE_RATE_HZ = (1e-6, 250e6)
#: Volatile waveform names the pattern upload uses (channel 1, channel 2).
POLARIZATION_WAVEFORM = "QHILPOL"
INTENSITY_WAVEFORM = "QHILINT"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,11}")

# Unit suffixes each quantity takes (488.2 spellings, as the emulator takes them; UNVERIFIED).
_VOLTS = {"V": 1.0, "MV": 1e-3}
_VPP = {"VPP": 1.0, "MVPP": 1e-3, **_VOLTS}
_OHMS = {"OHM": 1.0, "KOHM": 1e3}
# The channel is a header suffix (SOURce2, OUTPut2); left out, it means channel 1.
_CH = {"channel": NumericSuffix(1, 2, pattern="[12]?")}


@dataclass(frozen=True)
class ArbName(Value[str]):
    """A volatile waveform name: up to 12 characters, letter first; read back quoted, upper case.

    The emulator accepts any token (quoted or not) here and judges it itself, so a bad
    name gets the instrument's error rather than "undefined header".
    """

    pattern: str = r"\"[^\"]*\"|'[^']*'|[^\s,;\"']+"

    def validate(self, value: Any) -> str:
        v = str(value)
        if not _NAME.fullmatch(v):
            raise ValueTypeError(value, "a name of 1-12 letters, digits or _, letter first")
        return v

    def parse(self, text: str) -> str:
        return text.strip().strip("\"'")


@dataclass(frozen=True)
class ArbData(Value[Any]):
    """Samples after the name in ``DATA:ARB``: comma-separated numbers, or a binary block.

    ``format(bytes)`` gives "": the caller appends the definite-length block as raw bytes.
    """

    pattern: str = r"[\s\S]+"

    def format(self, value: Any) -> str:
        if isinstance(value, bytes | bytearray):
            return ""
        return ", ".join(str(v) for v in np.asarray(value).ravel().tolist())

    def parse(self, text: str) -> str:
        return text


class PatternReusedError(QhilError, ValueError):
    """The pattern was uploaded before in this session; BB84 needs a fresh one per block."""


class Keysight33500B(ScpiInstrument):
    """Keysight/Agilent 33500B/33600A two-channel waveform generator (role: PatternGenerator)."""

    framing: ClassVar[Framing] = Framing("\n", "\n")
    model: ClassVar[str] = "33522B"
    timeout_s: ClassVar[float] = 5.0  # a 16 MSa upload takes a while to store
    #: Role PatternLimits: one symbol per waveform point (``load_pattern``).
    min_pattern_symbols: ClassVar[int] = MIN_POINTS
    max_pattern_symbols: ClassVar[int] = MAX_POINTS

    shape = Control(
        get="[SOURce{channel}:]FUNCtion?",
        set="[SOURce{channel}:]FUNCtion {value}",
        args=_CH,
        value=Keyword(
            {
                "SIN": "SINusoid",
                "SQU": "SQUare",
                "TRI": "TRIangle",
                "RAMP": "RAMP",
                "PULS": "PULSe",
                "PRBS": "PRBS",
                "NOIS": "NOISe",
                "ARB": "ARBitrary",
                "DC": "DC",
            }
        ),
        doc="Waveform function of the channel; 'ARB' plays the selected arbitrary waveform.",
    )
    frequency_hz = Control(
        get="[SOURce{channel}:]FREQuency?",
        set="[SOURce{channel}:]FREQuency {value}",
        args=_CH,
        value=Float(1e-6, 120e6, fmt="{:.12g}", units="Hz", suffixes=FREQUENCY_SUFFIXES),
        doc="Frequency of the standard waveforms.",
    )
    amplitude_vpp = Control(
        get="[SOURce{channel}:]VOLTage?",
        set="[SOURce{channel}:]VOLTage {value}",
        args=_CH,
        value=Float(0.01, 10.0, fmt="{:.12g}", units="Vpp", suffixes=_VPP),
        doc="Peak-to-peak amplitude into the set load (DAC -32767..32767 spans it).",
    )
    offset_v = Control(
        get="[SOURce{channel}:]VOLTage:OFFSet?",
        set="[SOURce{channel}:]VOLTage:OFFSet {value}",
        args=_CH,
        value=Float(-4.995, 4.995, fmt="{:.12g}", units="V", suffixes=_VOLTS),
        doc="DC offset.",
    )
    output_enabled = Control(
        get="OUTPut{channel}?",
        set="OUTPut{channel} {value}",
        args=_CH,
        value=Bool(),
        doc="Output relay of the channel.",
    )
    output_load_ohm = Control(
        get="OUTPut{channel}:LOAD?",
        set="OUTPut{channel}:LOAD {value}",
        args=_CH,
        value=ScpiReal(1.0, 10e3, infinite=True, fmt="{:.12g}", units="ohm", suffixes=_OHMS),
        doc="Expected load (display correction only); math.inf for high impedance.",
    )
    arb_name = Control(
        get="[SOURce{channel}:]FUNCtion:ARBitrary?",
        set="[SOURce{channel}:]FUNCtion:ARBitrary {value}",
        args=_CH,
        value=ArbName(),
        doc="Arbitrary waveform the channel plays (read back upper case, without quotes).",
    )
    arb_sample_rate_hz = Control(
        get="[SOURce{channel}:]FUNCtion:ARBitrary:SRATe?",
        set="[SOURce{channel}:]FUNCtion:ARBitrary:SRATe {value}",
        args=_CH,
        value=Float(*SAMPLE_RATE_HZ, fmt="{:.12g}", units="Sa/s", suffixes=FREQUENCY_SUFFIXES),
        doc="Sample rate of the arbitrary waveform (one sample per pulse: the pulse rate).",
    )
    arb_points = Control(
        get="[SOURce{channel}:]FUNCtion:ARBitrary:POINts?",
        args=_CH,
        value=Int(),
        check_errors=False,
        doc="Number of points of the selected arbitrary waveform.",
    )
    arb_filter = Control(
        get="[SOURce{channel}:]FUNCtion:ARBitrary:FILTer?",
        set="[SOURce{channel}:]FUNCtion:ARBitrary:FILTer {value}",
        args=_CH,
        value=Keyword({"NORM": "NORMal", "STEP": "STEP", "OFF": "OFF"}),
        doc="Interpolation between samples; STEP holds each sample for a whole period.",
    )
    arb_advance = Control(
        get="[SOURce{channel}:]FUNCtion:ARBitrary:ADVance?",
        set="[SOURce{channel}:]FUNCtion:ARBitrary:ADVance {value}",
        args=_CH,
        value=Keyword({"TRIG": "TRIGger", "SRAT": "SRATe"}),
        doc="Point advance: at the sample rate, or one point per trigger.",
    )
    arb_synchronize = Action(
        "FUNCtion:ARBitrary:SYNChronize",
        # In the 33500 manual as cited by users; the manual itself was not seen (UNVERIFIED).
        doc="Restart the arbitrary waveforms of both channels on their first point together.",
    )
    clear_volatile = Action(
        "[SOURce{channel}:]DATA:VOLatile:CLEar",
        args=_CH,
        doc="Delete the channel's volatile waveforms; the channel falls back to a built-in one.",
    )
    upload_dac = Action(
        "[SOURce{channel}:]DATA:ARBitrary:DAC {name},{data}",
        args={**_CH, "name": ArbName(), "data": ArbData()},
        sensitive=True,  # a BB84 pattern is key material
        doc="Load a volatile waveform of int16 DAC codes (-32767..32767): ASCII or a block.",
    )
    upload_float = Action(
        "[SOURce{channel}:]DATA:ARBitrary {name},{data}",
        args={**_CH, "name": ArbName(), "data": ArbData()},
        sensitive=True,
        doc="Load a volatile waveform of values -1..1: ASCII, or a block of float32.",
    )
    byte_order = Control(
        get="FORMat:BORDer?",
        set="FORMat:BORDer {value}",
        value=Keyword({"NORM": "NORMal", "SWAP": "SWAPped"}),
        doc="Byte order of binary blocks: NORM most significant byte first, SWAP least.",
    )
    burst_enabled = Control(
        get="[SOURce{channel}:]BURSt:STATe?",
        set="[SOURce{channel}:]BURSt:STATe {value}",
        args=_CH,
        value=Bool(),
        doc="Burst mode on/off (off: the waveform repeats continuously).",
    )
    burst_mode = Control(
        get="[SOURce{channel}:]BURSt:MODE?",
        set="[SOURce{channel}:]BURSt:MODE {value}",
        args=_CH,
        value=Keyword({"TRIG": "TRIGgered", "GAT": "GATed"}),
        doc="Triggered (N cycles per trigger) or gated burst.",
    )
    burst_cycles = Control(
        get="[SOURce{channel}:]BURSt:NCYCles?",
        set="[SOURce{channel}:]BURSt:NCYCles {value}",
        args=_CH,
        value=ScpiReal(1, 1e8, infinite=True, fmt="{:.0f}"),
        doc="Cycles per triggered burst; math.inf for an infinite burst.",
    )
    trigger_source = Control(
        get="TRIGger{channel}:SOURce?",
        set="TRIGger{channel}:SOURce {value}",
        args=_CH,
        value=Keyword({"IMM": "IMMediate", "EXT": "EXTernal", "TIM": "TIMer", "BUS": "BUS"}),
        doc="Trigger source of the channel's bursts.",
    )
    trigger = Action("*TRG", doc="Bus trigger (TRIG:SOUR BUS).")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        # Keyed digests of the patterns uploaded in this session, never the patterns.
        self._digest_key = os.urandom(32)
        self._uploaded: set[bytes] = set()
        # The upload's wire buffer, reused block after block (fresh 16 MB cost page faults).
        self._wire: npt.NDArray[np.uint8] | None = None

    async def on_connect(self) -> None:
        # Binary blocks go most significant byte first; say so rather than rely on power-on.
        await self.byte_order.set("NORM")

    # --- PatternGenerator role ---

    async def load_pattern(self, symbols: npt.NDArray[np.uint8], symbol_rate_hz: float) -> None:
        """Upload a per-pulse symbol pattern (bit | basis << 1 | intensity << 2) and arm it.

        Checks everything before the first byte is sent: the pattern (1-D integers,
        8..16 Mi symbols, intensity index <= 7), the rate and that this pattern was not
        uploaded before in this session (:class:`PatternReusedError`).
        """
        pattern = self._checked_pattern(symbols)
        rate_cmds = [
            self.arb_sample_rate_hz.decl.set_template.render(channel=ch, value=symbol_rate_hz)  # type: ignore[union-attr]
            for ch in (1, 2)
        ]
        # HMAC-SHA-256: ~0.55 ns a symbol with SHA-NI (keyed BLAKE2b took ~1.1).
        digest = hmac.new(self._digest_key, pattern.data, "sha256").digest()
        if digest in self._uploaded:
            raise PatternReusedError(
                "load_pattern: this pattern was already uploaded in this session; BB84 needs "
                "a fresh random pattern for every block; nothing was sent"
            )
        # Counted as used from here on: once bytes leave, the pattern must not come back.
        self._uploaded.add(digest)
        for ch, name, rate_cmd in (
            (1, POLARIZATION_WAVEFORM, rate_cmds[0]),
            (2, INTENSITY_WAVEFORM, rate_cmds[1]),
        ):
            await self.clear_volatile(channel=ch)
            # The codes come from the level tables: in range by construction.
            header = type(self).upload_dac.template.render(channel=ch, name=name, data=b"")
            message, self._wire = bb84_pattern.dac_message(
                header.encode("ascii"), pattern, ch, ">", self.framing.write_term_bytes, self._wire
            )
            await self._send_block(message, header)
            setup = [
                self._set_command(self.arb_name, name, ch),
                rate_cmd,
                self._set_command(self.arb_filter, "STEP", ch),
                self._set_command(self.shape, "ARB", ch),
            ]
            if ch == 2:
                setup.append(type(self).arb_synchronize.template.render())
            await self._commands(setup)

    async def set_output(self, enabled: bool) -> None:
        """Both channels' outputs (the two modulators) on or off."""
        await self._commands([self._set_command(self.output_enabled, enabled, ch) for ch in (1, 2)])

    @staticmethod
    def _set_command(control: Any, value: Any, channel: int) -> str:
        return str(control.decl.set_template.render(value=value, channel=channel))

    async def _commands(self, commands: list[str]) -> None:
        """Settings sent together, then one ``SYST:ERR?`` drain for all of them: a BB84 block
        sets up both channels and switches them twice, and a round trip per command was
        most of its I/O (issue 12). The first queued error is raised, naming the commands."""
        async with self.session.locked():
            for command in commands:
                await self.session.write(command)
            await self.check_errors("; ".join(commands))

    async def output(self) -> bool:
        return all([await self.output_enabled.get(channel=ch) for ch in (1, 2)])

    # --- binary upload ---

    async def upload_dac_block(self, channel: int, name: str, codes: npt.ArrayLike) -> None:
        """Load int16 DAC codes as a definite-length block, kept out of every log."""
        arr = np.asarray(codes)
        if arr.ndim != 1 or not (MIN_POINTS <= arr.size <= MAX_POINTS):
            raise ValidationError(
                "DATA:ARBitrary:DAC", f"<{arr.size} samples>", f"{MIN_POINTS}..{MAX_POINTS} samples"
            )
        if np.issubdtype(arr.dtype, np.integer):  # min/max: no 8-byte copy of 16 MSa
            bad = int(arr.min()) < -bb84_pattern.DAC_MAX or int(arr.max()) > bb84_pattern.DAC_MAX
        else:
            bad = bool(np.abs(arr.astype(np.int64)).max() > bb84_pattern.DAC_MAX)
        if bad:
            raise ValidationError(
                "DATA:ARBitrary:DAC", "<samples>", "DAC codes in -32767..32767; nothing was sent"
            )
        header = Keysight33500B.upload_dac.template.render(channel=channel, name=name, data=b"")
        payload = (
            header.encode("ascii")
            + bb84_pattern.dac_block(arr.astype(np.int16, copy=False))
            + self.framing.write_term_bytes
        )
        await self._send_block(payload, header)

    async def _send_block(self, message: bytes | memoryview, header: str) -> None:
        """A whole upload command with its block, kept out of every log; then its errors."""
        async with self.session.locked():
            await self.session.write_raw(message, sensitive=True)
            await self.check_errors(header + "<block>")

    @staticmethod
    def _checked_pattern(symbols: Any) -> npt.NDArray[np.uint8]:
        # Messages name sizes and limits only: pattern values are key material.
        arr = np.asarray(symbols)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValidationError(
                "load_pattern",
                f"<array of shape {arr.shape}, dtype {arr.dtype}>",
                "a 1-D integer array of symbols",
            )
        if not (MIN_POINTS <= arr.size <= MAX_POINTS):
            raise ValidationError(
                "load_pattern", f"<{arr.size} symbols>", f"{MIN_POINTS}..{MAX_POINTS} symbols"
            )
        if arr.min() < 0 or arr.max() > bb84_pattern.MAX_SYMBOL:
            raise ValidationError(
                "load_pattern",
                "<symbols out of range>",
                f"bit | basis << 1 | intensity << 2 with at most "
                f"{bb84_pattern.INTENSITY_LEVELS} intensities: 0..{bb84_pattern.MAX_SYMBOL}",
            )
        return np.ascontiguousarray(arr, dtype=np.uint8)  # no copy of a uint8 block
