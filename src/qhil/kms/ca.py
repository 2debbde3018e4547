"""A local test CA: KME and SAE certificates for trying the ETSI 014 flow on one machine.

``init_ca`` writes a CA, one certificate per KME (server and client: the KMEs talk to each
other over mutual TLS too) and one client certificate per SAE, with the SAE ID (or KME ID)
as the subject's common name: that name is how a KME knows who calls. Private keys are
0600. This is for tests and demonstrations; a deployment uses its own PKI.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qhil.kms.config import Limits

DEFAULT_NODES: dict[str, list[str]] = {"alice": ["bank-a"], "bob": ["bank-b"]}
DEFAULT_PORTS = (8443, 8444)
VALID_DAYS = 365


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qhil test CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def _issue(
    subject: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate | None,
    *,
    server: bool,
    client: bool,
    hosts: tuple[str, ...] = (),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh P-256 key and its certificate (self-signed when ``ca_cert`` is None)."""
    key = ec.generate_private_key(ec.SECP256R1()) if ca_cert is not None else ca_key
    now = dt.datetime.now(dt.UTC)
    issuer = ca_cert.subject if ca_cert is not None else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )
    if ca_cert is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return key, cert


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# node names and SAE IDs become file names (kme-NODE.pem, sae-SAE.pem): no path parts
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_names(nodes: dict[str, list[str]]) -> None:
    """Every problem before any file is written (ValueError naming the bad name)."""
    kme_ids = {f"KME-{node}" for node in nodes}
    seen: set[str] = set()
    for node, sae_ids in nodes.items():
        if not _NAME.fullmatch(node):
            raise ValueError(f"node {node!r}: letters, digits, '.', '_', '-' only")
        for sae in sae_ids:
            if not _NAME.fullmatch(sae):
                raise ValueError(f"SAE ID {sae!r}: letters, digits, '.', '_', '-' only")
            if sae in kme_ids:
                raise ValueError(f"SAE ID {sae!r} is a KME ID (it would pass as that KME)")
            if sae in seen:
                raise ValueError(f"SAE ID {sae!r} is given twice")
            seen.add(sae)


def init_ca(
    directory: str | Path,
    *,
    nodes: dict[str, list[str]] | None = None,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    ports: tuple[int, int] = DEFAULT_PORTS,
    limits: Limits | None = None,
) -> Path:
    """Create the CA, the certificates and ``kms.toml`` in ``directory``; returns the toml.

    Refuses a directory that already has a ``kms.toml`` (it would orphan the old CA's
    certificates that applications may use).
    """
    base = Path(directory)
    nodes = nodes or DEFAULT_NODES
    if len(nodes) != 2:
        raise ValueError(f"two nodes are needed (got {len(nodes)})")
    _check_names(nodes)
    config_path = base / "kms.toml"
    if config_path.exists():
        raise FileExistsError(f"{config_path} already exists: choose an empty directory")
    base.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    _, ca_cert = _issue("qhil test CA", ca_key, None, server=False, client=False)
    _write_key(base / "ca.key", ca_key)
    _write_cert(base / "ca.pem", ca_cert)
    kme_tables: dict[str, dict[str, object]] = {}
    for (node, sae_ids), port in zip(nodes.items(), ports, strict=True):
        kme_id = f"KME-{node}"
        key, cert = _issue(kme_id, ca_key, ca_cert, server=True, client=True, hosts=hosts)
        _write_key(base / f"kme-{node}.key", key)
        _write_cert(base / f"kme-{node}.pem", cert)
        for sae in sae_ids:
            key, cert = _issue(sae, ca_key, ca_cert, server=False, client=True)
            _write_key(base / f"sae-{sae}.key", key)
            _write_cert(base / f"sae-{sae}.pem", cert)
        kme_tables[node] = {
            "kme_id": kme_id,
            "listen": f"127.0.0.1:{port}",
            "cert": f"kme-{node}.pem",
            "key": f"kme-{node}.key",
            "sae_ids": list(sae_ids),
        }
    document = {
        "ca": "ca.pem",
        "limits": (limits or Limits.model_validate({})).model_dump(),
        "kme": kme_tables,
    }
    config_path.write_text(
        "# ETSI GS QKD 014 KMEs for `qhil kms serve NODE`; paths relative to this file\n"
        + tomli_w.dumps(document)
    )
    return config_path
