"""Run-record benchmark: what recording costs a running experiment.

Measured, in a fresh temporary data directory:

* ``start_run`` + ``finish`` of an empty run (SQLite insert, owner lock, heartbeat thread);
* ``log_result`` (one short SQLite write transaction);
* ``append`` of a small block (1,000 int64 time tags: HDF5 resize + write + flush, then
  the committed row count in SQLite) — the per-append fixed cost;
* ``append`` of large blocks (2^20 int64 tags = 8 MiB): sustained tags/s and MB/s;
* ``get`` of a run and ``list_runs(limit=20)`` in a store of ``--runs`` runs.

Medians of several repeats. ``--json`` prints one JSON object.
Run: ``.venv/bin/python benchmarks/records.py [--json] [--repeats 5] [--runs 1000]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qhil.records import RunStore


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def one_repeat(root: Path, runs: int) -> dict[str, float]:
    store = RunStore(root, heartbeat_interval_s=5.0)
    out: dict[str, float] = {}

    def empty_run() -> None:
        store.start_run("bench.empty").finish()

    empty_run()  # first run pays for software_info() (git subprocess): not a per-run cost
    out["start_finish_s"] = per_call(empty_run, 20)

    run = store.start_run("bench.writes")
    out["log_result_s"] = per_call(lambda: run.log_result("qber", 0.02), 200)
    small = np.arange(1000, dtype=np.int64)
    run.append("small", small)
    out["append_small_s"] = per_call(lambda: run.append("small", small), 200)
    big = np.arange(1 << 20, dtype=np.int64)
    run.append("big", big)
    blocks = 24
    seconds = per_call(lambda: run.append("big", big), blocks)
    out["append_big_tags_per_s"] = big.size / seconds
    out["append_big_mb_per_s"] = big.nbytes / seconds / 1e6
    run.finish()

    for _ in range(runs - 2 - 20):  # the runs so far: one empty + 20 timed + "writes"
        with store.start_run("bench.fill", seed=1, parameters={"mu": 0.5}) as filler:
            filler.log_results(qber=0.02, key_bits=4096)
    out["get_s"] = per_call(lambda: store.get(run.run_id), 200)
    out["list_20_of_n_s"] = per_call(lambda: store.list_runs(limit=20), 50)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1000, help="runs in the store for get/list")
    args = parser.parse_args()

    samples: list[dict[str, float]] = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            samples.append(one_repeat(Path(tmp), args.runs))
    medians: dict[str, Any] = {
        key: statistics.median(s[key] for s in samples) for key in samples[0]
    }
    medians["repeats"] = args.repeats
    medians["runs_in_store"] = args.runs
    if args.json:
        print(json.dumps(medians))
        return
    rows = [
        ("start_run + finish (empty run)", f"{medians['start_finish_s'] * 1e3:.2f} ms"),
        ("log_result", f"{medians['log_result_s'] * 1e3:.3f} ms"),
        ("append 1,000 int64 (flush + index)", f"{medians['append_small_s'] * 1e3:.2f} ms"),
        (
            "append 8 MiB blocks",
            f"{medians['append_big_tags_per_s'] / 1e6:.1f} M tags/s "
            f"({medians['append_big_mb_per_s']:.0f} MB/s)",
        ),
        (f"get (store of {args.runs} runs)", f"{medians['get_s'] * 1e3:.2f} ms"),
        (f"list_runs(limit=20) of {args.runs}", f"{medians['list_20_of_n_s'] * 1e3:.2f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"run records, median of {args.repeats} repeats")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
