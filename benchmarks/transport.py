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


def _serve(n: int, conn: Any, response_time_s: float = 0.0) -> None:
    from qhil.emulators.santec.tsl570 import TSL570Emulator
    from qhil.emulators.server import EmulatorHost

    with EmulatorHost() as host:
        resources = [
            host.add(
                TSL570Emulator(name=f"laser{i}", seed=i, response_time_s=response_time_s)
            ).resource
            for i in range(n)
        ]
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


async def qhil_sequential(resource: str, queries: int, backend: str = "asyncio") -> float:
    async with TSL570.open(resource, socket_backend=backend) as laser:
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
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--concurrent-queries", type=int, default=100)
    ap.add_argument("--response-time-s", type=float, default=1e-3)
    args = ap.parse_args()

    parent, child = mp.Pipe()
    proc = mp.Process(target=_serve, args=(8, child), daemon=True)
    proc.start()
    resources: list[str] = parent.recv()
    try:
        # Interleave the three clients in every repeat, so load changes on a shared
        # machine hit them alike; the overhead is the median of the paired ratios.
        raw, ours, ours_pyvisa = [], [], []
        for _ in range(args.repeats):
            raw.append(raw_pyvisa(resources[0], args.queries))
            ours.append(asyncio.run(qhil_sequential(resources[0], args.queries)))
            ours_pyvisa.append(asyncio.run(qhil_sequential(resources[0], args.queries, "pyvisa")))
    finally:
        parent.send("stop")
        proc.join(5)
    # Concurrent polling against emulators that take a real instrument's processing time
    # per reply (realtime mode, 1 ms), served from their own process.
    parent, child = mp.Pipe()
    proc = mp.Process(target=_serve, args=(8, child, args.response_time_s), daemon=True)
    proc.start()
    slow: list[str] = parent.recv()
    try:
        conc: dict[int, float] = {}
        for n in (1, 4, 8):
            conc[n] = statistics.median(
                asyncio.run(qhil_concurrent(slow[:n], args.concurrent_queries))
                for _ in range(max(3, args.repeats // 3))
            )
    finally:
        parent.send("stop")
        proc.join(5)
    raw_s, ours_s = statistics.median(raw), statistics.median(ours)
    ours_pv = statistics.median(ours_pyvisa)
    result = {
        "queries": args.queries,
        "repeats": args.repeats,
        "raw_pyvisa_us_per_query": raw_s * 1e6,
        "qhil_us_per_query": ours_s * 1e6,
        "raw_pyvisa_queries_per_s": 1 / raw_s,
        "qhil_queries_per_s": 1 / ours_s,
        "qhil_overhead_pct": (statistics.median(o / r for o, r in zip(ours, raw, strict=True)) - 1)
        * 100,
        "qhil_via_pyvisa_us_per_query": ours_pv * 1e6,
        "qhil_via_pyvisa_overhead_pct": (
            statistics.median(o / r for o, r in zip(ours_pyvisa, raw, strict=True)) - 1
        )
        * 100,
        "concurrent_wall_s": {str(n): t for n, t in conc.items()},
        "concurrent_ratio_to_one": {str(n): t / conc[1] for n, t in conc.items()},
        "queries_per_instrument_concurrent": args.concurrent_queries,
        "emulated_response_time_s": args.response_time_s,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'measure':<44} {'median':>12}")
    print(f"{'raw pyvisa *IDN? round trip (us)':<44} {result['raw_pyvisa_us_per_query']:>12.1f}")
    print(f"{'qhil driver *IDN? round trip (us)':<44} {result['qhil_us_per_query']:>12.1f}")
    print(f"{'qhil overhead vs raw pyvisa (%)':<44} {result['qhil_overhead_pct']:>12.1f}")
    print(f"{'qhil via pyvisa socket session (us)':<44} {ours_pv * 1e6:>12.1f}")
    print(f"{'  overhead vs raw pyvisa (%)':<44} {result['qhil_via_pyvisa_overhead_pct']:>12.1f}")
    for n in (1, 4, 8):
        print(
            f"{f'{n} instrument(s) polled concurrently (s)':<44} {conc[n]:>12.3f}"
            f"   x{conc[n] / conc[1]:.2f} of one"
        )


if __name__ == "__main__":
    main()
