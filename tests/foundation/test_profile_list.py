"""`qhil profile list`: every profile a name finds, where it comes from, its bench."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from qhil.cli import main

REPO = Path(__file__).parents[2]
SHIPPED = sorted(p.stem for p in REPO.joinpath("hw_profiles").glob("*.toml"))


def _listing(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["profile", "list", *args])
    return result.exit_code, result.output


def test_from_elsewhere_lists_the_shipped_profiles_with_their_benches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _listing(["--json"])
    assert code == 0, out
    entries = json.loads(out)
    assert [e["name"] for e in entries] == SHIPPED
    for e in entries:
        bench = tomllib.loads(Path(e["path"]).read_text())["bench"]
        assert e["source"] == "shipped"
        assert (e["bench"], e["description"], e["error"]) == (
            bench["name"],
            bench.get("description", ""),
            None,
        )
    default = next(e for e in entries if e["name"] == "default")
    assert default["bench"] == "default-emulated"


def test_user_profiles_come_first_and_a_broken_one_does_not_hide_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "hw_profiles"
    own.mkdir()
    (own / "mine.toml").write_text('[bench]\nname = "my-bench"\ndescription = "two SNSPDs"\n')
    (own / "default.toml").write_text('[bench]\nname = "my-default"\n')  # shadows qhil's
    (own / "broken.toml").write_text("[bench\n")
    monkeypatch.chdir(tmp_path)
    code, out = _listing(["--json"])
    assert code == 0, out
    by_name = {e["name"]: e for e in json.loads(out)}
    assert set(by_name) == set(SHIPPED) | {"mine", "broken"}
    assert by_name["mine"] == {
        "name": "mine",
        "source": "user",
        "path": str((own / "mine.toml").resolve()),
        "bench": "my-bench",
        "description": "two SNSPDs",
        "error": None,
    }
    # The name `default` finds the user's file, so that is what the list shows.
    assert (by_name["default"]["source"], by_name["default"]["bench"]) == ("user", "my-default")
    assert by_name["broken"]["source"] == "user" and by_name["broken"]["error"]
    assert by_name["lab_example"]["source"] == "shipped"

    code, text = _listing([])
    assert code == 0, text
    line = next(t for t in text.splitlines() if t.startswith("mine "))
    assert line.split() == ["mine", "user", "my-bench", "two", "SNSPDs"]
    assert "unreadable" in next(t for t in text.splitlines() if t.startswith("broken "))
