"""A big raw write on an async socket (the 33500B's 16 MB DAC blocks, issue 12)."""

from __future__ import annotations

import asyncio

import numpy as np

from qhil.transport import socket_io
from qhil.transport.socket_io import AsyncSocketIO


async def test_a_big_write_goes_out_whole_without_buffering_its_rest() -> None:
    # The transport used to slice and buffer the whole unsent rest of a 16 MB write
    # (two copies); in pieces it holds at most one piece, and the bytes arrive the same.
    data = np.random.default_rng(1).integers(0, 256, 24 << 20, dtype=np.uint8)
    got = bytearray()
    done = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 20):
            got.extend(chunk)
            if len(got) >= data.size:
                done.set()
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    io = AsyncSocketIO(f"TCPIP0::127.0.0.1::{port}::SOCKET")
    await io.aopen(5)
    assert io._writer is not None
    transport = io._writer.transport
    limits = transport.get_write_buffer_limits()
    buffered: list[int] = []
    write = transport.write

    def spy(piece: bytes | memoryview) -> None:
        write(piece)
        buffered.append(transport.get_write_buffer_size())

    transport.write = spy  # type: ignore[method-assign]
    try:
        await io.awrite(data.data)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await io.aclose()
        server.close()
    assert bytes(got) == data.tobytes()
    assert max(buffered) <= socket_io._WRITE_PIECE
    assert transport.get_write_buffer_limits() == limits
