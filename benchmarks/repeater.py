"""Throughput of the repeater bench through its instruments (issue 11).

Run: python benchmarks/repeater.py [PROFILE] [--pairs N] [--repeats R] [--json] [--set PATH=VALUE]

Opens the bench (``hw_profiles/repeater.toml`` by default) once, then asks the entanglement
request API (``qhil.orchestrator.experiments.network``) for alice-bob pairs one request at
a time: per pair, heralded generation on both elementary links through the HSC-1 stations,
the swap at the repeater's QMC-1 and the frame tracking, then the pair is released. Reports
the delivered pairs per wall second and the emulated seconds (the network clock: attempts
times their period, herald and classical delays) per wall second, medians over repeats;
also one teleportation shot per pair (pair + Bell measurement + correction + measurement)
through the same instruments. Bench opening is reported apart (a fixed cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any, NoReturn


async def _deliver(network: Any, request: Any, pairs: int) -> tuple[float, float, float]:
    """Wall, emulated and CPU (this process: drivers, orchestrator and the in-process
    emulators) seconds for ``pairs`` delivered (and released) pairs."""
    t_emul, t0, c0 = network.clock_s, time.perf_counter(), time.process_time()
    for _ in range(pairs):
        for pair in await network.create(request):
            await network.release(pair)
    return time.perf_counter() - t0, network.clock_s - t_emul, time.process_time() - c0


async def _teleport(network: Any, request: Any, shots: int) -> float:
    """Wall seconds for ``shots`` teleportation shots of D (alice -> bob)."""
    from qhil.orchestrator.experiments.teleport.protocol import (
        TeleportLink,
        classical_channel,
        teleport_input,
    )

    async def deliver() -> Any:
        return (await network.create(request))[0]

    async with classical_channel("alice", "bob", "benchmark") as (to_rx, at_rx):
        link = TeleportLink(
            deliver,
            network.release,
            network.memory("alice"),
            network.memory("bob"),
            to_rx,
            at_rx,
        )
        t0 = time.perf_counter()
        await teleport_input(link, "D", 0, shots)
        return time.perf_counter() - t0


async def measure(profile: str, overrides: list[str], pairs: int, repeats: int) -> dict[str, Any]:
    from qhil.orchestrator.experiments.network import EntanglementRequest, open_network

    t0 = time.perf_counter()
    async with open_network(profile, overrides) as network:
        opened_s = time.perf_counter() - t0
        request = EntanglementRequest(remote="bob", local="alice", pairs=1, frame="track")
        await _deliver(network, request, 2)  # warm-up: connections, first replies
        runs = [await _deliver(network, request, pairs) for _ in range(repeats)]
        teleport_s = [await _teleport(network, request, pairs) for _ in range(repeats)]
    wall = statistics.median(w for w, _, _ in runs)
    emulated = statistics.median(e for _, e, _ in runs)
    cpu = statistics.median(c for _, _, c in runs)
    return {
        "profile": profile,
        "pairs_per_repeat": pairs,
        "repeats": repeats,
        "bench_open_s": opened_s,
        "pairs_per_wall_s": pairs / wall,
        "wall_s_per_pair": wall / pairs,
        "cpu_s_per_pair": cpu / pairs,
        "emulated_s_per_pair": emulated / pairs,
        "emulated_s_per_wall_s": emulated / wall,
        "teleport_shots_per_wall_s": pairs / statistics.median(teleport_s),
    }


class _OneLineParser(argparse.ArgumentParser):
    """Bad input: one line naming the option, exit 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _at_least_1(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = _OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", nargs="?", default="repeater")
    ap.add_argument("--pairs", type=_at_least_1, default=50, help="pairs per repeat (>= 1)")
    ap.add_argument("--repeats", type=_at_least_1, default=3, help=">= 1")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    out = asyncio.run(measure(args.profile, args.overrides, args.pairs, args.repeats))
    if args.json:
        print(json.dumps(out))
        return
    print(f"repeater bench ({out['profile']}), {args.pairs} alice-bob pairs x {args.repeats}:")
    print(f"  bench opening                {out['bench_open_s']:8.2f} s")
    print(f"  delivered pairs per wall s   {out['pairs_per_wall_s']:8.1f}")
    print(f"  wall s per pair              {out['wall_s_per_pair'] * 1e3:8.2f} ms")
    print(f"  CPU s per pair (this process){out['cpu_s_per_pair'] * 1e3:8.2f} ms")
    print(f"  emulated s per pair          {out['emulated_s_per_pair'] * 1e3:8.3f} ms")
    print(f"  emulated s per wall s        {out['emulated_s_per_wall_s']:8.3f}")
    print(f"  teleport shots per wall s    {out['teleport_shots_per_wall_s']:8.1f}")


if __name__ == "__main__":
    main()
