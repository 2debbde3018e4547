"""Settings of the recorded polarization calibration, from a profile."""

from __future__ import annotations

from typing import Any

import pytest

from qhil.calibration import PolarizationSettings
from qhil.errors import ConfigError
from qhil.orchestrator.profile import load_profile


class Prof:
    def __init__(self, experiments: dict[str, Any]) -> None:
        self.experiments = experiments
        self.source = "bench.toml"


BB84 = {
    "channel_map": {"H": 1, "V": 2, "D": 3, "A": 4},
    "rep_rate_hz": 80e6,
    "tagger": "tdc",
    "mus": [0.5, 0.1, 0.0],  # BB84's own fields are not the calibration's business
}


def test_default_profile() -> None:
    s = PolarizationSettings.from_profile(load_profile("default"))
    assert s.channel_map == {"H": 1, "V": 2, "D": 3, "A": 4}
    assert s.rep_rate_hz == 80e6 and s.pattern_generator == "patterns" and s.tagger == "tagger"
    assert s.controller is None and s.target_error == 0.01
    kw = s.routine_kwargs()
    assert (
        "tagger" not in kw and kw["channel_map"] == s.channel_map and kw["max_acquisitions"] == 150
    )


def test_calibration_table_overrides_bb84() -> None:
    own = {
        "channel_map": {"H": 4, "V": 3, "D": 2, "A": 1},
        "target_error": 0.02,
        "controller": "pc",
    }
    s = PolarizationSettings.from_profile(
        Prof({"bb84": BB84, "calibration": {"polarization": own}})
    )
    assert s.channel_map == own["channel_map"] and s.target_error == 0.02
    assert s.tagger == "tdc" and s.controller == "pc"


def test_errors_name_file_and_field() -> None:
    bad = {"bb84": BB84, "calibration": {"polarization": {"target_error": 0.7}}}
    with pytest.raises(ConfigError) as e:
        PolarizationSettings.from_profile(Prof(bad))
    assert str(e.value).startswith("bench.toml: experiments.calibration.polarization.target_error:")
    # A bad field inherited from [experiments.bb84] is named there.
    bb84 = {**BB84, "channel_map": {"H": 1, "V": 1, "D": 3, "A": 4}}
    with pytest.raises(ConfigError, match="bench.toml: experiments.bb84.channel_map: .*distinct"):
        PolarizationSettings.from_profile(Prof({"bb84": bb84}))
    with pytest.raises(
        ConfigError, match=r"experiments.calibration.polarization.rep_rate_hz: missing"
    ):
        PolarizationSettings.from_profile(
            Prof({"calibration": {"polarization": {"channel_map": BB84["channel_map"]}}})
        )
    with pytest.raises(ConfigError, match="polarization.settle: Extra inputs"):
        PolarizationSettings.from_profile(
            Prof({"bb84": BB84, "calibration": {"polarization": {"settle": 1}}})
        )
    with pytest.raises(ConfigError, match="experiments.calibration: must be a table"):
        PolarizationSettings.from_profile(Prof({"bb84": BB84, "calibration": 3}))


def test_derived_from_bb84_mus() -> None:
    from qhil.calibration import DelaySettings, DetectorEfficiencySettings

    prof = load_profile("default")
    eff = DetectorEfficiencySettings.from_profile(prof)
    # mus = [0.5, 0.1, 0.0]: the weakest light is level 1, vacuum is level 2.
    assert eff.intensity_index == 1 and eff.vacuum_intensity_index == 2
    assert DelaySettings.from_profile(prof).vacuum_intensity_index == 2
    # Without a vacuum level the delay calibration needs it spelled out.
    bb84 = {**BB84, "mus": [0.5, 0.1, 0.05]}
    with pytest.raises(ConfigError, match="calibration.delays.vacuum_intensity_index: missing"):
        DelaySettings.from_profile(Prof({"bb84": bb84}))
    own = {"vacuum_intensity_index": 5}
    s = DelaySettings.from_profile(Prof({"bb84": bb84, "calibration": {"delays": own}}))
    assert s.vacuum_intensity_index == 5
    # A derived value that does not fit is blamed on the mus it came from.
    bb84 = {**BB84, "mus": [0.5] * 8 + [0.0]}
    with pytest.raises(
        ConfigError, match=r"experiments.bb84.mus: gives vacuum_intensity_index = 8"
    ):
        DelaySettings.from_profile(Prof({"bb84": bb84}))


def test_half_wave_voltage_per_channel_or_one_for_all() -> None:
    def settings(value: object) -> PolarizationSettings:
        own = {"half_wave_voltage_mv": value}
        return PolarizationSettings.from_profile(
            Prof({"bb84": BB84, "calibration": {"polarization": own}})
        )

    assert settings([1800, 2000, 2100, 2200]).routine_kwargs()["half_wave_voltage_mv"] == [
        1800.0,
        2000.0,
        2100.0,
        2200.0,
    ]
    assert settings(1900).half_wave_voltage_mv == 1900.0
    assert settings(None).routine_kwargs()["half_wave_spread"] == 1.4
    for bad in ([1800, -2000, 2100, 2200], 0, "x", []):
        with pytest.raises(
            ConfigError,
            match=r"^bench.toml: experiments.calibration.polarization.half_wave_voltage_mv: "
            r"must be a voltage > 0",
        ):
            settings(bad)
