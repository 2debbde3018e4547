"""``qhil runs export``: a run's arrays and results for notebooks and other tools.

* JSON: one object, ``{"run": <everything qhil runs show --json gives>, "arrays": {name:
  {"dtype", "shape", "columns", "data": {column: [values]}}}}``; strict JSON (non-finite
  floats as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``).
* CSV: a folder with ``results.csv`` (name, value, unit), ``run.json`` (the record without
  arrays: profile, identities, parameters, software) and one ``<array>.csv`` per array
  (``/`` in a name becomes ``__``), a header line of column names, one line per row.

Columns: a 1-D array is one column named after it; each further axis flattens into
``name_0``, ``name_1``...; a structured array gives one column per field (flattened alike).
Floats are written with the shortest text that reads back to the same float.
Keys never appear: a run record holds only key references (id, length, SHA-256).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.records.errors import RecordError
from qhil.records.formatting import run_to_json_dict
from qhil.records.jsonable import strict_json
from qhil.records.models import RunRecord

#: Rows converted to text at a time (bounds memory for long raw arrays).
CSV_BLOCK_ROWS = 1 << 18


def columns(name: str, data: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
    """The array as named 1-D columns (see the module docstring)."""
    base = name.rsplit("/", 1)[-1]
    fields = data.dtype.names
    parts = [(f, data[f]) for f in fields] if fields else [(base, data)]
    out: dict[str, npt.NDArray[Any]] = {}
    for label, part in parts:
        if part.ndim == 1:
            out[label] = part
            continue
        flat = part.reshape(part.shape[0], int(np.prod(part.shape[1:])))
        for i in range(flat.shape[1]):
            out[f"{label}_{i}"] = flat[:, i]
    return out


def _text(col: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    if col.dtype == np.bool_:
        col = col.astype(np.uint8)
    return col.astype(str)  # floats: shortest round-trip repr (numpy)


def _csv_lines(cols: dict[str, npt.NDArray[Any]]) -> str:
    text = [_text(c) for c in cols.values()]
    if not text or not len(text[0]):
        return ""
    joined = text[0]
    for t in text[1:]:
        joined = np.char.add(np.char.add(joined, ","), t)
    return "".join(f"{line}\n" for line in joined.tolist())


def _file_name(name: str) -> str:
    return name.replace("/", "__") + ".csv"


def export_json(record: RunRecord) -> dict[str, Any]:
    """The run and all its arrays as one strict-JSON-ready dict."""
    arrays: dict[str, Any] = {}
    with record.arrays as store:
        for name in store:
            data = store[name]
            cols = columns(name, data)
            arrays[name] = {
                "dtype": str(data.dtype),
                "shape": list(data.shape),
                "columns": list(cols),
                "data": {k: strict_json(v.tolist()) for k, v in cols.items()},
            }
    return {"run": run_to_json_dict(record), "arrays": arrays}


def write_json(record: RunRecord, out: Path | None) -> str:
    """The JSON text; written to ``out`` as well when given (returns the path then)."""
    text = json.dumps(export_json(record), allow_nan=False)
    if out is None:
        return text
    _write_atomic(out, text)
    return str(out)


def write_csv(record: RunRecord, folder: Path) -> list[Path]:
    """The CSV folder (see the module docstring); returns the files written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordError(f"export folder {folder}: cannot create it: {exc.strerror}") from None
    written: list[Path] = []
    meta = run_to_json_dict(record)
    results = folder / "results.csv"
    with _opened(results) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["name", "value", "unit"])
        for k, v in meta["results"].items():
            w.writerow([k, "" if v is None else v, record.result_units.get(k, "")])
    written.append(results)
    written.append(_write_atomic(folder / "run.json", json.dumps(meta, indent=2) + "\n"))
    with record.arrays as arrays:  # one open file for all of them
        for name in arrays:
            path = folder / _file_name(name)
            with _opened(path) as fh:
                fh.write(",".join(columns(name, arrays.read(name, 0, 0))) + "\n")
                for block in arrays.iter_blocks(name, CSV_BLOCK_ROWS):
                    fh.write(_csv_lines(columns(name, block)))
            written.append(path)
    return written


class _opened:
    """A text file written under a temporary name and moved into place when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def __enter__(self) -> Any:
        try:
            self.fh = open(self.tmp, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise RecordError(f"export: cannot write {self.path}: {exc.strerror}") from None
        return self.fh

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.fh.close()
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
            return
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:  # e.g. --out names a folder: no traceback, no temp left
            self.tmp.unlink(missing_ok=True)
            raise RecordError(f"export: cannot write {self.path}: {exc.strerror}") from None


def _write_atomic(path: Path, text: str) -> Path:
    with _opened(path) as fh:
        fh.write(text)
    return path


def export_command(record: RunRecord, fmt: str, out: str | Path | None) -> str:
    """What ``qhil runs export`` prints: the JSON itself (no ``out``), else the paths
    written (CSV: ``out`` or ``./<run_id>/``)."""
    if fmt == "json":
        return write_json(record, None if out is None else Path(out))
    folder = Path(out) if out is not None else Path(record.run_id)
    return "\n".join(str(p) for p in write_csv(record, folder))
