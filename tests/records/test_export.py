"""``qhil runs export ID --format csv|json``: a run's arrays and results, read back exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from qhil.cli import main
from qhil.records import RunStore
from qhil.records.export import columns

STEP = np.dtype([("index", "<i8"), ("volts", "<i8", (3,)), ("e_z", "<f8"), ("ok", "?")])


def _run(store: RunStore) -> tuple[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    steps = np.zeros(5, dtype=STEP)
    steps["index"] = np.arange(5)
    steps["volts"] = rng.integers(-5000, 5000, size=(5, 3))
    steps["e_z"] = rng.random(5) / 3  # floats with full precision
    steps["ok"] = [True, False, True, True, False]
    arrays = {
        "raw/tags": rng.integers(0, 2**62, size=1000),
        "qber_per_block": np.array([0.01, np.nan, np.inf, -np.inf]),
        "voltages_mv": np.array([[1, -2, 3, 4]]),
        "steps": steps,
    }
    with store.start_run("bb84", profile={"bench": {"name": "t"}}, seed=3) as run:
        for name, data in arrays.items():
            run.append(name, data)
        run.log_results(qber=0.021, secret_bits=4096, label="x", units={"qber": "1"})
        run.log_result("key_rate_bps", 1.5e3)
    return run.run_id, arrays


def _export(store: RunStore, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["runs", "export", *args, "--data-dir", str(store.data_dir)])
    return r.exit_code, r.output


def test_columns_of_plain_and_structured_arrays() -> None:
    assert list(columns("raw/tags", np.zeros(3))) == ["tags"]
    assert list(columns("v", np.zeros((2, 2)))) == ["v_0", "v_1"]
    assert list(columns("steps", np.zeros(2, STEP))) == [
        "index",
        "volts_0",
        "volts_1",
        "volts_2",
        "e_z",
        "ok",
    ]


def test_json_export_holds_every_array_and_result(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    run_id, arrays = _run(store)
    code, out = _export(store, run_id, "--format", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["run"]["run_id"] == run_id and doc["run"]["results"]["qber"] == 0.021
    assert doc["run"]["result_units"] == {"qber": "1"}
    got = doc["arrays"]
    assert set(got) == set(arrays)
    assert got["raw/tags"]["data"]["tags"] == arrays["raw/tags"].tolist()  # int64 exact
    assert got["qber_per_block"]["data"]["qber_per_block"] == [0.01, "NaN", "Infinity", "-Infinity"]
    steps = got["steps"]
    assert steps["shape"] == [5] and steps["columns"][:2] == ["index", "volts_0"]
    assert steps["data"]["volts_2"] == arrays["steps"]["volts"][:, 2].tolist()
    assert steps["data"]["e_z"] == arrays["steps"]["e_z"].tolist()
    assert steps["data"]["ok"] == [True, False, True, True, False]
    # --out writes the same document to a file
    code, out = _export(store, run_id, "--format", "json", "--out", str(tmp_path / "r.json"))
    assert code == 0 and out.strip() == str(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == doc


def test_csv_export_reads_back_exactly(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    run_id, arrays = _run(store)
    folder = tmp_path / "csv"
    code, out = _export(store, run_id[:15], "--format", "csv", "--out", str(folder))
    assert code == 0, out
    names = sorted(Path(p).name for p in out.split())
    assert names == sorted(
        [
            "results.csv",
            "run.json",
            "raw__tags.csv",
            "qber_per_block.csv",
            "voltages_mv.csv",
            "steps.csv",
        ]
    )
    with (folder / "results.csv").open() as fh:
        rows = {r["name"]: (r["value"], r["unit"]) for r in csv.DictReader(fh)}
    assert rows["qber"] == ("0.021", "1") and rows["secret_bits"] == ("4096", "")
    assert rows["label"] == ("x", "")
    tags = np.loadtxt(folder / "raw__tags.csv", dtype=np.int64, skiprows=1)
    np.testing.assert_array_equal(tags, arrays["raw/tags"])
    q = np.loadtxt(folder / "qber_per_block.csv", skiprows=1)
    np.testing.assert_array_equal(q, arrays["qber_per_block"])  # nan, inf read back
    steps = np.genfromtxt(folder / "steps.csv", delimiter=",", names=True)
    assert steps.dtype.names == ("index", "volts_0", "volts_1", "volts_2", "e_z", "ok")
    np.testing.assert_array_equal(steps["e_z"], arrays["steps"]["e_z"])  # bit-exact floats
    np.testing.assert_array_equal(steps["volts_1"], arrays["steps"]["volts"][:, 1])
    np.testing.assert_array_equal(steps["ok"], arrays["steps"]["ok"].astype(int))
    assert json.loads((folder / "run.json").read_text())["run_id"] == run_id
    assert not list(folder.glob(".*"))  # no temporary file left


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "data")
    run_id, _ = _run(store)
    code, out = _export(store, "nope", "--format", "json")
    assert code == 2 and out.count("\n") == 1 and out.startswith("qhil: error: no run 'nope'")
    code, out = _export(store, run_id, "--format", "xml")
    assert code == 2 and "'--format'" in out
