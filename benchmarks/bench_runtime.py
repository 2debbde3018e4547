"""Bench runtime benchmark: bringing a bench up and down, parallel against one-by-one.

A profile of ``--nodes`` nodes, each with a TSL-570 laser (TCP) and an EPC-400
polarization controller (pty), all emulated. Measured per repeat:

* ``emulators_start_s``: EmulatedBench.start (host thread, TCP servers, ptys);
* ``connect_parallel_s``: Bench.connect (every instrument at once);
* ``connect_sequential_s``: the same drivers connected one after another, for comparison;
* ``configure_s``: Bench.configure (one wavelength and four voltages per node);
* ``identities_s``: Bench.identities;
* ``close_s``: Bench.close.

Medians of several repeats. ``--json`` prints one JSON object.
Run: ``.venv/bin/python benchmarks/bench_runtime.py [--json] [--repeats 5] [--nodes 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.profile import Profile


def make_profile(nodes: int) -> Profile:
    return Profile.model_validate(
        {
            "bench": {"name": f"bench-{nodes}-nodes", "seed": 1},
            "nodes": {
                f"n{k}": {
                    "instruments": {
                        "laser": {
                            "model": "santec.tsl570",
                            "settings": {"wavelength_nm": 1550.5},
                        },
                        "polctrl": {
                            "model": "ozoptics.epc400",
                            "settings": {"voltages_mv": [10, 20, 30, 40]},
                        },
                    }
                }
                for k in range(nodes)
            },
        }
    )


async def one_repeat(profile: Profile) -> dict[str, float]:
    out: dict[str, float] = {}
    t = time.perf_counter()
    emulated = EmulatedBench(profile).start()
    out["emulators_start_s"] = time.perf_counter() - t
    try:
        bench = Bench(profile, emulated.addresses())
        t = time.perf_counter()
        await bench.connect()
        out["connect_parallel_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await bench.configure()
        out["configure_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await bench.identities()
        out["identities_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await bench.close()
        out["close_s"] = time.perf_counter() - t

        one_by_one = Bench(profile, emulated.addresses())
        t = time.perf_counter()
        for m in one_by_one.instruments:
            assert m.driver is not None
            await m.driver.connect()
        out["connect_sequential_s"] = time.perf_counter() - t
        await one_by_one.close()
    finally:
        emulated.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=4)
    args = ap.parse_args()
    profile = make_profile(args.nodes)
    runs = [asyncio.run(one_repeat(profile)) for _ in range(args.repeats)]
    result: dict[str, Any] = {
        "instruments": len(profile.instruments()),
        "repeats": args.repeats,
        **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"bench runtime, {result['instruments']} emulated instruments, median of {args.repeats}")
    for k, v in result.items():
        if k.endswith("_s"):
            print(f"  {k:<24} {v * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
