"""The ``qhil`` command."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import click

from qhil import __version__
from qhil.errors import QhilError


def _fail(exc: Exception) -> None:
    click.echo(f"qhil: error: {exc}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="qhil")
def main() -> None:
    """qhil: drivers, faithful emulators and an orchestrator for quantum-network lab benches.

    \b
    qhil emulate [PROFILE]      serve a bench's emulated instruments (VISA / serial)
    qhil catalogue              list the instrument models qhil drives and emulates
    qhil profile show [PROFILE] print a validated bench profile
    """


@main.command()
@click.argument("profile", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per instrument, per line.")
@click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a profile value."
)
@click.option(
    "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World time mode."
)
def emulate(
    profile: str | None, as_json: bool, overrides: tuple[str, ...], mode: str | None
) -> None:
    """Serve the emulated instruments of PROFILE (default: hw_profiles/default.toml) until interrupted.

    Each instrument is listed with its VISA resource string (and serial device path or
    host:port); point any VISA or serial client at it — pyvisa-shell, another lab framework.
    """
    from qhil.emulators.bench import EmulatedBench
    from qhil.orchestrator.profile import load_profile

    try:
        prof = load_profile(profile, list(overrides))
        bench = EmulatedBench(prof, mode=mode).start()
    except QhilError as exc:
        _fail(exc)
        return
    try:
        for row in bench.listing():
            if as_json:
                click.echo(json.dumps(row))
            else:
                click.echo(
                    f"{row['node']}.{row['instrument']:<14} {row['model']:<12} {row['resource']}  ({row['address']})"
                )
        sys.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        bench.stop()


@main.command()
@click.option("--json", "as_json", is_flag=True)
def catalogue(as_json: bool) -> None:
    """List the instrument models in the catalogue."""
    from qhil.catalogue import CATALOGUE

    for e in CATALOGUE.values():
        row: dict[str, Any] = {
            "model": e.model,
            "roles": list(e.roles),
            "description": e.description,
        }
        click.echo(
            json.dumps(row)
            if as_json
            else f"{e.model:<22} {', '.join(e.roles):<28} {e.description}"
        )


@main.group()
def profile() -> None:
    """Bench profiles."""


@profile.command("show")
@click.argument("name", required=False)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE")
def profile_show(name: str | None, overrides: tuple[str, ...]) -> None:
    """Validate and print a profile (with overrides applied)."""
    from qhil.orchestrator.profile import load_profile

    try:
        prof = load_profile(name, list(overrides))
    except QhilError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(prof.snapshot(), indent=2))


if __name__ == "__main__":
    main()
