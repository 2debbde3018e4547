"""Throughput of the world's quantum-state layer (qhil.emulators.world.quantum).

Run: python benchmarks/world_quantum.py [--json] [--quick]

Pair probabilities: joint outcome probabilities P(i, j) for a batch of windows,
each with its own pair of analyzer bases (e.g. rotated by a drifting fibre), or
one shared basis for Alice; the closed Werner form for comparison. Protocol
operations (memory store+retrieve, swapping, teleportation, BBPSSW) are per
event, on qutip states. Medians over repeated runs, wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from qhil.emulators.world.quantum import (
    BASIS_Z,
    MemoryParameters,
    QuantumMemory,
    bbpssw_round,
    bell_ket,
    bloch_analyzer,
    entanglement_swap,
    joint_probabilities,
    linear_analyzer,
    spdc_pair_state,
    teleport,
    werner_joint_probabilities,
    werner_state,
)
from qhil.emulators.world.quantum._qutip import qt


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pair_probabilities(windows: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rho = spdc_pair_state(0.95, dephasing=(0.02, 0.01))
    theta_a, theta_b = rng.uniform(0, np.pi, windows), rng.uniform(0, np.pi, windows)
    basis_a = bloch_analyzer(2 * theta_a, rng.uniform(0, 2 * np.pi, windows))
    basis_b = linear_analyzer(theta_b)
    cases = {
        "joint_probabilities, a basis per window for both": lambda: joint_probabilities(
            rho, basis_a, basis_b
        ),
        "joint_probabilities, Alice's basis shared": lambda: joint_probabilities(
            rho, BASIS_Z, basis_b
        ),
        "werner_joint_probabilities (closed form)": lambda: werner_joint_probabilities(
            0.95, theta_a, theta_b
        ),
    }
    rows = []
    for name, fn in cases.items():
        t = median_time(fn, repeats)
        rows.append({"what": name, "windows": windows, "seconds": t, "windows_per_s": windows / t})
    return rows


def protocol_events(events: int, repeats: int) -> list[dict[str, Any]]:
    pair = werner_state(0.9)
    psi = qt.rand_ket(2, seed=1)
    memory = QuantumMemory(
        MemoryParameters(n_modes=4, write_efficiency=0.8, t1_s=1.0, t2_s=0.5, readout_error=0.01),
        np.random.default_rng(0),
    )
    clock = [0.0]

    def memory_cycle() -> None:
        for _ in range(events):
            clock[0] += 1e-3
            if memory.store(bell_ket(), clock[0], qubit=1).success:
                memory.retrieve(0, clock[0] + 5e-4)

    cases = {
        "memory store + retrieve (half of a pair)": memory_cycle,
        "entanglement_swap (two Werner pairs)": lambda: [
            entanglement_swap(pair, pair) for _ in range(events)
        ],
        "teleport (one qubit through a Werner pair)": lambda: [
            teleport(psi, pair) for _ in range(events)
        ],
        "bbpssw_round (one round, qutip circuit)": lambda: [
            bbpssw_round(pair) for _ in range(events)
        ],
    }
    rows = []
    for name, fn in cases.items():
        t = median_time(fn, repeats)
        rows.append({"what": name, "events": events, "seconds": t, "events_per_s": events / t})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    windows, events, repeats = (20_000, 50, 3) if args.quick else (200_000, 300, 5)
    warnings.filterwarnings("ignore", category=UserWarning)
    results = {
        "pair_probabilities": pair_probabilities(windows, repeats),
        "protocol_events": protocol_events(events, repeats),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'pair probabilities':<55} {'windows/s':>14}")
    for row in results["pair_probabilities"]:
        print(f"{row['what']:<55} {row['windows_per_s']:>14.3g}")
    print(f"\n{'protocol operations':<55} {'events/s':>14}")
    for row in results["protocol_events"]:
        print(f"{row['what']:<55} {row['events_per_s']:>14.3g}")


if __name__ == "__main__":
    main()
