"""Bob in a separate OS process: connects over TCP, answers Alice, exits 0.

Reads its configuration (host, port, session, key in hex) as one JSON line on
stdin, so the key never appears in the process's argument list.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np

from qhil.orchestrator.channel import AuthKey, HmacSha256Authenticator, connect_channel


async def main() -> int:
    cfg = json.loads(sys.stdin.readline())
    auth = HmacSha256Authenticator(AuthKey.from_hex(cfg["key_hex"]))
    ch = await connect_channel(
        cfg["host"],
        cfg["port"],
        local="bob",
        peer="alice",
        authenticator=auth,
        session_id=cfg["session"],
        timeout_s=20.0,
    )
    sift = await ch.recv("sift")
    bases = sift.payload["bases"]
    mine = np.asarray(cfg["bob_bases"], dtype=np.uint8)
    await ch.send(
        "sift_reply", {"keep": np.flatnonzero(bases == mine), "echo": sift.payload["tag"][::-1]}
    )
    await ch.recv("bye")
    await ch.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
