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
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BITS = 256


def kme_client(ca_dir: Path, sae: str) -> httpx.Client:
    """HTTPS with mutual TLS: the bank's own certificate, the CA as the only trust."""
    context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    context.load_cert_chain(str(ca_dir / f"sae-{sae}.pem"), str(ca_dir / f"sae-{sae}.key"))
    return httpx.Client(verify=context, timeout=10)


class BankError(Exception):
    """A one-line reason to stop (exit 2, no traceback)."""


def _fail(message: str) -> None:
    print(f"kms_bank: {message}", file=sys.stderr)
    sys.exit(2)


def _kme_keys(ca_dir: Path, sae: str, url: str, body: dict[str, Any]) -> Any:
    """POST to the KME; its keys, or BankError naming what failed."""
    try:
        with kme_client(ca_dir, sae) as kme:
            response = kme.post(url, json=body)
    except (OSError, ssl.SSLError) as exc:
        raise BankError(f"--ca-dir {ca_dir}: certificate of {sae!r}: {exc}") from None
    except httpx.HTTPError as exc:
        raise BankError(f"--kme: {url}: {type(exc).__name__}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code != 200:
        message = answer.get("message") if isinstance(answer, dict) else None
        raise BankError(f"KME answered {response.status_code}: {message}")
    return answer["keys"]


def send(args: argparse.Namespace) -> None:
    host, _, port = args.connect.rpartition(":")
    # reach the receiver BEFORE fetching a key: a refused connection leaves no key held
    # at the other KME for nobody
    try:
        conn = socket.create_connection((host, int(port)), timeout=10)
    except (OSError, ValueError) as exc:
        raise BankError(f"--connect {args.connect}: {exc}") from None
    with conn:
        url = f"{args.kme}/api/v1/keys/{args.to}/enc_keys"
        (key,) = _kme_keys(Path(args.ca_dir), args.sae, url, {"number": 1, "size": KEY_BITS})
        _send_under(conn, args, key)


def _send_under(conn: socket.socket, args: argparse.Namespace, key: dict[str, str]) -> None:
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
    try:
        conn.sendall(json.dumps(envelope).encode() + b"\n")
    except OSError as exc:
        raise BankError(f"--connect {args.connect}: {exc}") from None
    print(f"sent {len(ciphertext)} bytes under key {key['key_ID']}")


def receive(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    try:
        server = socket.create_server((host, int(port)))
    except (OSError, ValueError) as exc:
        raise BankError(f"--listen {args.listen}: {exc}") from None
    with server:
        if args.port_file:
            Path(args.port_file).write_text(f"{host}:{server.getsockname()[1]}\n")
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as stream:
            line = stream.readline()
    try:
        envelope = json.loads(line)
        sender, key_id = str(envelope["from"]), str(envelope["key_ID"])
        nonce = base64.b64decode(envelope["nonce"], validate=True)
        ciphertext = base64.b64decode(envelope["ciphertext"], validate=True)
    except (TypeError, KeyError, ValueError) as exc:
        raise BankError(f"the envelope received is not from kms_bank send: {exc!r}") from None
    url = f"{args.kme}/api/v1/keys/{sender}/dec_keys"
    (key,) = _kme_keys(Path(args.ca_dir), args.sae, url, {"key_IDs": [{"key_ID": key_id}]})
    try:
        plaintext = AESGCM(base64.b64decode(key["key"])).decrypt(nonce, ciphertext, sender.encode())
    except (InvalidTag, ValueError):
        raise BankError(f"the message from {sender!r} does not decrypt (tampered?)") from None
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
    try:
        send(args) if args.role == "send" else receive(args)
    except BankError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
