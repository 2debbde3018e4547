"""qhil kms init-ca / serve: bad input is one line naming the file and field, exit 2."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.kms.config import load_config


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_init_ca_writes_a_usable_config_and_private_keys(tmp_path: Path) -> None:
    code, out = _run("kms", "init-ca", str(tmp_path / "ca"), "--sae", "alice=x", "--sae", "bob=y")
    assert code == 0, out
    config = load_config(tmp_path / "ca" / "kms.toml")
    assert config.kme["alice"].sae_ids == ["x"] and config.kme["bob"].kme_id == "KME-bob"
    for key in (tmp_path / "ca").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, out = _run("kms", "init-ca", str(tmp_path / "ca"))
    assert code == 2 and "already exists" in out


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("key_size = 256", "key_size = 250"), "limits.key_size"),
        (("kme-alice.pem", "missing.pem"), "kme.alice.cert"),
        (('\n    "bank-a",\n    "bank-c",\n', ""), "kme.alice.sae_ids"),
    ],
)
def test_serve_refuses_a_bad_config_naming_file_and_field(
    ca_dir: Path, tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    text = (ca_dir / "kms.toml").read_text()
    assert edit[0] in text
    text = text.replace(*edit).replace('"kme-', f'"{ca_dir}/kme-').replace('"ca.', f'"{ca_dir}/ca.')
    bad = tmp_path / "bad.toml"  # the certificates by absolute path
    bad.write_text(text)
    code, out = _run("kms", "serve", "alice", "--config", str(bad), "--key-dir", str(tmp_path))
    assert code == 2
    assert out.startswith(f"qhil: error: {bad}: {expected}") and out.count("\n") == 1, out


def test_serve_unknown_node_and_missing_config(ca_dir: Path, tmp_path: Path) -> None:
    code, out = _run("kms", "serve", "carol", "--config", str(ca_dir / "kms.toml"))
    assert code == 2 and "no node 'carol' (nodes: alice, bob)" in out
    code, out = _run("kms", "serve", "alice", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "none.toml: (file): not found" in out


def test_serve_on_an_address_in_use_is_one_line_exit_2(ca_dir: Path, tmp_path: Path) -> None:
    """Before: uvicorn's own bind failure, a traceback and exit 3."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, out = _run(
            "kms", "serve", "alice", "--config", str(ca_dir / "kms.toml"),
            "--key-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert code == 2, out
    assert f"cannot listen on 127.0.0.1:{port}" in out and "Traceback" not in out
