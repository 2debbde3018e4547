"""Turn parameters, profiles and results into plain JSON values, naming what does not fit."""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any

import numpy as np
from pydantic import BaseModel

from qhil.records.clock import to_iso
from qhil.records.errors import RecordValueError

Scalar = bool | int | float | str | None
JsonValue = Any  # nested dict/list/str/int/float/bool/None

# A parameter array larger than this is raw data: it belongs in run.append().
MAX_INLINE_ARRAY = 10_000


def to_jsonable(value: object, where: str) -> JsonValue:
    """A JSON-representable copy of ``value``; ``where`` names it in errors (``parameters.mu``)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), where)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(mode="json"), where)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf" or value.size > MAX_INLINE_ARRAY:
            raise RecordValueError(
                f"{where}: numpy array of dtype {value.dtype} and size {value.size} is not a "
                f"parameter (numeric, at most {MAX_INLINE_ARRAY} elements); "
                "store bulk data with run.append()"
            )
        return value.tolist()
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordValueError(f"{where}: key {key!r} is not a string")
            out[key] = to_jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [to_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise RecordValueError(
        f"{where}: a value of type {type(value).__name__} cannot be recorded "
        "(use numbers, strings, booleans, None, lists, dicts, paths, datetimes, enums)"
    )


def to_scalar(value: object, where: str) -> Scalar:
    """A result value: one number, string, boolean or None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise RecordValueError(
        f"{where}: results are scalars (number, string, bool, None), "
        f"got {type(value).__name__}; store arrays with run.append()"
    )


def dumps(value: JsonValue) -> str:
    """Compact JSON for the database; NaN and infinities survive (Python's JSON dialect)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def canonical_sha256(value: JsonValue) -> str:
    """SHA-256 of sorted-key JSON, so equal dicts hash equal whatever their key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def strict_json(value: JsonValue) -> JsonValue:
    """Replace non-finite floats by the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.

    Exports must be valid JSON for any parser; the database keeps the floats.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict_json(item) for item in value]
    return value
