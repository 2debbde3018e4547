"""BB84 settings from a profile: valid tables, derived values, errors naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.bb84 import BB84Settings
from qhil.orchestrator.profile import load_profile

GOOD: dict[str, Any] = {
    "channel_map": {"H": 5, "V": 6, "D": 7, "A": 8},
    "rep_rate_hz": 80e6,
    "mus": [0.5, 0.1, 0.0],
    "intensity_probabilities": [0.8, 0.15, 0.05],
    "pattern_length": 1 << 20,
    "blocks": 3,
}


def test_profile_table_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(
        """
[bench]
name = "t"
[nodes.alice]
[nodes.bob]
[experiments.bb84]
channel_map = { H = 5, V = 6, D = 7, A = 8 }
rep_rate_hz = 40e6
mus = [0.5, 0.1, 0.0]
intensity_probabilities = [0.8, 0.15, 0.05]
pattern_length = 2097152
duration_s = 0.5
"""
    )
    s = BB84Settings.from_profile(load_profile(str(path)))
    assert s.detector_of_channel() == {5: (0, 0), 6: (0, 1), 7: (1, 0), 8: (1, 1)}
    assert s.block_duration_s == pytest.approx(2097152 / 40e6)
    assert s.n_blocks == 10  # 0.5 s / 52.4 ms, rounded up
    assert s.tag_bits == 50  # 2^-50 <= 1e-15
    assert s.eps_pe_effective == pytest.approx(1e-9 / 21)


def test_missing_table_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text('[bench]\nname = "t"\n[nodes.alice]\n')
    with pytest.raises(ConfigError, match=r"bench\.toml: experiments\.bb84: no \[experiments"):
        BB84Settings.from_profile(load_profile(str(path)))


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"channel_map": {"H": 1, "V": 2, "D": 3}}, "experiments.bb84", "missing A"),
        ({"channel_map": {"H": 1, "V": 1, "D": 3, "A": 4}}, "experiments.bb84", "distinct"),
        (
            {"channel_map": {"H": 1, "V": 2, "D": 3, "X": 4}},
            "experiments.bb84.channel_map.X",
            "'H'",
        ),
        ({"mus": [0.1, 0.5, 0.0]}, "experiments.bb84", "signal > decoy"),
        ({"intensity_probabilities": [0.5, 0.3, 0.1]}, "experiments.bb84", "summing to 1"),
        ({"duration_s": 1.0}, "experiments.bb84", "exactly one of blocks and duration_s"),
        ({"pattern_length": 10}, "experiments.bb84.pattern_length", ""),
        ({"max_qber": 0.6}, "experiments.bb84.max_qber", ""),
        ({"rep_rate_hz": -1.0}, "experiments.bb84.rep_rate_hz", ""),
        ({"colour": "blue"}, "experiments.bb84.colour", "Extra inputs"),
    ],
)
def test_bad_values_name_file_and_field(change: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        BB84Settings.from_mapping({**GOOD, **change}, "hw_profiles/x.toml")
    msg = str(err.value)
    assert msg.startswith(f"hw_profiles/x.toml: {field}")
    assert text in msg


@pytest.mark.parametrize(
    "change",
    [
        {"max_qber": 0.1},
        {"mus": [0.5, 0.2, 0.0]},
        {"blocks": 4},
        {"eps_sec": 1e-10},
        {"pattern_length": 1 << 19},
        {"z_basis_probability": 0.6},
    ],
)
def test_digest_covers_the_shared_protocol_parameters(change: dict[str, Any]) -> None:
    a = BB84Settings.from_mapping(GOOD)
    assert a.digest() == BB84Settings.from_mapping(dict(GOOD)).digest()
    assert a.digest() != BB84Settings.from_mapping({**GOOD, **change}).digest()


def test_digest_ignores_each_nodes_local_choices() -> None:
    local = {
        "tagger": "tdc",
        "channel_map": {"H": 1, "V": 2, "D": 3, "A": 4},
        "message_timeout_s": 5.0,
        "max_drift_ppm": 10.0,
    }
    a = BB84Settings.from_mapping(GOOD)
    assert a.digest() == BB84Settings.from_mapping({**GOOD, **local}).digest()
