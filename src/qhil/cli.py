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
    qhil run bb84 [PROFILE]     decoy-state BB84 to a verified secret key
    qhil calibrate polarization|detectors|delays|mean-photon-number [PROFILE]   measure, record
    qhil runs list / show ID    the run records
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
@click.option(
    "--write-profile",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the profile with the emulators' addresses (for processes elsewhere).",
)
def emulate(
    profile: str | None,
    as_json: bool,
    overrides: tuple[str, ...],
    mode: str | None,
    write_profile: str | None,
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
        if write_profile:
            import tomli_w

            with open(write_profile, "wb") as f:
                tomli_w.dump(bench.addressed_profile(), f)
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


@main.group()
def run() -> None:
    """Run an experiment on a bench (recorded in the run store)."""


@run.command("bb84")
@click.argument("profile", required=False)
@click.option("--duration", "duration_s", type=float, default=None, help="Acquisition time, s.")
@click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a profile value."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
@click.option("--data-dir", default=None, help="Run store directory.")
@click.option("--key-dir", default=None, help="Key store directory (files are 0600).")
@click.option(
    "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World time mode."
)
@click.option(
    "--party",
    type=click.Choice(["alice", "bob"]),
    default=None,
    help="Run one party only; the other runs in another process (TCP).",
)
@click.option("--listen", default=None, metavar="HOST:PORT", help="Alice: where to accept Bob.")
@click.option("--connect", default=None, metavar="HOST:PORT", help="Bob: where Alice listens.")
@click.option(
    "--auth-key-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Pre-shared authentication key (hex, mode 0600) for --party runs.",
)
@click.option(
    "--session", "session_id", default="qhil-bb84", help="Session label both parties use."
)
def run_bb84_cmd(
    profile: str | None,
    duration_s: float | None,
    overrides: tuple[str, ...],
    as_json: bool,
    data_dir: str | None,
    key_dir: str | None,
    mode: str | None,
    party: str | None,
    listen: str | None,
    connect: str | None,
    auth_key_file: str | None,
    session_id: str,
) -> None:
    """Decoy-state BB84 on PROFILE (default: the emulated bench) to a verified secret key.

    Exits 0 with a key, 3 when the protocol aborted (QBER, verification, authentication),
    2 on bad input. Keys go to the key store, never to the output; the summary gives
    their SHA-256.
    """
    import asyncio

    from tqdm import tqdm

    from qhil.orchestrator.jobs import run_bb84_job, run_bb84_party_job

    bar = tqdm(total=None, unit="block", desc="bb84", disable=as_json, leave=False)

    def progress(event: Any) -> None:
        if event.party != (party or "bob"):
            return
        if event.stage == "block":
            bar.total = event.n_blocks
            bar.n = event.block
            bar.set_postfix(sifted=event.sifted_bits, refresh=False)
            bar.refresh()
        else:
            bar.set_description(f"bb84 {event.stage}")

    try:
        if party is not None:
            if auth_key_file is None:
                raise click.UsageError("--party needs --auth-key-file")
            job = run_bb84_party_job(
                party,
                profile,
                list(overrides),
                auth_key_file=auth_key_file,
                listen=listen,
                connect=connect,
                session_id=session_id,
                duration_s=duration_s,
                data_dir=data_dir,
                key_dir=key_dir,
                progress=progress,
            )
        else:
            job = run_bb84_job(
                profile,
                list(overrides),
                duration_s=duration_s,
                data_dir=data_dir,
                key_dir=key_dir,
                mode=mode,
                progress=progress,
            )
        summary = asyncio.run(job)
    except QhilError as exc:
        bar.close()
        _fail(exc)
        return
    bar.close()
    out = summary.as_dict()
    if as_json:
        click.echo(json.dumps({k: v for k, v in out.items() if k != "results"}, allow_nan=False))
    else:
        for k, v in out.items():
            if k != "results":
                click.echo(f"{k:<28} {v}")
    if summary.status != "success":
        sys.exit(3)


@main.group()
def calibrate() -> None:
    """Calibration routines: measure the bench through its instruments, record the run."""


_CALIBRATIONS = {
    "polarization": (
        "run_polarization_calibration",
        "Find the polarization-controller voltages that undo the fibre's rotation (reference "
        "states from Alice's pattern generator, error fractions from Bob's tagger; the "
        "controller is left at the voltages found).",
    ),
    "detectors": (
        "run_detector_efficiency_calibration",
        "Relative efficiencies of Bob's detectors (equal light on every port, background "
        "from vacuum pulses), with errors and a test of 'all equal'.",
    ),
    "delays": (
        "run_delay_calibration",
        "Relative delays of Bob's detector channels from a sparse bright pulse train "
        "(and his clock rate).",
    ),
    "mean-photon-number": (
        "run_mean_photon_number_calibration",
        "Mean photon number of each of Alice's intensity levels as it leaves her station, "
        "from her power meter on the transmitter's monitor tap, with errors.",
    ),
}


def _calibration_command(name: str, job: str, help_text: str) -> None:
    @calibrate.command(
        name, help=help_text + " Exits 0 on success, 3 when it failed, 2 on bad input."
    )
    @click.argument("profile", required=False)
    @click.option(
        "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a profile value."
    )
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
    @click.option("--data-dir", default=None, help="Run store directory.")
    @click.option(
        "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World time mode."
    )
    def command(
        profile: str | None,
        overrides: tuple[str, ...],
        as_json: bool,
        data_dir: str | None,
        mode: str | None,
    ) -> None:
        import asyncio
        import importlib

        run_job = getattr(importlib.import_module("qhil.calibration.jobs"), job)
        try:
            summary = asyncio.run(run_job(profile, list(overrides), data_dir, mode=mode))
        except QhilError as exc:
            _fail(exc)
            return
        out = summary.as_dict()
        if as_json:
            click.echo(json.dumps(out, allow_nan=False, default=str))
        else:
            for k, v in out.items():
                click.echo(f"{k:<28} {v}")
        if summary.status != "success":
            sys.exit(3)


for _name, (_job, _help) in _CALIBRATIONS.items():
    _calibration_command(_name, _job, _help)


@main.group()
def runs() -> None:
    """The run records (data directory: $QHIL_DATA_DIR or ~/.local/share/qhil)."""


def _store(data_dir: str | None) -> Any:
    from qhil.records import RunStore

    return RunStore(data_dir)


@runs.command("list")
@click.option("--kind", default=None, help="Only runs of this kind (glob), e.g. 'bb84'.")
@click.option("--status", default=None, help="running, success, aborted, failed or incomplete.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--data-dir", default=None, help="Run store directory.")
def runs_list(
    kind: str | None, status: str | None, limit: int, as_json: bool, data_dir: str | None
) -> None:
    """List recorded runs, newest first."""
    from qhil.records import format_run_table, runs_to_json_list

    try:
        records = _store(data_dir).list_runs(kind=kind, status=status, limit=limit)
    except QhilError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(runs_to_json_list(records), allow_nan=False))
    else:
        click.echo(format_run_table(records))


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--data-dir", default=None, help="Run store directory.")
def runs_show(run_id: str, as_json: bool, data_dir: str | None) -> None:
    """Everything recorded about one run (ID or a unique prefix)."""
    from qhil.records import format_run_detail, run_to_json_dict

    try:
        record = _store(data_dir).get(run_id)
    except (QhilError, KeyError, LookupError) as exc:
        _fail(exc)
        return
    click.echo(
        json.dumps(run_to_json_dict(record), allow_nan=False, indent=2)
        if as_json
        else format_run_detail(record)
    )


if __name__ == "__main__":
    main()
