"""The ping's probes and verdict on the fake repeater bench (fakes.py)."""

from __future__ import annotations

import math

import pytest

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.network import Network, frames
from qhil.orchestrator.experiments.network.ping import _verdict, ping, ping_settings

from .fakes import fake_bench, settings


async def _ping(bench: object, **kw: object) -> object:
    s = settings(characterisation_pairs=60, ping={"count": 4, "pairs_per_probe": 25, **kw})
    net = Network(bench, s)
    lines: list[str] = []
    report = await ping(
        net, "alice", "bob", s.ping, deadline_s=1.0, on_probe=lambda p: lines.append(p.line())
    )
    report.lines = lines  # type: ignore[attr-defined]
    return report


async def test_good_links_are_reachable() -> None:
    report = await _ping(fake_bench(seed=11, f=(0.97, 0.97)))
    assert report.reachable, report.reason
    assert "reachable after" in report.reason
    r = report.results
    assert r["pairs_delivered"] == 100 and r["pairs_measured"] == 100
    assert r["rate_pairs_per_s"] > 0 and r["latency_mean_s"] > 0
    assert r["bench_s"] > 0 and "emulated_s" not in r  # the network clock, lab or emulated
    assert len(report.lines) == 4 and report.lines[0].startswith("probe 1: 25/25 pairs")
    # the measured fidelity agrees with the estimate within 99 % (two-sided)
    assert abs(r["fidelity"] - r["estimated_fidelity"]) < 2.576 * r["fidelity_std"] + 0.01


async def test_dephased_links_are_unreachable_with_the_reason() -> None:
    """T2 far below the attempts' wait: the halves that wait for the other link are fully
    dephased (only the Z correlation left): the requests are rejected from the estimate."""
    report = await _ping(fake_bench(seed=12, t2_s=1e-6, f=(0.8, 0.8)))
    assert not report.reachable
    assert report.reason.startswith("no pair delivered: FidelityUnreachable: request rejected")
    # the T2's source in brackets: its own "(...)" is not nested in parentheses
    assert "T2=1e-06 s [stated by the controller (no run store)]" in report.reason
    # the same rejection is printed once, then referred to, and counted in the verdict
    assert report.lines[0].startswith("probe 1: 0/25 pairs, FidelityUnreachable")
    assert report.lines[1:] == [
        f"probe {k}: 0/25 pairs, the error of probe 1 again" for k in (2, 3, 4)
    ]
    assert report.reason.endswith("; all 4 probes ended so")


async def test_links_measured_below_the_threshold_are_unreachable() -> None:
    """Pairs delivered (no minimum asked), measured near 0.36 from dephased links of 0.8:
    the SPRT says not reachable."""
    report = await _ping(
        fake_bench(seed=12, t2_s=1e-6, f=(0.8, 0.8)), pairs_per_probe=100, min_fidelity=0.0
    )
    assert report.reachable  # above 0: reachable at threshold 0 ...
    report = await _ping(
        fake_bench(seed=12, t2_s=1e-6, f=(0.8, 0.8)), pairs_per_probe=100, min_fidelity=0.45
    )
    assert not report.reachable  # ... and not at 0.45 (estimate 0.34: rejected)
    assert "rejected" in report.reason


async def test_switched_off_memory_is_unreachable_with_the_reason() -> None:
    bench = fake_bench(seed=13)
    await bench.memories["repeater"].power.set(False)
    report = await _ping(bench)
    assert not report.reachable
    assert "repeater.memory" in report.reason and "Memory off" in report.reason


async def test_undecided_is_not_reachable() -> None:
    """A link right at the threshold is not called reachable from a few pairs."""
    report = await _ping(fake_bench(seed=14, f=(0.85, 0.85), t2_s=math.inf), min_fidelity=0.7)
    # Werner swap of 0.85 twice is ~0.73: between H0 0.7 and H1 0.8
    assert not report.reachable
    assert report.reason.startswith("undecided after 100 pairs")


def test_command_line_values_are_validated_naming_the_option() -> None:
    s = settings()
    assert ping_settings(s, 7, 0.6).count == 7
    with pytest.raises(ConfigError, match="--count"):
        ping_settings(s, 0, None)
    with pytest.raises(ConfigError, match="--min-fidelity"):
        ping_settings(s, None, 1.5)


def test_pairs_delivered_but_none_measured_is_not_called_undelivered() -> None:
    s = settings().ping
    sprt = frames.Sprt(s.min_fidelity, s.delta, s.alpha, s.beta)
    nan = math.nan
    reachable, reason = _verdict(sprt, s, 0, nan, nan, nan, [], delivered=20)
    assert not reachable
    assert reason.startswith("no pair measured: 20 delivered") and "no pair delivered" not in reason
    reachable, reason = _verdict(sprt, s, 0, nan, nan, nan, ["RequestTimeout: x"])
    assert reason == "no pair delivered: RequestTimeout: x"
