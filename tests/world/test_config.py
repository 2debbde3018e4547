"""Profile validation: bad values fail with an error naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from helpers import bb84_profile

from qhil.emulators.world import World, load_world_config, load_world_file
from qhil.errors import ConfigError

EXAMPLE = Path(__file__).parent / "data" / "two_node_world.toml"


def test_example_profile_loads_and_builds() -> None:
    cfg = load_world_file(EXAMPLE)
    world = World(cfg)
    cmap = world.channel_map("bob.receiver")
    assert {k: (v.tagger, v.channel) for k, v in cmap.items()} == {
        "H": ("bob.tagger", 1),
        "V": ("bob.tagger", 2),
        "D": ("bob.tagger", 3),
        "A": ("bob.tagger", 4),
    }
    assert cmap["D"].detector == "bob.det_d"


def _broken(edit: Any) -> dict[str, Any]:
    table = copy.deepcopy(bb84_profile())
    edit(table)
    return table


def _set(path: str, value: Any) -> Any:
    def edit(t: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node = t
        for p in head:
            node = node[p]
        node[last] = value

    return edit


CASES = [
    (
        _set("links.ab.length_km", -3),
        "hw_profiles/x.toml: world.links.ab.length_km: must be >= 0 (got -3)",
    ),
    (
        _set("nodes.bob.components.h.efficiency", 1.2),
        "hw_profiles/x.toml: world.nodes.bob.components.h.efficiency: must be <= 1",
    ),
    (
        _set("nodes.bob.components.zap", {"type": "laser_cannon"}),
        "world.nodes.bob.components.zap: unknown component type 'laser_cannon'",
    ),
    (
        _set("links.ab.b", "carol"),
        "world.links.ab.b: names node 'carol', which does not exist",
    ),
    (
        _set("links.ab.alpha_db_per_km", -0.2),
        "world.links.ab.alpha_db_per_km: must be >= 0",
    ),
    (
        _set("nodes.bob.components.h.dark_count_rate", 5.0),
        "world.nodes.bob.components.h.dark_count_rate: is not a known field",
    ),
    (
        _set("nodes.bob.components.h.tagger", "tagr"),
        "world.nodes.bob.components.h.tagger: names tagger 'tagr'",
    ),
    (
        _set("nodes.bob.components.v.channel", 1),
        "world.nodes.bob.components.v.channel: bob.tagger channel 1 is already wired to bob.h",
    ),
    (
        _set("nodes.bob.components.h.channel", 9),
        "world.nodes.bob.components.h.channel: channel 9 is outside 1..4",
    ),
    (
        _set("nodes.alice.components.tx.path", ["alice.att", "ab", "bob.pc", "bob.nothing"]),
        "world.nodes.alice.components.tx.path[3]: component 'bob.nothing' does not exist",
    ),
    (
        _set("nodes.alice.components.tx.path", ["alice.att", "ab", "bob.pc"]),
        "world.nodes.alice.components.tx.path[2]: a path must end at a polarization_analyzer",
    ),
    (
        _set("nodes.alice.components.tx.path", ["bob.pc", "ab", "bob.rx"]),
        "tx.path[0]: component bob.pc is on node bob, but the light is at alice",
    ),
    (
        _set("nodes.bob.components.rx.bases", [{"axis": "HV", "plus": "pc"}]),
        "world.nodes.bob.components.rx.bases[0].plus: names 'pc', which is not a detector",
    ),
    (
        _set("nodes.alice.components.tx.mus", [0.5, -0.1]),
        "world.nodes.alice.components.tx.mus[1]: must be >= 0",
    ),
    (
        _set("nodes.alice.components.att.attenuation_db", 70.0),
        "world.nodes.alice.components.att: attenuation_db 70.0 exceeds max_attenuation_db",
    ),
    (
        _set("links.ab.eavesdropper", {"fraction": 1.5}),
        "world.links.ab.eavesdropper.fraction: must be <= 1",
    ),
    (
        _set("nodes.bob.components.tagger.bin_width_ps", 0),
        "world.nodes.bob.components.tagger.bin_width_ps: must be >= 1",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), CASES)
def test_bad_profile_names_file_and_field(edit: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_world_config(_broken(edit), "hw_profiles/x.toml")
    assert expected in str(info.value)
    assert str(info.value).startswith("hw_profiles/x.toml: world.")


def test_error_lists_further_problems() -> None:
    def edit(t: dict[str, Any]) -> None:
        t["links"]["ab"]["length_km"] = -1
        t["nodes"]["bob"]["components"]["h"]["efficiency"] = 2

    with pytest.raises(ConfigError) as info:
        load_world_config(_broken(edit), "p.toml")
    msg = str(info.value)
    assert "length_km" in msg and "efficiency" in msg


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[world\nseed = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: world: not valid TOML"):
        load_world_file(bad)
    none = tmp_path / "none.toml"
    none.write_text("[other]\nx = 1\n")
    with pytest.raises(ConfigError, match="none.toml: world: the profile has no"):
        load_world_file(none)
    with pytest.raises(ConfigError, match="missing.toml: world: file not found"):
        load_world_file(tmp_path / "missing.toml")


def test_good_profile_passes_and_keeps_values() -> None:
    cfg = load_world_config(bb84_profile(length_km=42.0), "ok.toml")
    assert cfg.links["ab"].length_km == 42.0
    assert cfg.links["ab"].delay_us_per_km == 4.9
