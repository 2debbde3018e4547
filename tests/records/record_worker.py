"""Child processes for the run-store tests (run as a script, not collected by pytest).

    python record_worker.py crash  STORE BLOCKS     start a run, append BLOCKS blocks,
                                                    print the run id, then wait to be killed
    python record_worker.py stream STORE            append blocks forever, printing the id first
    python record_worker.py write  STORE TAG RUNS GO  print "ready", wait for file GO, then
                                                    write RUNS complete runs

Block ``i`` of array ``raw/tags`` holds ``arange(i * 1000, (i + 1) * 1000)``, so any
committed prefix can be checked exactly.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from qhil.records import RunStore

BLOCK = 1000


def block(i: int) -> np.ndarray:
    return np.arange(i * BLOCK, (i + 1) * BLOCK, dtype=np.int64)


def crash(store: RunStore, blocks: int) -> None:
    run = store.start_run("test.crash", seed=11, parameters={"blocks": blocks})
    for i in range(blocks):
        run.append("raw/tags", block(i))
        run.append("qber", 0.01 * i)
    run.log_result("blocks_done", blocks)
    print(run.run_id, flush=True)
    time.sleep(600)


def stream(store: RunStore) -> None:
    run = store.start_run("test.stream")
    print(run.run_id, flush=True)
    i = 0
    while True:
        run.append("raw/tags", block(i))
        i += 1


def write(store: RunStore, tag: str, runs: int, go: Path) -> None:
    print("ready", flush=True)
    while not go.exists():  # both writers start together, so their writes interleave
        time.sleep(0.005)
    for r in range(runs):
        with store.start_run(f"test.concurrent.{tag}", seed=r, parameters={"tag": tag}) as run:
            run.set_identities({f"{tag}.tagger": f"qhil,worker-{tag},{r},1"})
            for i in range(5):
                run.append("raw/tags", block(i))
                run.log_results(blocks=i + 1, writer=tag)
        print(run.run_id, flush=True)


def main(argv: list[str]) -> None:
    mode, path = argv[1], argv[2]
    store = RunStore(path, heartbeat_interval_s=0.2, stale_after_s=1.0)
    if mode == "crash":
        crash(store, int(argv[3]))
    elif mode == "stream":
        stream(store)
    elif mode == "write":
        write(store, argv[3], int(argv[4]), Path(argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
