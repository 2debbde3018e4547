"""Payload serialisation: exact round trips, no pickle, clear errors naming the field."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qhil.orchestrator.channel import MessageFormatError
from qhil.orchestrator.channel.codec import decode, encode


def roundtrip(payload: dict) -> dict:
    header, buffers = encode("k", payload)
    body = b"".join(bytes(b) for b in buffers)
    kind, out = decode(header, body)
    assert kind == "k"
    return out


def assert_same(a: object, b: object) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    elif isinstance(a, np.generic):
        assert isinstance(b, np.generic) and a.dtype == b.dtype and a == b
    else:
        assert a == b


def test_every_supported_type_round_trips() -> None:
    payload = {
        "none": None,
        "flags": [True, False],
        "big": 2**200 + 1,
        "neg": -7,
        "pi": 3.141592653589793,
        "nonfinite": [float("nan"), float("inf"), float("-inf")],
        "text": "sift ✓",
        "raw": b"\x00\xff" * 100,
        "empty_bytes": b"",
        "tuple": (1, "two", (3.0,)),
        "nested": {"inner": {"deeper": [1, {"x": b"y"}]}},
        "bases": np.array([0, 1, 1, 0], dtype=np.uint8),
        "bits": np.array([True, False, True]),
        "matrix": np.arange(12, dtype=np.float32).reshape(3, 4),
        "big_endian": np.arange(5, dtype=">i8"),
        "strided": np.arange(20, dtype=np.int16)[::3],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "complex": np.array([1 + 2j, -3j], dtype=np.complex128),
        "zero_d": np.array(42, dtype=np.int64),
        "empty": np.zeros((0, 3), dtype=np.float64),
        "scalars": [np.int64(-5), np.float32(2.5), np.bool_(True), np.uint8(200)],
    }
    out = roundtrip(payload)
    expected = dict(payload)
    # Arrays arrive little-endian and C-contiguous, with equal values.
    expected["big_endian"] = payload["big_endian"].astype("<i8")
    assert_same(expected, out)
    assert out["big_endian"].dtype.byteorder in ("<", "=")
    assert out["fortran"].flags.c_contiguous


def test_decoded_arrays_are_writable() -> None:
    out = roundtrip({"a": np.arange(4), "b": np.ones(3)})
    out["a"][0] = 99
    out["b"] *= 2
    assert out["a"][0] == 99 and out["b"].sum() == 6


@settings(max_examples=200, deadline=None)
@given(
    arr=hnp.arrays(
        dtype=st.one_of(
            hnp.integer_dtypes(endianness="="),
            hnp.unsigned_integer_dtypes(),
            hnp.floating_dtypes(endianness="<"),
            hnp.boolean_dtypes(),
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    ),
    raw=st.binary(max_size=64),
    text=st.text(max_size=20),
)
def test_random_arrays_round_trip(arr: np.ndarray, raw: bytes, text: str) -> None:
    out = roundtrip({"arr": arr, "raw": raw, text: [text, raw]})
    assert out["raw"] == raw and out[text] == [text, raw]
    little = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
    assert out["arr"].shape == arr.shape and out["arr"].dtype == little
    np.testing.assert_array_equal(out["arr"], arr)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"s": {1, 2}}, r"payload\['s'\]: values of type set"),
        ({"o": np.array([object()], dtype=object)}, r"payload\['o'\]: numpy dtype object"),
        ({"u": np.array(["a"])}, r"payload\['u'\]: numpy dtype <U1"),
        ({"t": np.array(["2024-01-01"], dtype="datetime64[D]")}, r"payload\['t'\]: numpy dtype"),
        ({"d": {1: "x"}}, r"payload\['d'\]: dict keys must be str"),
        ({"l": [1, 2, lambda: 3]}, r"payload\['l'\]\[2\]: values of type function"),
    ],
)
def test_unsupported_values_are_refused_naming_the_field(payload: dict, where: str) -> None:
    with pytest.raises(MessageFormatError, match=where):
        encode("k", payload)


def test_kind_and_payload_shape_checked() -> None:
    with pytest.raises(MessageFormatError, match="kind"):
        encode("", {})
    with pytest.raises(MessageFormatError, match="payload: must be a mapping"):
        encode("k", [1, 2])  # type: ignore[arg-type]


def _header(payload: object, buffers: list[int]) -> bytes:
    return json.dumps({"kind": "k", "payload": payload, "buffers": buffers}).encode()


@pytest.mark.parametrize(
    ("header", "body", "match"),
    [
        (b"not json", b"", "header: not JSON"),
        (json.dumps({"kind": "k"}).encode(), b"", "header: expected keys"),
        (_header({"$d": {}}, [3]), b"ab", "body: 2 bytes, header lists 3"),
        (_header({"$d": {"x": {"$b": 5}}}, [1]), b"a", "bad buffer reference 5"),
        (
            _header({"$d": {"x": {"$a": 0, "dtype": "<i8", "shape": [2]}}}, [8]),
            b"a" * 8,
            "8 bytes do not hold",
        ),
        (
            _header({"$d": {"x": {"$a": 0, "dtype": "|O", "shape": [1]}}}, [8]),
            b"a" * 8,
            "dtype object is not allowed",
        ),
        (_header({"$d": {"x": {"$evil": 1}}}, []), b"", "unknown tagged value"),
        (  # an empty array numpy cannot shape: an error, not a ValueError from numpy
            _header({"$d": {"x": {"$a": 0, "dtype": "<i8", "shape": [0, 10**23]}}}, [0]),
            b"",
            "numpy cannot make an array of shape",
        ),
        (_header([1, 2], []), b"", "payload: must decode to a dict"),
    ],
)
def test_malformed_headers_raise_message_format_error(
    header: bytes, body: bytes, match: str
) -> None:
    with pytest.raises(MessageFormatError, match=match):
        decode(header, body)


def test_deep_nesting_is_bounded() -> None:
    deep: dict = {}
    cur = deep
    for _ in range(100):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(MessageFormatError, match="nested deeper"):
        encode("k", deep)
