"""Appendable named arrays in HDF5 and their lazy reader."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from qhil.records import ArrayDataError, RecordValueError, RunStore
from qhil.records.arrays import chunk_rows


def test_rows_of_any_shape_and_structured_dtypes(store: RunStore) -> None:
    event = np.dtype([("channel", "u1"), ("time_ps", "<i8")])
    rng = np.random.default_rng(3)
    events = np.zeros(50, dtype=event)
    events["channel"] = rng.integers(1, 5, 50)
    events["time_ps"] = np.cumsum(rng.integers(1, 10**6, 50))
    images = rng.normal(size=(3, 4, 5))
    with store.start_run("test.arrays") as run:
        run.append("raw/events", events[:20])
        run.append("raw/events", events[20:])
        run.append("hist/2d", images[:1])
        run.append("hist/2d", images[1:])
        run.append("flags", np.array([True, False]))
        run.append("flags", True)
        run.append("raw/empty_start", np.zeros(0, dtype=np.int32))
        run.append("raw/empty_start", np.arange(3, dtype=np.int16))  # safe cast to int32
    record = store.get(run.run_id)
    np.testing.assert_array_equal(record.arrays["raw/events"], events)
    np.testing.assert_array_equal(record.arrays["hist/2d"], images)
    np.testing.assert_array_equal(record.arrays["flags"], [True, False, True])
    np.testing.assert_array_equal(record.arrays["raw/empty_start"], [0, 1, 2])
    assert record.arrays["raw/empty_start"].dtype == np.int32
    assert record.array_index["hist/2d"].shape == (3, 4, 5)
    assert record.array_index["raw/events"].dtype == str(event)
    assert sorted(record.arrays) == ["flags", "hist/2d", "raw/empty_start", "raw/events"]


def test_read_slices_and_blocks(store: RunStore) -> None:
    data = np.arange(10_000, dtype=np.float32)
    with store.start_run("test.arrays") as run:
        for block in np.split(data, 10):
            run.append("x", block)
    arrays = store.get(run.run_id).arrays
    np.testing.assert_array_equal(arrays.read("x", 2500, 2600), data[2500:2600])
    np.testing.assert_array_equal(arrays.read("x", -5), data[-5:])
    assert arrays.read("x", 20_000).shape == (0,)
    with arrays:
        blocks = list(arrays.iter_blocks("x", 3000))
        assert arrays["x"].size == data.size  # still open after iterating
    assert [b.size for b in blocks] == [3000, 3000, 3000, 1000]
    np.testing.assert_array_equal(np.concatenate(blocks), data)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), r"rows of shape \(3,\) were appended before"),
        (np.zeros(3, dtype=np.int32), np.zeros(3, dtype=np.float64), "cannot append float64"),
        (np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.uint64), "cannot append uint64"),
    ],
)
def test_mismatched_blocks_are_refused(
    store: RunStore, first: np.ndarray, second: np.ndarray, message: str
) -> None:
    with store.start_run("test.arrays") as run:
        run.append("a", first)
        with pytest.raises(RecordValueError, match=message):
            run.append("a", second)
    assert store.get(run.run_id).array_index["a"].shape[0] == first.shape[0]


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/", "sp ace", "é", "../up"])
def test_bad_names_are_refused(store: RunStore, name: str) -> None:
    with store.start_run("test.arrays") as run, pytest.raises(RecordValueError, match="array name"):
        run.append(name, np.arange(3))


def test_name_clash_between_array_and_group(store: RunStore) -> None:
    with store.start_run("test.arrays") as run:
        run.append("raw", np.arange(3))
        with pytest.raises(RecordValueError, match="'raw' is already an array"):
            run.append("raw/tags", np.arange(3))
        run.append("hist/a", np.arange(3))
        with pytest.raises(RecordValueError, match="group"):
            run.append("hist", np.arange(3))


@pytest.mark.parametrize(
    "data", [np.array(["a", "b"]), np.array([object()]), np.array(["2026-01-01"], "M8[D]")]
)
def test_unstorable_dtypes_are_refused(store: RunStore, data: np.ndarray) -> None:
    with store.start_run("test.arrays") as run, pytest.raises(RecordValueError, match="dtype"):
        run.append("x", data)


def test_reading_a_live_run_sees_committed_rows(store: RunStore) -> None:
    with store.start_run("test.arrays") as run:
        run.append("x", np.arange(5))
        live = store.get(run.run_id)
        np.testing.assert_array_equal(live.arrays["x"], np.arange(5))  # writer holds the file
        run.append("x", np.arange(5, 8))
        np.testing.assert_array_equal(live.arrays["x"], np.arange(5))  # the snapshot it read
        np.testing.assert_array_equal(run.record().arrays["x"], np.arange(8))


def test_reader_trusts_the_index_not_the_dataset_length(store: RunStore) -> None:
    with store.start_run("test.arrays") as run:
        run.append("x", np.arange(10))
    record = store.get(run.run_id)
    assert record.data_path is not None
    # as if a crash had resized and written past the last committed append
    with h5py.File(record.data_path, "a") as f:
        f["x"].resize(15, axis=0)
        f["x"][10:] = 0
    np.testing.assert_array_equal(store.get(run.run_id).arrays["x"], np.arange(10))
    # and a file holding fewer rows than the index promises is an error, not silence
    with h5py.File(record.data_path, "a") as f:
        f["x"].resize(4, axis=0)
    with pytest.raises(ArrayDataError, match="has 4 rows, the index committed 10"):
        _ = store.get(run.run_id).arrays["x"]


def test_missing_file_and_unknown_array(store: RunStore) -> None:
    with store.start_run("test.arrays") as run:
        run.append("x", np.arange(3))
    record = store.get(run.run_id)
    with pytest.raises(KeyError, match="has no array 'y' \\(arrays: x\\)"):
        _ = record.arrays["y"]
    assert record.data_path is not None
    record.data_path.unlink()
    with pytest.raises(ArrayDataError, match="is missing"):
        _ = record.arrays["x"]


def test_file_is_self_describing(store: RunStore) -> None:
    with store.start_run("calibration.delay") as run:
        run.append("x", np.arange(3))
    record = store.get(run.run_id)
    assert record.data_path is not None
    with h5py.File(record.data_path, "r") as f:
        assert f.attrs["run_id"] == run.run_id
        assert f.attrs["kind"] == "calibration.delay"


def test_compression_option(store: RunStore) -> None:
    with store.start_run("test.arrays") as run:
        run.append("z", np.zeros(100_000, dtype=np.int64), compression="gzip")
        run.append("z", np.zeros(10, dtype=np.int64))
    record = store.get(run.run_id)
    assert record.data_path is not None
    with h5py.File(record.data_path, "r") as f:
        assert f["z"].compression == "gzip"
    assert record.arrays["z"].shape == (100_010,)


@pytest.mark.parametrize(
    ("first_rows", "row_bytes", "expected"),
    [(1, 8, 2048), (10**6, 8, 131_072), (5000, 8, 5000), (1, 4 * 2**20, 1)],
)
def test_chunk_size_between_16_kib_and_1_mib(
    first_rows: int, row_bytes: int, expected: int
) -> None:
    assert chunk_rows(first_rows, row_bytes) == expected


def test_threads_share_one_run(store: RunStore) -> None:
    import threading

    per_thread, threads = 40, 4
    with store.start_run("test.arrays") as run:

        def work(t: int) -> None:
            for i in range(per_thread):
                start = (t * per_thread + i) * 100
                run.append("x", np.arange(start, start + 100))
                run.log_result(f"thread_{t}", i)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    record = store.get(run.run_id)
    x = record.arrays["x"]
    assert record.array_index["x"].appends == per_thread * threads
    # blocks arrive in any order, but each whole and each exactly once
    blocks = x.reshape(-1, 100)
    assert np.all(np.diff(blocks, axis=1) == 1) and np.all(blocks[:, 0] % 100 == 0)
    np.testing.assert_array_equal(np.sort(x), np.arange(per_thread * threads * 100))
    assert record.results == {f"thread_{t}": per_thread - 1 for t in range(threads)}
