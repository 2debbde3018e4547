"""A link's station must join that link's nodes' memories (issue 11, VF2): the ends the
station reports (HERald:ENDS?) are checked against the profile when the handle opens, and
a mismatch is a profile error naming ``experiments.network.links[i]`` (exit 2), not an
unreachable network or a memory's mode error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.errors import ConfigError
from qhil.orchestrator.experiments.network import EntanglementRequest, Network

from .fakes import fake_bench, settings


def _profile(components: dict[str, str | None]) -> SimpleNamespace:
    """A profile whose nodes each have one QMC-1 ``memory`` wired to ``components[node]``."""
    nodes = {
        node: SimpleNamespace(
            instruments={"memory": SimpleNamespace(model="qhil.qmc", component=comp)}
        )
        for node, comp in components.items()
    }
    return SimpleNamespace(bench=SimpleNamespace(seed=1), source="fake.toml", nodes=nodes)


def _bench(components: dict[str, str | None]) -> object:
    bench = fake_bench()
    bench.profile = _profile(components)
    return bench


WIRED = {"alice": "alice.memory", "repeater": "repeater.memory", "bob": "bob.memory"}


async def test_stations_joining_their_links_nodes_pass() -> None:
    net = Network(_bench(WIRED), settings())
    await net.check_wiring()
    # without a component the name is <node>.<instrument>: the same here
    net = Network(_bench(dict.fromkeys(WIRED)), settings())
    await net.check_wiring()


async def test_swapped_stations_fail_before_any_attempt() -> None:
    bench = _bench(WIRED)
    links = [
        ["alice", "repeater", "repeater.station"],
        ["repeater", "bob", "alice.station"],
    ]
    net = Network(bench, settings(links=links))
    with pytest.raises(ConfigError) as err:
        await net.pairs(EntanglementRequest(remote="bob", local="alice")).__anext__()
    assert err.value.field == "experiments.network.links[0]"
    assert "station repeater.station joins repeater.memory - bob.memory" in str(err.value)
    assert "alice.memory - repeater.memory" in str(err.value)
    assert all(s.requests == 0 for s in bench.stations.values())  # type: ignore[attr-defined]


async def test_a_link_listed_against_the_stations_order_says_so() -> None:
    links = [["repeater", "alice", "alice.station"], ["repeater", "bob", "repeater.station"]]
    net = Network(_bench(WIRED), settings(links=links))
    with pytest.raises(ConfigError, match=r"links\[0\].*in the station's order: \['alice'"):
        await net.characterise()


async def test_a_lab_memory_named_otherwise_than_its_station_reports() -> None:
    """On a lab bench the station reports the names it was configured with: the memory
    instrument's ``component`` must say that name (else ``<node>.<instrument>``)."""
    net = Network(_bench({**WIRED, "bob": "lab-qmc-13"}), settings())
    with pytest.raises(ConfigError, match=r"links\[1\].*not the memories of repeater - bob"):
        await net.check_wiring()


def test_ping_with_swapped_stations_is_a_one_line_profile_error(tmp_path: Path) -> None:
    links = (
        'experiments.network.links=[["alice","repeater","repeater.station_bob"],'
        '["repeater","bob","alice.station_repeater"]]'
    )
    r = CliRunner().invoke(
        main,
        ["ping", "alice", "bob", "--no-plots", "--set", links, "--data-dir", str(tmp_path)],
    )
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "experiments.network.links[0]: station repeater.station_bob joins" in lines[0]
    assert "UNREACHABLE" not in r.output
