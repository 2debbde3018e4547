"""Raw data of a run in HDF5: appendable named arrays, and their lazy reader.

One HDF5 file per run. Each named array is a chunked dataset resizable along
its first axis; every append resizes, writes and flushes the file, so a process
killed right after an append leaves a readable file holding everything appended
so far. The file is written with HDF5 1.8-format superblocks on purpose: the
newer ones mark a file "open for writing" and refuse to open it again after a
crash until ``h5clear`` is run.

Readers never trust a dataset's length: the index (SQLite) records the rows
committed after each flush, and a reader returns exactly those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhil.records.errors import ArrayDataError, RecordValueError
from qhil.records.models import ArrayInfo

# Superblock versions without the "open for write" flag (see module docstring).
LIBVER = ("earliest", "v108")

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_NAME_RE = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")

# Chunks between 16 KiB and 1 MiB: big enough for fast appends of tag blocks,
# small enough that a one-number-per-block array does not allocate a megabyte.
_MIN_CHUNK_BYTES = 16 * 1024
_MAX_CHUNK_BYTES = 1024 * 1024


def check_array_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RecordValueError(
            f"array name {name!r}: use '/'-separated parts of letters, digits, '_', '.', '-' "
            "(e.g. 'raw/tags')"
        )


def dtype_to_text(dtype: np.dtype[Any]) -> str:
    return json.dumps(np.lib.format.dtype_to_descr(dtype))


def dtype_from_text(text: str) -> np.dtype[Any]:
    descr = json.loads(text)
    if isinstance(descr, list):  # structured: JSON made the (name, type) tuples lists
        descr = [tuple(field) for field in descr]
    return np.lib.format.descr_to_dtype(descr)


def as_rows(name: str, data: ArrayLike) -> NDArray[Any]:
    """The block to append: at least 1-D, a storable dtype."""
    block = np.asarray(data)
    if block.ndim == 0:
        block = block.reshape(1)
    plain_void = block.dtype.kind == "V" and block.dtype.names is None
    if block.dtype.hasobject or block.dtype.kind in "OUSMm" or plain_void:
        raise RecordValueError(
            f"array {name!r}: dtype {block.dtype} cannot be stored; use numeric, boolean or "
            "structured numeric dtypes"
        )
    return block


def chunk_rows(first_rows: int, row_bytes: int) -> int:
    wanted = max(first_rows * row_bytes, _MIN_CHUNK_BYTES)
    return max(1, min(wanted, _MAX_CHUNK_BYTES) // max(row_bytes, 1))


class ArrayWriter:
    """Appends blocks to named arrays of one run's HDF5 file. Not thread-safe: the
    :class:`~qhil.records.run.Run` that owns it serialises calls."""

    def __init__(self, path: Path, attrs: Mapping[str, str]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: h5py.File | None = h5py.File(path, "x", libver=LIBVER)
        for key, value in attrs.items():
            self._file.attrs[key] = value
        self._file.flush()

    def append(
        self, name: str, block: NDArray[Any], compression: str | None = None
    ) -> tuple[int, bool]:
        """Write ``block`` after the rows already there; returns (rows now, created)."""
        file = self._require_open()
        created = name not in file
        if created:
            self._check_no_clash(file, name)
            row_bytes = block.dtype.itemsize * int(np.prod(block.shape[1:], dtype=np.int64))
            rows = chunk_rows(block.shape[0], row_bytes)
            dataset = file.create_dataset(
                name,
                shape=(0, *block.shape[1:]),
                maxshape=(None, *block.shape[1:]),
                dtype=block.dtype,
                chunks=(rows, *block.shape[1:]),
                compression=compression,
            )
        else:
            dataset = file[name]
            if not isinstance(dataset, h5py.Dataset):
                raise RecordValueError(f"array {name!r}: a group of arrays has that name")
            if block.shape[1:] != dataset.shape[1:]:
                raise RecordValueError(
                    f"array {name!r}: rows of shape {dataset.shape[1:]} were appended before, "
                    f"this block has rows of shape {block.shape[1:]}"
                )
            if not np.can_cast(block.dtype, dataset.dtype, "safe"):
                raise RecordValueError(
                    f"array {name!r}: holds {dataset.dtype}, cannot append {block.dtype} "
                    "without losing values"
                )
        start = dataset.shape[0]
        if block.shape[0]:
            dataset.resize(start + block.shape[0], axis=0)
            dataset[start:] = block
        file.flush()
        return start + block.shape[0], created

    def dtype_of(self, name: str) -> np.dtype[Any]:
        dataset = self._require_open()[name]
        assert isinstance(dataset, h5py.Dataset)
        return dataset.dtype

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise ArrayDataError(f"{self.path}: the run's array file is closed")
        return self._file

    @staticmethod
    def _check_no_clash(file: h5py.File, name: str) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if isinstance(file.get(prefix), h5py.Dataset):
                raise RecordValueError(f"array {name!r}: {prefix!r} is already an array")
        if isinstance(file.get(name), h5py.Group):
            raise RecordValueError(f"array {name!r}: already a group of arrays")


class RunArrays(Mapping[str, NDArray[Any]]):
    """The named arrays of one run, read on demand.

    Listing names, shapes and dtypes needs only the index; the HDF5 file is
    opened when data is read, and closed again unless the accessor is used as a
    context manager (``with record.arrays as arrays: ...`` keeps it open).
    Readers see exactly the rows the run had committed, also while it is still
    running or after its process was killed.
    """

    def __init__(self, run_id: str, path: Path | None, index: Mapping[str, ArrayInfo]) -> None:
        self.run_id = run_id
        self.path = path
        self._index = dict(index)
        self._file: h5py.File | None = None

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def info(self, name: str) -> ArrayInfo:
        try:
            return self._index[name]
        except KeyError:
            known = ", ".join(sorted(self._index)) or "none"
            raise KeyError(f"run {self.run_id} has no array {name!r} (arrays: {known})") from None

    def read(self, name: str, start: int = 0, stop: int | None = None) -> NDArray[Any]:
        """Rows ``start:stop`` of a committed array (all of them by default)."""
        rows = self.info(name).shape[0]
        begin, end, _ = slice(start, stop).indices(rows)
        if self._file is not None:
            return self._read(self._file, name, rows, begin, end)
        with self._open() as file:
            return self._read(file, name, rows, begin, end)

    def iter_blocks(self, name: str, rows_per_block: int) -> Iterator[NDArray[Any]]:
        """Committed rows in blocks, for arrays too large to read at once."""
        if rows_per_block <= 0:
            raise ValueError(f"rows_per_block must be positive, got {rows_per_block}")
        total = self.info(name).shape[0]
        opened_here = self._file is None
        if opened_here:
            self.__enter__()
        try:
            for begin in range(0, total, rows_per_block):
                yield self.read(name, begin, min(begin + rows_per_block, total))
        finally:
            if opened_here:
                self.__exit__(None, None, None)

    def __enter__(self) -> RunArrays:
        if self._file is None:
            self._file = self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> h5py.File:
        if self.path is None:
            raise ArrayDataError(f"run {self.run_id} has no array file")
        try:
            try:
                # no HDF5 file locking: the writer may still hold the file, and we only
                # read rows it has flushed and committed
                return h5py.File(self.path, "r", locking=False)
            except OSError as exc:
                if "locking flag" not in str(exc):
                    raise
                # the writer is this very process: HDF5 shares its open file, with its flags
                return h5py.File(self.path, "r")
        except FileNotFoundError:
            raise ArrayDataError(f"run {self.run_id}: array file {self.path} is missing") from None
        except OSError as exc:
            raise ArrayDataError(f"run {self.run_id}: cannot open {self.path}: {exc}") from None

    def _read(self, file: h5py.File, name: str, rows: int, begin: int, end: int) -> NDArray[Any]:
        dataset = file.get(name)
        if not isinstance(dataset, h5py.Dataset):
            raise ArrayDataError(f"run {self.run_id}: {self.path} has no dataset {name!r}")
        if dataset.shape[0] < rows:
            raise ArrayDataError(
                f"run {self.run_id}: {self.path}:{name} has {dataset.shape[0]} rows, "
                f"the index committed {rows}"
            )
        if end <= begin:
            return np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)
        return np.asarray(dataset[begin:end])
