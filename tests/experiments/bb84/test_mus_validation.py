"""experiments.bb84.mus: each physically wrong set of mean photon numbers is a one-line
error naming the file and the field (issue 14, item 2)."""

from __future__ import annotations

from typing import Any

import pytest

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.bb84 import BB84Settings
from qhil.orchestrator.experiments.bb84.settings import MAX_SIGNAL_MU, MAX_VACUUM_MU

GOOD: dict[str, Any] = {
    "channel_map": {"H": 1, "V": 2, "D": 3, "A": 4},
    "rep_rate_hz": 80e6,
    "mus": [0.5, 0.1, 0.0],
    "intensity_probabilities": [0.7, 0.2, 0.1],
    "blocks": 3,
}


@pytest.mark.parametrize(
    ("mus", "text"),
    [
        ([1.5, 0.1, 0.0], "signal must be in (0, 1]"),  # issue 14's example: 84 k bits from 46 k
        ([MAX_SIGNAL_MU * 1.01, 0.1, 0.0], "signal must be in"),
        ([0.0, 0.0, 0.0], "signal must be in"),
        ([-0.5, 0.1, 0.0], "signal must be in"),
        ([0.5, 0.6, 0.0], "signal > decoy"),
        ([0.5, 0.5, 0.0], "signal > decoy"),
        ([0.5, 0.0, 0.0], "decoy > vacuum"),
        ([0.5, -0.1, 0.0], "decoy > vacuum"),
        ([0.5, 0.1, 0.05], "vacuum must be in [0, 0.001]"),
        ([0.5, 0.1, MAX_VACUUM_MU * 2], "vacuum must be in"),
        ([0.5, 0.1, -1e-4], "vacuum must be in"),
        ([float("nan"), 0.1, 0.0], "finite"),
        ([0.5, float("inf"), 0.0], "finite"),
        ([0.5, 0.1], "exactly three values"),
        ([0.5, 0.1, 0.0, 0.0], "exactly three values"),
        ([], "exactly three values"),
        ("0.5", "valid tuple"),
    ],
)
def test_bad_mus_is_one_line_naming_file_and_field(mus: Any, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        BB84Settings.from_mapping({**GOOD, "mus": mus}, "hw_profiles/x.toml")
    msg = str(err.value)
    assert msg.startswith("hw_profiles/x.toml: experiments.bb84.mus: "), msg
    assert text in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "mus", [[0.5, 0.1, 0.0], [1.0, 0.2, 1e-3], [0.8, 0.1, 2e-4], [0.05, 0.01, 0.0]]
)
def test_sane_mus_are_accepted(mus: list[float]) -> None:
    assert BB84Settings.from_mapping({**GOOD, "mus": mus}).mus == tuple(mus)
