"""Two KMEs (alice, bob) served in-process over mutual TLS on ephemeral ports, with a
key store holding identical key files for both nodes, and HTTP clients per SAE."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from qhil.kms.ca import init_ca
from qhil.kms.config import KmsConfig, load_config
from qhil.kms.kme import Kme, PeerError
from qhil.kms.server import KmeServer, client_ssl_context, peer_caller
from qhil.records.keystore import KeyStore

SAE = {"alice": "bank-a", "bob": "bank-b"}


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA for the session (EC keys: ~50 ms); tests never write into it."""
    directory = tmp_path_factory.mktemp("kms-ca")
    init_ca(directory, nodes={"alice": ["bank-a", "bank-c"], "bob": ["bank-b"]})
    return directory


def save_pair(key_dir: Path, nbits: int, seed: int) -> bytes:
    """The same random key committed for alice and for bob (as BB84 leaves it); its bytes."""
    bits = np.random.default_rng(seed).integers(0, 2, nbits, dtype=np.uint8)
    store = KeyStore(key_dir)
    store.save(bits, label="alice")
    store.save(bits, label="bob")
    return np.packbits(bits).tobytes()


@dataclass
class Kmes:
    config: KmsConfig
    key_dir: Path
    ca_dir: Path
    urls: dict[str, str] = field(default_factory=dict)
    servers: dict[str, KmeServer] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def start(self, node: str) -> None:
        other = "bob" if node == "alice" else "alice"

        def peer_url() -> str:
            if other not in self.urls:  # as resolve_url's missing address file
                raise PeerError(f"{other} KME not started")
            return self.urls[other]

        call = peer_caller(self.config, node, peer_url)
        server = KmeServer(Kme(self.config, node, self.key_dir, call), "127.0.0.1", 0)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        self.urls[node] = f"https://127.0.0.1:{server.port}"
        self.servers[node], self.tasks[node] = server, task

    async def stop(self, node: str) -> None:
        self.servers[node].stop()
        await self.tasks[node]
        self.servers[node].kme.close()

    def context(self, sae: str) -> ssl.SSLContext:
        return client_ssl_context(
            self.config.ca, self.ca_dir / f"sae-{sae}.pem", self.ca_dir / f"sae-{sae}.key"
        )

    def client(self, sae: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=self.context(sae), timeout=10)

    async def enc(
        self,
        node: str,
        body: dict[str, Any] | None = None,
        *,
        sae: str | None = None,
        slave: str | None = None,
    ) -> httpx.Response:
        other = "bob" if node == "alice" else "alice"
        async with self.client(sae or SAE[node]) as client:
            url = f"{self.urls[node]}/api/v1/keys/{slave or SAE[other]}/enc_keys"
            return await client.post(url, json=body or {})

    async def dec(
        self, node: str, key_ids: list[str], *, sae: str | None = None, master: str | None = None
    ) -> httpx.Response:
        other = "bob" if node == "alice" else "alice"
        async with self.client(sae or SAE[node]) as client:
            url = f"{self.urls[node]}/api/v1/keys/{master or SAE[other]}/dec_keys"
            return await client.post(url, json={"key_IDs": [{"key_ID": k} for k in key_ids]})


@pytest.fixture
async def kmes(ca_dir: Path, tmp_path: Path) -> AsyncIterator[Kmes]:
    key_dir = tmp_path / "keys"
    save_pair(key_dir, 4096, seed=1)
    bench = Kmes(load_config(ca_dir / "kms.toml"), key_dir, ca_dir)
    await bench.start("alice")
    await bench.start("bob")
    try:
        yield bench
    finally:
        for node in list(bench.servers):
            if not bench.tasks[node].done():
                await bench.stop(node)
