"""PHYSICS.md case 7 end to end: clock offset (+ fibre delay) recovered from the emulated world.

An SPDC source at Alice sends one photon to her detector and the other through
a fibre to Bob's; each node's tagger stamps on its own clock (offset + drift).
``find_clock_offset`` on the two tag streams must return the world's true
"B minus A" (clock offsets, drift, fibre and cable delays) within its error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.emulators.world import World, load_world_config
from qhil.numerics.timing import ClockSyncResult, find_clock_offset

CONFIDENCE = 0.999
Z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
JITTER_PS = 40.0  # per detector; sigma_rel = sqrt(2) * 40 ps
SKIPPED_MEAN_INFLATION = 1.0274  # 3-sigma self-centred clipping (see offset_search)


def world_profile(bob_offset_s: float, bob_drift_ppm: float, length_km: float) -> dict[str, Any]:
    def det(channel: int) -> dict[str, Any]:
        return {
            "type": "detector",
            "efficiency": 0.5,
            "dark_count_rate_hz": 500.0,
            "dead_time_ns": 50.0,
            "jitter_ps": JITTER_PS,
            "tagger": "tagger",
            "channel": channel,
        }

    return {
        "nodes": {
            "alice": {
                "clock_offset_s": 1e-3,
                "clock_drift_ppm": -0.7,
                "components": {
                    "spdc": {
                        "type": "spdc_source",
                        "pump_current_ma": 30.0,
                        "pairs_per_s_per_mw": 1e5,
                        "heralding_efficiency_signal": 0.3,
                        "heralding_efficiency_idler": 0.3,
                        "signal_path": ["alice.det_s"],
                        "idler_path": ["ab", "bob.det_i"],
                    },
                    "det_s": det(1),
                    "tagger": {"type": "time_tagger", "n_channels": 2},
                },
            },
            "bob": {
                "clock_offset_s": bob_offset_s,
                "clock_drift_ppm": bob_drift_ppm,
                "components": {"det_i": det(1), "tagger": {"type": "time_tagger", "n_channels": 2}},
            },
        },
        "links": {"ab": {"a": "alice", "b": "bob", "length_km": length_km, "alpha_db_per_km": 0.2}},
    }


def run(
    seed: int, duration_s: float, bob_offset_s: float, drift_ppm: float, km: float
) -> tuple[World, np.ndarray, ClockSyncResult]:
    cfg = load_world_config(world_profile(bob_offset_s, drift_ppm, km), source="case7")
    world = World(cfg, seed=seed)
    ra = world.tagger("alice.tagger").open_reader()
    rb = world.tagger("bob.tagger").open_reader()
    a = ra.read(duration_s).timestamps_ps
    b = rb.read(duration_s).timestamps_ps
    return world, a, find_clock_offset(a, b)


def true_model_at(world: World, t_a_ps: float) -> tuple[float, float]:
    """World truth: (B - A at Alice-clock reading t_a_ps, relative drift)."""
    tr = world.truth
    src, da, db = "alice.spdc", "alice.det_s", "bob.det_i"
    ta0 = tr.expected_timestamp_ps(src, da, 0.0)
    ta1 = tr.expected_timestamp_ps(src, da, 1.0)
    emitted = (t_a_ps - ta0) / (ta1 - ta0)  # Alice's clock is linear in true time
    d0 = tr.expected_delta_ps(src, da, db, 0.0)
    d1 = tr.expected_delta_ps(src, da, db, 1.0)
    return tr.expected_delta_ps(src, da, db, emitted), (d1 - d0) / (ta1 - ta0)


def check(world: World, r: ClockSyncResult) -> float:
    truth_offset, truth_drift = true_model_at(world, r.model.t_ref_ps)
    assert abs(r.offset_ps - truth_offset) < Z * r.fit.offset_stderr_ps
    assert abs(r.model.drift - truth_drift) < Z * r.fit.drift_stderr
    assert r.fit.sigma_rel_ps == pytest.approx(math.sqrt(2) * JITTER_PS, rel=0.05)
    return truth_offset


def test_case_7_on_the_emulated_bench() -> None:
    # Bob's clock 0.31 s ahead (inside pfind's +-0.5 s), 2.5 ppm fast; 5 km of fibre (~25 us).
    world, _, r = run(7, 0.5, 0.3123456789, 2.5, 5.0)
    truth = check(world, r)
    assert truth > 0.3e12  # the offset really is the clock offset plus the fibre
    # Edge-of-data intercept of a line through N pairs: 2 sigma_rel / sqrt(N) (x clipping).
    expected = (
        2 * SKIPPED_MEAN_INFLATION * math.sqrt(2) * JITTER_PS / math.sqrt(r.fit.n_coincidences)
    )
    assert r.fit.offset_stderr_ps == pytest.approx(expected, rel=0.1)


@pytest.mark.slow
def test_case_7_spread_over_seeds_on_the_emulated_bench() -> None:
    """8 worlds: offsets at the data centre scatter like sigma_rel/sqrt(N) (chi2, 99.9 %)."""
    rng = np.random.default_rng(8)
    z = []
    for seed in range(8):
        off = float(rng.uniform(-0.45, 0.45))
        world, a, r = run(
            100 + seed, 0.5, off, float(rng.uniform(-20, 20)), float(rng.uniform(1, 30))
        )
        check(world, r)
        t_mid = int(a[0] + (a[-1] - a[0]) // 2)
        est = r.model.with_reference(t_mid).offset_ps
        truth, _ = true_model_at(world, t_mid)
        sd = SKIPPED_MEAN_INFLATION * math.sqrt(2) * JITTER_PS / math.sqrt(r.fit.n_coincidences)
        z.append((est - truth) / sd)
    zz = np.array(z)
    lo, hi = stats.chi2.ppf([(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], zz.size)
    assert lo <= float(np.sum(zz**2)) <= hi, zz
