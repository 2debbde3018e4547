"""Mean photon numbers measured on Alice's power meter (issue 14 item 2, issue 12's mu label):
the formula by hand, the measurement against the world's truth over seeds, the recorded job,
and BB84 refusing a key when the configured mus disagree with the measured ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from scipy import stats

from qhil.calibration import (
    MeanPhotonNumberSettings,
    calibrate_mean_photon_numbers,
    mean_photon_numbers,
    run_mean_photon_number_calibration,
)
from qhil.calibration.jobs import verify_mean_photon_numbers
from qhil.calibration.mean_photon_number import READING_DTYPE
from qhil.cli import main
from qhil.drivers.hp.hp8156a import HP8156A
from qhil.drivers.keysight.ks33500b import Keysight33500B
from qhil.drivers.thorlabs.pm100d import PM100D
from qhil.emulators.hp.hp8156a import HP8156AEmulator
from qhil.emulators.keysight.ks33500b import Keysight33500BEmulator
from qhil.emulators.server import EmulatorHost
from qhil.emulators.thorlabs.pm100d import PM100DEmulator
from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_file
from qhil.errors import ConfigError
from qhil.orchestrator.bench import open_bench
from qhil.orchestrator.jobs import run_bb84_job
from qhil.orchestrator.profile import load_profile
from qhil.records import RunStore

H_J_S, C_M_S = 6.62607015e-34, 299792458.0  # exact SI values
DEFAULT = load_profile("default")
SETTINGS = MeanPhotonNumberSettings.from_profile(DEFAULT)


def test_formula_by_hand() -> None:
    # 1 nW at the meter, 30 dB tap, 0.5 dB + 3 dB to the output, 80 MHz at 1550 nm.
    e_ph = H_J_S * C_M_S / 1550e-9  # 1.2816e-19 J
    mus, std = mean_photon_numbers(
        [1e-9, 0.0],
        [1e-12, 1e-13],
        rep_rate_hz=80e6,
        wavelength_nm=1550.0,
        tap_gain_db=30.0,
        tap_gain_std_db=0.1,
        output_loss_db=3.5,
        output_loss_std_db=0.0,
        meter_accuracy_rel=0.03,
        meter_offset_w=0.0,
    )
    mu = 1e-9 * 10 ** (-3.35) / (e_ph * 80e6)  # 0.04356
    assert mus[0] == pytest.approx(mu, rel=1e-9)
    rel = math.sqrt((0.03 / math.sqrt(3)) ** 2 + (0.1 * math.log(10) / 10) ** 2 + 1e-6)
    assert std[0] == pytest.approx(mu * rel, rel=1e-9)
    assert mus[1] == 0.0 and std[1] == pytest.approx(mu * 1e-4, rel=1e-9)


def test_settings_come_from_the_profile_and_bb84s_levels() -> None:
    assert SETTINGS.levels == 3 and SETTINGS.tap_gain_db == 30.0
    assert SETTINGS.output_loss_db == 0.5 and SETTINGS.rep_rate_hz == 80e6
    assert set(SETTINGS.routine_kwargs()) >= {"rep_rate_hz", "levels", "tap_gain_db"}
    assert "channel_map" not in SETTINGS.routine_kwargs()


async def _measure(host: EmulatorHost, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The default bench's world at ``seed``; the routine through the three drivers."""
    world = World(load_world_file(DEFAULT.source), seed=seed)
    awg = host.add(Keysight33500BEmulator(name="awg", world=world, component="alice.transmitter"))
    att = host.add(HP8156AEmulator(name="att", world=world, component="alice.attenuator"))
    pm = host.add(PM100DEmulator(name="pm", world=world, component="alice.powermeter"))
    async with (
        Keysight33500B.open(awg.resource) as gen,
        HP8156A.open(att.resource) as voa,
        PM100D.open(pm.resource) as meter,
    ):
        await voa.set_output(True)
        await voa.set_attenuation_db(0.7 if seed % 2 else 0.0)  # read back by the routine
        kw = {**SETTINGS.routine_kwargs(), "readings": 4, "average_count": 100}
        result = await calibrate_mean_photon_numbers(
            gen, meter, voa, rng=np.random.default_rng(seed), **kw
        )
    assert result.readings.dtype == READING_DTYPE and len(result.readings) == 15
    truth = world.truth.mean_photon_numbers("alice.transmitter")
    return result.mus, result.mus_std, truth


async def test_measured_mus_agree_with_the_worlds_truth_over_seeds(
    emulator_host: EmulatorHost,
) -> None:
    """Two-sided: every level of 12 seeds (each its own sensor calibration error, drawn
    within the stated 5 %) inside mu +- z sigma at 99.9 %; and the errors not inflated:
    the normalised deviations of the lit levels have rms in [0.35, 1.4] (the sensor's
    uniform error alone gives ~0.87 of sigma; signal and decoy share it, so 12 independent
    values, whose chi-square 99.9 % range of the rms is ~[0.39, 1.64] x 0.87). Measured:
    0.867."""
    z = stats.norm.ppf(0.9995)
    normalised = []
    for seed in range(12):
        mus, std, truth = await _measure(emulator_host, seed)
        print(seed, np.round(mus, 4), np.round(std, 4), np.round(truth, 4))
        assert np.all(np.abs(mus - truth) <= z * std), (seed, mus, truth, std)
        normalised += list(((mus - truth) / std)[:2])
        assert mus[0] == pytest.approx(truth[0], rel=0.06)  # within the sensor's 5 % (+noise)
    rms = float(np.sqrt(np.mean(np.square(normalised))))
    print(f"normalised deviations of the lit levels: rms {rms:.3f}")
    assert 0.35 <= rms <= 1.4, rms


def test_default_truth_leaving_alice_is_the_configured_mus() -> None:
    # Issue 12: [experiments.bb84] mus are what leaves Alice's station (after the 0.5 dB).
    world = World(load_world_file(DEFAULT.source))
    world.attenuator("alice.attenuator").shutter_open = True
    truth = world.truth.mean_photon_numbers("alice.transmitter")
    assert truth == pytest.approx(DEFAULT.experiments["bb84"]["mus"], rel=1e-4, abs=1e-9)


async def test_default_bench_passes_its_own_check_and_a_wrong_mu_fails(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    async with open_bench(DEFAULT) as bench:
        with store.start_run("check") as run:
            assert await verify_mean_photon_numbers(DEFAULT, bench, (0.5, 0.1, 0.0), run) is None
            reason = await verify_mean_photon_numbers(DEFAULT, bench, (0.7, 0.1, 0.0), run)
            run.finish("success")
    assert reason is not None and "signal mu 0.7 configured" in reason
    rec = store.get(run.run_id)
    assert rec.arrays["mucal_mus"].shape == (2, 3)
    assert rec.results["mucal_mu_0"] == pytest.approx(0.5, rel=0.12)


async def test_recorded_job(tmp_path: Path) -> None:
    summary = await run_mean_photon_number_calibration("default", [], tmp_path)
    assert summary.status == "success" and summary.kind == "calibration.mean_photon_number"
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.status.value == "success" and "alice.powermeter" in rec.identities
    assert rec.arrays["readings"].dtype == READING_DTYPE
    assert len(rec.arrays["readings"]) == 3 * (SETTINGS.readings + 1)
    mus = rec.arrays["mus"][0]
    assert rec.results["mu_0"] == mus[0] and rec.results["mu_0_lo"] <= 0.5 <= rec.results["mu_0_hi"]
    assert mus == pytest.approx([0.5, 0.1, 0.0], rel=0.1, abs=2e-3)


async def test_bb84_refuses_a_key_when_mus_disagree_with_the_measurement(tmp_path: Path) -> None:
    # Plausible (passes validation) but not what the bench sends: before the fix, a key.
    summary = await run_bb84_job(
        "default", ["experiments.bb84.mus=[0.7,0.1,0.0]"], data_dir=tmp_path
    )
    assert summary.status == "aborted" and summary.results == {}
    assert summary.reason is not None and "signal mu 0.7 configured" in summary.reason
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.status.value == "aborted" and not rec.keys
    assert rec.arrays["mucal_mus"][0][0] == pytest.approx(0.5, rel=0.12)
    assert "mucal_mu_0_std" in rec.results


def test_cli_refuses_issue_14s_mus(tmp_path: Path) -> None:
    # Issue 14's example, [1.5, 0.1, 0.0], yielded 84 k instead of 46 k bits: now exit 2.
    out = CliRunner().invoke(
        main,
        ["run", "bb84", "--set", "experiments.bb84.mus=[1.5,0.1,0.0]", "--data-dir", str(tmp_path)],
    )
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "experiments.bb84.mus: signal must be in (0, 1]" in lines[0]
    assert "default.toml" in lines[0]


async def test_party_alice_measures_before_she_listens(tmp_path: Path) -> None:
    # Two-process mode: Alice holds the meter; a wrong mus ends her run before any photon
    # of the key exchange (and before Bob could connect).
    from qhil.emulators.bench import EmulatedBench
    from qhil.orchestrator.jobs import run_bb84_party_job

    key = tmp_path / "auth.hex"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    with EmulatedBench(DEFAULT) as emulated:
        lab = tmp_path / "lab.toml"
        lab.write_bytes(tomli_w.dumps(emulated.addressed_profile()).encode())
        summary = await run_bb84_party_job(
            "alice",
            str(lab),
            ["experiments.bb84.mus=[0.5,0.13,0.0]"],
            auth_key_file=key,
            listen="127.0.0.1:0",
            data_dir=tmp_path,
            peer_timeout_s=5.0,
        )
    assert summary.status == "aborted"
    assert summary.reason is not None and "decoy mu 0.13 configured" in summary.reason
    rec = RunStore(tmp_path).get(summary.run_id)
    assert rec.kind == "bb84.alice" and rec.status.value == "aborted"
    assert rec.arrays["mucal_mus"][0][1] == pytest.approx(0.1, rel=0.12)


async def test_level_count_must_match_bb84s(tmp_path: Path) -> None:
    prof = load_profile("default", ["experiments.calibration.mean_photon_number.levels=2"])
    async with open_bench(prof) as bench:
        with RunStore(tmp_path).start_run("check") as run:
            with pytest.raises(ConfigError, match=r"mean_photon_number\.levels: measures 2"):
                await verify_mean_photon_numbers(prof, bench, (0.5, 0.1, 0.0), run)
            run.finish("success")


def test_cli_calibrate_mean_photon_number(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main, ["calibrate", "mean-photon-number", "--json", "--data-dir", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    assert summary["kind"] == "calibration.mean_photon_number"
    assert summary["mu_0_lo"] <= 0.5 <= summary["mu_0_hi"]


async def test_a_measurement_that_fails_on_the_bench_aborts_not_a_profile_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The meter or generator failing is the bench's fault: the BB84 check returns an abort
    reason (exit 3), as a failed polarization compensation does; it was a ConfigError (2)."""
    import qhil.calibration.jobs as cal_jobs
    from qhil.calibration.errors import CalibrationError
    from qhil.orchestrator.profile import load_profile

    async def failing(*args: object, **kwargs: object) -> None:
        raise CalibrationError("the meter read nan W")

    monkeypatch.setattr(cal_jobs, "measure_mean_photon_numbers", failing)
    prof = load_profile("default")
    reason = await verify_mean_photon_numbers(prof, None, [0.5, 0.1, 0.0], None)  # type: ignore[arg-type]
    assert reason == (
        "calibration_failed: measuring the mean photon numbers failed: the meter read nan W"
    )
