"""CPU cost of the world's photon/click generation on the default bench (issue 12).

Run: python benchmarks/world_wcs.py [--blocks 20] [--block-s 0.1] [--pattern-length 8000000]

The default profile's world, Alice's transmitter playing a random decoy-state pattern
(the BB84 default: 8,000,000 pulses = 100 ms at 80 MHz, intensities 0.7/0.2/0.1), Bob's
tagger read block by block through a `TagReader` (no instrument emulators, no transport):
what the TDC1 emulator's thread asks of the world. Reports CPU seconds (process time, so
other engineers' load inflates it less than wall time) per emulated second: the whole
read (sampler + detector bank + tagger), and the weak-coherent sampler alone on the same
100 ms window (its generator state restored between repeats). Min and median over blocks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_config
from qhil.emulators.world.sample_wcs import Window
from qhil.orchestrator.bench import load_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--block-s", type=float, default=0.1)
    ap.add_argument("--pattern-length", type=int, default=8_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    prof = load_profile(None, [])
    rng = np.random.default_rng(1)
    n = args.pattern_length
    intensity = rng.choice(3, n, p=[0.7, 0.2, 0.1]).astype(np.uint8)
    pattern = rng.integers(0, 4, n).astype(np.uint8) | (intensity << 2)
    world = World(load_world_config(prof.world, prof.source), seed=prof.bench.seed)
    tx = world.transmitter("alice.transmitter")
    tx.set_pattern(pattern)
    tx.enabled = True
    reader = world.tagger("bob.tagger").open_reader()
    reader.read(0.05)  # warm-up window and first batch

    read_s: list[float] = []
    tags = 0
    for _ in range(args.blocks):
        c = time.process_time()
        block = reader.read(args.block_s)
        read_s.append((time.process_time() - c) / args.block_s)
        tags += len(block)

    sampler = world._wcs[0]
    win = Window(10**11, round(args.block_s * 1e12), world.step_ps)
    state = sampler.rng.bit_generator.state
    sample_s: list[float] = []
    for _ in range(args.blocks):
        sampler.rng.bit_generator.state = state
        c = time.process_time()
        sampler.sample(win)
        sample_s.append((time.process_time() - c) / args.block_s)

    result = {
        "tags_per_emulated_s": tags / (args.blocks * args.block_s),
        "world_read_cpu_s_per_s": {"min": min(read_s), "median": statistics.median(read_s)},
        "wcs_sample_cpu_s_per_s": {"min": min(sample_s), "median": statistics.median(sample_s)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"tags per emulated s: {result['tags_per_emulated_s']:.3e}")
    for key in ("world_read_cpu_s_per_s", "wcs_sample_cpu_s_per_s"):
        r = result[key]
        print(f"{key}: min {r['min']:.3f}  median {r['median']:.3f}")


if __name__ == "__main__":
    main()
