"""Where bench profiles are found: ./hw_profiles, then the profiles shipped inside the package.

A wheel install has no repository around it, so the shipped profiles must come from the
package itself (importlib.resources), from whatever directory qhil runs in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from qhil.errors import ConfigError
from qhil.orchestrator.profile import (
    available_profiles,
    load_profile,
    packaged_profiles_dir,
    resolve_profile_path,
)

REPO = Path(__file__).parents[2]
TOP_LEVEL = sorted(REPO.joinpath("hw_profiles").glob("*.toml"))


def test_importlib_resources_finds_every_profile_of_hw_profiles() -> None:
    shipped = resources.files("qhil").joinpath("hw_profiles")
    assert TOP_LEVEL, "no profiles in hw_profiles/"
    names = sorted(p.name for p in shipped.iterdir() if p.name.endswith(".toml"))
    assert names == [p.name for p in TOP_LEVEL]
    for path in TOP_LEVEL:
        assert shipped.joinpath(path.name).read_bytes() == path.read_bytes(), path.name


def test_every_shipped_profile_resolves_by_name_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for path in TOP_LEVEL:
        found = resolve_profile_path(path.stem)
        assert found == (packaged_profiles_dir() / path.name).resolve()
        assert found.read_bytes() == path.read_bytes()
    assert set(available_profiles()) == {p.stem for p in TOP_LEVEL}
    assert Path(load_profile().source).name == "default.toml"


def test_a_folder_named_like_a_profile_is_not_taken_for_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    assert resolve_profile_path("default") == (packaged_profiles_dir() / "default.toml").resolve()


def test_a_user_profile_in_hw_profiles_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hw_profiles").mkdir()
    mine = tmp_path / "hw_profiles" / "default.toml"
    shutil.copy(REPO / "hw_profiles" / "lab_example.toml", mine)
    assert resolve_profile_path(None) == mine
    assert load_profile().bench.name == "lab-example"
    assert available_profiles()["default"] == mine


def test_an_unknown_profile_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve_profile_path("nope")
    msg = str(info.value)
    assert msg.startswith("nope: profile: no such profile")
    assert str(tmp_path / "hw_profiles") in msg and str(packaged_profiles_dir()) in msg
    assert "available: default, entanglement, lab_" in msg
    proc = subprocess.run(
        [sys.executable, "-m", "qhil.cli", "profile", "show", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(packaged_profiles_dir()) in proc.stderr


def test_a_missing_toml_path_named_like_a_profile_points_to_the_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the README's hw_profiles/lab_example.toml, typed elsewhere
    with pytest.raises(ConfigError) as info:
        load_profile("hw_profiles/lab_example.toml")
    msg = str(info.value)
    assert msg.startswith("hw_profiles/lab_example.toml: profile: file not found in ")
    assert str((packaged_profiles_dir() / "lab_example.toml").resolve()) in msg
    assert "give its name, lab_example, without .toml" in msg
    with pytest.raises(ConfigError, match=r"^elsewhere/mine\.toml: profile: file not found$"):
        load_profile("elsewhere/mine.toml")
