"""Transport benchmark: qhil's async stack vs raw pyvisa, and concurrent polling.

Emulated TSL-570s are served from a separate process (so the client's timings
are not distorted by the emulator sharing its GIL). Measured:

* query round trip (``*IDN?``) through raw pyvisa-py and through qhil
  (async driver, worker thread, lock, parsing) against the same emulator;
  overhead = qhil time / raw time - 1 (target <= 20 %);
* N instruments (1, 4, 8) each queried Q times concurrently: wall time, and its
  ratio to one instrument (target: about 1).

Medians of several repeats. ``--json`` prints one JSON object.
Run: ``.venv/bin/python benchmarks/transport.py [--json] [--queries 2000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

import pyvisa

from qhil.drivers.santec.tsl570 import TSL570


def _serve(n: int, conn: Any) -> None:
    from qhil.emulators.santec.tsl570 import TSL570Emulator
    from qhil.emulators.server import EmulatorHost

    with EmulatorHost() as host:
        resources = [host.add(TSL570Emulator(name=f"laser{i}", seed=i)).resource for i in range(n)]
        conn.send(resources)
        conn.recv()  # wait for "stop"


def raw_pyvisa(resource: str, queries: int) -> float:
    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(resource, write_termination="\r", read_termination="\r", timeout=2000)
    try:
        inst.query("*IDN?")
        t0 = time.perf_counter()
        for _ in range(queries):
            inst.query("*IDN?")
        return (time.perf_counter() - t0) / queries
    finally:
        inst.close()


async def qhil_sequential(resource: str, queries: int) -> float:
    async with TSL570.open(resource) as laser:
        await laser.idn.get()
        t0 = time.perf_counter()
        for _ in range(queries):
            await laser.idn.get()
        return (time.perf_counter() - t0) / queries


async def qhil_concurrent(resources: list[str], queries: int) -> float:
    lasers = [TSL570.open(r) for r in resources]
    await asyncio.gather(*(laser.connect() for laser in lasers))

    async def poll(laser: TSL570) -> None:
        for _ in range(queries):
            await laser.idn.get()

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(poll(laser) for laser in lasers))
        return time.perf_counter() - t0
    finally:
        await asyncio.gather(*(laser.close() for laser in lasers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    parent, child = mp.Pipe()
    proc = mp.Process(target=_serve, args=(8, child), daemon=True)
    proc.start()
    resources: list[str] = parent.recv()
    try:
        raw = [raw_pyvisa(resources[0], args.queries) for _ in range(args.repeats)]
        ours = [
            asyncio.run(qhil_sequential(resources[0], args.queries)) for _ in range(args.repeats)
        ]
        conc: dict[int, float] = {}
        for n in (1, 4, 8):
            q = max(1, args.queries // 4)
            conc[n] = statistics.median(
                asyncio.run(qhil_concurrent(resources[:n], q)) for _ in range(args.repeats)
            )
    finally:
        parent.send("stop")
        proc.join(5)
    raw_s, ours_s = statistics.median(raw), statistics.median(ours)
    result = {
        "queries": args.queries,
        "repeats": args.repeats,
        "raw_pyvisa_us_per_query": raw_s * 1e6,
        "qhil_us_per_query": ours_s * 1e6,
        "raw_pyvisa_queries_per_s": 1 / raw_s,
        "qhil_queries_per_s": 1 / ours_s,
        "qhil_overhead_pct": (ours_s / raw_s - 1) * 100,
        "concurrent_wall_s": {str(n): t for n, t in conc.items()},
        "concurrent_ratio_to_one": {str(n): t / conc[1] for n, t in conc.items()},
        "queries_per_instrument_concurrent": max(1, args.queries // 4),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'measure':<44} {'median':>12}")
    print(f"{'raw pyvisa *IDN? round trip (us)':<44} {result['raw_pyvisa_us_per_query']:>12.1f}")
    print(f"{'qhil driver *IDN? round trip (us)':<44} {result['qhil_us_per_query']:>12.1f}")
    print(f"{'qhil overhead vs raw pyvisa (%)':<44} {result['qhil_overhead_pct']:>12.1f}")
    for n in (1, 4, 8):
        print(
            f"{f'{n} instrument(s) polled concurrently (s)':<44} {conc[n]:>12.3f}"
            f"   x{conc[n] / conc[1]:.2f} of one"
        )


if __name__ == "__main__":
    main()
