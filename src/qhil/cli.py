"""The ``qhil`` command.

Exit codes (the same for every command): 0 success; 2 bad input or a run that could not
start (options, profiles, files, an unreachable instrument or peer); 3 a protocol or
calibration that ran and aborted (QBER, verification, authentication); 130 / 143 when
interrupted by SIGINT / SIGTERM (the run is recorded as aborted). Every error is one line
on stderr, ``qhil: error: ...``, never a traceback.
"""

from __future__ import annotations

import functools
import json
import math
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import click

from qhil import __version__
from qhil.errors import QhilError
from qhil.kms.cli import kms as _kms  # issue 13: the logic lives in qhil.kms
from qhil.orchestrator.bb84_continuous_cli import (
    continuous_options,
    refuse_without_continuous,
    run_continuous_command,
)
from qhil.orchestrator.channel.pool_cli import auth as _auth  # Wegman-Carter pools

#: Longest acquisition ``qhil run bb84`` starts without ``--yes`` (an 11-day run by a typo
#: in ``--duration`` would otherwise start silently).
MAX_UNCONFIRMED_ACQUISITION_S = 3600.0
#: Default of ``--peer-timeout``: how long a party waits for the other to show up.
DEFAULT_PEER_TIMEOUT_S = 60.0
MAX_PEER_TIMEOUT_S = 86400.0

EXIT_BAD_INPUT = 2
EXIT_ABORTED = 3
EXIT_SIGINT = 128 + signal.SIGINT


def _fail(exc: Exception) -> None:
    """One line on stderr; exit 3 for a failed authentication (a protocol abort), else 2."""
    from qhil.orchestrator.channel.errors import AuthenticationError

    text = " ".join(str(exc).split())  # one line, whatever the message holds
    click.echo(f"qhil: error: {text}", err=True)
    sys.exit(EXIT_ABORTED if isinstance(exc, AuthenticationError) else EXIT_BAD_INPUT)


class _Signalled(Exception):
    """SIGINT or SIGTERM arrived while a job ran (the job was cancelled and cleaned up)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _run_job(job: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run(job)``; SIGINT and SIGTERM cancel the job, then raise :class:`_Signalled`.

    Cancellation unwinds the job: its run is recorded ``aborted`` with the reason
    "terminated by signal (SIGTERM)" (or SIGINT), emulators stop and their temporary
    directories go, the data recorded so far is kept.
    """
    import asyncio

    received: list[int] = []

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if not received:
                task.cancel(f"terminated by signal ({signal.Signals(signum).name})")
            received.append(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            return await job
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if received:
            raise _Signalled(received[0]) from None
        raise


def _interrupted(exc: _Signalled) -> None:
    click.echo(f"qhil: terminated by {exc}; the run is recorded as aborted", err=True)
    sys.exit(128 + exc.signum)


class _OneLineErrors(click.Group):
    """click's usage errors as one line (``qhil: error: ...``), exit 2, like qhil's own."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a bare group (``qhil``, ``qhil run``): its help, as click shows it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"qhil: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"qhil: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("qhil: interrupted", err=True)
            sys.exit(EXIT_SIGINT)
        sys.exit(rv if isinstance(rv, int) else 0)


class _Seconds(click.ParamType):
    """A time in seconds: a finite number > 0 (and <= ``max_s`` when given)."""

    name = "seconds"

    def __init__(self, max_s: float | None = None) -> None:
        self.max_s = max_s

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(x) or x <= 0:
            self.fail(f"must be a finite number of seconds > 0 (got {value!r})", param, ctx)
        if self.max_s is not None and x > self.max_s:
            self.fail(f"at most {self.max_s:g} s (got {value!r})", param, ctx)
        return x


class _Directory(click.ParamType):
    """A directory option: not empty (that would silently mean the working directory),
    not an existing file."""

    name = "directory"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        import os

        text = str(value)
        if not text.strip():
            self.fail("an empty path (give a directory)", param, ctx)
        if os.path.exists(text) and not os.path.isdir(text):
            self.fail(f"{text!r} exists and is not a directory", param, ctx)
        return text


_DIRECTORY = _Directory()


class _HostPort(click.ParamType):
    """HOST:PORT with a port in range and a host that resolves (checked before any run)."""

    name = "host:port"

    def __init__(self, *, allow_port_zero: bool) -> None:
        self.allow_port_zero = allow_port_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        host, sep, port_text = text.rpartition(":")
        host = host.strip("[]")  # [::1]:7000
        if not sep or not host or not port_text.isdigit():
            self.fail(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:7000)", param, ctx)
        port = int(port_text)
        low = 0 if self.allow_port_zero else 1
        if not low <= port <= 65535:
            self.fail(f"port {port} of {text!r} is not in {low}..65535", param, ctx)
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
            self.fail(f"host {host!r} of {text!r} does not resolve ({reason})", param, ctx)
        return f"{host}:{port}"


#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_big_allocations() -> bool:
    """Have glibc's malloc serve big buffers from the heap and keep freed heap memory.

    A BB84 block at 8 M pulses allocates and frees buffers of 8-32 MB many times (the
    pattern's temporaries, the 33500B's upload, waveforms): by default glibc maps each
    afresh and unmaps it on free, so every one pays its ~4,000 page faults again.
    Measured end to end (benchmarks/bb84_end_to_end.py --seconds 2, default bench, CPU s
    per emulated s, 6 pairs of runs on a loaded host): 3.45-4.21 without, 3.22-3.88 with,
    lower in 5 of 6 pairs, by 0.18 on average (~5 %). The cost: freed memory stays in the
    process (its peak RSS).
    Linux with glibc only; elsewhere, or if libc cannot be loaded, nothing happens (False).
    """
    import ctypes
    import platform

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 256 << 20) and mallopt(_M_TRIM_THRESHOLD, 512 << 20))


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="qhil")
def main() -> None:
    """qhil: drivers, faithful emulators and an orchestrator for quantum-network lab benches.

    \b
    qhil emulate [PROFILE]      serve a bench's emulated instruments (VISA / serial)
    qhil catalogue              list the instrument models qhil drives and emulates
    qhil profile show [PROFILE] print a validated bench profile
    qhil profile list           the profiles a name finds (yours, then qhil's)
    qhil run bb84 [PROFILE]     decoy-state BB84 to a verified secret key
    qhil run clock-sync [PROFILE]   synchronise two nodes' tagger clocks (photon pairs)
    qhil run bbm92 [PROFILE]    entanglement-based QKD on the entanglement bench
    qhil run teleport [PROFILE] teleport a qubit alice -> bob over the repeater bench
    qhil ping NODE_A NODE_B [PROFILE]   is there entanglement between two nodes? (repeater)
    qhil calibrate polarization|detectors|delays|mean-photon-number [PROFILE]   measure, record
    qhil calibrate mount-zero|coincidence-delay [PROFILE]   the entanglement bench's
    qhil calibrate memory [PROFILE] [--node N]   quantum memories: efficiency, T1, T2
    qhil runs list / show ID    the run records
    qhil runs plot ID           draw a run's plots (PNG) from its record

    \b
    Exit codes: 0 success, 1 not reachable (qhil ping), 2 bad input or could not start,
    3 aborted (QBER, verification, authentication), 130/143 interrupted (SIGINT/SIGTERM).
    """
    keep_big_allocations()  # before any big buffer: see its docstring


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
    from qhil.errors import ConfigError
    from qhil.orchestrator.profile import EMULATED

    try:
        if write_profile:
            _check_writable(write_profile, "--write-profile")
        prof = _load_checked(profile, list(overrides))
        if not any(spec.resource == EMULATED for _, _, spec in prof.instruments()):
            # A lab profile: nothing to serve (waiting for Ctrl-C in silence helps nobody).
            raise ConfigError(
                prof.source,
                "nodes",
                "no emulated instruments (every resource is a lab address); nothing to serve. "
                'Give an emulated profile, or set an instrument\'s resource = "emulated"',
            )
        bench = EmulatedBench(prof, mode=mode).start()
    except QhilError as exc:
        _fail(exc)
        return
    try:
        if write_profile:
            import tomli_w

            try:
                with open(write_profile, "wb") as f:
                    tomli_w.dump(bench.addressed_profile(), f)
            except OSError as exc:
                _fail(ConfigError("<command line>", "--write-profile", _os_problem(exc)))
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


def _os_problem(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc)


def _check_writable(path: str, option: str) -> None:
    """A file the command will write later: its folder exists and is writable, now."""
    import os
    from pathlib import Path

    from qhil.errors import ConfigError

    folder = Path(path).expanduser().absolute().parent
    if not folder.is_dir():
        raise ConfigError("<command line>", option, f"{path}: no such directory {folder}")
    if not os.access(folder, os.W_OK):
        raise ConfigError("<command line>", option, f"{path}: directory {folder} is not writable")


def _echo_fields(fields: dict[str, Any]) -> None:
    """A summary as 'name value' lines; a value not measured (None) shows as '-', as in
    `runs list`, not as Python's 'None'."""
    for k, v in fields.items():
        click.echo(f"{k:<28} {'-' if v is None else v}")


#: ``--no-plots`` of every command that records a run.
_NO_PLOTS = click.option(
    "--no-plots",
    is_flag=True,
    help="Do not draw the run's plots (PNG, next to its record) at the end; "
    "'qhil runs plot ID' draws them later.",
)


def _print_summary(
    out: dict[str, Any],
    data_dir: str | None,
    no_plots: bool,
    as_json: bool,
    json_default: Callable[[Any], Any] | None = None,
) -> None:
    """Draw a finished run's plots (unless ``--no-plots``), then print its summary with
    them: JSON with ``plots`` as a list of paths, text as one 'plots' line."""
    plots = _plots_after_run(str(out["run_id"]), data_dir, no_plots)
    if as_json:
        full = out if plots is None else {**out, "plots": plots}
        click.echo(json.dumps(full, allow_nan=False, default=json_default))
    elif plots is None:
        _echo_fields(out)
    else:
        import os

        names = ", ".join(os.path.basename(p) for p in plots)
        where = f"{os.path.dirname(plots[0])}{os.sep} ({names})" if plots else "none"
        _echo_fields({**out, "plots": where})


def _plots_after_run(run_id: str, data_dir: str | None, skip: bool) -> list[str] | None:
    """Draw a finished run's plots next to its record; their paths (None: not drawn).

    Never fails the run: a plot that cannot be drawn is a one-line warning on stderr.
    """
    if skip:
        return None
    try:
        from qhil.plots import NothingToPlotError, write_plots
        from qhil.records import RunStore

        record = RunStore(data_dir, readonly=True).get(run_id)
        return [str(p) for p in write_plots(record).written]
    except NothingToPlotError:  # e.g. a run that stopped before its first array
        return []
    except Exception as exc:  # plotting must never turn a recorded run into a failure
        text = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(
            f"qhil: warning: run {run_id}: plots not written ({type(exc).__name__}: {text}); "
            f"'qhil runs plot {run_id}' retries",
            err=True,
        )
        return None


class _Bar:
    """A command's tqdm progress bar, made at the first progress event (an error before
    it shows no empty bar); ``close`` is safe when none was made."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._bar: Any = None

    def get(self, **first: Any) -> Any:
        """The bar; made now, with ``first`` options (e.g. its total), if not yet."""
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(**self._options, **first)
        return self._bar

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _say_waiting(text: str) -> None:
    """A party's waiting/progress line on stderr, above the bar."""
    from tqdm import tqdm

    tqdm.write(f"qhil: {text}", file=sys.stderr)


def _run_command(
    start: Callable[[], Any],
    *,
    data_dir: str | None,
    no_plots: bool,
    as_json: bool,
    close_bar: Callable[[], None] = lambda: None,
    shown: Callable[[Any], dict[str, Any]] = lambda summary: summary.as_dict(),
    json_default: Callable[[Any], Any] | None = None,
) -> None:
    """The tail every run command shares. ``start()`` runs the job (``_run_job``) and
    returns its summary. A QhilError is one line (exit 2; 3 for a failed authentication),
    a signal exits 128 + N; the bar is closed before anything is printed. Then the plots
    and the summary (``shown(summary)``); exit 3 unless its status is success."""
    try:
        summary = start()
    except QhilError as exc:
        close_bar()
        _fail(exc)
        return
    except _Signalled as exc:
        close_bar()
        _interrupted(exc)
        return
    close_bar()
    out = shown(summary)
    _print_summary(out, data_dir, no_plots, as_json, json_default)
    if out["status"] != "success":
        sys.exit(EXIT_ABORTED)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model, per line.")
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
    try:
        prof = _load_checked(name, list(overrides))
    except QhilError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(prof.snapshot(), indent=2))


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
def profile_list(as_json: bool) -> None:
    """The profiles a name finds: ./hw_profiles first, then those shipped with qhil."""
    try:
        entries = _profile_entries()
    except QhilError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no profiles found")
    for e in entries:
        about = e["description"] if e["error"] is None else f"(unreadable: {e['error']})"
        click.echo(f"{e['name']:<16} {e['source']:<8} {e['bench'] or '-':<22} {about}")
        click.echo(f"{'':<16} {e['path']}")


def _profile_entries() -> list[dict[str, Any]]:
    """Name, origin (user / shipped), file, and the [bench] name and description of each."""
    import tomllib

    from qhil.orchestrator.profile import available_profiles, packaged_profiles_dir

    shipped = packaged_profiles_dir()
    entries = []
    for name, path in available_profiles().items():
        # The shipped copy may sit in the working directory too (the repository's own
        # hw_profiles/ is what the package links to): same file, so it counts as shipped.
        own = shipped / f"{name}.toml"
        source = "shipped" if own.is_file() and own.resolve() == path else "user"
        bench: dict[str, Any] = {}
        error = None
        try:
            with path.open("rb") as fh:
                table = tomllib.load(fh).get("bench", {})
            bench = table if isinstance(table, dict) else {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            # One broken file of the user's must not hide the others; `profile show` says more.
            error = " ".join(str(exc).split())
        entries.append(
            {
                "name": name,
                "source": source,
                "path": str(path),
                "bench": bench.get("name"),
                "description": bench.get("description", ""),
                "error": error,
            }
        )
    return entries


def _load_checked(profile: str | None, overrides: list[str]) -> Any:
    """The profile, validated, its instruments' settings checked against their drivers too."""
    from qhil.orchestrator.profile import check_instrument_settings, load_profile

    prof = load_profile(profile, overrides)
    check_instrument_settings(prof)
    return prof


@main.group()
def run() -> None:
    """Run an experiment on a bench (recorded in the run store)."""


def _party_options(session_default: str) -> Callable[[Any], Any]:
    """--party, --listen, --connect, --peer-timeout, --auth-key-file, --session: one party of
    a two-party run per process, over TCP."""
    options = [
        click.option(
            "--party",
            type=click.Choice(["alice", "bob"]),
            default=None,
            help="Run one party only; the other runs in another process (TCP).",
        ),
        click.option(
            "--listen",
            type=_HostPort(allow_port_zero=True),
            default=None,
            metavar="HOST:PORT",
            help="Alice: where to accept Bob.",
        ),
        click.option(
            "--connect",
            type=_HostPort(allow_port_zero=False),
            default=None,
            metavar="HOST:PORT",
            help="Bob: where Alice listens.",
        ),
        click.option(
            "--peer-timeout",
            "peer_timeout_s",
            type=_Seconds(max_s=MAX_PEER_TIMEOUT_S),
            default=DEFAULT_PEER_TIMEOUT_S,
            show_default=True,
            help="--party runs: give up when the other party has not connected (Alice) or "
            "cannot be reached (Bob) within this time, s.",
        ),
        click.option(
            "--auth-key-file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Pre-shared authentication key (hex, mode 0600) for --party runs.",
        ),
        click.option(
            "--session",
            "session_id",
            default=session_default,
            help="Session label both parties use.",
        ),
    ]

    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def _check_party_options(
    party: str | None, listen: str | None, connect: str | None, auth_key_file: str | None
) -> None:
    """The --party options that belong together (a usage error, exit 2, otherwise)."""
    if party is None:
        for name, given in (("--listen", listen), ("--connect", connect)):
            if given is not None:
                raise click.UsageError(f"{name} is for --party runs only")
    elif auth_key_file is None:
        raise click.UsageError("--party needs --auth-key-file")
    elif party == "alice" and connect is not None:
        raise click.UsageError("alice listens (--listen); --connect is bob's")
    elif party == "bob" and listen is not None:
        raise click.UsageError("bob connects (--connect); --listen is alice's")
    elif party == "bob" and connect is None:
        raise click.UsageError("--party bob needs --connect HOST:PORT (where alice listens)")


@run.command("bb84")
@click.argument("profile", required=False)
@click.option(
    "--duration",
    "duration_s",
    type=_Seconds(),
    default=None,
    help="Acquisition time, s (replaces the profile's blocks / duration_s).",
)
@click.option(
    "--yes",
    "confirm_long",
    is_flag=True,
    help=f"Start even if the acquisition exceeds {MAX_UNCONFIRMED_ACQUISITION_S:g} s "
    "(longer runs are refused without it).",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a profile value."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
@click.option(
    "--key-dir",
    type=_DIRECTORY,
    default=None,
    help="Key store directory (files 0600); default: keys/ in the data directory.",
)
@click.option(
    "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World time mode."
)
@_party_options("qhil-bb84")
@click.option(
    "--wc-pool",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Authenticate with Wegman-Carter from this pre-shared pool (qhil auth new-pool), "
    "refilled from each key, instead of HMAC-SHA256.",
)
@continuous_options
@_NO_PLOTS
def run_bb84_cmd(
    profile: str | None,
    duration_s: float | None,
    confirm_long: bool,
    overrides: tuple[str, ...],
    as_json: bool,
    data_dir: str | None,
    key_dir: str | None,
    mode: str | None,
    party: str | None,
    listen: str | None,
    connect: str | None,
    peer_timeout_s: float,
    auth_key_file: str | None,
    session_id: str,
    wc_pool: str | None,
    continuous: bool,
    kms_config: str | None,
    max_key_count: int | None,
    kme_key_size: int | None,
    no_plots: bool,
) -> None:
    """Decoy-state BB84 on PROFILE (default: the emulated bench) to a verified secret key.

    Exits 0 with a key, 3 when the protocol aborted (QBER, verification, authentication),
    2 on bad input or when the run cannot start (130/143 on SIGINT/SIGTERM: run recorded
    aborted). Keys go to the key store (--key-dir; default: keys/ in the data directory),
    never to the output; the summary gives their SHA-256. Acquisitions longer than
    1 h are refused unless --yes is given.
    """
    from qhil.orchestrator.jobs import run_bb84_job, run_bb84_party_job

    _check_party_options(party, listen, connect, auth_key_file or wc_pool)
    if wc_pool is not None and (continuous or auth_key_file is not None):
        raise click.UsageError("--wc-pool replaces --auth-key-file; not with --continuous")
    try:
        _check_acquisition(profile, list(overrides), duration_s, confirm_long)
    except QhilError as exc:
        _fail(exc)
        return
    if continuous:  # issue 13: key after key until SIGINT/SIGTERM
        run_continuous_command(
            profile=profile, overrides=list(overrides), duration_s=duration_s,
            as_json=as_json, data_dir=data_dir, key_dir=key_dir, mode=mode,
            party=party, listen=listen, connect=connect, peer_timeout_s=peer_timeout_s,
            auth_key_file=auth_key_file, session_id=session_id, no_plots=no_plots,
            kms_config=kms_config, max_key_count=max_key_count, kme_key_size=kme_key_size,
        )  # fmt: skip
        return
    refuse_without_continuous(kms_config, max_key_count, kme_key_size)

    bar = _Bar(total=None, unit="block", desc="bb84", disable=as_json, leave=False)

    def progress(event: Any) -> None:
        if event.party != (party or "bob"):
            return
        if event.stage == "block":
            b = bar.get()
            b.total = event.n_blocks
            b.n = event.block
            b.set_postfix(sifted=event.sifted_bits, refresh=False)
            b.refresh()
        else:
            bar.get().set_description(f"bb84 {event.stage}")

    both: dict[str, Any] = {
        "duration_s": duration_s,
        "data_dir": data_dir,
        "key_dir": key_dir,
        "progress": progress,
        "auth_pool_file": wc_pool,
    }
    if party is not None:
        job = run_bb84_party_job(
            party,
            profile,
            list(overrides),
            auth_key_file=auth_key_file,
            listen=listen,
            connect=connect,
            session_id=session_id,
            peer_timeout_s=peer_timeout_s,
            on_waiting=_say_waiting,
            **both,
        )
    else:
        job = run_bb84_job(profile, list(overrides), mode=mode, **both)
    _run_command(
        lambda: _run_job(job),
        data_dir=data_dir,
        no_plots=no_plots,
        as_json=as_json,
        close_bar=bar.close,
        shown=lambda summary: {k: v for k, v in summary.as_dict().items() if k != "results"},
    )


@run.command("clock-sync")
@click.argument("profile", required=False)
@click.option(
    "--duration",
    "duration_s",
    type=_Seconds(max_s=MAX_UNCONFIRMED_ACQUISITION_S),
    default=None,
    help="Data taken in all, s (replaces experiments.clock_sync.duration_s).",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a profile value."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
@click.option(
    "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World time mode."
)
@_party_options("qhil-clock-sync")
@_NO_PLOTS
def run_clock_sync_cmd(
    profile: str | None,
    duration_s: float | None,
    overrides: tuple[str, ...],
    as_json: bool,
    data_dir: str | None,
    mode: str | None,
    party: str | None,
    listen: str | None,
    connect: str | None,
    peer_timeout_s: float,
    auth_key_file: str | None,
    session_id: str,
    no_plots: bool,
) -> None:
    """Synchronise bob's tagger clock to alice's from photon-pair timestamps on PROFILE.

    Acquisition (offset within +-0.5 s and frequency within +-100 ppm, no prior), then
    tracking with automatic re-acquisition; the one-way method with one pair source, the
    two-way one (path delay cancelled) with a source at each node. The result maps bob's
    stream timestamps onto alice's and is stored for the next experiment on the bench.
    With --party each node runs in its own process (alice listens and computes, bob
    connects and streams his timestamps), as for bb84.
    Exits 0 with a result, 3 when no correlation was found or the rates cannot reach the
    precision (the message says what was seen), 2 on bad input (130/143 on signals).
    """
    from qhil.orchestrator.experiments.clock_sync.job import (
        run_clock_sync_job,
        run_clock_sync_party_job,
    )
    from qhil.orchestrator.experiments.clock_sync.settings import ClockSyncSettings

    _check_party_options(party, listen, connect, auth_key_file)
    try:
        ClockSyncSettings.from_profile(
            _load_checked(profile, list(overrides)), duration_s=duration_s
        )
    except QhilError as exc:
        _fail(exc)
        return
    bar = _Bar(unit="s", desc="clock-sync", disable=as_json, leave=False)

    def progress(event: Any) -> None:
        b = bar.get(total=event.duration_s)
        b.n = round(event.t_s, 3)
        b.set_description(f"clock-sync {event.stage}", refresh=False)
        b.set_postfix(coincidences=event.coincidences, locked=event.locked, refresh=False)
        b.refresh()

    if party is not None:
        assert auth_key_file is not None
        job = run_clock_sync_party_job(
            party,
            profile,
            list(overrides),
            auth_key_file=auth_key_file,
            listen=listen,
            connect=connect,
            session_id=session_id,
            duration_s=duration_s,
            data_dir=data_dir,
            progress=progress,
            peer_timeout_s=peer_timeout_s,
            on_waiting=_say_waiting,
        )
    else:
        job = run_clock_sync_job(
            profile,
            list(overrides),
            duration_s=duration_s,
            data_dir=data_dir,
            mode=mode,
            progress=progress,
        )
    _run_command(
        lambda: _run_job(job), data_dir=data_dir, no_plots=no_plots, as_json=as_json,
        close_bar=bar.close,
    )  # fmt: skip


@run.command("bbm92")
@click.argument("profile", required=False)
@click.option(
    "--duration",
    "duration_s",
    type=_Seconds(max_s=MAX_UNCONFIRMED_ACQUISITION_S),
    default=None,
    help="Acquisition, s (replaces experiments.bbm92.duration_s).",
)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
@click.option("--key-dir", type=_DIRECTORY, default=None, help="Key store directory (0600).")
@click.option("--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World mode.")
@_party_options("qhil-bbm92")
@continuous_options
@_NO_PLOTS
def run_bbm92_cmd(**kw: Any) -> None:
    """BBM92 entanglement-based QKD on PROFILE (the entanglement bench): passive bases at
    both nodes, sifting, QBER, Cascade, verification, privacy amplification, keys to the key
    store ([experiments.bbm92]; src/qhil/orchestrator/experiments/bbm92/README.md). Exits 0
    with a key, 3 when the protocol aborted, 2 on bad input (130/143 on signals)."""
    from qhil.orchestrator.experiments.bbm92 import cli as bbm92

    _check_party_options(kw["party"], kw["listen"], kw["connect"], kw["auth_key_file"])
    try:
        bbm92.check_settings(_load_checked(kw["profile"], list(kw["overrides"])), kw["duration_s"])
    except QhilError as exc:
        _fail(exc)
        return
    bound = {k: kw[k] for k in ("kms_config", "max_key_count", "kme_key_size")}
    if kw["continuous"]:  # issue 13: key after key until SIGINT/SIGTERM (one process only)
        if kw["party"] is not None:
            raise click.UsageError("--continuous runs bbm92 in one process; not with --party")
        run_continuous_command(
            protocol="bbm92", profile=kw["profile"], overrides=list(kw["overrides"]),
            duration_s=kw["duration_s"], as_json=kw["as_json"], data_dir=kw["data_dir"],
            key_dir=kw["key_dir"], mode=kw["mode"], party=None, listen=None, connect=None,
            peer_timeout_s=kw["peer_timeout_s"], auth_key_file=None,
            session_id=kw["session_id"], no_plots=kw["no_plots"], **bound,
        )  # fmt: skip
        return
    refuse_without_continuous(**bound)
    progress, close_bar = bbm92.progress_bar(kw["party"], disable=kw["as_json"])
    party_options = {k: kw[k] for k in ("auth_key_file", "listen", "connect", "peer_timeout_s")}
    party_options["session_id"] = kw["session_id"]
    party_options["on_waiting"] = lambda text: click.echo(f"qhil: {text}", err=True)
    job = functools.partial(
        bbm92.job,
        kw["profile"],
        list(kw["overrides"]),
        duration_s=kw["duration_s"],
        data_dir=kw["data_dir"],
        key_dir=kw["key_dir"],
        mode=kw["mode"],
        progress=progress,
        party=kw["party"],
        party_options=party_options,
    )
    _run_command(
        lambda: _run_job(job()), data_dir=kw["data_dir"], no_plots=kw["no_plots"],
        as_json=kw["as_json"], close_bar=close_bar,
    )  # fmt: skip


def _entanglement_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by ``qhil run visibility`` and ``qhil run chsh``."""
    for opt in reversed(
        [
            click.argument("profile", required=False),
            click.option(
                "--integration",
                "integration_s",
                type=_Seconds(max_s=MAX_UNCONFIRMED_ACQUISITION_S),
                default=None,
                help="Acquisition per point, s (replaces the table's integration_s).",
            ),
            click.option(
                "--yes",
                "confirm_long",
                is_flag=True,
                help=f"Start even if the points' acquisition exceeds "
                f"{MAX_UNCONFIRMED_ACQUISITION_S:g} s in total (refused without it).",
            ),
            click.option(
                "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print one JSON summary."),
            click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory."),
            click.option(
                "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World mode."
            ),
            _NO_PLOTS,
        ]
    ):
        f = opt(f)
    return f


@run.command("visibility")
@_entanglement_options
def run_visibility_cmd(**kw: Any) -> None:
    """Two-photon visibility on PROFILE: coincidences against one node's half-wave plate
    (the other fixed), fringes in H/V and D/A fitted with their errors
    ([experiments.visibility]). Exits 0 with a fit, 3 when aborted, 2 on bad input."""
    _run_entanglement("visibility", **kw)


@run.command("chsh")
@_entanglement_options
def run_chsh_cmd(**kw: Any) -> None:
    """CHSH Bell test on PROFILE: the four setting pairs (0/45 deg at alice, 22.5/67.5 deg
    at bob) through the rotation mounts; S, its standard error and (S - 2)/sigma
    ([experiments.chsh]). Exits 0 with S, 3 when aborted, 2 on bad input."""
    _run_entanglement("chsh", **kw)


def _run_entanglement(
    kind: str,
    profile: str | None,
    integration_s: float | None,
    confirm_long: bool,
    overrides: tuple[str, ...],
    as_json: bool,
    data_dir: str | None,
    mode: str | None,
    no_plots: bool,
) -> None:
    from qhil.orchestrator.experiments.entanglement import cli as ent

    try:
        ent.check_settings(
            kind, _load_checked(profile, list(overrides)), integration_s, confirm_long
        )
    except QhilError as exc:
        _fail(exc)
        return
    progress, close_bar = ent.progress_bar(kind, disable=as_json)
    _run_command(
        lambda: _run_job(
            ent.job(kind, profile, list(overrides), integration_s, data_dir, mode, progress)
        ),
        data_dir=data_dir,
        no_plots=no_plots,
        as_json=as_json,
        close_bar=close_bar,
    )


@run.command("teleport")
@click.argument("profile", required=False)
@click.option(
    "--state",
    "state",
    default=None,
    metavar="S",
    help="Input: all (the six Pauli eigenstates, default), H/V/D/A/R/L (comma-separated), "
    "or Bloch angles 'theta;phi' in rad.",
)
@click.option("--shots", type=int, default=90, show_default=True, help="Shots per input.")
@click.option("--from", "sender", default="alice", show_default=True, help="Sending node.")
@click.option("--to", "receiver", default="bob", show_default=True, help="Receiving node.")
@click.option(
    "--min-fidelity", type=float, default=0.5, show_default=True, help="Of each pair requested."
)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
@click.option("--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World mode.")
@_NO_PLOTS
def run_teleport_cmd(**kw: Any) -> None:
    """Teleport a qubit from one end of PROFILE (default: repeater) to the other over delivered
    pairs; tomography of the receiver's qubit gives the fidelity with the input (and, for
    the six inputs, their mean against (2F + 1)/3). Exits 0 with a result, 3 when the run
    failed (a request the network could not meet), 2 on bad input."""
    from qhil.orchestrator.experiments.teleport.job import (
        check_shots,
        parse_states,
        run_teleport_job,
    )

    def start() -> Any:
        states = parse_states(kw["state"])
        check_shots(kw["shots"])
        job = run_teleport_job(
            kw["profile"], list(kw["overrides"]), kw["data_dir"], mode=kw["mode"],
            states=states, shots=kw["shots"], sender=kw["sender"], receiver=kw["receiver"],
            min_fidelity=kw["min_fidelity"],
        )  # fmt: skip
        return _run_job(job)

    _run_command(start, data_dir=kw["data_dir"], no_plots=kw["no_plots"], as_json=kw["as_json"])


def _check_acquisition(
    profile: str | None, overrides: list[str], duration_s: float | None, confirmed: bool
) -> None:
    """Check the profile as ``profile show`` does; refuse an acquisition above the bound
    unless confirmed, saying what it would be (and above a year even then)."""
    from qhil.errors import ConfigError
    from qhil.orchestrator.jobs import bb84_settings
    from qhil.orchestrator.profile import MAX_ACQUISITION_S, acquisition_s

    prof = _load_checked(profile, overrides)
    settings = bb84_settings(prof, duration_s)
    total_s = acquisition_s(settings)
    if total_s <= MAX_UNCONFIRMED_ACQUISITION_S:
        return
    if total_s <= MAX_ACQUISITION_S and confirmed:
        return
    field = "--duration" if duration_s is not None else "experiments.bb84.blocks/duration_s"
    blocks = total_s / settings.block_duration_s  # a float: a huge count must not overflow
    need = (
        f"runs longer than {MAX_UNCONFIRMED_ACQUISITION_S:g} s start only with --yes"
        if total_s <= MAX_ACQUISITION_S
        else f"qhil starts none longer than {_human_duration(MAX_ACQUISITION_S)}"
    )
    raise ConfigError(
        "<command line>" if duration_s is not None else prof.source,
        field,
        f"an acquisition of {_human_duration(total_s)} ({blocks:.4g} blocks of "
        f"{settings.block_duration_s * 1e3:.3g} ms); {need}",
    )


def _human_duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


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
    "mount-zero": (
        "qhil.calibration.entanglement_jobs:run_mount_zero_calibration",
        "Entanglement bench: the zero of one node's rotation mount (HWP) against the other's, "
        "from the H/V correlation fringe of the pairs' coincidences; the mount is left there.",
    ),
    "coincidence-delay": (
        "qhil.calibration.entanglement_jobs:run_coincidence_delay_calibration",
        "Entanglement bench: the coincidence delay between the nodes (stream offset plus "
        "the pairs' path-delay difference) from the peak of their time differences.",
    ),
    "memory": (
        "qhil.calibration.memory:run_memory_calibration",
        "Quantum memories: store-and-retrieve efficiency and fidelity against storage time, "
        "measured from retrieved photons in chosen bases; fitted T1, T2 and efficiency decay "
        "time with errors, or a lower bound at a stated confidence for one that does not "
        "decay measurably within the longest storage time (--node N: only that node's "
        "memory; repeatable).",
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
    @click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
    @click.option(
        "--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World time mode."
    )
    @_NO_PLOTS
    def command(
        profile: str | None,
        overrides: tuple[str, ...],
        as_json: bool,
        data_dir: str | None,
        mode: str | None,
        no_plots: bool,
        nodes: tuple[str, ...] = (),
    ) -> None:
        import importlib

        module, _, fn = job.rpartition(":")
        run_job = getattr(importlib.import_module(module or "qhil.calibration.jobs"), fn)
        extra = {"nodes": list(nodes)} if nodes else {}

        def start() -> Any:
            _load_checked(profile, list(overrides))
            return _run_job(run_job(profile, list(overrides), data_dir, mode=mode, **extra))

        _run_command(start, data_dir=data_dir, no_plots=no_plots, as_json=as_json, json_default=str)

    if name == "memory":  # the one calibration that picks nodes
        click.option(
            "--node", "nodes", multiple=True, metavar="N", help="Only this node's memory."
        )(command)


for _name, (_job, _help) in _CALIBRATIONS.items():
    _calibration_command(_name, _job, _help)


@calibrate.command("history")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@click.option("--plot", is_flag=True, help="Also write a PNG trend per kind.")
@click.option(
    "--out",
    "out_dir",
    type=_DIRECTORY,
    default=None,
    help="Folder of the PNGs (default: <data dir>/calibration_history/).",
)
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
def calibrate_history(
    kind: str | None, as_json: bool, plot: bool, out_dir: str | None, data_dir: str | None
) -> None:
    """Each calibrated quantity over time with its error (KIND: polarization, detectors,
    delays, mean-photon-number, clock, or any recorded calibration; default: all)."""
    from qhil.calibration.store.history import history_command

    try:
        click.echo(history_command(_store(data_dir), kind, as_json, plot, out_dir))
    except QhilError as exc:
        _fail(exc)


@main.command("ping")
@click.argument("node_a")
@click.argument("node_b")
@click.argument("profile", required=False)
@click.option("--count", type=int, default=None, help="Probes (default: the profile's, 10).")
@click.option(
    "--min-fidelity", type=float, default=None, help="Threshold of 'reachable' (default 0.5)."
)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
@click.option("--mode", type=click.Choice(["fast", "realtime"]), default=None, help="World mode.")
@_NO_PLOTS
def ping_cmd(
    node_a: str,
    node_b: str,
    profile: str | None,
    count: int | None,
    min_fidelity: float | None,
    overrides: tuple[str, ...],
    as_json: bool,
    data_dir: str | None,
    mode: str | None,
    no_plots: bool,
) -> None:
    """Entanglement ping from NODE_A to NODE_B on PROFILE (default: repeater): each probe
    requests pairs and measures them in random bases; a line per probe, then the verdict
    of a sequential test against the fidelity threshold ([experiments.network.ping];
    src/qhil/orchestrator/experiments/network/README.md). Exits 0 reachable, 1 not
    (with the reason), 2 on bad input."""
    from qhil.orchestrator.experiments.network import ping as net

    on_probe = None if as_json else (lambda p: click.echo(p.line()))
    try:
        job = net.job(
            node_a,
            node_b,
            profile,
            list(overrides),
            count=count,
            min_fidelity=min_fidelity,
            data_dir=data_dir,
            mode=mode,
            on_probe=on_probe,
        )
        summary = _run_job(job)
    except QhilError as exc:
        _fail(exc)
        return
    except _Signalled as exc:
        _interrupted(exc)
        return
    plots = _plots_after_run(summary.run_id, data_dir, no_plots)
    if as_json:
        out = summary.as_dict() if plots is None else {**summary.as_dict(), "plots": plots}
        click.echo(json.dumps(out, allow_nan=False))
    else:
        click.echo("\n".join(net.summary_lines(summary)))
        if plots:
            click.echo(f"plots: {', '.join(plots)}")
    sys.exit(0 if summary.reachable else 1)


@main.group()
def runs() -> None:
    """The run records (data directory: $QHIL_DATA_DIR or ~/.local/share/qhil)."""


def _store(data_dir: str | None) -> Any:
    from qhil.records import RunStore

    return RunStore(data_dir, readonly=True)  # reading creates and writes nothing


@runs.command("list")
@click.option("--kind", default=None, help="Only runs of this kind (glob), e.g. 'bb84'.")
@click.option("--status", default=None, help="running, success, aborted, failed or incomplete.")
@click.option(
    "--limit",
    type=click.IntRange(min=0, max=1_000_000_000),
    default=50,
    show_default=True,
    help="Show at most this many runs (the newest).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
def runs_show(run_id: str, as_json: bool, data_dir: str | None) -> None:
    """Everything recorded about one run (ID or a unique prefix)."""
    from qhil.plots import plot_paths, plots_dir, specs_for
    from qhil.records import format_run_detail, run_to_json_dict

    try:
        record = _store(data_dir).get(run_id)
    except (QhilError, KeyError, LookupError) as exc:
        _fail(exc)
        return
    drawn = plot_paths(record)
    if as_json:
        out = run_to_json_dict(record)
        out["plots"] = [str(p) for p in drawn]
        click.echo(json.dumps(out, allow_nan=False, indent=2))
        return
    click.echo(format_run_detail(record))
    click.echo("")
    if drawn:
        click.echo(f"plots: {plots_dir(record)}")
        for p in drawn:
            click.echo(f"  {p.name}")
    else:
        names = [s.name for s in specs_for(record.kind) if s.drawable(record)]
        hint = f" ('qhil runs plot {record.run_id}' draws: {', '.join(names)})" if names else ""
        click.echo(f"plots: none{hint}")


@runs.command("plot")
@click.argument("run_id")
@click.option(
    "--out",
    "out_dir",
    type=_DIRECTORY,
    default=None,
    help="Write the PNGs to this directory (default: <data dir>/data/<YYYY-MM>/<RUN_ID>.plots/).",
)
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def runs_plot(run_id: str, out_dir: str | None, data_dir: str | None, as_json: bool) -> None:
    """Draw a run's plots (PNG) from its record alone, and print their paths.

    Every run kind has its plots (BB84 per block, each calibration's scan and fit,
    clock sync's residual offset and TDEV); a copy of the data directory is enough.
    """
    from qhil.plots import write_plots

    try:
        report = write_plots(_store(data_dir).get(run_id), out_dir)
    except (QhilError, KeyError, LookupError) as exc:
        _fail(exc)
        return
    if as_json:
        out = {
            "run_id": report.run_id,
            "plots": [str(p) for p in report.written],
            "skipped": dict(report.skipped),
        }
        click.echo(json.dumps(out))
        return
    for path in report.written:
        click.echo(str(path))
    for name, why in report.skipped:
        click.echo(f"qhil: {name}: not drawn ({why})", err=True)


@runs.command("export")
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    required=True,
    help="json: one object (stdout, or --out FILE); csv: a folder of CSV files.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=True, writable=True),
    default=None,
    help="json: write to this file; csv: this folder (default ./RUN_ID/).",
)
@click.option("--data-dir", type=_DIRECTORY, default=None, help="Run store directory.")
def runs_export(run_id: str, fmt: str, out: str | None, data_dir: str | None) -> None:
    """A run's arrays and results as CSV or JSON (src/qhil/records/export.py)."""
    from qhil.records.export import export_command

    try:
        click.echo(export_command(_store(data_dir).get(run_id), fmt, out))
    except (QhilError, KeyError, LookupError) as exc:
        _fail(exc)


main.add_command(_kms)
main.add_command(_auth)


if __name__ == "__main__":
    main()
