"""The default emulated bench's BB84 rate against the decoy-state prediction (PHYSICS.md case 4).

One run through every driver and emulator of ``hw_profiles/default.toml``. The
prediction is built from the bench's physics alone (world ground truth: losses,
detector efficiencies, dark and background counts, extinction ratios, dead time),
never from the run; the measurement is the asymptotic decoy-state rate computed
from the run's counts. They must agree within the measurement's statistical error
(99.9 % two-sided interval from a parametric bootstrap of the counts).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from qhil.emulators.bench import EmulatedBench
from qhil.numerics.qkd import DecoyCounts, decoy_key_rate, vacuum_weak_decoy_bounds
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.channel import AuthKey, HmacSha256Authenticator, in_process_channels
from qhil.orchestrator.experiments.bb84 import BB84Settings, bench_roles, run_bb84
from qhil.orchestrator.profile import load_profile
from qhil.records import KeyStore

pytestmark = pytest.mark.slow

DETECTORS = ("bob.det_h", "bob.det_v", "bob.det_d", "bob.det_a")
# Which detectors a photon of each BB84 state can reach, with what routing probability
# (50:50 basis splitter, then a PBS): H -> h (1/2), d and a (1/4 each); and so on.
ROUTING = {
    "H": {"bob.det_h": 0.5, "bob.det_d": 0.25, "bob.det_a": 0.25},
    "V": {"bob.det_v": 0.5, "bob.det_d": 0.25, "bob.det_a": 0.25},
    "D": {"bob.det_d": 0.5, "bob.det_h": 0.25, "bob.det_v": 0.25},
    "A": {"bob.det_a": 0.5, "bob.det_h": 0.25, "bob.det_v": 0.25},
}


def _rate(
    mus: tuple[float, ...], pulses: np.ndarray, det: np.ndarray, cmp: np.ndarray, err: np.ndarray
) -> float:
    counts = DecoyCounts(mus, pulses, det, cmp, err)
    return float(decoy_key_rate(vacuum_weak_decoy_bounds(counts)))


def _prediction(
    world: object,
    cfg: dict,
    s: BB84Settings,
    pulses: np.ndarray,
    compared: np.ndarray,
    e_d_scale: float = 1.0,
) -> float:
    """Expected counts from the bench's physics, run through the same decoy formulas."""
    t = world.truth  # type: ignore[attr-defined]
    trans = t.path_transmission("alice.transmitter", DETECTORS[0])
    eff = {d: t.detector_efficiency(d) for d in DETECTORS}
    eta = float(np.mean([sum(w * eff[d] for d, w in r.items()) for r in ROUTING.values()])) * trans
    link = cfg["links"]["alice-bob"]
    background = link["background_rate_hz"] * float(np.mean(list(eff.values())))
    y0 = (sum(t.dark_count_rate_hz(d) for d in DETECTORS) + background) / s.rep_rate_hz
    tx = cfg["nodes"]["alice"]["components"]["transmitter"]
    rx = cfg["nodes"]["bob"]["components"]["receiver"]
    e_d = 1 / (1 + 10 ** (tx["polarization_extinction_ratio_db"] / 10))
    e_d += 1 / (1 + 10 ** (rx["pbs_extinction_ratio_db"] / 10))
    # The fibre's polarization drifts (a random walk) during the run: average the
    # misalignment of the four states over the run's simulated time.
    states = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], float)
    times = np.linspace(0.0, float(world.clock.now_s), 25)  # type: ignore[attr-defined]
    rot = [t.path_rotation("alice.transmitter", ts) for ts in times]
    e_d += float(np.mean([(1 - np.einsum("i,ij,j", v, r, v)) / 2 for r in rot for v in states]))
    e_d *= e_d_scale
    # eta counts from the transmitter's output, so the levels there (s.mus leave Alice,
    # after her attenuator's insertion loss).
    mus = world.transmitter("alice.transmitter").current_mus()  # type: ignore[attr-defined]
    q = y0 + 1 - np.exp(-eta * mus)
    # Non-paralysable dead time: each detector sees a quarter of all clicks.
    tau = cfg["nodes"]["bob"]["components"]["det_h"]["dead_time_ns"] * 1e-9
    r_det = s.rep_rate_hz * float(np.dot(s.intensity_probabilities, q)) / 4
    q = q / (1 + r_det * tau)
    e = (y0 / 2 + e_d * (q - y0)) / q
    return _rate(tuple(s.mus), pulses, pulses * q, compared, compared * e)


async def test_secret_key_rate_matches_the_decoy_state_prediction(tmp_path: Path) -> None:
    # The fibre starts aligned here (the job would otherwise compensate it first).
    prof = load_profile(
        None,
        [
            "experiments.bb84.duration_s=0.3",
            'world.links.alice-bob.initial_polarization="identity"',
        ],
    )
    s = BB84Settings.from_profile(prof)
    with EmulatedBench(prof) as emulated:
        bench = Bench(prof, emulated.addresses(), emulated.extra_addresses())
        async with bench:
            gen, tagger = bench_roles(bench, s)
            key = AuthKey.generate()
            a, b = in_process_channels(HmacSha256Authenticator(key), HmacSha256Authenticator(key))
            await asyncio.gather(a.open(), b.open())
            r = await run_bb84(s, gen, tagger, a, b, key_store=KeyStore(tmp_path / "keys"))
        world = emulated.world
        assert r.status == "success" and r.keys_match
        st = r.statistics
        assert prof.world is not None
        n, c = st.pulses.astype(float), st.test_sifted.astype(float)
        predicted = _prediction(world, prof.world, s, n, c)
        # Stated systematic: the misalignment e_d is the least certain input (extinction
        # ratios combined additively, drift sampled at 25 times): +-10 % on it moves the
        # rate by about +-1.4 %. The prediction band must overlap the measurement interval.
        band = sorted(_prediction(world, prof.world, s, n, c, k) for k in (0.9, 1.1))
    measured = _rate(s.mus, st.pulses, st.detections, st.test_sifted, st.test_errors)
    # Parametric bootstrap of the counts: binomial detections and errors at the measured rates.
    rng = np.random.default_rng(20261126)
    p_det = st.detections / st.pulses
    p_err = np.where(st.test_sifted > 0, st.test_errors / np.maximum(st.test_sifted, 1), 0.0)
    boot = [
        _rate(
            s.mus,
            st.pulses,
            rng.binomial(st.pulses, p_det),
            st.test_sifted,
            rng.binomial(st.test_sifted, p_err),
        )
        for _ in range(2000)
    ]
    lo, hi = np.quantile(boot, [0.0005, 0.9995])
    assert band[0] <= hi and lo <= band[1], (measured, predicted, band, lo, hi)
    assert math.isfinite(measured) and measured > 0
