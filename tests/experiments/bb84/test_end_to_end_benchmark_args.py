"""benchmarks/bb84_end_to_end.py: bad --seconds, --repeats or overrides are one line, exit 2
(before: ``--seconds -1`` printed a traceback), and ``--set`` is an alias of ``-o`` as qhil's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bb84_end_to_end.py"


@pytest.fixture(autouse=True)
def _beside_its_siblings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The script imports benchmarks/repeater.py, found beside it when run as a script."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_bb84_end_to_end", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--seconds", "-1"], "--seconds: -1 s: an emulated time > 0 s is needed"),
        (["--seconds", "0"], "--seconds: 0 s"),
        (["--seconds", "inf"], "--seconds: inf s"),
        (["--seconds", "nan"], "--seconds: nan s"),
        (["--repeats", "0"], "--repeats: 0 is not >= 1"),
        (["--set", "experiments.bb84.pattern_length=1024"], "experiments.bb84.pattern_length: "),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _script().parse_args(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and text in err and "Traceback" not in err


def test_set_and_o_are_the_same_override() -> None:
    override = "experiments.bb84.pattern_length=1040000"
    parse = _script().parse_args
    by_set, by_o = parse(["--set", override]), parse(["-o", override, "--seconds", "0.5"])
    assert by_set.override == by_o.override == [override]
    assert by_set.block_s == pytest.approx(0.013) and by_o.seconds == 0.5
