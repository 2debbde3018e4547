"""examples/kms_bank.py: two bank processes exchange an AES-GCM message keyed by the KMEs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from .conftest import Kmes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kms_bank.py"


async def _wait_file(path: Path, proc: asyncio.subprocess.Process) -> str:
    for _ in range(600):  # up to 30 s for the interpreter to start
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"receiver did not listen (exit {proc.returncode})")


async def test_two_banks_exchange_an_encrypted_message(kmes: Kmes, tmp_path: Path) -> None:
    common = ["--ca-dir", str(kmes.ca_dir)]
    port_file = tmp_path / "bank-b.port"
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "receive", *common, "--kme", kmes.urls["bob"],
        "--sae", "bank-b", "--listen", "127.0.0.1:0", "--port-file", str(port_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    address = await _wait_file(port_file, receiver)
    sender = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "send", *common, "--kme", kmes.urls["alice"],
        "--sae", "bank-a", "--to", "bank-b", "--connect", address,
        "--message", "pay 100 EUR to bob",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    sent, sent_err = await asyncio.wait_for(sender.communicate(), 60)
    got, got_err = await asyncio.wait_for(receiver.communicate(), 60)
    assert sender.returncode == 0, sent_err.decode()
    assert receiver.returncode == 0, got_err.decode()
    assert got.decode().strip() == "from bank-a: pay 100 EUR to bob"
    assert b"pay 100" not in sent  # the sender prints no plaintext (nor any key)
    # the key was served once: both nodes' KMEs hold nothing more for it
    assert not kmes.servers["bob"].kme.ledger.state.slave
