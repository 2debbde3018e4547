"""pattern_length against the bench's instruments, from the profile's models alone.

Before: ``qhil run bb84 --set experiments.bb84.pattern_length=1024`` opened the bench, checked
the mus and failed in the TDC1 driver ("time: 1.28e-05 is not allowed ..."), and 16777217
failed mid-run in the 33500B's load_pattern; neither named the field or the file, and
``profile show`` accepted both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from qhil.catalogue import entry
from qhil.cli import main
from qhil.drivers.keysight.ks33500b import MAX_POINTS, MIN_POINTS
from qhil.drivers.roles import AcquisitionLimits, PatternLimits
from qhil.errors import ConfigError
from qhil.orchestrator.profile import load_profile

FIELD = "experiments.bb84.pattern_length"


def _set(n: int) -> list[str]:
    return [f"{FIELD}={n}"]


def test_the_drivers_state_their_limits_as_class_attributes() -> None:
    gen = entry("keysight.33500b").driver_class()
    tagger = entry("sfifteen.tdc1").driver_class()
    assert isinstance(gen, PatternLimits) and isinstance(tagger, AcquisitionLimits)
    assert (gen.min_pattern_symbols, gen.max_pattern_symbols) == (MIN_POINTS, MAX_POINTS)
    assert (tagger.min_acquisition_s, tagger.acquisition_step_s) == (1e-3, 1e-3)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (
            MAX_POINTS + 1,
            f"do not fit the pattern generator alice.patterns (keysight.33500b): "
            f"8..{MAX_POINTS} symbols",
        ),
        (
            1024,
            "shorter than the shortest acquisition of the tagger bob.tagger (sfifteen.tdc1), "
            "0.001 s: at least 80000 symbols",
        ),
        (79_999, "at least 80000 symbols"),  # 1 ms at 80 MHz is 80,000 symbols
    ],
)
def test_a_block_the_instruments_cannot_take_is_refused_at_load(n: int, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_profile("default", _set(n))
    assert err.value.field == FIELD
    assert err.value.source.endswith("default.toml")
    assert text in err.value.problem


@pytest.mark.parametrize("n", [MAX_POINTS, 80_000])
def test_the_limits_themselves_are_accepted(n: int) -> None:
    assert load_profile("default", _set(n)).experiments["bb84"]["pattern_length"] == n


@pytest.mark.parametrize("n", [1024, MAX_POINTS + 1])
def test_run_and_profile_show_exit_2_with_one_line_before_any_run(tmp_path: Path, n: int) -> None:
    data = tmp_path / "data"
    env = {"QHIL_DATA_DIR": str(data)}
    r = CliRunner().invoke(main, ["run", "bb84", "--duration", "0.1", "--set", *_set(n)], env=env)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert (
        len(lines) == 1 and f"default.toml: {FIELD}: " in lines[0] and f" {n} symbols" in lines[0]
    )
    assert "Traceback" not in r.output
    assert not data.exists() or not any(data.rglob("*.sqlite*"))  # no run started
    shown = CliRunner().invoke(main, ["profile", "show", "default", "--set", *_set(n)], env=env)
    assert shown.exit_code == 2 and shown.output.strip() == lines[0]
