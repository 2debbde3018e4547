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


# The nearest level is monotone in the code: level k from the first code whose nearest
# level is k on. Decoding a block is then a few int16 comparisons per channel (SIMD, ~0.1 ns
# a sample each) instead of a 64 Ki-entry table gather (~1.4 ns) or a float pass.
_ALL_CODES = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)


def _level_starts(levels: int) -> list[np.int16]:
    nearest = nearest_level(_ALL_CODES, levels)
    return [np.int16(_ALL_CODES[np.argmax(nearest >= k)]) for k in range(1, levels)]


_POL_STARTS = _level_starts(POLARIZATION_LEVELS)
_INT_STARTS = _level_starts(INTENSITY_LEVELS)


#: Codes decoded per step: the comparisons' temporaries stay in cache (a whole 8 M block per
#: comparison went to memory and back ten times: ~2 ns instead of ~0.9 ns per symbol).
DECODE_CHUNK = 1 << 18


def decode(polarization_codes: npt.ArrayLike, intensity_codes: npt.ArrayLike) -> U8:
    """Symbols (``p | i << 2``) from the two channels' DAC codes."""
    pc, ic = np.asarray(polarization_codes), np.asarray(intensity_codes)
    if pc.dtype == np.int16 and ic.dtype == np.int16 and pc.ndim == 1 and pc.shape == ic.shape:
        out: U8 = np.empty(pc.size, dtype=np.uint8)
        scratch = np.empty(min(pc.size, DECODE_CHUNK), dtype=bool)
        for lo in range(0, pc.size, DECODE_CHUNK):
            hi = min(lo + DECODE_CHUNK, pc.size)
            o, sc, p, i = out[lo:hi], scratch[: hi - lo], pc[lo:hi], ic[lo:hi]
            o.fill(0)
            for start in _INT_STARTS:  # level index = how many level starts lie at or below
                np.greater_equal(i, start, out=sc)
                o += sc.view(np.uint8)
            o += o
            o += o  # << 2 by adds (numpy's uint8 shift has no fast loop)
            for start in _POL_STARTS:
                np.greater_equal(p, start, out=sc)
                o += sc.view(np.uint8)
        return out
    p = nearest_level(pc, POLARIZATION_LEVELS)
    q = nearest_level(ic, INTENSITY_LEVELS)
    return (p | (q << 2)).astype(np.uint8)


def dac_block(codes: I16, byte_order: str = ">") -> bytes:
    """IEEE 488.2 definite-length block of int16 samples (``>`` for FORM:BORD NORM)."""
    body = np.asarray(codes, dtype=byte_order + "i2").tobytes()
    size = str(len(body)).encode("ascii")
    return b"#" + str(len(size)).encode("ascii") + size + body


# Two symbols -> their two codes in one 32-bit gather: indexed by a pair of symbol bytes as
# one uint16 (native order), the entry is the two codes' 4 bytes in wire order. Built per
# (channel table, byte order) on first use: 256 KiB each.
_PAIR_TABLES: dict[tuple[int, str], npt.NDArray[np.uint32]] = {}
#: Symbol pairs encoded per step.
ENCODE_CHUNK = 1 << 18


def _pair_table(codes_of_symbol: I16, byte_order: str) -> npt.NDArray[np.uint32]:
    key = (id(codes_of_symbol), byte_order)
    table = _PAIR_TABLES.get(key)
    if table is None:
        wire = codes_of_symbol.astype(byte_order + "i2")
        pair = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
        entries = np.empty((1 << 16, 2), dtype=byte_order + "i2")
        entries[:, 0] = wire[pair[:, 0]]
        entries[:, 1] = wire[pair[:, 1]]
        table = entries.view(np.uint32).ravel()
        _PAIR_TABLES[key] = table
    return table


def dac_message(
    header: bytes,
    symbols: U8,
    channel: int,
    byte_order: str,
    end: bytes,
    scratch: U8 | None = None,
) -> tuple[memoryview, U8]:
    """``header`` + the definite-length block of the channel's DAC codes for ``symbols``
    (``channel`` 1 polarization, 2 intensity; ``>`` for FORM:BORD NORM) + ``end``.

    The same bytes as ``header + dac_block(encode(symbols)[channel - 1]) + end``, built in
    one buffer: one gather per two symbols straight into the block. Returns a view of the
    message in the buffer (no copy out: send it before the next call) and the buffer, to
    pass back as ``scratch`` next time: a fresh 16 MB buffer per block costs as much as
    the encoding itself (the kernel's fresh pages)."""
    s = np.ascontiguousarray(symbols, dtype=np.uint8)
    n = s.size
    codes = _POL_OF_SYMBOL if channel == 1 else _INT_OF_SYMBOL
    size = str(2 * n).encode("ascii")
    head = header + b"#" + str(len(size)).encode("ascii") + size
    pad = -len(head) % 4  # the block's samples start 4-byte aligned for the uint32 gather
    total = pad + len(head) + 2 * n + len(end)
    buf = scratch if scratch is not None and scratch.size >= total else np.empty(total, np.uint8)
    buf[pad : pad + len(head)] = np.frombuffer(head, dtype=np.uint8)
    body = buf[pad + len(head) : pad + len(head) + 2 * n]
    pairs = n // 2
    if pairs:
        # mode="wrap": a uint16 index never leaves the 2^16-entry table, and numpy's
        # bounds-checked path is ~1.7x slower. In steps: numpy first converts the indices
        # to 8-byte integers, a temporary that then stays in cache (0.42 -> 0.31 ns/sym).
        table = _pair_table(codes, byte_order)
        index, out = s[: 2 * pairs].view(np.uint16), body[: 4 * pairs].view(np.uint32)
        for lo in range(0, pairs, ENCODE_CHUNK):
            np.take(
                table, index[lo : lo + ENCODE_CHUNK], out=out[lo : lo + ENCODE_CHUNK], mode="wrap"
            )
    if n % 2:
        body[-2:] = np.frombuffer(codes[s[-1:]].astype(byte_order + "i2").tobytes(), np.uint8)
    stop = pad + len(head) + 2 * n
    buf[stop : stop + len(end)] = np.frombuffer(end, dtype=np.uint8)
    return buf[pad : stop + len(end)].data, buf
