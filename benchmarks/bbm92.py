"""BBM92 benchmark: the recorded job end to end on the emulated entanglement bench.

Per acquisition length: wall seconds per emulated second of the whole job (bench start,
acquisition with the clock-model search, coincidences, sifting, Cascade, verification,
amplification, confirmation, record), the coincidences per wall second that implies, and
the sifted bits, QBER and secret bits, with the Ma-Fung-Lo prediction beside them. The
fibres start at the identity and stay still, with the compensation step off (it is a
one-off per bench, reused later: ``entanglement/fibres.py``), so the numbers are the key
path's; the mounts sit at the plates' true zeros.

    python benchmarks/bbm92.py [--json] [--durations 2 5 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

from qhil.orchestrator.experiments.bbm92.job import run_bbm92_job
from qhil.orchestrator.profile import load_profile


def overrides() -> list[str]:
    world: Any = load_profile("entanglement", []).world
    out = []
    for link in ("source-alice", "source-bob"):
        out.append(f'world.links.{link}.initial_polarization="identity"')
        out.append(f"world.links.{link}.polarization_drift_rad_per_sqrt_s=0.0")
    out.append("experiments.bbm92.compensate_polarization=false")
    for node in ("alice", "bob"):
        offset = float(world["nodes"][node]["components"].get("hwp", {}).get("zero_offset_deg", 0))
        out.append(f"experiments.bbm92.{node}_mount_zero_deg={-offset!r}")
    return out


def measure(duration_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        s = asyncio.run(
            run_bbm92_job("entanglement", overrides(), duration_s=duration_s, data_dir=d)
        )
        wall = time.perf_counter() - t0
    r = s.results
    return {
        "duration_s": duration_s,
        "status": s.status,
        "wall_s": wall,
        "wall_per_emulated_s": wall / duration_s,
        "coincidences_per_wall_s": (r.get("coincidences") or 0) / wall,
        "sifted_bits": r.get("sifted_bits"),
        "qber": r.get("qber"),
        "predicted_qber": r.get("predicted_qber"),
        "sifted_rate_hz": r.get("sifted_rate_hz"),
        "predicted_sifted_rate_hz": r.get("predicted_sifted_rate_hz"),
        "secret_bits": r.get("secret_bits", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--durations", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    args = ap.parse_args()
    rows = [measure(d) for d in args.durations]
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(
            f"{row['duration_s']:>5g} s  {row['status']:<8} wall {row['wall_s']:6.1f} s "
            f"({row['wall_per_emulated_s']:.2f} s/s, {row['coincidences_per_wall_s']:.0f} "
            f"coinc/s)  sifted {row['sifted_bits']}  QBER {row['qber']:.4f} "
            f"(MFL {row['predicted_qber']:.4f})  secret {row['secret_bits']}"
        )


if __name__ == "__main__":
    main()
