"""How a BB84 symbol pattern becomes two arbitrary waveforms, and back.

Alice's transmitter has two modulators, driven by the two channels of a
33522B-class generator clocked at the laser's pulse rate, one sample per pulse:

* channel 1 -> polarization modulator: level ``p = symbol & 3`` (= bit | basis << 1:
  0 H, 1 V, 2 D, 3 A), four equally spaced DAC codes over the full range;
* channel 2 -> intensity modulator: level ``i = symbol >> 2`` (the decoy intensity
  index, 0..7), eight equally spaced DAC codes over the full range.

So ``symbol = p | i << 2`` as the world's transmitter reads it. The DAC range is
-32767..+32767 (a ``DATA:ARB:DAC`` sample); the amplitude and offset of each
channel map it onto the modulator's drive voltages. Decoding takes the nearest
level, as a modulator driven between two levels lands nearest one state.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

DAC_MAX = 32767
POLARIZATION_LEVELS = 4
INTENSITY_LEVELS = 8
#: Largest symbol the two channels can carry (intensity index 7, polarization A).
MAX_SYMBOL = POLARIZATION_LEVELS * INTENSITY_LEVELS - 1

I16 = npt.NDArray[np.int16]
U8 = npt.NDArray[np.uint8]


def level_codes(levels: int) -> I16:
    """DAC codes of ``levels`` equally spaced levels from -32767 to +32767."""
    return np.rint(-DAC_MAX + np.arange(levels) * (2 * DAC_MAX / (levels - 1))).astype(np.int16)


_POL = level_codes(POLARIZATION_LEVELS)
_INT = level_codes(INTENSITY_LEVELS)
# Per symbol byte (0..255; only 0..MAX_SYMBOL are valid): each channel's code, so one
# gather per channel encodes a block (80 MHz x 16 Mi-sample blocks: every pass counts).
_SYMBOLS = np.arange(256)
_POL_OF_SYMBOL = _POL[_SYMBOLS & 3]
_INT_OF_SYMBOL = _INT[(_SYMBOLS >> 2) % INTENSITY_LEVELS]


def encode(symbols: U8) -> tuple[I16, I16]:
    """(channel 1 polarization codes, channel 2 intensity codes), one per symbol."""
    s = np.asarray(symbols, dtype=np.uint8)
    return _POL_OF_SYMBOL[s], _INT_OF_SYMBOL[s]


def nearest_level(codes: npt.ArrayLike, levels: int) -> npt.NDArray[np.uint8]:
    """Index of the nearest of ``levels`` equally spaced DAC levels for each code."""
    c = np.asarray(codes, dtype=np.float64)
    idx = np.rint((c + DAC_MAX) * (levels - 1) / (2 * DAC_MAX))
    return np.clip(idx, 0, levels - 1).astype(np.uint8)


# The nearest level of every int16 code, indexed by the code's bits as uint16: decoding a
# block is then one gather per channel instead of a float pass per sample.
_ALL_CODES = np.arange(1 << 16, dtype=np.uint16).view(np.int16)
_POL_LEVEL = nearest_level(_ALL_CODES, POLARIZATION_LEVELS)
_INT_LEVEL_SHIFTED = (nearest_level(_ALL_CODES, INTENSITY_LEVELS) << 2).astype(np.uint8)


def decode(polarization_codes: npt.ArrayLike, intensity_codes: npt.ArrayLike) -> U8:
    """Symbols (``p | i << 2``) from the two channels' DAC codes."""
    pc, ic = np.asarray(polarization_codes), np.asarray(intensity_codes)
    if pc.dtype == np.int16 and ic.dtype == np.int16:
        out: U8 = _POL_LEVEL[pc.view(np.uint16)]
        out |= _INT_LEVEL_SHIFTED[ic.view(np.uint16)]
        return out
    p = nearest_level(pc, POLARIZATION_LEVELS)
    i = nearest_level(ic, INTENSITY_LEVELS)
    return (p | (i << 2)).astype(np.uint8)


def dac_block(codes: I16, byte_order: str = ">") -> bytes:
    """IEEE 488.2 definite-length block of int16 samples (``>`` for FORM:BORD NORM)."""
    body = np.asarray(codes, dtype=byte_order + "i2").tobytes()
    size = str(len(body)).encode("ascii")
    return b"#" + str(len(size)).encode("ascii") + size + body
