"""Property: whatever a user sets or edits in a profile, the CLI accepts it or refuses it
with exit 2 and ONE line naming the field and the file, never a traceback (issue 14,
acceptance).

Inputs: ``--set PATH=VALUE`` with PATH drawn from the default profile's own fields (and a
few that do not exist) and VALUE any TOML literal or bare text (NaN, infinities, huge
and negative numbers, wrong types, tables, arrays, garbage); and edits of the profile
file itself (a value replaced, a field deleted, an unknown field added). Each input goes
through ``qhil profile show``; each one it refuses also through ``qhil run bb84``, which
must refuse it the same way before opening any instrument (``open_bench`` is a trap
here). A few inputs also go through a real ``python -m qhil.cli`` process.

Derandomised (fixed examples on every run) and bounded in examples: seconds, not minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from qhil.cli import main

DEFAULT = Path(__file__).parents[2] / "hw_profiles" / "default.toml"
DATA: dict[str, Any] = tomllib.loads(DEFAULT.read_text(encoding="utf-8"))


def _leaves(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        out = [prefix] if prefix else []
        for k, v in node.items():
            out += _leaves(v, (*prefix, k))
        return out
    return [prefix]


PATHS = sorted(_leaves(DATA))
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,  # ~60 ms each in-process: a few seconds per property
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- values: TOML literals of every kind, and bare text that is no TOML at all --------------
_floats = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e308, -1e-300]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, -1, 2**63, -(2**63)])
)
_scalars = st.one_of(
    _floats, _ints, st.booleans(), st.text(max_size=12), st.sampled_from(["emulated", "random"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _toml_literal(value: Any) -> str:
    """``value`` written as a TOML literal (what a user types after ``=``)."""
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


_raw_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=16
).filter(lambda s: "\n" not in s and "\r" not in s)
_set_values = st.one_of(_values.map(_toml_literal), _raw_text)
_paths = st.one_of(
    st.sampled_from(PATHS).map(".".join),
    st.sampled_from(PATHS).map(lambda p: ".".join((*p, "extra"))),
    st.sampled_from(["", ".", "bench..name", "experiments.bb84.", "nosuch", "world.nodes.carol"]),
)


class ReachedBench(Exception):
    """``run bb84`` got as far as opening the instruments (the input was accepted)."""


@pytest.fixture(autouse=True)
def no_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is ever opened: a command that gets that far raises ReachedBench."""
    import qhil.orchestrator.jobs as jobs

    def trap(*args: Any, **kwargs: Any) -> Any:
        raise ReachedBench()

    monkeypatch.setattr(jobs, "open_bench", trap)


def _invoke(args: list[str], data_dir: Path, *, may_reach_bench: bool = False) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env={"QHIL_DATA_DIR": str(data_dir)})
    if may_reach_bench and isinstance(result.exception, ReachedBench):
        return -1, ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"qhil {args}: traceback instead of an error") from result.exception
    return result.exit_code, result.stderr


def _check_refusal(err: str, source: Path, path: str) -> None:
    """One line, ``qhil: error: FILE: FIELD: problem``, FIELD on the way to or under ``path``."""
    lines = err.splitlines()
    assert len(lines) == 1, f"not one line: {err!r}"
    line = lines[0]
    assert line.startswith(f"qhil: error: {source}: "), line
    field = line.removeprefix(f"qhil: error: {source}: ").partition(": ")[0]
    assert field, line
    # The field is the path set, a table containing it (a rule across its fields), or a
    # field it refers to (the world's wiring names the component a link points at).
    named = {path, *(".".join(path.split(".")[:i]) for i in range(1, path.count(".") + 1))}
    assert field in named or field.startswith(path + ".") or path.split(".")[-1] in line, (
        f"{line!r} does not name {path!r}"
    )


def _run_agrees(args_tail: list[str], shown: tuple[int, str], data_dir: Path) -> None:
    """``run bb84`` refuses what ``profile show`` refuses, with the same line; what it
    accepts, run takes as far as the bench (``--yes``: the length of the run is not at
    stake here), unless the profile has no BB84 table at all (valid, but not for run)."""
    ran = _invoke(["run", "bb84", "--yes", *args_tail], data_dir, may_reach_bench=True)
    if shown[0] == 2:
        assert ran == shown, (ran, shown)
    elif ran != (-1, ""):
        assert ran[0] == 2 and ran[1].count("\n") == 1, ran
        assert "experiments.bb84: no [experiments.bb84] table" in ran[1], ran


@SETTINGS
@given(path=_paths, value=_set_values)
@example(path="experiments.bb84.duration_s", value="inf")
@example(path="experiments.bb84.max_qber", value="0.9")
@example(path="experiments.bb84.mus", value="[0.5, nan, 0.0]")
@example(path="bench.seed", value="-1")
@example(path="world.links.alice-bob.length_km", value="1e400")
@example(path="nodes.alice.instruments.laser.resource", value="3")
def test_every_set_is_accepted_or_refused_in_one_line(
    path: str, value: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("data")
    tail = ["--set", f"{path}={value}"]
    code, err = _invoke(["profile", "show", *tail], data_dir)
    assert code in (0, 2), (code, err)
    event("accepted" if code == 0 else "refused")
    if code == 2:
        _check_refusal(err, DEFAULT, path or "=")
    _run_agrees(tail, (code, err), data_dir)


def _delete(data: dict[str, Any], path: tuple[str, ...]) -> None:
    node = data
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]


def _replace(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _get(path: tuple[str, ...]) -> Any:
    node: Any = DATA
    for k in path:
        node = node[k]
    return node


_edits = st.tuples(st.sampled_from(["delete", "replace", "add"]), st.sampled_from(PATHS), _values)


@SETTINGS
@given(edit=_edits)
@example(edit=("delete", ("bench", "name"), None))
@example(edit=("replace", ("experiments", "bb84", "max_qber"), 0.9))
@example(edit=("add", ("experiments", "bb84"), 1))
def test_every_profile_edit_is_accepted_or_refused_in_one_line(
    edit: tuple[str, tuple[str, ...], Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    import copy

    kind, path, value = edit
    data = copy.deepcopy(DATA)
    if kind == "delete":
        _delete(data, path)
        named = ".".join(path)
    elif kind == "replace":
        _replace(data, path, value)
        named = ".".join(path)
    else:  # an unknown field next to an existing one
        parent = path[:-1] if not isinstance(_get(path), dict) else path
        if not parent:
            parent = ("bench",)
        _replace(data, (*parent, "unknown_field"), value)
        named = ".".join((*parent, "unknown_field"))
    folder = tmp_path_factory.mktemp("profile")
    profile = folder / "edited.toml"
    profile.write_text(tomli_w.dumps(data), encoding="utf-8")
    data_dir = folder / "data"
    code, err = _invoke(["profile", "show", str(profile)], data_dir)
    assert code in (0, 2), (code, err)
    event("accepted" if code == 0 else "refused")
    if code == 2:
        _check_refusal(err, profile, named)
    _run_agrees([str(profile)], (code, err), data_dir)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("experiments.bb84.duration_s=inf", "experiments.bb84.duration_s"),
        ("experiments.bb84.mus=[0.5, nan, 0.0]", "experiments.bb84.mus.1"),
        ("world.links.alice-bob.length_km=-3", "world.links.alice-bob.length_km"),
    ],
)
def test_refusals_through_a_real_process(tmp_path: Path, override: str, field: str) -> None:
    for command in (["profile", "show"], ["run", "bb84"]):
        r = subprocess.run(
            [sys.executable, "-m", "qhil.cli", *command, "--set", override],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "QHIL_DATA_DIR": str(tmp_path / "data")},
        )
        assert r.returncode == 2, r.stdout + r.stderr
        assert re.fullmatch(rf"qhil: error: {re.escape(str(DEFAULT))}: {field}: .+\n", r.stderr)


_numbers_as_typed = st.one_of(
    _floats.map(repr), _ints.map(str), _raw_text, st.sampled_from(["1e6", "3600", "3601", "1_0"])
)


@SETTINGS
@given(option=st.sampled_from(["--duration", "--peer-timeout"]), value=_numbers_as_typed)
@example(option="--duration", value="1e308")  # found by this test: an OverflowError traceback
def test_every_time_option_is_accepted_or_refused_in_one_line(
    option: str, value: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp("data")
    code, err = _invoke(["run", "bb84", option, value], data_dir, may_reach_bench=True)
    event("accepted" if code == -1 else "refused")
    if code != -1:
        assert code == 2 and len(err.splitlines()) == 1, (code, err)
        assert err.startswith("qhil: error: ") and option in err, err


@SETTINGS
@given(value=_numbers_as_typed)
def test_every_runs_list_limit_is_accepted_or_refused_in_one_line(
    value: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from qhil.records import RunStore

    data_dir = tmp_path_factory.mktemp("data")
    RunStore(data_dir)  # an empty store
    code, err = _invoke(["runs", "list", "--limit", value], data_dir)
    event("accepted" if code == 0 else "refused")
    if code != 0:
        assert code == 2 and len(err.splitlines()) == 1 and "--limit" in err, (code, err)
