"""Benchmark: an emulated BB84 link at 80 MHz, mu 0.5, 10 km and 50 km, full detector physics.

Measures the real-time factor (emulated seconds per wall second, one process, one
core) and detection events (tags) per wall second, reading the link the way an
instrument emulator does: 0.1 s acquisitions from Bob's time tagger.

Optionally runs SeQUeNCe (sequence-toolbox, ``pip install sequence``) on the same
parameters in a separate interpreter (``--sequence-python``; it needs its own
environment: its dependencies differ from ours). Its BB84 (per-pulse photon
objects in a discrete-event engine) runs the laser in 100 us rounds; we stop its
timeline after ``--sequence-sim-s`` of laser time (1 ms by default) and
extrapolate linearly to one emulated second.

    python benchmarks/emulated_link.py [--json] [--seconds 2] [--repeats 3]
                                       [--sequence-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qhil.emulators.world import World, load_world_config

REP_RATE = 80e6
MU = 0.5
DETECTOR = {
    "efficiency": 0.10,
    "dark_count_rate_hz": 100.0,
    "dead_time_ns": 50.0,
    "jitter_ps": 50.0,
    "afterpulse_probability": 0.01,
    "afterpulse_time_constant_ns": 100.0,
}
ALPHA = 0.2


def link_profile(length_km: float) -> dict[str, Any]:
    bob: dict[str, Any] = {
        "pc": {"type": "polarization_controller"},
        "rx": {
            "type": "polarization_analyzer",
            "pbs_extinction_ratio_db": 30.0,
            "bases": [
                {"axis": "HV", "weight": 0.5, "plus": "h", "minus": "v"},
                {"axis": "DA", "weight": 0.5, "plus": "d", "minus": "a"},
            ],
        },
        "tagger": {"type": "time_tagger", "n_channels": 4, "buffer_size": 1 << 26},
    }
    for i, name in enumerate("hvda"):
        bob[name] = {"type": "detector", **DETECTOR, "tagger": "tagger", "channel": i + 1}
    return {
        "seed": 1,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": REP_RATE,
                        "mus": [MU, 0.1, 0.0],
                        "intensity_probabilities": [0.8, 0.15, 0.05],
                        "polarization_extinction_ratio_db": 25.0,
                        "path": ["alice.att", "ab", "bob.pc", "bob.rx"],
                    },
                    "att": {"type": "attenuator"},
                }
            },
            "bob": {"clock_offset_s": 1e-3, "clock_drift_ppm": 0.3, "components": bob},
        },
        "links": {
            "ab": {
                "a": "alice",
                "b": "bob",
                "length_km": length_km,
                "alpha_db_per_km": ALPHA,
                "polarization_drift_rad_per_sqrt_s": 0.05,
                "initial_polarization": "random",
                "background_rate_hz": 1000.0,
            }
        },
    }


def run_qhil(length_km: float, seconds: float, chunk: float = 0.1) -> dict[str, float]:
    world = World(load_world_config(link_profile(length_km), "benchmark"), seed=1)
    tagger = world.tagger("bob.tagger")
    tagger.read(0.02)  # warm-up: imports, first batch
    n_tags = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    done = 0.0
    best = math.inf  # the fastest acquisition: the code's speed with the least interference
    while done < seconds - 1e-12:
        step = min(chunk, seconds - done)
        b0 = time.process_time()
        n_tags += len(tagger.read(step))
        best = min(best, (time.process_time() - b0) / step)
        done += step
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    # CPU-time figures help on a shared machine, where wall time includes waiting for a core.
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "tags": n_tags,
        "rtf": seconds / wall,
        "rtf_cpu": seconds / cpu,
        "rtf_cpu_best_acquisition": 1.0 / best,
        "tags_per_wall_s": n_tags / wall,
    }


SEQUENCE_SCRIPT = r"""
import json, sys, time
from sequence.kernel.timeline import Timeline
from sequence.topology.node import QKDNode
from sequence.components.optical_channel import QuantumChannel, ClassicalChannel
from sequence.qkd.BB84 import pair_bb84_protocols

length_m, sim_s, f, mu, eta, dark, dead_ps, jitter_ps, alpha_db_km = (float(x) for x in sys.argv[1:10])
# The laser starts after one classical delay and runs in rounds of 100 us until the stop time.
tl = Timeline((sim_s + length_m / 2e8) * 1e12)
alice = QKDNode("alice", tl, stack_size=1)
bob = QKDNode("bob", tl, stack_size=1)
alice.set_seed(0)
bob.set_seed(1)
pair_bb84_protocols(alice.protocol_stack[0], bob.protocol_stack[0])
for a, b in ((alice, bob), (bob, alice)):
    cc = ClassicalChannel(f"cc_{a.name}_{b.name}", tl, distance=length_m)
    cc.set_ends(a, b.name)
    qc = QuantumChannel(f"qc_{a.name}_{b.name}", tl, attenuation=alpha_db_km / 1000, distance=length_m,
                        frequency=f)
    qc.set_ends(a, b.name)
for node in (alice, bob):
    node.update_lightsource_params("frequency", f)
    node.update_lightsource_params("mean_photon_num", mu)
    qsd = node.components[node.name + ".qsdetector"]
    for d in qsd.detectors:
        d.efficiency = eta
        d.dark_count = dark
        d.count_rate = 1e12 / dead_ps
        d.time_resolution = max(1, int(jitter_ps))
tl.init()
key_bits = int(round(min(sim_s, 1e-4) * f * mu))  # a round lasts key_length / (f mu) seconds
alice.protocol_stack[0].push(key_bits, 10**9)  # never finishes: the laser runs to the stop
t0 = time.perf_counter()
tl.run()
wall = time.perf_counter() - t0
events = getattr(tl, "run_counter", None)
print(json.dumps({"sim_s": sim_s, "wall_s": wall, "events": events, "sifted_bits": len(alice.protocol_stack[0].key_bits),
                  "round_s": alice.protocol_stack[0].light_time,
                  "laser_s": tl.now() * 1e-12 - length_m / 2e8}))
"""


def run_sequence(python: str, length_km: float, sim_s: float) -> dict[str, Any]:
    args = [
        python,
        "-c",
        SEQUENCE_SCRIPT,
        str(length_km * 1000),
        str(sim_s),
        str(REP_RATE),
        str(MU),
        str(DETECTOR["efficiency"]),
        str(DETECTOR["dark_count_rate_hz"]),
        str(DETECTOR["dead_time_ns"] * 1e3),
        str(DETECTOR["jitter_ps"]),
        str(ALPHA),
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Extrapolate over the laser time actually simulated (the timeline may stop early).
    out["wall_per_sim_s_extrapolated"] = out["wall_s"] / out["laser_s"]
    out["rtf"] = out["laser_s"] / out["wall_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, default=2.0, help="emulated seconds per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lengths", type=float, nargs="+", default=[10.0, 50.0])
    ap.add_argument(
        "--sequence-python",
        default=os.environ.get("SEQUENCE_PYTHON"),
        help="interpreter with `sequence` installed (optional)",
    )
    ap.add_argument(
        "--sequence-sim-s",
        type=float,
        default=1e-3,
        help="simulated seconds for SeQUeNCe (extrapolated)",
    )
    args = ap.parse_args()

    results: dict[str, Any] = {
        "benchmark": "emulated_link",
        "parameters": {
            "rep_rate_hz": REP_RATE,
            "mu": MU,
            "alpha_db_per_km": ALPHA,
            **DETECTOR,
            "emulated_seconds": args.seconds,
            "repeats": args.repeats,
        },
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "qhil": {},
    }
    for length in args.lengths:
        runs = [run_qhil(length, args.seconds) for _ in range(args.repeats)]
        results["qhil"][f"{length:g} km"] = {
            "rtf_median": statistics.median(r["rtf"] for r in runs),
            "rtf_cpu_median": statistics.median(r["rtf_cpu"] for r in runs),
            "rtf_cpu_best_acquisition": max(r["rtf_cpu_best_acquisition"] for r in runs),
            "tags_per_wall_s_median": statistics.median(r["tags_per_wall_s"] for r in runs),
            "tags_per_emulated_s": statistics.median(r["tags"] for r in runs) / args.seconds,
            "runs": runs,
        }
    if args.sequence_python and Path(args.sequence_python).exists():
        results["sequence"] = {}
        for length in args.lengths:
            results["sequence"][f"{length:g} km"] = run_sequence(
                args.sequence_python, length, args.sequence_sim_s
            )
            seq = results["sequence"][f"{length:g} km"]
            if "rtf" in seq:
                seq["qhil_speedup"] = results["qhil"][f"{length:g} km"]["rtf_median"] / seq["rtf"]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"Emulated BB84 link: {REP_RATE / 1e6:g} MHz, mu {MU}, eta {DETECTOR['efficiency']}, "
        f"dead time {DETECTOR['dead_time_ns']} ns, afterpulsing, jitter, drift, background"
    )
    print(
        f"{'length':>8} {'real-time factor':>17} {'(CPU time)':>11} {'(best 0.1 s)':>13} "
        f"{'tags/wall s':>13} {'tags/emulated s':>16}"
    )
    for key, r in results["qhil"].items():
        print(
            f"{key:>8} {r['rtf_median']:>17.2f} {r['rtf_cpu_median']:>11.2f} "
            f"{r['rtf_cpu_best_acquisition']:>13.2f} "
            f"{r['tags_per_wall_s_median']:>13.3g} {r['tags_per_emulated_s']:>16.3g}"
        )
    for key, r in results.get("sequence", {}).items():
        if "rtf" in r:
            print(
                f"SeQUeNCe {key}: {r['wall_s']:.1f} s wall for {r['sim_s']:g} s simulated "
                f"(extrapolated {r['wall_per_sim_s_extrapolated']:.0f} s per emulated second); "
                f"qhil is {r['qhil_speedup']:.0f}x faster"
            )
        else:
            print(f"SeQUeNCe {key}: {r.get('error')}")


if __name__ == "__main__":
    sys.exit(main())
