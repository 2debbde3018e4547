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


async def _run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_an_absent_receiver_is_one_line_and_leaves_no_key_held(kmes: Kmes) -> None:
    """Before: the sender fetched a key, then failed to connect with a traceback, leaving a
    key held at KME-bob that nobody could fetch."""
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    code, err = await _run(
        "send", "--ca-dir", str(kmes.ca_dir), "--kme", kmes.urls["alice"], "--sae", "bank-a",
        "--to", "bank-b", "--connect", address, "--message", "x",
    )  # fmt: skip
    assert code == 2 and "--connect" in err and len(err.strip().splitlines()) == 1, err
    assert not kmes.servers["bob"].kme.ledger.state.slave


async def test_an_unreachable_kme_and_a_garbage_envelope_are_one_line(
    kmes: Kmes, tmp_path: Path
) -> None:
    code, err = await _run(
        "send", "--ca-dir", str(kmes.ca_dir), "--kme", "https://127.0.0.1:1", "--sae", "bank-a",
        "--to", "bank-b", "--connect", "127.0.0.1:1", "--message", "x",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    port_file = tmp_path / "port"
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "receive", "--ca-dir", str(kmes.ca_dir),
        "--kme", kmes.urls["bob"], "--sae", "bank-b", "--port-file", str(port_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    host, _, port = (await _wait_file(port_file, receiver)).rpartition(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"not json\n")
    await writer.drain()
    writer.close()
    _, got_err = await asyncio.wait_for(receiver.communicate(), 60)
    err = got_err.decode()
    assert receiver.returncode == 2 and "envelope" in err, err
    assert len(err.strip().splitlines()) == 1
