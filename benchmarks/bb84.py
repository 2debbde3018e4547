"""BB84 experiment benchmark: the whole protocol on an emulated World, stage by stage.

Both parties run in this process over an in-process HMAC-authenticated channel; the
roles are thin doubles that drive a real ``qhil.emulators.world.World`` directly
(transmitter pattern, tagger reads), so the numbers are the experiment's own cost
plus the world's sampling, without instrument I/O. Reported (medians of repeats):
wall time of the block phase (pattern draw, world sampling, alignment, sifting,
messages) per block and per emulated second, of reconciliation (Cascade over the
channel: throughput in sifted bits/s), of verification + amplification; sifted and
secret bits; the real-time factor of the whole run.

    python benchmarks/bb84.py [--json] [--blocks 8] [--pattern 1048576] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from qhil.drivers.roles import TagBlock  # noqa: E402
from qhil.emulators.world import World, load_world_config  # noqa: E402
from qhil.orchestrator.channel import (  # noqa: E402
    AuthKey,
    HmacSha256Authenticator,
    in_process_channels,
)
from qhil.orchestrator.experiments.bb84 import (  # noqa: E402
    BB84Aborted,
    BB84Progress,
    BB84Settings,
    run_bb84,
)
from qhil.records import KeyStore  # noqa: E402

REP_RATE = 80e6


def world_table() -> dict[str, Any]:
    """0 km, detector efficiency 0.5, 1 % misalignment, 500 Hz darks, Bob's clock 3.7 ms
    ahead and 0.5 ppm fast; passive 50:50 receiver."""
    bob: dict[str, Any] = {
        "rx": {
            "type": "polarization_analyzer",
            "pbs_extinction_ratio_db": 100.0,
            "bases": [
                {"axis": "HV", "weight": 0.5, "plus": "h", "minus": "v"},
                {"axis": "DA", "weight": 0.5, "plus": "d", "minus": "a"},
            ],
        },
        "tagger": {"type": "time_tagger", "n_channels": 4, "buffer_size": 1 << 26},
    }
    for i, name in enumerate("hvda"):
        bob[name] = {
            "type": "detector",
            "efficiency": 0.5,
            "dark_count_rate_hz": 500.0,
            "jitter_ps": 40.0,
            "tagger": "tagger",
            "channel": i + 1,
        }
    return {
        "seed": 1,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": REP_RATE,
                        "mus": [0.6, 0.2, 0.0],
                        "intensity_probabilities": [0.5, 0.3, 0.2],
                        "polarization_extinction_ratio_db": 19.956,  # 1 % wrong state
                        "path": ["ab", "bob.rx"],
                    }
                }
            },
            "bob": {"clock_offset_s": 3.7e-3, "clock_drift_ppm": 0.5, "components": bob},
        },
        "links": {
            "ab": {
                "a": "alice",
                "b": "bob",
                "length_km": 0.0,
                "initial_polarization": "identity",
                "polarization_drift_rad_per_sqrt_s": 0.0,
            }
        },
    }


class Generator:
    name = "alice.pattern_generator"

    def __init__(self, world: World) -> None:
        self.tx = world.transmitter("alice.tx")

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "bench double"

    async def load_pattern(self, symbols: np.ndarray, symbol_rate_hz: float) -> None:
        self.tx.set_pattern(symbols)

    async def set_output(self, enabled: bool) -> None:
        self.tx.enabled = enabled


class Tagger:
    name = "bob.tagger"

    def __init__(self, world: World) -> None:
        self.reader = world.tagger("bob.tagger").open_reader()

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "bench double"

    async def acquire(self, duration_s: float) -> TagBlock:
        self.reader.seek_now()
        b = self.reader.read(duration_s)
        return TagBlock(b.timestamps_ps, b.channels.astype(np.int16), int(b.lost))

    async def set_input_delay_ps(self, channel: int, delay_ps: int) -> None: ...

    async def singles(self, integration_s: float) -> list[int]:
        return [0, 0, 0, 0]


async def one_run(blocks: int, pattern: int, seed: int) -> dict[str, Any]:
    world = World(load_world_config(copy.deepcopy(world_table()), "benchmark"), seed=seed)
    settings = BB84Settings.from_mapping(
        {
            "channel_map": {"H": 1, "V": 2, "D": 3, "A": 4},
            "rep_rate_hz": REP_RATE,
            "mus": [0.6, 0.2, 0.0],
            "intensity_probabilities": [0.5, 0.3, 0.2],
            "pattern_length": pattern,
            "blocks": blocks,
        },
        "benchmark",
    )
    key = AuthKey.generate()
    a, b = in_process_channels(HmacSha256Authenticator(key), HmacSha256Authenticator(key))
    await asyncio.gather(a.open(), b.open())
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def progress(e: BB84Progress) -> None:
        if e.party == "alice":
            marks.setdefault(e.stage, time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = await run_bb84(
                settings,
                Generator(world),
                Tagger(world),
                a,
                b,
                key_store=KeyStore(os.path.join(tmp, "keys")),
                progress=progress,
            )
            secret, status, st, leaked = r.secret_bits, r.status, r.statistics, r.leaked_bits
        except BB84Aborted as exc:
            assert exc.result is not None
            secret, status, st = 0, f"aborted ({exc.reason.value})", exc.result.statistics
            leaked = exc.result.leaked_bits
    total = time.perf_counter() - t0
    await a.close()
    await b.close()
    t_rec = marks.get("reconcile", total)
    t_ver = marks.get("verify", total)
    emulated = st.acquisition_s
    return {
        "status": status,
        "blocks": blocks,
        "pattern_length": pattern,
        "emulated_s": emulated,
        "wall_s": total,
        "block_phase_s": t_rec,
        "per_block_s": t_rec / blocks,
        "reconcile_s": t_ver - t_rec,
        "verify_amplify_s": total - t_ver,
        "sifted_bits": st.sifted_key_bits,
        "leaked_bits": leaked,
        "secret_bits": secret,
        "cascade_bits_per_s": st.sifted_key_bits / max(t_ver - t_rec, 1e-9),
        "real_time_factor": emulated / total,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--pattern", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = [asyncio.run(one_run(args.blocks, args.pattern, seed)) for seed in range(args.repeats)]
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float) and v is not None]
    med: dict[str, Any] = {k: statistics.median(float(r[k] or 0) for r in runs) for k in numeric}
    med["status"] = [r["status"] for r in runs]
    med["repeats"] = args.repeats
    med["load_average"] = os.getloadavg()[0]
    if args.json:
        json.dump(med, sys.stdout, indent=1)
        print()
        return
    print(f"BB84 on an emulated World, medians of {args.repeats} runs (status {med['status']})")
    print(
        f"  {args.blocks} blocks x {args.pattern} pulses at 80 MHz = {med['emulated_s']:.3f} s emulated"
    )
    rows = [
        ("block phase per block", f"{med['per_block_s']:.3f} s"),
        (
            "reconciliation (Cascade over the channel)",
            f"{med['reconcile_s']:.2f} s, {med['cascade_bits_per_s'] / 1e3:.0f} k sifted bits/s",
        ),
        ("verification + amplification", f"{med['verify_amplify_s']:.3f} s"),
        (
            "whole run",
            f"{med['wall_s']:.2f} s wall, real-time factor {med['real_time_factor']:.3f}",
        ),
        (
            "sifted / leaked / secret bits",
            f"{med['sifted_bits']:.0f} / {med['leaked_bits']:.0f} / {med['secret_bits']:.0f}",
        ),
        ("load average (1 min)", f"{med['load_average']:.1f}"),
    ]
    w = max(len(r[0]) for r in rows)
    for name, val in rows:
        print(f"  {name:<{w}}  {val}")


if __name__ == "__main__":
    main()
