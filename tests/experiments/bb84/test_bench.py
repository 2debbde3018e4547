"""BB84 end to end through the real drivers and emulators: a Keysight 33500B drives Alice's
transmitter over SCPI/TCP, an S-Fifteen TDC1 streams Bob's timestamps over a pty, both
opened from a profile with ``open_bench``; the parties talk over an authenticated
in-process channel. Nothing in the experiment knows the bench is emulated."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.experiments.bb84 import BB84Settings, bench_roles, run_bb84
from qhil.orchestrator.profile import Profile
from qhil.records import KeyStore

from .support import CHANNEL_MAP, bb84_world_table, open_channels

# 13 ms of pulses at 80 MHz: the TDC1 gates in whole milliseconds.
PATTERN = 1_040_000


def profile(**world: Any) -> Profile:
    return Profile.model_validate(
        {
            "bench": {"name": "bb84-e2e", "seed": 7},
            "nodes": {
                "alice": {
                    "instruments": {"awg": {"model": "keysight.33500b", "component": "alice.tx"}}
                },
                "bob": {
                    "instruments": {"tdc": {"model": "sfifteen.tdc1", "component": "bob.tagger"}}
                },
            },
            "world": bb84_world_table(seed=7, **world),
            "experiments": {
                "bb84": {
                    "channel_map": CHANNEL_MAP,
                    "rep_rate_hz": 80e6,
                    "mus": [0.6, 0.2, 0.0],
                    "intensity_probabilities": [0.5, 0.3, 0.2],
                    "pattern_length": PATTERN,
                    "blocks": 4,
                    "settle_s": 0.0,  # 0 km of fibre: nothing of the previous block in flight
                }
            },
            "source": "test_bench.py",
        }
    )


@pytest.mark.slow
async def test_key_through_keysight_and_tdc1_emulators(tmp_path: Path) -> None:
    prof = profile(e_d=0.015, bob_offset_s=2.2e-3, bob_drift_ppm=-0.4)
    s = BB84Settings.from_profile(prof)
    store = KeyStore(tmp_path / "keys")
    a, b = await open_channels()
    async with open_bench(prof) as bench:
        gen, tagger = bench_roles(bench, s)
        r = await run_bb84(s, gen, tagger, a, b, key_store=store)
    assert r.status == "success" and r.keys_match and r.secret_bits > 1000
    assert store.load(r.alice_key.key_id) == store.load(r.bob_key.key_id)  # type: ignore[union-attr]
    st = r.statistics
    assert st.blocks_used == 4
    # The TDC1 records 13 ms per block: the counting windows cover nearly all of it.
    assert st.window_pulses > 0.99 * st.pulses_sent
    # Gain of each intensity vs PHYSICS.md case 4 (no dark counts: Q = 1 - exp(-eta mu)).
    eta = 0.5  # detector efficiency; 0 km of fibre, no insertion loss in this world
    for k, mu in enumerate((0.6, 0.2)):
        q = 1 - math.exp(-eta * mu)
        lo, hi = stats.binom.interval(0.999, int(st.pulses[k]), q)
        assert lo <= int(st.detections[k]) <= hi, (k, st.gains[k], q)
        lo, hi = stats.binom.interval(0.999, int(st.test_sifted[k]), 0.015)
        assert lo <= int(st.test_errors[k]) <= hi, (k, st.qber_test[k])
    assert np.isfinite(r.key_rate_bps) and r.key_rate_bps > 0
