"""LIP6's open-source ETSI GS QKD 014 client (``etsi-qkd-014-client`` on PyPI, 0.9.0),
unmodified, against qhil's two KMEs over mutual TLS (issue 13 acceptance)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from etsi_qkd_014_client import QKD014Client
from etsi_qkd_014_client.data import DataError, DataKeyContainer, DataStatus

from .conftest import Kmes

pytestmark = pytest.mark.fidelity


def _client(kmes: Kmes, node: str, sae: str) -> QKD014Client:
    host = kmes.urls[node].removeprefix("https://")
    d = kmes.ca_dir
    return QKD014Client(
        host, str(d / f"sae-{sae}.pem"), str(d / f"sae-{sae}.key"), str(d / "ca.pem")
    )


async def test_the_open_source_client_fetches_keys(kmes: Kmes) -> None:
    bank_a, bank_b = _client(kmes, "alice", "bank-a"), _client(kmes, "bob", "bank-b")
    # the client is synchronous (requests): run it off the loop that serves the KMEs
    code, status = await asyncio.to_thread(bank_a.get_status, "bank-b")
    assert code == 200 and isinstance(status, DataStatus)
    assert status.key_size == 256 and status.stored_key_count == 16
    code, simple = await asyncio.to_thread(bank_a.get_key, "bank-b")  # GET, the defaults
    assert code == 200 and isinstance(simple, DataKeyContainer)
    code, posted = await asyncio.to_thread(bank_a.get_key, "bank-b", 2, 512)  # POST
    assert code == 200 and isinstance(posted, DataKeyContainer)
    assert [len(base64.b64decode(k.key)) for k in posted.keys] == [64, 64]
    for container in (simple, posted):
        ids = [k.key_id for k in container.keys]
        code, got = await asyncio.to_thread(bank_b.get_key_with_key_IDs, "bank-a", ids)
        assert code == 200 and isinstance(got, DataKeyContainer)
        assert [k.key for k in got.keys] == [k.key for k in container.keys]
    code, error = await asyncio.to_thread(bank_a.get_key, "bank-b", 1, 100)
    assert code == 400 and isinstance(error, DataError) and error.details
