"""``qhil auth new-pool``: provision a pre-shared Wegman-Carter pool (see pool.py)."""

from __future__ import annotations

import sys

import click

from qhil.errors import QhilError
from qhil.orchestrator.channel.pool import create_pool_file, pool_bits_left, run_budget_bits


@click.group()
def auth() -> None:
    """Pre-shared material for the authenticated classical channel."""


@auth.command("new-pool")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--bits",
    type=click.IntRange(min=run_budget_bits()),
    default=64 * run_budget_bits(),
    show_default=True,
    help="Pad bits (rounded down to whole pairs of 128-bit pads); a run takes "
    f"{run_budget_bits()}.",
)
def new_pool(path: str, bits: int) -> None:
    """Write a fresh random Wegman-Carter pool to PATH (0600, never overwritten).

    Copy it to the other party over a trusted path; both then run with --wc-pool.
    """
    try:
        create_pool_file(path, bits // 8)
    except QhilError as exc:
        click.echo(f"qhil: error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{path}: {pool_bits_left(path)} pad bits, {run_budget_bits()} per run")
