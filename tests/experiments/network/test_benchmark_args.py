"""benchmarks/repeater.py refuses pair and repeat counts below 1 (one line, exit 2)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "repeater.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_repeater", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args", [["--pairs", "0"], ["--pairs", "-3"], ["--repeats", "0"]])
def test_counts_below_1_are_one_line_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _script().parse_args(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and args[0] in err and "not >= 1" in err


def test_the_defaults_parse() -> None:
    args = _script().parse_args([])
    assert (args.profile, args.pairs, args.repeats) == ("repeater", 50, 3)
