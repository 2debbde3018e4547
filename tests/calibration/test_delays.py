"""Relative channel delays: the peak estimate, and the emulated bench against its truth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhil.calibration import CalibrationError, calibrate_delays, run_delay_calibration
from qhil.calibration.delays import peak_position
from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.bench import Bench
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

CHANNEL_MAP = {"H": 1, "V": 2, "D": 3, "A": 4}
# Cable and electronics delays on bob's side: V +3.3 ns, D +120 ns, A -1.7 ns (tagger input).
DELAYS = (
    "world.nodes.bob.components.det_v.delay_ns=3.3",
    "world.nodes.bob.components.det_d.delay_ns=120",
    "world.nodes.bob.components.tagger.input_delays_ps.4=-1700",
)


@pytest.mark.parametrize("center", [0.0, 1234.5, -9900.0, 9990.0])
def test_peak_with_background_and_wrap(center: float) -> None:
    # 400 clicks with 600 ps spread at ``center`` plus 300 uniform background clicks on a
    # 20 ns period (peaks near +-10 ns wrap around): the position comes back within 4
    # standard errors, and the background's share of the window is taken out.
    rng = np.random.default_rng(int(center) + 50_000)
    period = 20_000.0
    peak = center + rng.normal(0, 600, 400)
    bg = rng.uniform(-period / 2, period / 2, 300)
    r = (np.concatenate([peak, bg]) + period / 2) % period - period / 2
    est = peak_position(r, period, window_ps=2000.0, coarse_bin_ps=500.0)
    d = (est.position_ps - center + period / 2) % period - period / 2
    assert abs(d) < 4 * est.std_ps, (d, est)
    # 60 background clicks fall in the window on average; 400 +- ~25 remain.
    assert est.clicks == pytest.approx(400, abs=80)
    assert est.spread_ps == pytest.approx(600, rel=0.25)


def test_empty_or_flat_channel_is_an_error() -> None:
    with pytest.raises(CalibrationError, match="no clicks"):
        peak_position(np.zeros(0), 1000.0, 100.0, 50.0)
    flat = np.random.default_rng(1).uniform(-5e5, 5e5, 200)
    with pytest.raises(CalibrationError, match="above background"):
        peak_position(flat, 1e6, 5000.0, 1000.0)


@asynccontextmanager
async def default_bench(*overrides: str) -> AsyncIterator[tuple[Bench, Any]]:
    prof = load_profile("default", list(overrides))
    emu = EmulatedBench(prof)
    await asyncio.to_thread(emu.start)
    try:
        async with Bench(prof, emu.addresses(), emu.extra_addresses()) as bench:
            yield bench, emu.world
    finally:
        await asyncio.to_thread(emu.stop)


def true_delays(world: Any) -> np.ndarray:
    t = world.clock.now_s - 0.05
    e = np.array(
        [world.truth.expected_timestamp_ps("alice.transmitter", f"bob.det_{d}", t) for d in "hvda"]
    )
    return e - e[0]


async def test_default_bench_delays_against_the_truth() -> None:
    async with default_bench(*DELAYS) as (bench, world):
        gen = bench.role("alice", PatternGenerator, name="patterns")
        tagger = bench.role("bob", TimeTagger, name="tagger")
        r = await calibrate_delays(
            gen,
            tagger,
            channel_map=CHANNEL_MAP,
            rep_rate_hz=80e6,
            vacuum_intensity_index=2,
            rng=np.random.default_rng(1),
        )
        truth = true_delays(world)
        assert truth == pytest.approx([0, 3300, 120000, -1700], abs=1.0)
        # The TDC1's 2 ns bins are dithered by bob's 0.5 ppm drift: the means resolve
        # tens of ps. Each delay within 4 standard errors of the truth.
        assert np.all(np.abs(r.delays_ps - truth) < 4 * r.delays_std_ps + 1.0), (
            r.delays_ps,
            truth,
            r.delays_std_ps,
        )
        assert np.all(r.delays_std_ps[1:] < 100.0)
        assert r.drift * 1e6 == pytest.approx(0.5, abs=0.01)  # bob's clock runs 0.5 ppm fast
        assert r.applied_input_delays_ps is None

        # Apply: the tagger's input delays line the channels up; measured again, all ~0.
        r1 = await calibrate_delays(
            gen,
            tagger,
            channel_map=CHANNEL_MAP,
            rep_rate_hz=80e6,
            vacuum_intensity_index=2,
            apply=True,
            rng=np.random.default_rng(2),
        )
        assert r1.applied_input_delays_ps == {
            c: -round(float(x)) for c, x in zip((1, 2, 3, 4), r1.delays_ps, strict=True)
        }
        r2 = await calibrate_delays(
            gen,
            tagger,
            channel_map=CHANNEL_MAP,
            rep_rate_hz=80e6,
            vacuum_intensity_index=2,
            rng=np.random.default_rng(3),
        )
        expected = r1.delays_ps - np.round(r1.delays_ps) * 1.0  # residual of the rounding
        assert np.all(np.abs(r2.delays_ps - expected) < 4 * r2.delays_std_ps + 1.0), r2.delays_ps


async def test_bad_arguments() -> None:
    async with default_bench() as (bench, _):
        gen = bench.role("alice", PatternGenerator, name="patterns")
        tagger = bench.role("bob", TimeTagger, name="tagger")
        for kw, match in (
            ({"vacuum_intensity_index": 0}, "differ from intensity_index"),
            ({"vacuum_intensity_index": 2, "reference": "X"}, "reference"),
            ({"vacuum_intensity_index": 2, "window_ps": 2e6}, "window_ps"),
        ):
            with pytest.raises(ValueError, match=match):
                await calibrate_delays(
                    gen,
                    tagger,
                    channel_map=CHANNEL_MAP,
                    rep_rate_hz=80e6,
                    **kw,  # type: ignore[arg-type]
                )


async def test_job_records_the_run(tmp_path: Path) -> None:
    summary = await run_delay_calibration("default", list(DELAYS), tmp_path)
    assert summary.status == "success"
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.kind == "calibration.delays" and rec.parameters["vacuum_intensity_index"] == 2
    rows = rec.arrays["channels"]
    assert rows["channel"].tolist() == [1, 2, 3, 4]
    assert rows["delay_ps"][0] == 0.0
    assert rec.results["delay_d_ps"] == pytest.approx(120000.0, abs=300.0)
    assert rec.results["delay_d_ps"] == rows["delay_ps"][2]
