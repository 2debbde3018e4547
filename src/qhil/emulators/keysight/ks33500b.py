"""Emulated Keysight/Agilent 33522B waveform generator (protocol: docs/protocols/keysight-33500b.md).

SCPI core from :class:`ScpiEmulator`, with the 33500's own habits: ``SYST:ERR?``
answers ``+0,"No error"`` (signed code), enumerations read back as short
mnemonics (``ARB``), numbers as ``+8.000000000000000E+07``, ``FUNC:ARB?`` as the
quoted upper-case name, infinity as ``+9.900000000000000E+37``; out-of-range
numbers are clipped and ``-222,"Data out of range"`` is queued. Waveforms load
as ASCII lists (``DATA:ARB:DAC name, 0, 1000, ...`` as PyMeasure sends them) or
as IEEE 488.2 definite-length blocks (int16 for ``DATA:ARB:DAC``, float32 for
``DATA:ARB``, byte order per ``FORM:BORD``), kept byte-exact even when a block
ends in whitespace-like bytes.

World binding (``component`` = a weak-coherent transmitter): when both channels
play a user waveform (``FUNC ARB``) with their outputs on, of equal length and
sample rate, the two waveforms are decoded back into symbols
(:mod:`qhil.drivers.keysight.bb84_pattern`: channel 1 polarization, channel 2
intensity) and become the transmitter's pattern. The generator is clocked by the
laser: a sample rate other than the transmitter's pulse rate queues
``-221,"Settings conflict;..."`` and leaves the pattern alone. Burst and trigger
settings are kept and read back; the world plays the pattern continuously from the
transmitter's first pulse (what ``BURS:STAT 0`` with ``FUNC:ARB:SYNC`` gives).

Choices where the manual was not seen (UNVERIFIED): loading a name that exists
queues ``+786,"Arb waveform name already exists"``; selecting a name that does not
exist, or a malformed name, ``-224,"Illegal parameter value"``; a block whose length
does not fit ``-161,"Invalid block data"``; too little memory ``-225,"Out of memory"``;
fewer than 8 points ``-222``. ``*RST`` and ``DATA:VOL:CLE`` fall back to the built-in
``INT:\\BUILTIN\\EXP_RISE.ARB``; ``*RST`` also empties volatile memory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from qhil.drivers.keysight import bb84_pattern
from qhil.drivers.keysight.ks33500b import (
    _NAME,
    MAX_POINTS,
    MIN_POINTS,
    Keysight33500B,
)
from qhil.drivers.values import Float, ScpiReal
from qhil.emulators.base import Raw, on
from qhil.emulators.scpi import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER,
    NO_ERROR,
    ScpiEmulator,
    ScpiError,
)

BUILTIN_ARB = "INT:\\BUILTIN\\EXP_RISE.ARB"
BUILTIN_POINTS = 8192  # UNVERIFIED
NAME_EXISTS = (786, "Arb waveform name already exists")
INVALID_BLOCK = (-161, "Invalid block data")
OUT_OF_MEMORY = (-225, "Out of memory")
RATE_CONFLICT = (-221, "Settings conflict;sample rate differs from the laser pulse rate")
LEVEL_CONFLICT = (-221, "Settings conflict;intensity level selects no transmitter intensity")

INVALID_SUFFIX = (-131, "Invalid suffix")
_SPECIAL = re.compile(r"\s*(MIN|MAX|DEF)\w*\s*", re.IGNORECASE)
_NUM_UNIT = re.compile(
    r"\s*(?:(INF(?:INITY)?)|([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*))\s*",
    re.IGNORECASE,
)
_UNITS = {
    "": 1.0,
    "HZ": 1.0,
    "KHZ": 1e3,
    "MHZ": 1e6,
    "GHZ": 1e9,
    "V": 1.0,
    "MV": 1e-3,
    "VPP": 1.0,
    "MVPP": 1e-3,
    "OHM": 1.0,
    "KOHM": 1e3,
}


def nr3(x: float) -> str:
    """``+8.000000000000000E+07``: the 33500's number format; infinity as 9.9E+37."""
    # 9.9E+37 has no exact binary form: spell it rather than print its nearest double.
    return "+9.900000000000000E+37" if math.isinf(x) else f"{x:+.15E}"


@dataclass
class Waveform:
    """A volatile waveform: DAC codes and a load counter (a new upload is a new waveform)."""

    codes: npt.NDArray[np.int16]
    version: int


@dataclass
class Channel:
    """One output channel's settings, power-on values."""

    function: str = "SIN"
    frequency: float = 1e3
    amplitude: float = 0.1
    offset: float = 0.0
    output: bool = False
    load: float = 50.0
    arb: str = BUILTIN_ARB
    waveforms: dict[str, Waveform] = field(default_factory=dict)
    sample_rate: float = 40e3
    filter: str = "NORM"
    advance: str = "SRAT"
    burst: bool = False
    burst_mode: str = "TRIG"
    burst_cycles: float = 1.0
    trigger_source: str = "IMM"

    def stored_points(self) -> int:
        return sum(w.codes.size for w in self.waveforms.values())


class Keysight33500BEmulator(ScpiEmulator):
    driver = Keysight33500B
    identity: ClassVar[tuple[str, str, str, str]] = (
        "Agilent Technologies",
        "33522B",
        "MY00000000",
        "5.00-1.19-2.00-58-00",
    )
    default_port = 5025
    input_terminators = b"\n"
    error_queue_size = 20
    block_fields = frozenset({"upload_dac.data", "upload_float.data"})
    #: The largest upload: MAX_POINTS float32 samples in a block; as an ASCII list, up to
    #: 8 characters a point ("-32767, "). Bounds of the emulator's memory, not the manual's
    #: (the instrument parses uploads as they stream in).
    max_block_bytes = 4 * MAX_POINTS
    input_buffer_bytes = 8 * MAX_POINTS + 4096
    #: 33522B limits (the 33600A reaches 250 MSa/s and 120 MHz).
    max_sample_rate_hz: ClassVar[float] = 160e6
    max_frequency_hz: ClassVar[float] = 30e6

    def __init__(self, *, memory_points: int = MAX_POINTS, **kw: Any) -> None:
        self.memory_points = memory_points
        super().__init__(**kw)

    def power_on_state(self) -> None:
        super().power_on_state()
        self.channels = {1: Channel(), 2: Channel()}
        self.byte_order = "NORM"
        self._loads = 0
        self._driven: tuple[int, int, float] | None = None

    # --- wire ---

    async def respond_units(self, message: bytes | memoryview) -> bytes:
        reply = await super().respond_units(message)
        self._drive_world()
        return reply

    @on("next_error.get")
    def _err_signed(self) -> Raw:
        code, text = self.errors.popleft() if self.errors else NO_ERROR
        return Raw(f'{code:+d},"{text}"')

    def _parse(self, decl: Any, field: str, text: str) -> Any:
        vt = decl.value if field == "value" else decl.args[field]
        if field == "name":  # judged by the handler, with the instrument's own errors
            return vt.parse(text)
        if field == "value" and isinstance(vt, Float) and not _SPECIAL.fullmatch(text):
            m = _NUM_UNIT.fullmatch(text)
            if m is None:
                raise ScpiError(*ILLEGAL_PARAMETER)
            if m.group(1) is not None:  # INFinity: only where the instrument takes it
                if not (isinstance(vt, ScpiReal) and vt.infinite):
                    raise ScpiError(*ILLEGAL_PARAMETER)
                return math.inf
            else:
                unit = m.group(3).upper()
                if unit not in _UNITS:
                    raise ScpiError(*INVALID_SUFFIX)
                value = float(m.group(2)) * _UNITS[unit]
            # Out of range: clipped to the nearest limit, and the error queued.
            lo = -math.inf if vt.min is None else vt.min
            hi = math.inf if vt.max is None else vt.max
            if not lo <= value <= hi:
                self.push_error(*DATA_OUT_OF_RANGE)
                value = min(max(value, lo), hi)
            return value
        return super()._parse(decl, field, text)

    def _limit(self, value: float, hi: float) -> float:
        if value > hi:
            self.push_error(*DATA_OUT_OF_RANGE)
            return hi
        return value

    # --- the world: two channels drive the transmitter's modulators ---

    def _drive_world(self) -> None:
        c1, c2 = self.channels[1], self.channels[2]
        playing = all(c.function == "ARB" and c.output and c.arb in c.waveforms for c in (c1, c2))
        if not playing:
            return
        pol, inten = c1.waveforms[c1.arb], c2.waveforms[c2.arb]
        if pol.codes.size != inten.codes.size or c1.sample_rate != c2.sample_rate:
            return  # the two modulators are not (yet) in step: nothing sensible to play
        key = (pol.version, inten.version, c1.sample_rate)
        if key == self._driven:
            return
        self._driven = key
        if self.world is None or not self.component:
            return
        tx = self.world.transmitter(self.component)
        if not math.isclose(c1.sample_rate, tx.rep_rate_hz, rel_tol=1e-9):
            self.push_error(*RATE_CONFLICT)
            return
        symbols = bb84_pattern.decode(pol.codes, inten.codes)
        try:
            tx.set_pattern(symbols)
        except ValueError:
            self.push_error(*LEVEL_CONFLICT)

    # --- waveform memory ---

    def _samples(self, data: str | bytes | memoryview, dac: bool) -> npt.NDArray[np.int16]:
        if not isinstance(data, str):  # a definite-length block's payload (a view if big)
            order = ">" if self.byte_order == "NORM" else "<"
            size = 2 if dac else 4
            if len(data) % size:
                raise ScpiError(*INVALID_BLOCK)
            values = np.frombuffer(data, dtype=f"{order}{'i2' if dac else 'f4'}")
        elif data.lstrip().startswith("#"):
            raise ScpiError(*INVALID_BLOCK)
        else:
            try:
                values = np.array(data.split(","), dtype=np.float64)
            except ValueError:
                raise ScpiError(-104, "Data type error") from None
        if values.size < MIN_POINTS:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        if dac:
            if np.issubdtype(values.dtype, np.integer):  # a block: min/max, no float pass
                codes = values.astype(np.int16)  # native order first: min/max 4x faster
                if codes.min() < -bb84_pattern.DAC_MAX or codes.max() > bb84_pattern.DAC_MAX:
                    raise ScpiError(*DATA_OUT_OF_RANGE)
                return codes
            if np.abs(values.astype(np.float64)).max() > bb84_pattern.DAC_MAX:
                raise ScpiError(*DATA_OUT_OF_RANGE)
            return np.asarray(np.rint(values), dtype=np.int16)
        if not np.all(np.abs(values) <= 1.0):
            raise ScpiError(*DATA_OUT_OF_RANGE)
        return np.rint(values * bb84_pattern.DAC_MAX).astype(np.int16)

    def _load(self, channel: int, name: str, data: str | bytes | memoryview, dac: bool) -> None:
        if not _NAME.fullmatch(name):
            raise ScpiError(*ILLEGAL_PARAMETER)
        ch = self.channels[channel]
        if name.upper() in ch.waveforms:
            raise ScpiError(*NAME_EXISTS)
        codes = self._samples(data, dac)
        if ch.stored_points() + codes.size > self.memory_points:
            raise ScpiError(*OUT_OF_MEMORY)
        self._loads += 1
        ch.waveforms[name.upper()] = Waveform(codes, self._loads)

    @on("upload_dac")
    def _data_dac(self, channel: int, name: str, data: str | bytes | memoryview) -> None:
        self._load(channel, name, data, dac=True)

    @on("upload_float")
    def _data_float(self, channel: int, name: str, data: str | bytes | memoryview) -> None:
        self._load(channel, name, data, dac=False)

    @on("clear_volatile")
    def _vol_clear(self, channel: int) -> None:
        ch = self.channels[channel]
        ch.waveforms.clear()
        ch.arb = BUILTIN_ARB

    @on("arb_name.get")
    def _arb_q(self, channel: int) -> Raw:
        return Raw(f'"{self.channels[channel].arb}"')

    @on("arb_name.set")
    def _arb(self, channel: int, value: str) -> None:
        ch = self.channels[channel]
        if value.upper() in ch.waveforms:
            ch.arb = value.upper()
        elif value.upper() == BUILTIN_ARB.upper():
            ch.arb = BUILTIN_ARB
        else:
            raise ScpiError(*ILLEGAL_PARAMETER)

    @on("arb_points.get")
    def _points(self, channel: int) -> Raw:
        ch = self.channels[channel]
        n = ch.waveforms[ch.arb].codes.size if ch.arb in ch.waveforms else BUILTIN_POINTS
        return Raw(f"{n:+d}")

    @on("arb_sample_rate_hz.get")
    def _srat_q(self, channel: int) -> Raw:
        return Raw(nr3(self.channels[channel].sample_rate))

    @on("arb_sample_rate_hz.set")
    def _srat(self, channel: int, value: float) -> None:
        self.channels[channel].sample_rate = self._limit(value, self.max_sample_rate_hz)

    @on("arb_filter.get")
    def _filt_q(self, channel: int) -> Raw:
        return Raw(self.channels[channel].filter)

    @on("arb_filter.set")
    def _filt(self, channel: int, value: str) -> None:
        self.channels[channel].filter = value

    @on("arb_advance.get")
    def _adv_q(self, channel: int) -> Raw:
        return Raw(self.channels[channel].advance)

    @on("arb_advance.set")
    def _adv(self, channel: int, value: str) -> None:
        self.channels[channel].advance = value

    @on("arb_synchronize")
    def _arb_sync(self) -> None:
        pass  # the world's pattern always starts on the transmitter's first pulse

    @on("byte_order.get")
    def _bord_q(self) -> Raw:
        return Raw(self.byte_order)

    @on("byte_order.set")
    def _bord(self, value: str) -> None:
        self.byte_order = value

    # --- standard waveform settings ---

    @on("shape.get")
    def _func_q(self, channel: int) -> Raw:
        return Raw(self.channels[channel].function)

    @on("shape.set")
    def _func(self, channel: int, value: str) -> None:
        self.channels[channel].function = value

    @on("frequency_hz.get")
    def _freq_q(self, channel: int) -> Raw:
        return Raw(nr3(self.channels[channel].frequency))

    @on("frequency_hz.set")
    def _freq(self, channel: int, value: float) -> None:
        self.channels[channel].frequency = self._limit(value, self.max_frequency_hz)

    @on("amplitude_vpp.get")
    def _volt_q(self, channel: int) -> Raw:
        return Raw(nr3(self.channels[channel].amplitude))

    @on("amplitude_vpp.set")
    def _volt(self, channel: int, value: float) -> None:
        self.channels[channel].amplitude = value

    @on("offset_v.get")
    def _offs_q(self, channel: int) -> Raw:
        return Raw(nr3(self.channels[channel].offset))

    @on("offset_v.set")
    def _offs(self, channel: int, value: float) -> None:
        self.channels[channel].offset = value

    @on("output_enabled.get")
    def _outp_q(self, channel: int) -> Raw:
        return Raw("1" if self.channels[channel].output else "0")

    @on("output_enabled.set")
    def _outp(self, channel: int, value: bool) -> None:
        self.channels[channel].output = value

    @on("output_load_ohm.get")
    def _load_q(self, channel: int) -> Raw:
        return Raw(nr3(self.channels[channel].load))

    @on("output_load_ohm.set")
    def _load_set(self, channel: int, value: float) -> None:
        self.channels[channel].load = value

    # --- burst and trigger (kept and read back) ---

    @on("burst_enabled.get")
    def _burs_q(self, channel: int) -> Raw:
        return Raw("1" if self.channels[channel].burst else "0")

    @on("burst_enabled.set")
    def _burs(self, channel: int, value: bool) -> None:
        self.channels[channel].burst = value

    @on("burst_mode.get")
    def _bmode_q(self, channel: int) -> Raw:
        return Raw(self.channels[channel].burst_mode)

    @on("burst_mode.set")
    def _bmode(self, channel: int, value: str) -> None:
        self.channels[channel].burst_mode = value

    @on("burst_cycles.get")
    def _ncyc_q(self, channel: int) -> Raw:
        return Raw(nr3(self.channels[channel].burst_cycles))

    @on("burst_cycles.set")
    def _ncyc(self, channel: int, value: float) -> None:
        self.channels[channel].burst_cycles = value if math.isinf(value) else float(round(value))

    @on("trigger_source.get")
    def _trig_q(self, channel: int) -> Raw:
        return Raw(self.channels[channel].trigger_source)

    @on("trigger_source.set")
    def _trig(self, channel: int, value: str) -> None:
        self.channels[channel].trigger_source = value

    @on("trigger")
    def _trg(self) -> None:
        pass


__all__ = ["BUILTIN_ARB", "Channel", "Keysight33500BEmulator", "nr3"]
