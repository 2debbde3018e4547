"""Explicit, safe serialisation of channel payloads: a JSON header plus raw buffers.

No pickle: the decoder only ever builds None, bool, int, float, str, bytes, list,
tuple, dict (str keys), numpy arrays of bool/int/uint/float/complex dtypes and
numpy scalars of those dtypes. Every value is tagged unambiguously in the JSON:

* JSON null/true/false/numbers/strings stand for themselves (ints of any size);
* ``{"$d": {...}}`` a dict, ``{"$t": [...]}`` a tuple, JSON arrays are lists;
* ``{"$f": "nan" | "inf" | "-inf"}`` a non-finite float (JSON has none);
* ``{"$b": i}`` bytes, ``{"$a": i, "dtype": "<i8", "shape": [..]}`` an array,
  ``{"$s": i, "dtype": ...}`` a numpy scalar, where ``i`` indexes the list of raw
  buffers whose lengths the header lists and whose bytes follow it back to back.

Arrays travel little-endian and C-contiguous; decoded arrays are writable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from qhil.orchestrator.channel.errors import MessageFormatError

_ALLOWED_KINDS = frozenset("biufc")
_MAX_DEPTH = 64


def _dtype_str(dt: np.dtype[Any], path: str) -> str:
    if dt.kind not in _ALLOWED_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise MessageFormatError(
            f"{path}: numpy dtype {dt} is not allowed (bool, int, uint, float, complex only)"
        )
    return str(dt.newbyteorder("<").str) if dt.itemsize > 1 else str(dt.str)


class _Encoder:
    def __init__(self) -> None:
        self.buffers: list[bytes | memoryview] = []

    def _add(self, buf: bytes | memoryview) -> int:
        self.buffers.append(buf)
        return len(self.buffers) - 1

    def enc(self, v: Any, path: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise MessageFormatError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"$f": repr(v)}
        if isinstance(v, bytes | bytearray | memoryview):
            return {"$b": self._add(bytes(v))}
        if isinstance(v, np.ndarray):
            dts = _dtype_str(v.dtype, path)
            # (not np.ascontiguousarray: it turns 0-d arrays into 1-d ones)
            arr = np.asarray(v, dtype=np.dtype(dts))
            if not arr.flags.c_contiguous:
                arr = arr.copy(order="C")
            return {
                "$a": self._add(arr.reshape(-1).view(np.uint8).data),
                "dtype": dts,
                "shape": list(arr.shape),
            }
        if isinstance(v, np.generic):
            dts = _dtype_str(v.dtype, path)
            return {"$s": self._add(np.asarray(v, dtype=np.dtype(dts)).tobytes()), "dtype": dts}
        if isinstance(v, list):
            return [self.enc(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"$t": [self.enc(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]}
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise MessageFormatError(
                        f"{path}: dict keys must be str (got {type(k).__name__})"
                    )
                out[k] = self.enc(x, f"{path}[{k!r}]", depth + 1)
            return {"$d": out}
        raise MessageFormatError(f"{path}: values of type {type(v).__name__} cannot be sent")


def encode(kind: str, payload: Mapping[str, Any]) -> tuple[bytes, list[bytes | memoryview]]:
    """(JSON header, raw buffers) for a message; raises MessageFormatError naming the field."""
    if not isinstance(kind, str) or not kind:
        raise MessageFormatError(f"kind: must be a non-empty str (got {kind!r})")
    if not isinstance(payload, Mapping):
        raise MessageFormatError(f"payload: must be a mapping (got {type(payload).__name__})")
    e = _Encoder()
    body = e.enc(payload, "payload", 0)
    header = {
        "kind": kind,
        "payload": body,
        "buffers": [len(b) if isinstance(b, bytes) else b.nbytes for b in e.buffers],
    }
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode(), e.buffers


class _Decoder:
    def __init__(self, body: bytearray, lengths: list[int]) -> None:
        self.body = body
        self.offsets = [0]
        for n in lengths:
            self.offsets.append(self.offsets[-1] + n)
        self.lengths = lengths

    def _buf(self, i: Any, path: str) -> tuple[int, int]:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.lengths):
            raise MessageFormatError(f"{path}: bad buffer reference {i!r}")
        return self.offsets[i], self.lengths[i]

    def dec(self, v: Any, path: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise MessageFormatError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, list):
            return [self.dec(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
        if not isinstance(v, dict) or len(v) == 0:
            raise MessageFormatError(f"{path}: unexpected JSON value")
        if "$d" in v and len(v) == 1 and isinstance(v["$d"], dict):
            return {k: self.dec(x, f"{path}[{k!r}]", depth + 1) for k, x in v["$d"].items()}
        if "$t" in v and len(v) == 1 and isinstance(v["$t"], list):
            return tuple(self.dec(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v["$t"]))
        if "$f" in v and len(v) == 1 and v["$f"] in ("nan", "inf", "-inf"):
            return float(v["$f"])
        if "$b" in v and len(v) == 1:
            off, n = self._buf(v["$b"], path)
            return bytes(self.body[off : off + n])
        if "$a" in v and set(v) == {"$a", "dtype", "shape"}:
            off, n = self._buf(v["$a"], path)
            dt = self._dtype(v["dtype"], path)
            shape = v["shape"]
            if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
            ):
                raise MessageFormatError(f"{path}: bad array shape {shape!r}")
            # The count is checked against the bytes before anything is built (frombuffer
            # views, never allocates); a shape numpy cannot make (an empty array with a
            # dimension beyond its index range, too many dimensions) is a format error.
            count = math.prod(shape)
            if count * dt.itemsize != n:
                raise MessageFormatError(f"{path}: {n} bytes do not hold {shape} of {dt}")
            try:
                return np.frombuffer(self.body, dtype=dt, count=count, offset=off).reshape(shape)
            except ValueError:
                raise MessageFormatError(
                    f"{path}: numpy cannot make an array of shape {shape}"
                ) from None
        if "$s" in v and set(v) == {"$s", "dtype"}:
            off, n = self._buf(v["$s"], path)
            dt = self._dtype(v["dtype"], path)
            if n != dt.itemsize:
                raise MessageFormatError(f"{path}: {n} bytes do not hold a {dt} scalar")
            return np.frombuffer(self.body, dtype=dt, count=1, offset=off)[0]
        raise MessageFormatError(f"{path}: unknown tagged value with keys {sorted(v)}")

    @staticmethod
    def _dtype(text: Any, path: str) -> np.dtype[Any]:
        try:
            dt = np.dtype(text) if isinstance(text, str) else None
        except TypeError:
            dt = None
        if dt is None:
            raise MessageFormatError(f"{path}: bad dtype {text!r}")
        _dtype_str(dt, path)
        return dt


def decode(header: bytes, body: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
    """Inverse of :func:`encode`. ``body`` is copied once into a writable buffer."""
    try:
        h = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageFormatError(
            f"header: not JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
        ) from None
    if not isinstance(h, dict) or set(h) != {"kind", "payload", "buffers"}:
        raise MessageFormatError("header: expected keys kind, payload, buffers")
    kind, lengths = h["kind"], h["buffers"]
    if (
        not isinstance(kind, str)
        or not isinstance(lengths, list)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths)
    ):
        raise MessageFormatError("header: bad kind or buffer list")
    if sum(lengths) != len(body):
        raise MessageFormatError(f"body: {len(body)} bytes, header lists {sum(lengths)}")
    buf = body if isinstance(body, bytearray) else bytearray(body)
    payload = _Decoder(buf, lengths).dec(h["payload"], "payload", 0)
    if not isinstance(payload, dict):
        raise MessageFormatError("payload: must decode to a dict")
    return kind, payload
