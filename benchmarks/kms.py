"""ETSI GS QKD 014 KME benchmark: enc_keys / dec_keys over mutual TLS on this machine.

Two KMEs (``qhil kms serve``) run as separate processes on ephemeral ports with a fresh test
CA and synthetic key files (identical at both nodes); the SAE clients (httpx, one keep-alive
connection per client) run here. For each case: requests per second and latency
percentiles (p50/p90/p99, ms) over ``--requests`` requests of one 256-bit key, with
``--concurrency`` clients in parallel:

* ``enc@alice``: enc_keys at the allocator KME (one KME-to-KME ``store`` per request);
* ``enc@bob``: enc_keys at the other KME (one ``allocate`` call to alice per request);
* ``dec@bob``: dec_keys of the keys from ``enc@alice`` (no KME-to-KME call).

Every request costs at least one fsync per KME involved. ``--json`` prints one JSON object.
Run: ``.venv/bin/python benchmarks/kms.py [--json] [--requests 400] [--concurrency 1 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from qhil.kms.ca import init_ca
from qhil.kms.server import client_ssl_context
from qhil.records.keystore import KeyStore

SAE = {"alice": "bank-a", "bob": "bank-b"}
OTHER = {"alice": "bob", "bob": "alice"}


def start_kmes(root: Path) -> dict[str, subprocess.Popen[bytes]]:
    procs = {}
    for node in ("alice", "bob"):
        cmd = [
            sys.executable, "-m", "qhil.cli", "kms", "serve", node,
            "--config", str(root / "ca" / "kms.toml"), "--listen", "127.0.0.1:0",
            "--peer", f"@{root / (OTHER[node] + '.url')}",
            "--port-file", str(root / f"{node}.url"), "--key-dir", str(root / "keys"),
        ]  # fmt: skip
        procs[node] = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    for node in procs:
        for _ in range(600):
            if (root / f"{node}.url").exists():
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"kms benchmark: the {node} KME did not start")
    return procs


async def timed(
    root: Path, node: str, path: str, bodies: list[dict[str, Any]], concurrency: int
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    url = (root / f"{node}.url").read_text().strip() + path
    ca = root / "ca"
    sae = SAE[node]
    context = client_ssl_context(ca / "ca.pem", ca / f"sae-{sae}.pem", ca / f"sae-{sae}.key")
    latencies: list[float] = []
    answers: list[dict[str, Any]] = []
    queue = list(bodies)

    async def worker() -> None:
        async with httpx.AsyncClient(verify=context, timeout=30) as client:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise SystemExit(f"kms benchmark: {response.status_code} {response.text}")
                answers.append(response.json())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    stats = {
        "requests_per_s": len(bodies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
    }
    return stats, answers


async def run_case(root: Path, requests: int, concurrency: int) -> dict[str, dict[str, float]]:
    enc = {"number": 1, "size": 256}
    out: dict[str, dict[str, float]] = {}
    out["enc@alice"], got = await timed(
        root, "alice", "/api/v1/keys/bank-b/enc_keys", [enc] * requests, concurrency
    )
    out["enc@bob"], _ = await timed(
        root, "bob", "/api/v1/keys/bank-a/enc_keys", [enc] * requests, concurrency
    )
    ids = [{"key_IDs": [{"key_ID": a["keys"][0]["key_ID"]}]} for a in got]
    out["dec@bob"], _ = await timed(root, "bob", "/api/v1/keys/bank-a/dec_keys", ids, concurrency)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qhil-kms-bench-") as tmp:
        root = Path(tmp)
        init_ca(root / "ca")
        store = KeyStore(root / "keys")
        need = 2 * args.requests * 256 * len(args.concurrency)
        bits = np.random.default_rng(0).integers(0, 2, need + 8192, dtype=np.uint8)
        store.save(bits, label="alice")
        store.save(bits, label="bob")
        procs = start_kmes(root)
        try:
            for c in args.concurrency:
                results[f"concurrency_{c}"] = asyncio.run(run_case(root, args.requests, c))
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'case':<24}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    for conc, cases in results.items():
        for case, s in cases.items():
            print(
                f"{conc + ' ' + case:<24}{s['requests_per_s']:>9.0f}{s['p50_ms']:>9.1f}"
                f"{s['p90_ms']:>9.1f}{s['p99_ms']:>9.1f}"
            )


if __name__ == "__main__":
    main()
