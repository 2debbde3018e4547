"""The coincidence-delay peak fit on synthetic two-node streams."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from qhil.calibration.coincidence_delay import (
    calibrate_from_streams,
    fit_delay_peak,
    pair_differences,
)
from qhil.calibration.errors import CalibrationError

TICK_PS = 2000  # a TDC1's tick on the wire


def streams(
    rng: np.random.Generator,
    *,
    pairs_hz: float,
    noise_hz: float,
    seconds: float,
    delay_ps: float,
    jitter_ps: float = 25.0,
    tick_ps: int = TICK_PS,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Alice's and bob's streams: pairs at ``delay_ps`` (bob later) plus uncorrelated clicks,
    each stamped on its own tagger's ticks at its own phase; and the delay the stamped streams
    hold: ``delay_ps`` plus bob's phase less alice's (a tick's floor takes ``phase - T/2`` on
    average; on the bench the clocks' drift dithers the phases and this averages out)."""
    span = seconds * 1e12
    t = rng.uniform(0, span, rng.poisson(pairs_hz * seconds))
    a = np.concatenate([t, rng.uniform(0, span, rng.poisson(noise_hz * seconds))])
    b = np.concatenate(
        [
            t + delay_ps + rng.normal(0, jitter_ps, t.size),
            rng.uniform(0, span, rng.poisson(noise_hz * seconds)),
        ]
    )
    phase_a, phase_b = rng.uniform(0, tick_ps, 2)
    a = np.floor((a + phase_a) / tick_ps) * tick_ps
    b = np.floor((b + phase_b) / tick_ps) * tick_ps
    stamped = delay_ps + float(phase_b - phase_a) if tick_ps > 1 else delay_ps
    return np.sort(a).astype(np.int64), np.sort(b).astype(np.int64), stamped


def test_delay_and_error_are_honest_over_seeds() -> None:
    """Normalised deviations over 60 synthetic acquisitions (TDC1 ticks, background): mean 0,
    rms 1 within 99.9 % two-sided bounds; every one within 3.9 sigma."""
    rng = np.random.default_rng(11)
    pulls = []
    for _ in range(60):
        true = rng.uniform(-5000, 5000)
        a, b, true = streams(rng, pairs_hz=2000, noise_hz=3e4, seconds=0.5, delay_ps=true)
        d = pair_differences(a, b, search_ps=50_000)
        peak = fit_delay_peak(d, search_ps=50_000)
        pulls.append((peak.delay_ps - true) / peak.delay_std_ps)
    z = np.asarray(pulls)
    q = norm.ppf(0.9995)
    assert np.max(np.abs(z)) < norm.ppf(1 - 0.5e-4)
    assert abs(z.mean()) < q / np.sqrt(z.size)
    assert 1 - q / np.sqrt(2 * z.size) < np.sqrt(np.mean(z**2)) < 1 + q / np.sqrt(2 * z.size)


def test_background_is_measured_flat_and_matches_the_singles() -> None:
    rng = np.random.default_rng(5)
    a, b, _ = streams(rng, pairs_hz=1000, noise_hz=5e4, seconds=1.0, delay_ps=1234.0, tick_ps=1)
    cal = calibrate_from_streams(
        a, b, integration_s=1.0, clock_offset_ps=1e9, clock_drift=1e-6, clock_method="one-way"
    )
    res = cal.to_results()
    assert abs(cal.delay_ps - 1234.0) < 3.29 * cal.peak.delay_std_ps
    assert res["total_delay_ps"] == pytest.approx(1e9 + cal.delay_ps)
    assert res["path_delay_difference_ps"] is None  # one-way: inside the offset
    # Accidentals S_A S_B per ps: measured within 3.29 sigma (Poisson, 2 x 50 ns - 6 ns).
    expected = res["expected_background_per_ps"]
    n_bg = expected * (100_000 - 6000)
    assert abs(res["background_per_ps"] * (100_000 - 6000) - n_bg) < 3.29 * np.sqrt(n_bg)
    assert cal.histogram["pairs"].sum() == cal.peak.pairs
    # The drawn model's peak area matches the pairs counted.
    assert cal.histogram["model"].sum() == pytest.approx(cal.peak.pairs, rel=0.05)


def test_two_way_model_reports_the_path_delay_difference() -> None:
    rng = np.random.default_rng(6)
    a, b, _ = streams(rng, pairs_hz=1000, noise_hz=1e3, seconds=0.2, delay_ps=44_000.0, tick_ps=1)
    cal = calibrate_from_streams(
        a,
        b,
        integration_s=0.2,
        clock_offset_ps=0.0,
        clock_drift=0.0,
        clock_method="two-way",
        search_ps=100_000,
    )
    assert cal.to_results()["path_delay_difference_ps"] == cal.delay_ps
    assert abs(cal.delay_ps - 44_000.0) < 3.29 * cal.peak.delay_std_ps


def test_no_peak_is_a_calibration_error_naming_the_rates() -> None:
    rng = np.random.default_rng(7)
    a, b, _ = streams(rng, pairs_hz=0, noise_hz=2e4, seconds=0.2, delay_ps=0.0)
    with pytest.raises(CalibrationError, match=r"no coincidence peak.*singles alice"):
        calibrate_from_streams(
            a, b, integration_s=0.2, clock_offset_ps=0, clock_drift=0, clock_method="one-way"
        )


@pytest.mark.slow  # matplotlib's first figure: 3-5 s on a loaded host
def test_histogram_plot_from_the_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qhil.plots import write_plots
    from qhil.records import RunStore

    rng = np.random.default_rng(9)
    a, b, _ = streams(rng, pairs_hz=1000, noise_hz=1e4, seconds=0.3, delay_ps=500.0)
    cal = calibrate_from_streams(
        a, b, integration_s=0.3, clock_offset_ps=0.0, clock_drift=0.0, clock_method="one-way"
    )
    with RunStore(tmp_path).start_run("calibration.coincidence_delay") as run:
        run.append("histogram", cal.histogram)
        run.log_results({k: v for k, v in cal.to_results().items() if v is not None})
        run.finish("success")
    (rec,) = RunStore(tmp_path, readonly=True).list_runs()
    report = write_plots(rec, out_dir=tmp_path / "png")
    assert [p.name for p in report.written] == ["delay_histogram.png"]
