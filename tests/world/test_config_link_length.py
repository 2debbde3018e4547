"""A link's length is bounded: the world keeps every photon in flight, and a fibre of
1e8 km (~8 min of delay) held the emulator up generating them (a bench hung at start)."""

from __future__ import annotations

import pytest

from qhil.errors import ConfigError
from qhil.orchestrator.profile import load_profile


@pytest.mark.parametrize(("kind", "km"), [("fibre", 2.0001e4), ("fibre", 1e8), ("free_space", 5e5)])
def test_an_astronomical_link_is_refused_naming_the_field(kind: str, km: float) -> None:
    overrides = [f"world.links.alice-bob.kind={kind}", f"world.links.alice-bob.length_km={km}"]
    with pytest.raises(ConfigError) as caught:
        load_profile("default", overrides)
    text = str(caught.value)
    assert "world.links.alice-bob.length_km" in text
    assert f"for a {kind} link" in text
    assert "\n" not in text


@pytest.mark.parametrize(("kind", "km"), [("fibre", 2e4), ("free_space", 3.6e4)])
def test_the_longest_real_links_are_accepted(kind: str, km: float) -> None:
    # half the Earth's circumference of fibre; a geostationary satellite in free space
    prof = load_profile(
        "default", [f"world.links.alice-bob.kind={kind}", f"world.links.alice-bob.length_km={km}"]
    )
    assert prof.world is not None
