"""Shared pieces of the bench runtime tests: small profiles, silent peers, leak checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

# Two nodes, three instruments: the default bench's shape, with settings slots.
PROFILE = """
[bench]
name = "test-bench"
seed = 7

[nodes.alice.instruments.laser]
model = "santec.tsl570"
resource = {laser_resource}
{laser_extra}

[nodes.alice.instruments.polctrl]
model = "ozoptics.epc400"
resource = {alice_pc_resource}
{alice_pc_extra}

[nodes.bob.instruments.polctrl]
model = "ozoptics.epc400"
resource = {bob_pc_resource}
{bob_pc_extra}
"""


def write_profile(
    tmp_path: Path,
    *,
    laser: str = "emulated",
    alice_pc: str = "emulated",
    bob_pc: str = "emulated",
    laser_extra: str = "",
    alice_pc_extra: str = "",
    bob_pc_extra: str = "",
) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(
        PROFILE.format(
            laser_resource=f'"{laser}"',
            alice_pc_resource=f'"{alice_pc}"',
            bob_pc_resource=f'"{bob_pc}"',
            laser_extra=laser_extra,
            alice_pc_extra=alice_pc_extra,
            bob_pc_extra=bob_pc_extra,
        )
    )
    return path


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP peer that accepts connections and never answers: an instrument that hangs."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"TCPIP0::127.0.0.1::{port}::SOCKET"
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()


def io_threads(resources: Iterable[str]) -> list[str]:
    """Session worker threads still alive for these resources."""
    prefixes = tuple(f"qhil-io:{r}" for r in resources)
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


def open_fds() -> set[str]:
    """This process's open file descriptors, as link targets (sockets, ptys, files)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of listdir itself, closed meanwhile
            out.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
    return out


async def settle(condition: object, *, limit_s: float = 5.0) -> None:
    """Give threads and peers a moment to finish closing: poll ``condition()`` until true.

    Not a timing assertion: the caller asserts the condition afterwards; this
    only avoids racing the worker threads' own exit.
    """
    assert callable(condition)
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not condition() and loop.time() < end:
        await asyncio.sleep(0.01)
