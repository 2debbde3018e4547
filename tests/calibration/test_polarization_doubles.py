"""The polarization search on role doubles over a small numpy link model (tests/calibration/
doubles.py): random fibre rotations, random retarder offsets and half-wave voltages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from qhil.calibration import CalibrationError, Phase, calibrate_polarization, step_dtype
from qhil.calibration.polarization import PolarizationCalibration, PolarizationStep

from .doubles import CHANNEL_MAP, LinkModel, doubles, residual_angle


async def calibrate(link: LinkModel, **kw: object) -> tuple[PolarizationCalibration, object]:
    d = doubles(link)
    kw.setdefault("rng", np.random.default_rng(0))
    r = await calibrate_polarization(
        d.generator,
        d.tagger,
        d.controller,
        channel_map=CHANNEL_MAP,
        rep_rate_hz=80e6,
        **kw,  # type: ignore[arg-type]
    )
    return r, d


def random_link(seed: int, **kw: object) -> LinkModel:
    rng = np.random.default_rng(10_000 + seed)
    offsets = rng.uniform(-math.pi, math.pi, 4)
    kw.setdefault("half_wave_mv", np.full(4, rng.uniform(1200.0, 3500.0)))
    return LinkModel.random(seed, offsets_rad=offsets, **kw)


async def test_random_rotations_reach_target_within_budget() -> None:
    # 24 random links (fibre, retarder offsets, half-wave voltage): every one ends below
    # the 1 % target, and the true residual rotation is small.
    worst_angle = 0.0
    for seed in range(24):
        link = random_link(seed)
        r, d = await calibrate(link)
        assert r.target_met, (seed, r.stop_reason, r.e_z.value, r.e_x.value)
        assert r.acquisitions <= 150
        assert len(d.tagger.gates) == r.acquisitions + r.settle_gates  # type: ignore[attr-defined]
        ez, ex = link.true_errors(r.voltages_mv)
        assert ez < 0.01 and ex < 0.01, (seed, ez, ex)
        worst_angle = max(worst_angle, residual_angle(link.rotation(r.voltages_mv)))
        # The controller is left at the voltages reported.
        assert link.voltages == list(r.voltages_mv)
    # e = sin^2(theta/2) + preparation error: 1 % allows about 0.16 rad.
    assert worst_angle < 0.16


async def test_learned_half_wave_voltage_matches_the_model() -> None:
    for seed, vpi in ((1, 1500.0), (2, 2000.0), (3, 3200.0)):
        link = LinkModel.random(seed, half_wave_mv=np.full(4, vpi))
        r, _ = await calibrate(link)
        assert r.half_wave_voltage_source == "scan"
        assert r.half_wave_voltage_mv is not None
        # 12 points of ~3000 clicks per basis: the rate is found to well under 2 %.
        assert abs(r.half_wave_voltage_mv / vpi - 1) < 0.02, (vpi, r.half_wave_voltage_mv)


#: EPC-400 squeezers differ: one half-wave voltage per channel (OZ Optics quotes each).
UNEQUAL_MV = np.array([1800.0, 2000.0, 2100.0, 2200.0])


def unequal_link(seed: int, **kw: object) -> LinkModel:
    """A random base half-wave voltage, each channel within +-10 % of it."""
    rng = np.random.default_rng(20_000 + seed)
    half_wave = rng.uniform(1200.0, 3500.0) * rng.uniform(0.9, 1.1, 4)
    return random_link(seed, half_wave_mv=half_wave, **kw)


async def test_each_channel_half_wave_voltage_is_learned() -> None:
    # The four channels' own half-wave voltages, whichever order they come in.
    for seed, half_wave in ((1, UNEQUAL_MV), (2, UNEQUAL_MV[::-1]), (3, UNEQUAL_MV[[2, 0, 3, 1]])):
        link = LinkModel.random(seed, half_wave_mv=half_wave.copy())
        r, _ = await calibrate(link)
        assert r.target_met, (seed, r.stop_reason)
        assert r.half_wave_voltages_mv is not None
        # ~1600 clicks per basis per point: each channel's within 2 % (scan ~0.2 %, line
        # fits ~0.3 % median, 1 % at the 99th percentile in 2000 simulated lines).
        learned = np.array(r.half_wave_voltages_mv)
        assert np.all(np.abs(learned / half_wave - 1) < 0.02), (seed, learned, half_wave)
        assert r.half_wave_voltage_sources == ("scan", "line", "line", "line")
        assert r.half_wave_voltage_mv == pytest.approx(float(np.mean(learned)))
        res = r.to_results()
        assert [res[f"half_wave_v{i}_mv"] for i in range(1, 5)] == list(r.half_wave_voltages_mv)
        assert res["half_wave_voltage_mv"] == r.half_wave_voltage_mv


async def test_half_wave_standard_errors_match_the_errors() -> None:
    # z = (learned - true) / reported standard error over 24 links x 4 channels: sum z^2 is
    # chi-square with 96 dof if the errors are right (two-sided 99.9 %: 56.9-148.2). Over
    # 8000 channels z had rms 1.03 (0.5 % beyond 3, none beyond 5).
    z = []
    for seed in range(200, 224):
        link = unequal_link(seed)
        r, _ = await calibrate(link)
        assert r.half_wave_voltages_mv is not None and r.half_wave_voltage_stds_mv is not None
        assert set(r.half_wave_voltage_sources) == {"scan", "line"}, r.half_wave_voltage_sources
        learned, std = np.array(r.half_wave_voltages_mv), np.array(r.half_wave_voltage_stds_mv)
        z.extend((learned - link.half_wave_mv) / std)
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], len(z))
    assert lo < float(np.sum(np.square(z))) < hi, np.round(z, 2)


async def test_ambiguous_lines_are_decided() -> None:
    # Seed 1536: five points on channel 3's line leave an alias at 944 mV fitting as well
    # (chi-square 0.4 apart) as the true 1407 mV; one more point where they disagree decides.
    # Seed 36 (+-20 %): channel 4's 2315 mV lies beyond 1.4x the scanned 3415 mV; no rate
    # within fits (chi-square 198 for 11 dof) and the wider search finds it.
    rng = np.random.default_rng(20_036)
    wide = rng.uniform(1200.0, 3500.0) * rng.uniform(0.8, 1.2, 4)
    for link in (unequal_link(1536), random_link(36, half_wave_mv=wide)):
        r, _ = await calibrate(link)
        learned = np.array(r.half_wave_voltages_mv)
        assert np.all(np.abs(learned / link.half_wave_mv - 1) < 0.02), (learned, link.half_wave_mv)
        assert r.target_met


@pytest.mark.slow
async def test_unequal_half_wave_voltages_reach_target_within_budget() -> None:
    # 120 random links whose channels' half-wave voltages differ by up to +-10 %. One
    # half-wave voltage for all channels (the scanned one, the search before per-channel
    # values) fails 15 of these 120 (target_met False or a true error >= 1 %) and 211 of 2300
    # such links (seeds 0-299, 1000-2999; 99.9 % interval 7.3-11.3 %): even at that
    # interval's low end it would pass 120 fresh links with probability 1e-4. With each
    # channel's own value none of those 2300 failed (99.9 % upper bound 0.33 %).
    for seed in range(120):
        link = unequal_link(seed)
        r, _ = await calibrate(link)
        ez, ex = link.true_errors(r.voltages_mv)
        assert r.target_met and ez < 0.01 and ex < 0.01, (seed, r.stop_reason, ez, ex)
        assert r.acquisitions <= 150


async def test_reported_errors_are_consistent_with_the_truth() -> None:
    # The verification's 99.9 % intervals hold the model's true error fractions.
    misses = 0
    for seed in range(12):
        link = random_link(100 + seed)
        r, _ = await calibrate(link)
        ez, ex = link.true_errors(r.voltages_mv)
        for true, ef in ((ez, r.e_z), (ex, r.e_x)):
            lo, hi = ef.interval(0.999)
            misses += not (lo <= true <= hi)
    # 24 intervals at 99.9 %: P(any miss) ~ 2.4 %; allow one.
    assert misses <= 1


async def test_before_is_measured_at_the_start_voltages() -> None:
    link = random_link(7)
    link.voltages = [300, -1200, 40, 2500]
    r, d = await calibrate(link)
    assert r.start_voltages_mv == (300, -1200, 40, 2500)
    assert r.before.voltages_mv == r.start_voltages_mv
    ez, ex = link.true_errors([300, -1200, 40, 2500])
    lo, hi = r.before.e_z.interval(0.999)
    assert lo <= ez <= hi
    lo, hi = r.before.e_x.interval(0.999)
    assert lo <= ex <= hi
    assert d.generator.output_calls == [True, False]  # type: ignore[attr-defined]


async def test_already_compensated_link_stops_at_once() -> None:
    link = LinkModel.random(3, fibre=np.eye(3))
    r, d = await calibrate(link)
    assert r.stop_reason == "target met at the start voltages"
    assert [s.phase for s in r.steps] == [Phase.START, Phase.VERIFY]
    assert r.acquisitions == 4 and r.voltages_mv == (0, 0, 0, 0)
    assert r.target_met and r.half_wave_voltage_source == "none"
    assert d.controller.writes == [[0, 0, 0, 0]]  # type: ignore[attr-defined]


async def test_given_half_wave_voltage_skips_the_scan() -> None:
    link = LinkModel.random(5, half_wave_mv=np.full(4, 2000.0))
    r, _ = await calibrate(link, half_wave_voltage_mv=2000.0)
    assert Phase.SCAN not in {s.phase for s in r.steps}
    assert r.half_wave_voltage_source == "given"
    assert r.half_wave_voltage_mv == pytest.approx(2000.0)
    assert r.target_met


async def test_given_half_wave_voltages_per_channel_skip_the_scan() -> None:
    link = LinkModel.random(5, half_wave_mv=UNEQUAL_MV.copy())
    r, _ = await calibrate(link, half_wave_voltage_mv=[1800.0, 2000.0, 2100.0, 2200.0])
    assert Phase.SCAN not in {s.phase for s in r.steps}
    assert r.half_wave_voltages_mv == pytest.approx((1800.0, 2000.0, 2100.0, 2200.0))
    assert r.half_wave_voltage_sources == ("given",) * 4
    assert r.target_met
    ez, ex = link.true_errors(r.voltages_mv)
    assert ez < 0.01 and ex < 0.01
    with pytest.raises(ValueError, match="half_wave_voltage_mv has 3 values for 4 channels"):
        await calibrate(link, half_wave_voltage_mv=[1800.0, 2000.0, 2100.0])


async def test_small_budget_is_respected_and_reported() -> None:
    link = random_link(9)
    r, _ = await calibrate(link, max_acquisitions=30)
    assert r.acquisitions <= 30
    assert r.stop_reason in ("acquisition budget spent", "target met")
    # 30 gates leave no room for the 27-point joint step after the scan.
    assert Phase.GRID not in {s.phase for s in r.steps}
    assert r.steps[-1].phase == Phase.VERIFY


async def test_channel_map_is_honoured() -> None:
    link = random_link(11)
    cm = {"H": 3, "V": 1, "D": 4, "A": 2}
    d = doubles(link, cm)
    r = await calibrate_polarization(
        d.generator, d.tagger, d.controller, channel_map=cm, rep_rate_hz=80e6
    )
    assert r.target_met
    ez, ex = link.true_errors(r.voltages_mv)
    assert ez < 0.01 and ex < 0.01


async def test_settle_gate_follows_every_change() -> None:
    # Light of the previous pattern is still in flight for 100 us: with a settle gate each
    # count is clean; the sequence per evaluation is volts?, load, settle, count, load, ...
    link = random_link(13, delay_s=100e-6)
    r, d = await calibrate(link, settle_s=1e-3)
    ev = d.generator.events  # type: ignore[attr-defined]
    for i, e in enumerate(ev):
        if e == "load":
            assert ev[i + 1] == "gate 0.001" and ev[i + 2].startswith("gate 0.0")
    assert r.settle_gates == r.acquisitions
    ez, ex = link.true_errors(r.voltages_mv)
    lo, hi = r.e_z.interval(0.999)
    assert lo <= ez <= hi
    lo, hi = r.e_x.interval(0.999)
    assert lo <= ex <= hi


async def test_without_settle_light_in_flight_biases_the_errors() -> None:
    # Without settle gates, the first 100 us of each 2 ms gate (5 %) is the previous
    # reference still in flight: the counts follow that mixture, not the clean model --
    # why the settle gate exists.
    link = random_link(13, delay_s=100e-6)
    r, _ = await calibrate(link, settle_s=0.0, max_acquisitions=40)
    assert r.settle_gates == 0
    w = 100e-6 / 2e-3
    chi2 = {"mixed": 0.0, "clean": 0.0}
    dof = 0
    for step in r.steps:
        if step.phase != Phase.SCAN:  # every scan step follows another evaluation
            continue
        m = step.measurement
        p_h, p_d = link.probabilities(0, m.voltages_mv), link.probabilities(2, m.voltages_mv)
        for counts, now, before, (good, bad) in (
            (m.under_h, p_h, p_d, (0, 1)),
            (m.under_d, p_d, p_h, (2, 3)),
        ):
            n, k = counts[good] + counts[bad], counts[bad]
            for name, p in (("mixed", (1 - w) * now + w * before), ("clean", now)):
                f = p[bad] / (p[good] + p[bad])
                chi2[name] += (k - n * f) ** 2 / (n * f * (1 - f))
            dof += 1
    limit = stats.chi2.ppf(0.999, dof)
    assert chi2["mixed"] < limit, chi2
    assert chi2["clean"] > limit, chi2


async def test_no_light_is_a_clear_error() -> None:
    link = random_link(1, light=False)
    with pytest.raises(CalibrationError, match="too few clicks"):
        await calibrate(link)


async def test_unresponsive_controller_is_a_clear_error_and_restores_voltages() -> None:
    link = random_link(2, responsive=False)
    link.voltages = [100, 200, 300, 400]
    with pytest.raises(CalibrationError, match="did not change the error fractions"):
        await calibrate(link)
    assert link.voltages == [100, 200, 300, 400]


async def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    link = random_link(3)
    d = doubles(link)
    with pytest.raises(ValueError, match="channel_map"):
        await calibrate_polarization(
            d.generator,
            d.tagger,
            d.controller,
            channel_map={"H": 1, "V": 2, "D": 3},
            rep_rate_hz=80e6,
        )
    for kw, match in (
        ({"target_error": 0.0}, "target_error"),
        ({"integration_s": -1.0}, "integration_s"),
        ({"max_acquisitions": 3}, "max_acquisitions"),
        ({"half_wave_voltage_mv": 0.0}, "half_wave_voltage_mv"),
        ({"half_wave_voltage_mv": [2000.0, 2000.0, -1.0, 2000.0]}, "half_wave_voltage_mv"),
        ({"half_wave_spread": 1.0}, "half_wave_spread"),
    ):
        with pytest.raises(ValueError, match=match):
            await calibrate_polarization(
                d.generator,
                d.tagger,
                d.controller,
                channel_map=CHANNEL_MAP,
                rep_rate_hz=80e6,
                **kw,
            )
    assert d.generator.loaded == [] and d.controller.writes == []


async def test_step_rows_hold_every_measurement() -> None:
    link = random_link(21)
    seen: list[PolarizationStep] = []
    r, _ = await calibrate(link, on_step=seen.append)
    rows = r.step_rows()
    assert rows.dtype == step_dtype(4)
    assert len(rows) == len(r.steps) == len(seen)
    assert list(rows["step"]) == list(range(len(rows)))
    for row, step in zip(rows, r.steps, strict=True):
        m = step.measurement
        assert row["phase"] == int(step.phase)
        assert [row[f"v{i}_mv"] for i in range(1, 5)] == list(m.voltages_mv)
        assert (row["h_ref_h"], row["h_ref_v"]) == m.under_h[:2]
        assert (row["d_ref_d"], row["d_ref_a"]) == m.under_d[2:]
        assert row["e_z"] == pytest.approx(m.under_h[1] / (m.under_h[0] + m.under_h[1]))
    res = r.to_results()
    assert res["evaluations"] == len(r.steps)
    assert res["v1_mv"] == r.voltages_mv[0] and res["e_x_after"] == r.e_x.value
