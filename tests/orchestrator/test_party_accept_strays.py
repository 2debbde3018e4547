"""Party mode: a stray connection to Alice's port before Bob's must not abort her run
(issue 14 review: an HTTP request made Alice exit 3 at once and the real Bob time out)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from qhil.orchestrator.jobs import run_bb84_party_job

from .test_party_cli import _free_port, _key, lab

__all__ = ["lab"]  # the module-scoped emulated bench, shared with test_party_cli


@pytest.mark.slow  # two party runs on the emulated bench, ~15 s
def test_a_stray_and_a_silent_connection_before_bob_do_not_stop_the_run(
    lab: Path, tmp_path: Path
) -> None:
    port = _free_port()
    common: dict[str, Any] = {
        "auth_key_file": _key(tmp_path / "psk.hex"),
        "duration_s": 0.1,  # a finite key of tens of kbit (as the two-process test)
        "data_dir": tmp_path / "data",
        "peer_timeout_s": 300.0,
    }

    async def both() -> tuple[Any, Any, bytes]:
        strays_done = asyncio.Event()
        held: list[asyncio.StreamWriter] = []
        answer = bytearray()

        async def strays() -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                answer.extend(await reader.read())  # until alice hangs up on it
                writer.close()
                held.append((await asyncio.open_connection("127.0.0.1", port))[1])  # silent
            finally:
                strays_done.set()  # bob goes ahead even if alice is gone (the old defect)

        tasks: list[asyncio.Task[None]] = []

        def on_waiting(text: str) -> None:
            if text.startswith("alice: listening on"):
                tasks.append(asyncio.create_task(strays()))

        async def bob() -> Any:
            await strays_done.wait()
            mine = {**common, "peer_timeout_s": 30.0}  # bounded if alice is gone
            return await run_bb84_party_job("bob", str(lab), connect=f"127.0.0.1:{port}", **mine)

        alice_summary, bob_summary = await asyncio.gather(
            run_bb84_party_job(
                "alice", str(lab), listen=f"127.0.0.1:{port}", on_waiting=on_waiting, **common
            ),
            bob(),
        )
        for w in held:
            w.close()
        return alice_summary, bob_summary, bytes(answer)

    alice, bob, answer = asyncio.run(both())
    assert alice.status == bob.status == "success", (alice.reason, bob.reason)
    a, b = alice.as_dict(), bob.as_dict()
    assert a["alice_key_sha256"] == b["bob_key_sha256"] is not None
    assert answer  # the stray got alice's hello, then was closed; nothing more
