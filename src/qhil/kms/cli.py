"""``qhil kms ...``: serve a node's KME, make a local test CA. cli.py only adds the group."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from pathlib import Path

import click

from qhil.errors import ConfigError


def _default_dir(data_dir: str | None) -> Path:
    from qhil.records.paths import default_data_dir

    return (Path(data_dir) if data_dir else default_data_dir()) / "kms"


def _fail(message: str) -> None:
    click.echo(f"qhil: error: {' '.join(message.split())}", err=True)
    sys.exit(2)


@click.group()
def kms() -> None:
    """ETSI GS QKD 014 key delivery: one KME per node (docs/kms.md)."""


@kms.command("init-ca")
@click.argument("directory", required=False)
@click.option(
    "--sae",
    "saes",
    multiple=True,
    metavar="NODE=SAE_ID",
    help="An SAE attached to a node's KME (repeat; default alice=bank-a, bob=bank-b).",
)
@click.option("--data-dir", default=None, help="Default DIRECTORY is <data dir>/kms.")
def init_ca_cmd(directory: str | None, saes: tuple[str, ...], data_dir: str | None) -> None:
    """Create a local test CA, KME and SAE certificates, and kms.toml in DIRECTORY."""
    from qhil.kms.ca import init_ca

    nodes: dict[str, list[str]] = {}
    for item in saes:
        node, sep, sae = item.partition("=")
        if not sep or not node or not sae:
            _fail(f"'--sae': {item!r} is not NODE=SAE_ID (e.g. alice=bank-a)")
        nodes.setdefault(node, []).append(sae)
    if nodes and len(nodes) != 2:
        _fail(f"'--sae': SAEs for exactly two nodes are needed (got {sorted(nodes)})")
    target = Path(directory) if directory else _default_dir(data_dir)
    try:
        path = init_ca(target, nodes=nodes or None)
    except (OSError, ValueError) as exc:
        _fail(f"{target}: {exc}")
    click.echo(f"wrote {path} and the certificates beside it (private keys 0600)")


@kms.command("serve")
@click.argument("node")
@click.option(
    "--config", "config_path", default=None, help="kms.toml (default <data dir>/kms/kms.toml)."
)
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Override the config's listen address (port 0: any free port).",
)
@click.option(
    "--peer",
    default=None,
    metavar="URL|@FILE",
    help="The other KME's URL, or a file holding it (re-read on each contact).",
)
@click.option(
    "--key-dir", default=None, help="Key store (default <data dir>/keys, as qhil run bb84)."
)
@click.option("--data-dir", default=None, help="Data directory for the defaults.")
@click.option("--port-file", default=None, help="Write https://HOST:PORT here once listening.")
def serve_cmd(
    node: str,
    config_path: str | None,
    listen: str | None,
    peer: str | None,
    key_dir: str | None,
    data_dir: str | None,
    port_file: str | None,
) -> None:
    """Serve NODE's KME (ETSI GS QKD 014 v1 over HTTPS with mutual TLS) until Ctrl-C."""
    from qhil.kms.config import load_config
    from qhil.kms.kme import Kme
    from qhil.kms.server import KmeServer, client_ssl_context, peer_caller, resolve_url
    from qhil.records.errors import KeyStoreError
    from qhil.records.paths import default_key_dir

    path = Path(config_path) if config_path else _default_dir(data_dir) / "kms.toml"
    try:
        config = load_config(path)
        entry = config.node(node)
        _, peer_entry = config.peer_of(node)
    except ConfigError as exc:
        _fail(str(exc))
    address = listen or entry.listen
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        _fail(f"'--listen': {address!r} is not HOST:PORT")
    keys = Path(key_dir) if key_dir else default_key_dir(data_dir)
    for label, file in (("ca", config.ca), ("cert", entry.cert), ("key", entry.key)):
        if not file.is_file():
            _fail(
                f"{path}: kme.{node}.{label}: {file} is not a file"
                if label != "ca"
                else f"{path}: ca: {file} is not a file"
            )
    try:
        client_ssl_context(config.ca, entry.cert, entry.key)
    except (OSError, ssl.SSLError) as exc:
        _fail(f"{path}: kme.{node}: cannot load {entry.cert} / {entry.key} / {config.ca}: {exc}")
    call = peer_caller(config, node, resolve_url(peer or peer_entry.peer_url))
    try:
        kme = Kme(config, node, keys, call)
    except (KeyStoreError, OSError, ValueError) as exc:
        _fail(f"{keys}: {exc}")
    try:  # the address is free: else one line, exit 2
        server = KmeServer(kme, host.strip("[]"), int(port_text))
        server.bind()
    except OSError as exc:
        kme.close()
        _fail(f"{entry.kme_id}: cannot listen on {address}: {exc.strerror or exc}")

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            url = f"https://{host}:{server.port}"
            if port_file:
                tmp = f"{port_file}.tmp-{os.getpid()}"
                Path(tmp).write_text(url + "\n")
                os.replace(tmp, port_file)
            click.echo(
                f"{entry.kme_id} ({node}) serving ETSI GS QKD 014 on {url} for "
                f"{', '.join(entry.sae_ids)}; keys from {keys}",
                err=True,
            )
        await task

    try:
        asyncio.run(run())
    finally:
        kme.close()
