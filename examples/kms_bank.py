"""Two banks exchange an AES-GCM encrypted message with a key from qhil's KMEs.

Bank B waits for a message; bank A fetches a fresh key from its KME (ETSI GS QKD 014
``enc_keys``, slave = bank B), encrypts, and sends ``key_ID, nonce, ciphertext`` over a
plain TCP connection; bank B fetches the same key from its own KME by that key_ID
(``dec_keys``) and decrypts. Neither bank ever sends the key; the KMEs never see the
message. Run with the certificates of ``qhil kms init-ca DIR`` (docs/kms.md)::

    python examples/kms_bank.py receive --ca-dir DIR --kme https://127.0.0.1:8444 \\
        --sae bank-b --listen 127.0.0.1:9000
    python examples/kms_bank.py send --ca-dir DIR --kme https://127.0.0.1:8443 \\
        --sae bank-a --to bank-b --connect 127.0.0.1:9000 --message "pay 100 EUR to bob"
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BITS = 256


def kme_client(ca_dir: Path, sae: str) -> httpx.Client:
    """HTTPS with mutual TLS: the bank's own certificate, the CA as the only trust."""
    context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    context.load_cert_chain(str(ca_dir / f"sae-{sae}.pem"), str(ca_dir / f"sae-{sae}.key"))
    return httpx.Client(verify=context, timeout=10)


def _check(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if response.status_code != 200:
        sys.exit(f"kms_bank: KME answered {response.status_code}: {body.get('message')}")
    return dict(body)


def send(args: argparse.Namespace) -> None:
    with kme_client(Path(args.ca_dir), args.sae) as kme:
        url = f"{args.kme}/api/v1/keys/{args.to}/enc_keys"
        (key,) = _check(kme.post(url, json={"number": 1, "size": KEY_BITS}))["keys"]
    nonce = os.urandom(12)
    # the sender's SAE ID as associated data: a message cannot be replayed as another bank's
    ciphertext = AESGCM(base64.b64decode(key["key"])).encrypt(
        nonce, args.message.encode(), args.sae.encode()
    )
    envelope = {
        "from": args.sae,
        "key_ID": key["key_ID"],
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    host, _, port = args.connect.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(json.dumps(envelope).encode() + b"\n")
    print(f"sent {len(ciphertext)} bytes under key {key['key_ID']}")


def receive(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    with socket.create_server((host, int(port))) as server:
        if args.port_file:
            Path(args.port_file).write_text(f"{host}:{server.getsockname()[1]}\n")
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as stream:
            envelope = json.loads(stream.readline())
    with kme_client(Path(args.ca_dir), args.sae) as kme:
        url = f"{args.kme}/api/v1/keys/{envelope['from']}/dec_keys"
        body = {"key_IDs": [{"key_ID": envelope["key_ID"]}]}
        (key,) = _check(kme.post(url, json=body))["keys"]
    plaintext = AESGCM(base64.b64decode(key["key"])).decrypt(
        base64.b64decode(envelope["nonce"]),
        base64.b64decode(envelope["ciphertext"]),
        envelope["from"].encode(),
    )
    print(f"from {envelope['from']}: {plaintext.decode()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("send", "receive"):
        p = sub.add_parser(role)
        p.add_argument("--ca-dir", required=True, help="the directory qhil kms init-ca wrote")
        p.add_argument("--kme", required=True, help="this bank's KME, https://HOST:PORT")
        p.add_argument("--sae", required=True, help="this bank's SAE ID (its certificate)")
    send_p, recv_p = sub.choices["send"], sub.choices["receive"]
    send_p.add_argument("--to", required=True, help="the other bank's SAE ID")
    send_p.add_argument("--connect", required=True, metavar="HOST:PORT")
    send_p.add_argument("--message", required=True)
    recv_p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    recv_p.add_argument("--port-file", default=None, help="write HOST:PORT here once listening")
    args = parser.parse_args()
    send(args) if args.role == "send" else receive(args)


if __name__ == "__main__":
    main()
