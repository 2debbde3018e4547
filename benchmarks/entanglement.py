"""Entanglement benchmark (issue 10): cross-node coincidences processed per second, and
BBM92 wall seconds per emulated second, end to end.

`qhil.numerics.entanglement.cross_node_coincidences` on synthetic streams shaped like the
emulated entanglement bench's (1 s: 4.1e3 pairs/s, 3.9e4 / 2.2e4 tags/s at alice / bob, a
TDC1-like 0.8 ns relative jitter, bob on his own clock at -39 ppm), and at 10x and 100x
those rates: the clock model applied to bob's tags, the peak fit, the window, the 4 x 4
matrix, eight displaced windows for the accidentals. Wall time is the median of repeats;
coincidences per second = coincidences found / that time; tags per second likewise.
The clock-model search itself (clock sync's acquisition) is benchmarked in clock_sync.py.
Then the whole recorded BBM92 job (bench start, acquisition with the clock-model search,
coincidences, sifting, Cascade, verification, amplification, confirmation, record) per
emulated second, for each of ``--bbm92-durations`` (bbm92.py's measurement, fibres still).

    python benchmarks/entanglement.py [--json] [--repeats 5] [--bbm92-durations 2 5]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from bbm92 import measure as bbm92_end_to_end  # benchmarks/bbm92.py, beside this file
from qhil.numerics.entanglement import cross_node_coincidences
from qhil.numerics.timing import ClockModel

PS = 10**12
MODEL = ClockModel(0.3129 * PS + 44.1e6, -38.9e-6, 0)


def streams(scale: float, seed: int = 1) -> tuple[Any, Any, Any, Any]:
    rng = np.random.default_rng(seed)
    n = rng.poisson(4.1e3 * scale)
    t0 = np.sort(rng.integers(0, PS, n))
    out = rng.integers(0, 4, n)
    ta = t0 + np.rint(rng.normal(0, 580, n)).astype(np.int64)
    tb_a = t0 + np.rint(rng.normal(0, 580, n)).astype(np.int64)
    na, nb = rng.poisson(3.5e4 * scale), rng.poisson(1.8e4 * scale)
    a_t = np.concatenate([ta, rng.integers(0, PS, na)])
    a_c = np.concatenate([out + 1, rng.integers(1, 5, na)])
    b_true = np.concatenate([tb_a, rng.integers(0, PS, nb)])
    b_t = np.rint(MODEL.b_from_a(b_true)).astype(np.int64)
    b_c = np.concatenate([out + 1, rng.integers(1, 5, nb)])
    oa, ob = np.argsort(a_t, kind="stable"), np.argsort(b_t, kind="stable")
    return a_t[oa], a_c[oa], b_t[ob], b_c[ob]


def measure(scale: float, repeats: int) -> dict[str, Any]:
    a_t, a_c, b_t, b_c = streams(scale)
    walls, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = cross_node_coincidences(a_t, a_c, b_t, b_c, MODEL, duration_ps=PS)
        walls.append(time.perf_counter() - t0)
    assert res is not None
    wall = float(np.median(walls))
    return {
        "rate_scale": scale,
        "tags": int(a_t.size + b_t.size),
        "coincidences": res.coincidences,
        "window_ps": res.window_ps,
        "wall_s_per_emulated_s": wall,
        "coincidences_per_s": res.coincidences / wall,
        "tags_per_s": (a_t.size + b_t.size) / wall,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bbm92-durations", type=float, nargs="*", default=[2.0, 5.0])
    args = p.parse_args()
    rows = [measure(s, args.repeats) for s in (1.0, 10.0, 100.0)]
    bbm92 = [bbm92_end_to_end(d) for d in args.bbm92_durations]
    if args.json:
        print(json.dumps({"cross_node_coincidences": rows, "bbm92_end_to_end": bbm92}))
        return
    print(
        f"{'rates':>6} {'tags':>10} {'coinc.':>9} {'wall s/emul. s':>15} {'coinc./s':>12} {'tags/s':>12}"
    )
    for r in rows:
        print(
            f"{r['rate_scale']:>5g}x {r['tags']:>10d} {r['coincidences']:>9d} "
            f"{r['wall_s_per_emulated_s']:>15.4f} {r['coincidences_per_s']:>12.3g} "
            f"{r['tags_per_s']:>12.3g}"
        )
    for b in bbm92:
        print(
            f"BBM92 {b['duration_s']:g} s emulated: {b['status']}, {b['wall_s']:.1f} s wall = "
            f"{b['wall_per_emulated_s']:.2f} wall s per emulated s, "
            f"{b['secret_bits']} secret bits"
        )


if __name__ == "__main__":
    main()
