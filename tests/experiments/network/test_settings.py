"""[experiments.network] is validated when the profile loads: errors name file and field."""

from __future__ import annotations

import pytest

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.network import NetworkSettings
from qhil.orchestrator.profile import load_profile


@pytest.mark.parametrize(
    ("override", "field", "problem"),
    [
        (
            'experiments.network.links=[["alice","carol","alice.station_repeater"]]',
            "experiments.network.links[0]",
            "no node 'carol' in the profile",
        ),
        (
            'experiments.network.links=[["alice","repeater","alice.memory"]]',
            "experiments.network.links[0]",
            "node 'alice' has no instrument playing HeraldingStation",
        ),
        ("experiments.network.ping.count=0", "experiments.network.ping.count", "greater than"),
        ("experiments.network.deadline_s=0", "experiments.network.deadline_s", "greater than"),
        ("experiments.network.ping.min_fidelity=0.9", "experiments.network.ping", "exceeds 1"),
        (
            "experiments.network.ping.sample_fraction=0.01",
            "experiments.network.ping.sample_fraction",
            "0.1 pairs measured per probe: at least 1",
        ),
    ],
)
def test_bad_network_tables_name_file_and_field(override: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_profile("repeater", [override])
    assert info.value.source.endswith("repeater.toml")
    assert info.value.field == field
    assert problem in str(info.value)


def test_the_shipped_table_and_routes() -> None:
    s = NetworkSettings.from_profile(load_profile("repeater"))
    assert s.nodes == ["alice", "repeater", "bob"]
    assert s.route("alice", "bob") == [(0, "alice", "repeater"), (1, "repeater", "bob")]
    assert s.route("bob", "alice") == [(1, "bob", "repeater"), (0, "repeater", "alice")]
    assert s.route("repeater", "bob") == [(1, "repeater", "bob")]
    with pytest.raises(ValueError, match="no node 'carol'"):
        s.route("alice", "carol")
