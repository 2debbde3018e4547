"""Alice's per-block pattern work in BB84 at the real block size (issue 12), in CPU time.

    .venv/bin/python benchmarks/bb84_pattern_upload.py [--json] [--pulses 8000000]
        [--repeats 5]

Stages, each the median over ``--repeats`` blocks of ``--pulses`` symbols (profile laws:
Z w.p. 1/2, intensities 0.7/0.2/0.1, 5 % revealed), CPU ns per symbol:

* ``draw``: :func:`draw_pattern` on Alice's generator (AES-128-CTR);
* ``upload``: ``Keysight33500B.load_pattern`` + outputs on and off, through a local socket
  to the 33500B emulator in the same process (``EmulatorHost``: its own thread), which
  parses the two DAC blocks, decodes them and sets the world transmitter's pattern; the
  process's CPU time, split into the driver's thread (``time.thread_time``) and the rest;
* ``window_counts``: ``BlockPattern.unrevealed_pulses`` over the block (Alice's tally).

The process's allocator is set as the ``qhil`` command sets it (``qhil.cli.keep_big_allocations``:
big buffers from glibc's heap, not mapped afresh each block); ``--default-malloc`` leaves glibc's
defaults.

Issue 12's budgets per emulated second at 80 MHz: draw <= 0.25 CPU s (3.1 ns/symbol),
encode + transfer + emulator decode + world <= 0.3 CPU s (3.75 ns/symbol).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import numpy as np

from qhil.cli import keep_big_allocations
from qhil.drivers.keysight.ks33500b import Keysight33500B
from qhil.emulators.keysight.ks33500b import Keysight33500BEmulator
from qhil.emulators.server import EmulatorHost
from qhil.emulators.world import World, load_world_config
from qhil.numerics.qkd.randomness import secure_generator
from qhil.orchestrator.experiments.bb84.pattern import draw_pattern

RATE_HZ = 80e6
PROBS = (0.7, 0.2, 0.1)


def _world() -> World:
    """Alice's transmitter (three intensities) towards one detector: enough to take a pattern."""
    table: dict[str, Any] = {
        "seed": 1,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": RATE_HZ,
                        "mus": [0.5, 0.1, 0.0],
                        "path": ["ab", "bob.d"],
                    }
                }
            },
            "bob": {
                "components": {
                    "tagger": {"type": "time_tagger", "n_channels": 1},
                    "d": {"type": "detector", "tagger": "tagger", "channel": 1},
                }
            },
        },
        "links": {"ab": {"a": "alice", "b": "bob", "length_km": 1.0}},
    }
    return World(load_world_config(table, "bb84_pattern_upload"), mode="fast")


async def _upload(n: int, repeats: int) -> dict[str, float]:
    rng = secure_generator()
    patterns = [draw_pattern(rng, n, 0.5, PROBS, 0.05).symbols for _ in range(repeats + 1)]
    world = _world()
    with EmulatorHost() as host:
        ep = host.add(Keysight33500BEmulator(name="awg", world=world, component="alice.tx"))
        async with Keysight33500B.open(ep.resource) as awg:
            await awg.load_pattern(patterns[0], RATE_HZ)  # warm-up: tables, buffers
            per_block: list[float] = []
            t_main, t_all = time.thread_time(), time.process_time()
            for p in patterns[1:]:
                t0 = time.process_time()
                await awg.load_pattern(p, RATE_HZ)
                await awg.set_output(True)
                await awg.set_output(False)
                per_block.append(time.process_time() - t0)
            total, driver = time.process_time() - t_all, time.thread_time() - t_main
    if not np.array_equal(world.transmitter("alice.tx").pattern, patterns[-1]):
        raise SystemExit("the emulator's world does not play the last pattern uploaded")
    others = total - driver  # the emulator host's thread (and any other)
    scale = 1e9 / n
    return {
        "upload_ns_per_symbol": statistics.median(per_block) * scale,
        "upload_driver_thread_ns_per_symbol": driver / repeats * scale,
        "upload_other_threads_ns_per_symbol": others / repeats * scale,
        "upload_mean_ns_per_symbol": total / repeats * scale,
    }


def _cpu_median(f: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        f()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pulses", type=int, default=8_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's defaults")
    args = ap.parse_args()
    if not args.default_malloc:
        keep_big_allocations()
    if args.pulses < 8 or args.repeats < 1:
        ap.error("--pulses must be >= 8 and --repeats >= 1")
    n = args.pulses
    rng = secure_generator()
    draw_pattern(rng, n, 0.5, PROBS, 0.05)  # warm-up
    draw = _cpu_median(lambda: draw_pattern(rng, n, 0.5, PROBS, 0.05), args.repeats)
    pat = draw_pattern(rng, n, 0.5, PROBS, 0.05)
    window = _cpu_median(lambda: pat.unrevealed_pulses(3, n // 3, n - 1000), args.repeats)
    out: dict[str, float] = {
        "pulses": n,
        "draw_ns_per_symbol": draw * 1e9 / n,
        "window_counts_ns_per_symbol": window * 1e9 / n,
        **asyncio.run(_upload(n, args.repeats)),
    }
    per_s = {
        k.replace("ns_per_symbol", "cpu_s_per_emulated_s"): v * RATE_HZ * 1e-9
        for k, v in out.items()
        if k.endswith("ns_per_symbol")
    }
    if args.json:
        print(json.dumps({**out, **per_s}, indent=2))
        return
    print(f"{n} symbols per block, CPU time (median of {args.repeats}); per emulated s at 80 MHz")
    for k, v in out.items():
        if k.endswith("ns_per_symbol"):
            name = k.removesuffix("_ns_per_symbol")
            print(f"  {name:36s} {v:6.2f} ns/symbol  {v * RATE_HZ * 1e-9:6.3f} CPU s/emulated s")


if __name__ == "__main__":
    main()
