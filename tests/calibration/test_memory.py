"""Quantum-memory characterisation (``qhil calibrate memory``, calibration.memory).

Acceptance on the default emulated bench (both nodes' memories, one fixed seed each): every
measured efficiency and every input's P(retrieved photon at its own port) agree with the
direct prediction of the world's storage channel for the profile's parameters (qutip), and
that prediction with the analytic one (dephasing (1 + (2F0 - 1) exp(-t/T2))/2, the T1
relaxation of V); two-sided binomial tests, 99.9 % family-wise (Bonferroni). The fitted
T1, T2 and efficiency decay time agree with the configured ones within 3.29 sigma (99.9 %
two-sided). Cheap tests of the analysis, the settings and the measurement's clean-up."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from qhil.calibration.errors import CalibrationError
from qhil.calibration.memory import (
    BASES,
    INPUTS,
    POINT_DTYPE,
    MemorySettings,
    fit_memory,
    measure_memory,
    storage_times,
)
from qhil.calibration.store import CalibrationStore
from qhil.cli import main
from qhil.drivers.qhil.qmc import CycleCounts
from qhil.emulators.world import World, load_world_config
from qhil.emulators.world.quantum import MemoryParameters
from qhil.emulators.world.quantum.channels import apply_kraus
from qhil.emulators.world.quantum.density import PAULI_EIGENKETS, state_fidelity
from qhil.errors import ConfigError
from qhil.orchestrator.profile import load_profile
from qhil.plots import plot_paths
from qhil.records import RunStore

Z = stats.norm.isf(0.001 / 2)  # 3.29: 99.9 % two-sided
KETS = dict(zip(INPUTS, PAULI_EIGENKETS, strict=True))


def _profile_memory(node: str) -> MemoryParameters:
    """The default profile's memory at ``node``, as the world builds it, without cutoff (the
    calibration lifts it)."""
    prof = load_profile("default")
    world = World(load_world_config(prof.world, prof.source), mode="fast")
    return replace(world.memory(f"{node}.memory").params, cutoff_s=math.inf)


def _predicted_correct(params: MemoryParameters, t: float) -> np.ndarray:
    """P(click at the stored state's own port) per input: the qutip storage channel."""
    kraus = params.storage_kraus(t)
    return np.array([state_fidelity(KETS[s], apply_kraus(KETS[s], kraus)) for s in INPUTS])


@pytest.mark.slow
def test_memory_calibration_agrees_with_the_world(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["calibrate", "memory", "--json", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    r = json.loads(out.output.strip().splitlines()[-1])
    assert r["kind"] == "calibration.memory" and r["status"] == "success"
    assert r["nodes"] == "alice,bob"
    record = RunStore(tmp_path).get(r["run_id"])
    rows = record.arrays["points"]
    n_tests = rows.size + rows.size // len(INPUTS)  # each input, and each efficiency
    alpha = 1e-3 / n_tests
    for k, node in enumerate(("alice", "bob")):
        params = _profile_memory(node)
        f0, t1, t2 = params.initial_fidelity, params.t1_s, params.t2_s
        tau = params.efficiency_decay_time_s
        own = rows[rows["node"] == k]
        for t in np.unique(own["storage_time_s"]):
            at = own[own["storage_time_s"] == t]
            assert list(at["input"]) == list(range(len(INPUTS)))
            # Efficiency: every cycle of the six inputs, against write * read(t).
            eff = float(params.retrieval_probability(t))
            got = at["port0"] + at["port1"]
            assert stats.binomtest(int(got.sum()), int(at["cycles"].sum()), eff).pvalue > alpha
            # Each input at its own port, against the qutip channel ...
            p = _predicted_correct(params, float(t))
            right = np.where(np.arange(6) % 2 == 0, at["port0"], at["port1"])
            for j in range(len(INPUTS)):
                assert stats.binomtest(int(right[j]), int(got[j]), p[j]).pvalue > alpha, (
                    node,
                    t,
                    INPUTS[j],
                )
            # ... which is the analytic one: dephasing for D/A/R/L, T1 relaxation for V.
            lam = 2 * f0 - 1
            assert p[2:] == pytest.approx((1 + lam * math.exp(-t / t2)) / 2, abs=1e-9)
            assert p[1] == pytest.approx((1 + lam) * math.exp(-t / t1) / 2, abs=1e-9)
        # Fitted times against the configured ones, within the stated errors ...
        for name, truth in (("t1", t1), ("t2", t2), ("efficiency_decay", tau)):
            fit, std = r[f"{node}_{name}_s"], r[f"{node}_{name}_std_s"]
            assert abs(fit - truth) < Z * std, (node, name, fit, std, truth)
            # ... errors small enough to tell: a world with a time 1.5x or 0.67x this
            # one would fail the same test.
            assert min(abs(fit - 1.5 * truth), abs(fit - truth / 1.5)) > Z * std, (node, name)
        assert r[f"{node}_efficiency_0"] == pytest.approx(
            params.write_efficiency * params.read_efficiency,
            abs=Z * r[f"{node}_efficiency_0_std"],
        )
    # The store shows T1/T2 with their errors; the decay plot was drawn.
    (cal,) = CalibrationStore(tmp_path).history("memory")
    assert cal.quantities["alice_t1_s"].std == r["alice_t1_std_s"]
    assert cal.quantities["bob_t2_s"].value == r["bob_t2_s"]
    assert [p.name for p in plot_paths(record)] == ["memory_decay.png"]


# --- analysis on synthetic counts -----------------------------------------------------------


def _synthetic_rows(
    params: MemoryParameters, times: np.ndarray, cycles: int, seed: int
) -> np.ndarray:
    """What an ideal sequencer would count (binomial draws from the storage channel)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(times.size * len(INPUTS), dtype=POINT_DTYPE)
    rows["storage_time_s"] = np.repeat(times, len(INPUTS))
    rows["input"] = np.tile(np.arange(len(INPUTS)), times.size)
    rows["cycles"] = cycles
    rows["stored"] = cycles
    got = rng.binomial(cycles, params.retrieval_probability(rows["storage_time_s"]))
    right = rng.binomial(got, np.concatenate([_predicted_correct(params, t) for t in times]))
    own0 = rows["input"] % 2 == 0
    rows["port0"] = np.where(own0, right, got - right)
    rows["port1"] = got - rows["port0"]
    return rows


def test_fit_recovers_the_channels_times_and_reports_its_errors() -> None:
    params = MemoryParameters(
        write_efficiency=0.9,
        read_efficiency=0.5,
        efficiency_decay_time_s=3e-3,
        t1_s=8e-3,
        t2_s=1e-3,
        initial_fidelity=0.97,
        readout_error=0.02,
    )
    rows = _synthetic_rows(params, np.linspace(0, 4e-3, 8), 3000, seed=5)
    fits = fit_memory(rows)
    for fit, truth in ((fits.t1, 8e-3), (fits.t2, 1e-3), (fits.efficiency, 3e-3)):
        assert abs(fit.time_s - truth) < Z * fit.time_std_s, (fit, truth)
        assert fit.p_value > 1e-3, fit  # the model describes the data
    # A read-out bit flip scales the contrast but leaves T1 alone: a1 = 2 (2F0-1)(1-2e).
    assert fits.t1.amplitude == pytest.approx(2 * 0.94 * 0.96, abs=Z * fits.t1.amplitude_std)
    # The Bloch average at t = 0 is the channel's average fidelity.
    avg0 = params.average_fidelity(0.0)
    assert abs(fits.estimates.fidelity[0] - avg0) < Z * fits.estimates.fidelity_std[0]


def test_too_few_storage_times_or_no_decay_to_fit_is_a_calibration_error() -> None:
    params = MemoryParameters(efficiency_decay_time_s=1e-6, t2_s=1e-3)
    with pytest.raises(CalibrationError, match="efficiency: fewer than 3 storage times"):
        fit_memory(_synthetic_rows(params, np.array([0.0, 1e-3]), 100, seed=1))
    # Nothing ever came back after t = 0: no decay time (and no error) to give.
    with pytest.raises(CalibrationError, match="efficiency: the exponential fit failed"):
        fit_memory(_synthetic_rows(params, np.linspace(0.0, 4e-3, 5), 100, seed=1))


# --- settings ------------------------------------------------------------------------------


def _profile(table: dict[str, Any]) -> Any:
    return SimpleNamespace(
        source="bench.toml",
        experiments={"calibration": {"memory": table}},
        nodes={"alice": None, "bob": None},
    )


@pytest.mark.parametrize(
    ("table", "nodes", "where"),
    [
        ({"cycles": 0}, None, "bench.toml: experiments.calibration.memory.cycles: "),
        ({"storage_times_s": [0.0, 1e-3]}, None, "memory.storage_times_s: needs at least 3"),
        ({"colour": 1}, None, "experiments.calibration.memory.colour: "),
        ({}, ["carol"], "bench.toml: --node: no node 'carol' (alice, bob)"),
        ({"nodes": ["carol"]}, None, "experiments.calibration.memory.nodes: no node 'carol'"),
    ],
)
def test_bad_settings_name_the_file_and_field(
    table: dict[str, Any], nodes: list[str] | None, where: str
) -> None:
    with pytest.raises(ConfigError) as err:
        MemorySettings.from_profile(_profile(table), nodes)
    assert where in str(err.value)


def test_storage_times_around_the_stated_scale() -> None:
    s = MemorySettings.from_profile(_profile({"points": 4, "span": 2.0}))
    assert storage_times(s, (math.inf, 10e-3, 2e-3)) == pytest.approx([0, 4e-3 / 3, 8e-3 / 3, 4e-3])
    with pytest.raises(CalibrationError, match="storage_times_s"):
        storage_times(s, (math.inf, math.inf, math.inf))
    own = MemorySettings.from_profile(_profile({"storage_times_s": [3e-3, 0.0, 1e-3]}))
    assert storage_times(own, (1.0, 1.0, 1.0)) == [0.0, 1e-3, 3e-3]


# --- the measurement leaves the controller as it found it -----------------------------------


class _FakeMemory:
    def __init__(self, fail_at: int | None = None) -> None:
        self.state = {"cutoff": 5e-3, "delay": 0.0, "input": "BELL", "analyzer": "Z"}
        self.calls: list[tuple[str, float, str, str]] = []
        self.fail_at = fail_at

    async def cycle(self, mode: int, count: int) -> CycleCounts:
        if len(self.calls) == self.fail_at:
            raise RuntimeError("controller gone")
        s = self.state
        self.calls.append(
            (str(s["cutoff"]), float(s["delay"]), str(s["input"]), str(s["analyzer"]))
        )
        return CycleCounts(count, count, count, 0)

    async def set_input(self, state: str) -> None:
        self.state["input"] = state

    async def get_input(self) -> str:
        return str(self.state["input"])

    async def set_analyzer(self, basis: str) -> None:
        self.state["analyzer"] = basis

    async def set_readout_delay_s(self, seconds: float) -> None:
        self.state["delay"] = seconds

    async def get_readout_delay_s(self) -> float:
        return float(self.state["delay"])

    async def set_cutoff_s(self, seconds: float) -> None:
        self.state["cutoff"] = seconds

    async def get_cutoff_s(self) -> float:
        return float(self.state["cutoff"])

    async def nominal_times_s(self) -> tuple[float, float, float]:
        return (math.inf, math.inf, 1e-3)


async def test_measurement_lifts_the_cutoff_and_restores_the_controller() -> None:
    mem = _FakeMemory()
    rows = await measure_memory(mem, [0.0, 2e-3], cycles=10)
    assert [c[0] for c in mem.calls] == ["inf"] * 12  # no cycle saw the 5 ms cutoff
    assert [(c[2], c[3]) for c in mem.calls[:6]] == list(zip(INPUTS, BASES, strict=True))
    assert [c[1] for c in mem.calls] == [0.0] * 6 + [2e-3] * 6
    assert rows["port0"].tolist() == [10] * 12
    assert mem.state == {"cutoff": 5e-3, "delay": 0.0, "input": "BELL", "analyzer": "Y"}
    broken = _FakeMemory(fail_at=3)
    with pytest.raises(RuntimeError):
        await measure_memory(broken, [1e-3], cycles=10)
    assert broken.state["cutoff"] == 5e-3 and broken.state["delay"] == 0.0
    assert broken.state["input"] == "BELL"


# --- the plot, from a copy of the record alone -------------------------------------------------


def test_decay_plot_from_a_copied_record(tmp_path: Path) -> None:
    import shutil

    from qhil.plots import write_plots

    params = MemoryParameters(efficiency_decay_time_s=3e-3, t1_s=8e-3, t2_s=1e-3)
    rows = _synthetic_rows(params, np.linspace(0, 4e-3, 6), 2000, seed=3)
    more = rows.copy()
    more["node"] = 1
    store = RunStore(tmp_path / "data")
    with store.start_run("calibration.memory") as run:
        run.append("points", np.concatenate([rows, more]))
        run.log_results({"nodes": "alice,bob"})
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    shutil.rmtree(tmp_path / "data")
    record = RunStore(tmp_path / "copy", readonly=True).get(run.run_id)
    report = write_plots(record)
    assert [p.name for p in report.written] == ["memory_decay.png"]
    from matplotlib.figure import Figure

    from qhil.plots.memory import draw_memory_decay

    fig = Figure()
    draw_memory_decay(record, {"points": record.arrays["points"]}, fig)
    t2_axes = fig.axes[2]
    fit = fit_memory(rows)
    labels = [str(line.get_label()) for line in t2_axes.lines if "fit" in str(line.get_label())]
    tau = f"{fit.t2.time_s * 1e3:.3g}"
    assert labels == [
        f"alice fit: {tau} +- {fit.t2.time_std_s * 1e3:.2g} ms",
        f"bob fit: {tau} +- {fit.t2.time_std_s * 1e3:.2g} ms",
    ]


def test_a_profile_table_for_the_memory_calibration_is_validated_at_load() -> None:
    """[experiments.calibration.memory] is a known table: a bad field names itself (it was
    refused as an unknown calibration before profile.py knew MemorySettings)."""
    from qhil.errors import ConfigError
    from qhil.orchestrator.profile import load_profile

    prof = load_profile("default", overrides=["experiments.calibration.memory.points=5"])
    assert prof.experiments["calibration"]["memory"]["points"] == 5
    with pytest.raises(ConfigError, match=r"experiments\.calibration\.memory\.points"):
        load_profile("default", overrides=["experiments.calibration.memory.points=2"])
