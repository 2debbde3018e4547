"""Relative detector efficiencies: the count arithmetic, role doubles, the emulated bench."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from qhil.calibration import (
    CalibrationError,
    calibrate_detector_efficiency,
    relative_efficiencies,
    run_detector_efficiency_calibration,
)
from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

from .doubles import CHANNEL_MAP, LinkModel, doubles

RANDOM = 'world.links.alice-bob.initial_polarization="random"'


def test_arithmetic() -> None:
    rel, _, net, _ = relative_efficiencies([1100, 900, 1000, 1000], 1.0, [100, 100, 0, 0], 1.0)
    assert net == pytest.approx([1000, 800, 1000, 1000])
    assert rel == pytest.approx(4 * np.array([1000, 800, 1000, 1000]) / 3800)
    assert rel.sum() == pytest.approx(4.0)
    # Dead time: measured R/(1 + R tau) comes back to R.
    tau, true = 50e-9, np.array([1e6, 0.8e6, 1.1e6, 1e6])
    measured = true / (1 + true * tau)
    _, _, net, _ = relative_efficiencies(measured * 2.0, 2.0, dead_time_s=tau)
    assert net == pytest.approx(true)
    with pytest.raises(CalibrationError, match="no net light"):
        relative_efficiencies([10, 0, 10, 10], 1.0)
    with pytest.raises(ValueError, match="four counts"):
        relative_efficiencies([1, 2, 3], 1.0)


def test_errors_and_chi_square_are_calibrated() -> None:
    # Monte Carlo: the reported standard errors match the spread of the estimates, and
    # under equal efficiencies the chi-square's p-values are uniform (KS test, 99.9 %).
    rng = np.random.default_rng(2)
    rates_s = np.array([5000.0, 5000.0, 5000.0, 5000.0])
    rates_b = np.array([300.0, 200.0, 250.0, 400.0])
    rels, stds, ps = [], [], []
    for _ in range(2000):
        s = rng.poisson((rates_s + rates_b) * 1.0)
        b = rng.poisson(rates_b * 0.5)
        rel, std, _, chi2 = relative_efficiencies(s, 1.0, b, 0.5)
        rels.append(rel)
        stds.append(std)
        ps.append(stats.chi2.sf(chi2, 3))
    empirical = np.std(rels, axis=0)
    reported = np.mean(stds, axis=0)
    # 2000 samples: the empirical std is known to ~1.6 % (1 sigma); allow 6 %.
    assert empirical == pytest.approx(reported, rel=0.06)
    assert stats.kstest(ps, "uniform").pvalue > 1e-3


async def test_doubles_recover_the_efficiencies() -> None:
    eff = np.array([1.0, 0.9, 1.07, 0.97])
    link = LinkModel.random(4, efficiency=eff, dark_hz=np.array([500.0, 300.0, 800.0, 100.0]))
    d = doubles(link)
    rows = []
    r = await calibrate_detector_efficiency(
        d.generator,
        d.tagger,
        channel_map=CHANNEL_MAP,
        rep_rate_hz=80e6,
        intensity_index=1,
        vacuum_intensity_index=2,
        on_gate=rows.append,
        rng=np.random.default_rng(1),
    )
    truth = 4 * eff / eff.sum()
    z = (r.relative - truth) / r.relative_std
    assert np.all(np.abs(z) < stats.norm.ppf(1 - 0.001 / 2)), z
    assert r.p_equal < 1e-6 and r.mismatch == pytest.approx(1.07 / 0.9, rel=0.02)
    # 5 light gates then 2 vacuum gates, each recorded; the vacuum ones see the darks.
    gates = np.concatenate(rows)
    assert list(gates["light"]) == [1] * 5 + [0] * 2
    assert r.background_counts == pytest.approx(
        np.array([500.0, 300.0, 800.0, 100.0]) * 0.4, rel=0.3
    )
    # Every uploaded mixed pattern is fresh, with exactly equal shares of H, V, D, A.
    mixed = [p for p in d.generator.loaded if np.any(p >> 2 == 1)]
    assert len(mixed) == 5
    for p in mixed:
        assert np.bincount(p & 3, minlength=4).tolist() == [len(p) // 4] * 4
    assert d.generator.output_calls == [True, False]


async def test_equal_detectors_pass_the_equality_test() -> None:
    # Equal efficiencies, any fibre rotation: the chi-square p-values spread over (0, 1).
    ps = []
    for seed in range(8):
        link = LinkModel.random(seed, dark_hz=np.full(4, 200.0))
        d = doubles(link)
        r = await calibrate_detector_efficiency(
            d.generator,
            d.tagger,
            channel_map=CHANNEL_MAP,
            rep_rate_hz=80e6,
            vacuum_intensity_index=2,
            integration_s=0.05,
            rng=np.random.default_rng(seed),
        )
        ps.append(r.p_equal)
    # All eight above 1e-3 happens with probability 0.992 under equality.
    assert min(ps) > 1e-3, ps


async def bench_efficiencies(*overrides: str) -> tuple[np.ndarray, object]:
    prof = load_profile("default", [RANDOM, *overrides])
    assert prof.world is not None
    bob = prof.world["nodes"]["bob"]["components"]
    # The Eos SNSPDs' dead time, as the lab would give it (one value for the four).
    (dead_ns,) = {bob[f"det_{d}"]["dead_time_ns"] for d in "hvda"}
    emu = EmulatedBench(prof)
    await asyncio.to_thread(emu.start)
    try:
        async with Bench(prof, emu.addresses(), emu.extra_addresses()) as bench:
            r = await calibrate_detector_efficiency(
                bench.role("alice", PatternGenerator, name="patterns"),
                bench.role("bob", TimeTagger, name="tagger"),
                channel_map=CHANNEL_MAP,
                rep_rate_hz=80e6,
                intensity_index=1,  # the decoy level: far from saturation
                vacuum_intensity_index=2,
                dead_time_s=dead_ns * 1e-9,
                rng=np.random.default_rng(4),
            )
            eta = np.array([emu.world.truth.detector_efficiency(f"bob.det_{d}") for d in "hvda"])
    finally:
        await asyncio.to_thread(emu.stop)
    return 4 * eta / eta.sum(), r


@pytest.mark.parametrize("overrides", [(), ("world.nodes.bob.components.det_v.efficiency=0.12",)])
async def test_default_bench_against_the_truth(overrides: tuple[str, ...]) -> None:
    truth, r = await bench_efficiencies(*overrides)
    z = (r.relative - truth) / r.relative_std  # type: ignore[attr-defined]
    # Two-sided 99.9 % per detector. Dead time corrected: uncorrected, 40 ns at ~0.9 MHz on
    # the 80-88 % SNSPDs (3.5 % of clicks lost) against 0.5 % on a 12 % one shifted the ratios
    # by 3 % (12 sigma).
    assert np.all(np.abs(z) < stats.norm.ppf(1 - 0.001 / 2)), (z, r.relative, truth)  # type: ignore[attr-defined]
    assert r.p_equal < 1e-6  # the default detectors differ by 5 % already  # type: ignore[attr-defined]


async def test_job_records_the_run(tmp_path: Path) -> None:
    summary = await run_detector_efficiency_calibration("default", [RANDOM], tmp_path)
    assert summary.status == "success"
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.kind == "calibration.detector_efficiency"
    # From [experiments.bb84] mus = [0.5, 0.1, 0.0]: decoy light, vacuum background.
    assert rec.parameters["intensity_index"] == 1
    assert rec.parameters["vacuum_intensity_index"] == 2
    assert len(rec.arrays["gates"]) == 7
    rel = rec.arrays["relative"]
    assert rel.shape == (1, 4) and rel[0].sum() == pytest.approx(4.0)
    assert rec.results["relative_v"] == pytest.approx(rel[0][1])
    bob = load_profile("default").world["nodes"]["bob"]["components"]  # type: ignore[index]
    assert bob["det_v"]["efficiency"] < bob["det_d"]["efficiency"]
    assert rec.results["relative_v"] < rec.results["relative_d"]
