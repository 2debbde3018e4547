"""QKD post-processing benchmark: Cascade reconciliation and privacy amplification.

Run: python benchmarks/postprocessing.py [--json] [--quick] [--fer-calls N]

Reconciliation: random keys with i.i.d. errors at QBER 1-5 %, frames of 1e4, 65,536
(the BB84 experiment's `frame_bits`; the Cascade targets are read on these rows) and 1e5
bits, several frames reconciled per call (batched, as the BB84 experiment does with the
key of a whole run). f = leaked bits / sum over frames of n h(actual
error fraction of the frame). Throughput, counted as cascade-cpp counts it: key
bits reconciled per CPU second of one core running both parties in one process.
Counted: both parties' set-up (shuffles, block layout), every parity computation
on both sides, Bob's bisections and corrections, and encoding and decoding every
message; not counted: drawing the keys and errors, and the channel's latency
(none here). The frame error rate is the fraction of frames whose corrected key
still differs from Alice's (verification would discard those frames).

Privacy amplification: input bits per CPU second for n -> n/2, multiply-add-shift
(one GMP product, the family the experiments use) and Toeplitz (exact FFT convolution)
side by side; the seed draw is timed apart. Medians over repeated runs; CPU time
(process_time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from scipy import stats

from qhil.numerics.qkd import toeplitz
from qhil.numerics.qkd.bits import random_bits
from qhil.numerics.qkd.cascade import (
    CascadeAlice,
    CascadeBob,
    CascadeSetup,
    ParityQuery,
    ParityReply,
)
from qhil.numerics.qkd.entropy import binary_entropy
from qhil.numerics.qkd.toeplitz import set_fft_backend
from qhil.numerics.qkd.universal_hash import MULTIPLY_ADD_SHIFT, TOEPLITZ, amplify, new_pa_seed
from qhil.orchestrator.experiments.bb84.settings import BB84Settings

# The frame length the BB84 experiment reconciles with (its default `frame_bits`).
EXPERIMENT_FRAME_BITS: int = BB84Settings.model_fields["frame_bits"].default

# (what, anchor, target): the targets next to the published numbers they beat.
TARGETS = {
    "cascade_mbps": (
        "Cascade throughput, QBER 1-4 %, Mbit/s per core",
        "cascade-cpp: 3.5 Mbit/s (C++, f = 1.084 at 2 %, n = 1e4)",
        3.5,
    ),
    "cascade_f": (
        "Cascade efficiency f, QBER 1-4 %",
        "cascade-cpp: 1.084 at 2 %; original Cascade: 1.159",
        1.06,
    ),
    "frame_error_rate": ("frame error rate after reconciliation", "-", 1e-3),
    "pa_mbps_1e7": (
        "privacy amplification, 1e7 input bits, Mbit/s per core",
        "Tang et al. 2019: 71 Mbit/s (multi-core FFT)",
        40.0,
    ),
}


def reconcile_once(
    rng: np.random.Generator, frame_bits: int, frames: int, qber: float, seed: int
) -> dict[str, float]:
    n = frame_bits * frames
    alice_key = random_bits(rng, n)
    errors = (rng.random(n) < qber).astype(np.uint8)
    bob_key = alice_key ^ errors
    t0 = time.process_time()
    setup = CascadeSetup.for_qber(n, qber, shuffle_seed=seed, frame_bits=frame_bits)
    bob = CascadeBob(bob_key, setup)
    alice = CascadeAlice(alice_key, setup)
    while (q := bob.next_query()) is not None:
        reply = alice.answer(ParityQuery.decode(q.encode()))
        bob.receive(ParityReply.decode(reply.encode()))
    cpu = time.process_time() - t0
    per_frame = errors.reshape(frames, frame_bits).mean(axis=1)
    shannon = float(np.sum(frame_bits * binary_entropy(per_frame)))
    wrong = np.any(
        bob.key.reshape(frames, frame_bits) != alice_key.reshape(frames, frame_bits), axis=1
    )
    return {
        "f": alice.leaked_bits / shannon,
        "mbps": n / cpu / 1e6,
        "frame_errors": float(wrong.sum()),
        "round_trips": float(bob.stats.queries),
    }


def bench_reconciliation(quick: bool) -> list[dict[str, Any]]:
    rows = []
    # 2e5 bits per call (about a 10 km run of the default bench), 1e6 (a short link); the
    # BB84 experiment's frames (the targets are read on these rows), 16 per call (~1e6 bits).
    configs = [(10_000, 20), (10_000, 100), (EXPERIMENT_FRAME_BITS, 16), (100_000, 10)]
    for frame_bits, frames in configs:
        reps = (3 if quick else 9) if frames * frame_bits <= 200_000 else (2 if quick else 5)
        for qber in (0.01, 0.02, 0.03, 0.04, 0.05):
            rng = np.random.default_rng(int(qber * 1e4) + frame_bits + frames)
            runs = [reconcile_once(rng, frame_bits, frames, qber, seed=i) for i in range(reps)]
            rows.append(
                {
                    "frame_bits": frame_bits,
                    "frames_per_call": frames,
                    "qber": qber,
                    "frames": frames * reps,
                    "f_median": statistics.median(r["f"] for r in runs),
                    "f_mean": statistics.fmean(r["f"] for r in runs),
                    "frame_errors": int(sum(r["frame_errors"] for r in runs)),
                    "mbps_median": statistics.median(r["mbps"] for r in runs),
                    "mbps_best": max(r["mbps"] for r in runs),
                    "round_trips_median": statistics.median(r["round_trips"] for r in runs),
                }
            )
    return rows


FER_FRAMES_PER_CALL = 16


def bench_frame_errors(calls: int) -> list[dict[str, Any]]:
    """Frame errors over many more frames: `calls` calls of 16 of the experiment's frames per
    QBER."""
    rows = []
    for qber in (0.01, 0.02, 0.03, 0.04):
        rng = np.random.default_rng(int(qber * 1e4) + 7)
        wrong = sum(
            int(
                reconcile_once(rng, EXPERIMENT_FRAME_BITS, FER_FRAMES_PER_CALL, qber, seed=i)[
                    "frame_errors"
                ]
            )
            for i in range(calls)
        )
        rows.append({"qber": qber, "frames": FER_FRAMES_PER_CALL * calls, "frame_errors": wrong})
    return rows


def _median_cpu(fn: Callable[[], Any], reps: int) -> float:
    fn()  # plan/cache warm-up, not timed
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def bench_privacy_amplification(quick: bool) -> list[dict[str, Any]]:
    """Multiply-add-shift (one GMP product) and Toeplitz (both FFT libraries when pyfftw is
    installed, scipy's always), n -> n/2; the hash alone, the seed draw timed apart."""
    rows = []
    rng = np.random.default_rng(1)
    backends = ["scipy"] + (["fftw"] if toeplitz._HAVE_FFTW else [])
    for n in (100_000, 1_000_000, 10_000_000):
        reps = (3 if quick else 7) if n < 10_000_000 else (2 if quick else 5)
        m = n // 2
        key = random_bits(rng, n)
        runs = [(MULTIPLY_ADD_SHIFT, "gmpy2 (GMP)")] + [(TOEPLITZ, b) for b in backends]
        for family, library in runs:
            if family == TOEPLITZ:
                set_fft_backend(library)
            seed = new_pa_seed(rng, n, m, family)
            med = _median_cpu(partial(amplify, key, seed, m, family), reps)
            seed_s = _median_cpu(partial(new_pa_seed, rng, n, m, family), reps)
            rows.append(
                {
                    "family": family,
                    "library": library,
                    "n_in": n,
                    "n_out": m,
                    "seed_bits": int(seed.size),
                    "seconds_median": med,
                    "seed_draw_seconds": seed_s,
                    "mbps_median": n / med / 1e6,
                }
            )
    set_fft_backend("auto")
    return rows


def summary(
    rec: list[dict[str, Any]], pa: list[dict[str, Any]], fer: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each target with its anchor, the measured value and whether it is met."""
    band = [r for r in rec if r["qber"] <= 0.04 and r["frame_bits"] == EXPERIMENT_FRAME_BITS]
    frames = sum(r["frames"] for r in rec + fer)
    errors = sum(r["frame_errors"] for r in rec + fer)
    fer_upper = float(stats.beta.ppf(0.95, errors + 1, frames - errors))  # one-sided 95 %
    best_pa = max((r for r in pa if r["n_in"] == 10_000_000), key=lambda r: r["mbps_median"])
    toeplitz_pa = max(
        (r for r in pa if r["n_in"] == 10_000_000 and r["family"] == TOEPLITZ),
        key=lambda r: r["mbps_median"],
    )
    measured = {
        "cascade_mbps": min(r["mbps_median"] for r in band),
        "cascade_f": max(r["f_median"] for r in band),
        "frame_error_rate": fer_upper,
        "pa_mbps_1e7": best_pa["mbps_median"],
    }
    higher_is_better = {"cascade_mbps", "pa_mbps_1e7"}
    detail = {
        "cascade_mbps": f"worst median over the QBER 1-4 % rows of {EXPERIMENT_FRAME_BITS:,}-bit "
        "frames, the BB84 experiment's",
        "cascade_f": f"worst median over the QBER 1-4 % rows of {EXPERIMENT_FRAME_BITS:,}-bit frames",
        "frame_error_rate": f"{errors} of {frames} frames wrong; one-sided 95 % upper bound",
        "pa_mbps_1e7": f"median, {best_pa['family']} ({best_pa['library']}); "
        f"Toeplitz {toeplitz_pa['mbps_median']:.3g} ({toeplitz_pa['library']})",
    }
    out = []
    for key, (what, anchor, target) in TARGETS.items():
        value = measured[key]
        met = value >= target if key in higher_is_better else value <= target
        out.append(
            {
                "target": key,
                "what": what,
                "anchor": anchor,
                "goal": target,
                "measured": value,
                "detail": detail[key],
                "met": bool(met),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--fer-calls",
        type=int,
        default=100,
        help="also reconcile N x 16 of the experiment's 65,536-bit frames per QBER 1-4 %% for "
        "the frame error rate (default 100: 6,400 frames, ~2 min; the table's ~4,000 frames "
        "alone cannot show 1e-3; 0: skip)",
    )
    args = parser.parse_args()
    rec = bench_reconciliation(args.quick)
    fer = bench_frame_errors(args.fer_calls) if args.fer_calls > 0 else []
    pa = bench_privacy_amplification(args.quick)
    summ = summary(rec, pa, fer)
    if args.json:
        print(
            json.dumps(
                {
                    "targets": summ,
                    "reconciliation": rec,
                    "frame_errors": fer,
                    "privacy_amplification": pa,
                }
            )
        )
        return
    print("Targets (issue 12) and anchors")
    print("| what | anchor | target | measured | met |")
    print("|---|---|---|---|---|")
    for s in summ:
        cmp = ">=" if s["target"] in ("cascade_mbps", "pa_mbps_1e7") else "<="
        print(
            f"| {s['what']} | {s['anchor']} | {cmp} {s['goal']:g} | {s['measured']:.4g} "
            f"({s['detail']}) | {'yes' if s['met'] else 'NO'} |"
        )
    print()
    print("Cascade reconciliation (f = leaked / n h(actual QBER); medians over runs)")
    print(
        "| frame bits | frames per call | QBER | frames | f median | f mean | frame errors | "
        "Mbit/s per core (median) | best | round trips |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rec:
        print(
            f"| {r['frame_bits']:,} | {r['frames_per_call']} | {r['qber']:.0%} | {r['frames']} | "
            f"{r['f_median']:.3f} | {r['f_mean']:.3f} | {r['frame_errors']} | "
            f"{r['mbps_median']:.2f} | {r['mbps_best']:.2f} | {r['round_trips_median']:.0f} |"
        )
    if fer:
        print()
        print(
            f"Frame errors over more frames ({EXPERIMENT_FRAME_BITS:,}-bit frames, "
            f"{FER_FRAMES_PER_CALL} per call)"
        )
        print("| QBER | frames | frame errors |")
        print("|---|---|---|")
        for r in fer:
            print(f"| {r['qber']:.0%} | {r['frames']:,} | {r['frame_errors']} |")
    print()
    print("Privacy amplification (n -> n/2; CPU time of the hash, one core; seed draw apart)")
    print(
        "| family | library | input bits | output bits | seed bits | seconds (median) | "
        "Mbit/s (input, 1 core) | seed draw (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in pa:
        print(
            f"| {r['family']} | {r['library']} | {r['n_in']:,} | {r['n_out']:,} | "
            f"{r['seed_bits']:,} | {r['seconds_median']:.4f} | {r['mbps_median']:.1f} | "
            f"{r['seed_draw_seconds']:.4f} |"
        )


if __name__ == "__main__":
    main()
