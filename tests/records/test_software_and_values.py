"""Software identity of a run, and the conversion of recorded values."""

from __future__ import annotations

import enum
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from qhil.records import RecordValueError, software_info
from qhil.records.jsonable import canonical_sha256, strict_json, to_jsonable, to_scalar
from qhil.records.software import git_revision


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_git_revision_of_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src" / "pkg").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "src" / "pkg" / "a.py").write_text("x = 1\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD")
    found = git_revision(repo / "src" / "pkg")
    assert found == {"commit": head, "dirty": False, "checkout": str(repo)}
    (repo / "src" / "pkg" / "a.py").write_text("x = 2\n")
    assert git_revision(repo / "src" / "pkg") == {
        "commit": head,
        "dirty": True,
        "checkout": str(repo),
    }


def test_no_git_revision_outside_a_checkout(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None


def test_software_info_names_versions() -> None:
    import h5py

    import qhil

    info = software_info()
    assert info["qhil"] == qhil.__version__
    assert info["packages"]["h5py"] == h5py.__version__
    assert info["packages"]["hdf5"] == h5py.version.hdf5_version
    assert set(info) >= {"python", "platform", "git"}


class _Mode(enum.Enum):
    FAST = "fast"


class _Spec(BaseModel):
    length_km: float


def test_to_jsonable_converts_common_types() -> None:
    moment = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    value = {
        "i": np.int32(3),
        "f": np.float64(0.5),
        "b": np.bool_(True),
        "arr": np.arange(3),
        "path": Path("/x/y"),
        "when": moment,
        "mode": _Mode.FAST,
        "spec": _Spec(length_km=25),
        "tuple": (1, "a"),
    }
    out = to_jsonable(value, "parameters")
    assert out == {
        "i": 3,
        "f": 0.5,
        "b": True,
        "arr": [0, 1, 2],
        "path": "/x/y",
        "when": "2026-11-26T12:00:00.000000+00:00",
        "mode": "fast",
        "spec": {"length_km": 25.0},
        "tuple": [1, "a"],
    }
    assert type(out["i"]) is int and type(out["b"]) is bool


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": {"b": {1, 2}}}, r"parameters\.a\.b:"),
        ({"a": [1, object()]}, r"parameters\.a\[1\]:"),
        ({"a": {3: "x"}}, r"parameters\.a: key 3"),
        ({"a": np.array(["s"])}, r"parameters\.a: numpy array"),
    ],
)
def test_to_jsonable_names_the_bad_field(value: object, where: str) -> None:
    with pytest.raises(RecordValueError, match=where):
        to_jsonable(value, "parameters")


def test_scalars() -> None:
    assert to_scalar(np.float32(0.25), "r") == 0.25
    assert to_scalar(None, "r") is None
    with pytest.raises(RecordValueError, match=r"r\.x: results are scalars"):
        to_scalar([1], "r.x")


def test_canonical_hash_and_strict_json() -> None:
    assert canonical_sha256({"a": 1, "b": [1, 2]}) == canonical_sha256({"b": [1, 2], "a": 1})
    assert canonical_sha256({"a": 1}) != canonical_sha256({"a": 2})
    assert strict_json({"x": [float("nan"), float("-inf"), 1.5]}) == {
        "x": ["NaN", "-Infinity", 1.5]
    }
