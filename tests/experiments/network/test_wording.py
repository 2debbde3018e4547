"""The ping's output and plot say "bench time": the network clock is the bench's, emulated
or lab alike (they said "emulated" on lab profiles too); the help, README and profile
name ping, its exit 1 and the lab variant."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from qhil.orchestrator.experiments.network.ping import PingSummary, summary_lines


def _summary() -> PingSummary:
    results = {
        "local": "alice",
        "remote": "bob",
        "probes": 2,
        "pairs_delivered": 20,
        "pairs_requested": 20,
        "pairs_measured": 20,
        "rate_pairs_per_s": 25.0,
        "latency_min_s": 0.01,
        "latency_mean_s": 0.02,
        "latency_max_s": 0.03,
    }
    return PingSummary("r1", "success", True, "reachable after 20 pairs", [], results)


def test_summary_says_bench_time() -> None:
    text = "\n".join(summary_lines(_summary()))
    assert "pairs/s (bench time)" in text and "emulated" not in text


def test_probe_plot_says_bench_time() -> None:
    from matplotlib.figure import Figure

    from qhil.plots.network import draw_probes

    names = [
        ("probe", np.int64),
        ("fidelity", float),
        ("delivered", np.int64),
        ("latency_s", float),
    ]
    rows = np.zeros(3, dtype=names)
    rows["probe"] = np.arange(3)
    record = type("R", (), {"results": {"reachable": True}, "status": "success"})()
    fig = Figure()
    draw_probes(record, {"probes": rows}, fig)  # type: ignore[arg-type]
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "latency (ms, bench time)" in labels and not any("emulated" in x for x in labels)


ROOT = Path(__file__).resolve().parents[3]


def test_help_overview_and_readme_name_ping_and_its_exit_1() -> None:
    from click.testing import CliRunner

    from qhil.cli import main

    text = CliRunner().invoke(main, ["--help"]).output
    assert "qhil ping NODE_A NODE_B" in text and "1 not reachable (qhil ping)" in text
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^\| 1 +\| `qhil ping` only", readme, re.MULTILINE)


def test_repeater_profile_points_to_its_lab_variant() -> None:
    text = (ROOT / "hw_profiles" / "repeater.toml").read_text()
    named = set(re.findall(r"\b(lab_\w+\.toml)", text))
    assert named == {"lab_repeater.toml"} and (ROOT / "hw_profiles" / "lab_repeater.toml").exists()
