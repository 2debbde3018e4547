"""QKD post-processing benchmark: Cascade reconciliation and Toeplitz privacy amplification.

Run: python benchmarks/postprocessing.py [--json] [--quick]

Reconciliation: random keys with i.i.d. errors at QBER 1-5 %, frames of 1e4 and
1e5 bits, several frames reconciled per call (batched, as the experiment does).
f = leaked bits / sum over frames of n h(actual error fraction of the frame);
throughput counts key bits per second of CPU for Alice and Bob together in one
process (one core) and for the busier party alone. Privacy amplification: input
bits per second for n -> n/2 Toeplitz hashing. Medians over repeated runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from qhil.numerics.qkd import toeplitz
from qhil.numerics.qkd.bits import random_bits
from qhil.numerics.qkd.cascade import CascadeAlice, CascadeBob, CascadeSetup
from qhil.numerics.qkd.entropy import binary_entropy
from qhil.numerics.qkd.toeplitz import new_seed, privacy_amplification, set_fft_backend

ANCHORS = {
    "cascade-cpp (yanetal), QBER 2 %, n 1e4": "f 1.084, 3.5 Mbit/s",
    "original Cascade, QBER 2 %, n 1e4": "f 1.159",
    "PA, Tang et al. 2019 (multi-core FFT)": "71 Mbit/s",
    "targets (PERFORMANCE.md)": "f <= 1.08 @ 2 %, FER <= 1e-3, >= 1 Mbit/s/core; PA >= 20 Mbit/s",
}


def reconcile_once(
    rng: np.random.Generator, frame_bits: int, frames: int, qber: float, seed: int
) -> dict[str, float]:
    n = frame_bits * frames
    alice_key = random_bits(rng, n)
    errors = (rng.random(n) < qber).astype(np.uint8)
    bob_key = alice_key ^ errors
    t_alice = t_bob = 0.0
    t0 = time.process_time()
    setup = CascadeSetup.for_qber(n, qber, shuffle_seed=seed, frame_bits=frame_bits)
    bob = CascadeBob(bob_key, setup)
    t1 = time.process_time()
    alice = CascadeAlice(alice_key, setup)
    t2 = time.process_time()
    t_bob += t1 - t0
    t_alice += t2 - t1
    while (q := bob.next_query()) is not None:
        a0 = time.process_time()
        reply = alice.answer(q)
        a1 = time.process_time()
        bob.receive(reply)
        t_alice += a1 - a0
        t_bob += time.process_time() - a1
    per_frame = errors.reshape(frames, frame_bits).mean(axis=1)
    shannon = float(np.sum(frame_bits * binary_entropy(per_frame)))
    wrong = np.any(
        bob.key.reshape(frames, frame_bits) != alice_key.reshape(frames, frame_bits), axis=1
    )
    return {
        "f": alice.leaked_bits / shannon,
        "mbps_both": n / (t_alice + t_bob) / 1e6,
        "mbps_bob": n / t_bob / 1e6,
        "mbps_alice": n / t_alice / 1e6,
        "frame_errors": float(wrong.sum()),
        "frames": float(frames),
        "queries": float(bob.stats.queries),
    }


def bench_reconciliation(quick: bool) -> list[dict[str, Any]]:
    rows = []
    configs = [(10_000, 20), (100_000, 4)]
    reps = 3 if quick else 10
    for frame_bits, frames in configs:
        for qber in (0.01, 0.02, 0.03, 0.04, 0.05):
            rng = np.random.default_rng(int(qber * 1e4) + frame_bits)
            runs = [reconcile_once(rng, frame_bits, frames, qber, seed=i) for i in range(reps)]
            rows.append(
                {
                    "frame_bits": frame_bits,
                    "qber": qber,
                    "frames": int(sum(r["frames"] for r in runs)),
                    "f_median": statistics.median(r["f"] for r in runs),
                    "f_mean": statistics.fmean(r["f"] for r in runs),
                    "frame_errors": int(sum(r["frame_errors"] for r in runs)),
                    "mbps_both_median": statistics.median(r["mbps_both"] for r in runs),
                    "mbps_bob_median": statistics.median(r["mbps_bob"] for r in runs),
                    "mbps_alice_median": statistics.median(r["mbps_alice"] for r in runs),
                    "queries_per_call": statistics.median(r["queries"] for r in runs),
                }
            )
    return rows


def bench_privacy_amplification(quick: bool) -> list[dict[str, Any]]:
    """Both FFT libraries side by side when pyfftw is installed (scipy's always)."""
    rows = []
    rng = np.random.default_rng(1)
    reps = 3 if quick else 7
    backends = ["scipy"] + (["fftw"] if toeplitz._pyfftw is not None else [])
    for n in (100_000, 1_000_000, 4_000_000):
        m = n // 2
        key = random_bits(rng, n)
        seed = new_seed(rng, n, m)
        for backend in backends:
            set_fft_backend(backend)
            privacy_amplification(key, seed, m)  # plan/cache warm-up, not timed
            times = []
            for _ in range(reps):
                t = time.process_time()
                privacy_amplification(key, seed, m)
                times.append(time.process_time() - t)
            med = statistics.median(times)
            rows.append(
                {
                    "backend": backend,
                    "n_in": n,
                    "n_out": m,
                    "seconds_median": med,
                    "mbps_median": n / med / 1e6,
                }
            )
    set_fft_backend("auto")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    rec = bench_reconciliation(args.quick)
    pa = bench_privacy_amplification(args.quick)
    if args.json:
        print(json.dumps({"reconciliation": rec, "privacy_amplification": pa, "anchors": ANCHORS}))
        return
    print("Cascade reconciliation (f = leaked / n h(actual QBER); medians over runs)")
    print(
        "| frame bits | QBER | frames | f median | f mean | frame errors | Mbit/s both "
        "parties, 1 core | Mbit/s Bob | Mbit/s Alice |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rec:
        print(
            f"| {r['frame_bits']:,} | {r['qber']:.0%} | {r['frames']} | {r['f_median']:.3f} | "
            f"{r['f_mean']:.3f} | {r['frame_errors']} | {r['mbps_both_median']:.2f} | "
            f"{r['mbps_bob_median']:.2f} | {r['mbps_alice_median']:.2f} |"
        )
    print()
    print("Toeplitz privacy amplification (n -> n/2, FFT, exact)")
    print("| FFT library | input bits | output bits | seconds (median) | Mbit/s (input, 1 core) |")
    print("|---|---|---|---|---|")
    for r in pa:
        print(
            f"| {r['backend']} | {r['n_in']:,} | {r['n_out']:,} | {r['seconds_median']:.4f} | "
            f"{r['mbps_median']:.1f} |"
        )
    print()
    print("Anchors")
    for k, v in ANCHORS.items():
        print(f"- {k}: {v}")


if __name__ == "__main__":
    main()
