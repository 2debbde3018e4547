"""The ``--continuous`` options of ``qhil run bb84`` and what the command does with them.

``qhil.cli`` keeps only the options (:func:`continuous_options`) and one call to
:func:`run_continuous_command`; the jobs are in
:mod:`qhil.orchestrator.experiments.bb84.continuous_job`. (Outside the bb84 package so
that the CLI's start-up does not import the protocol.)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import click


def continuous_options(f: Any) -> Any:
    """``--continuous`` and the storage bound it keeps (the KME's ``max_key_count``)."""
    options = [
        click.option(
            "--continuous",
            is_flag=True,
            help="Key after key (each of --duration / the profile's duration) until "
            "SIGINT/SIGTERM, every confirmed key to both nodes' key stores; pauses while a "
            "node's store holds its KME's max_key_count keys.",
        ),
        click.option(
            "--kms-config",
            type=click.Path(dir_okay=False),
            default=None,
            help="--continuous: the KMEs' kms.toml; its [limits] bound the stored keys.",
        ),
        click.option(
            "--max-key-count",
            type=click.IntRange(min=1),
            default=None,
            help="--continuous: KME keys (of --kme-key-size bits) a node may hold unserved "
            "(default: --kms-config's, else the KME's default 4096).",
        ),
        click.option(
            "--kme-key-size",
            type=click.IntRange(min=8),
            default=None,
            callback=_multiple_of_8,
            help="--continuous: the KME's key_size, bits (default: --kms-config's, else 256).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _multiple_of_8(ctx: Any, param: Any, value: int | None) -> int | None:
    """A KME hands out whole bytes: its key_size is a multiple of 8 (exit 2 otherwise)."""
    if value is not None and value % 8:
        raise click.BadParameter(f"{value} is not a multiple of 8 (a KME key is whole bytes)")
    return value


def run_continuous_command(
    *,
    profile: str | None,
    overrides: list[str],
    duration_s: float | None,
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
    no_plots: bool,
    kms_config: str | None,
    max_key_count: int | None,
    kme_key_size: int | None,
    protocol: str = "bb84",
) -> None:
    """Run the continuous job (``protocol`` bb84 or bbm92; bbm92 in one process only), print its summary; exit 0 when it stopped cleanly (a
    signal or the peer stopping), 3 when it aborted, 2 on bad input, 128 + N when a
    second signal cut it short."""
    from qhil import cli
    from qhil.orchestrator.experiments.bb84.continuous import ContinuousProgress, StopRequest
    from qhil.orchestrator.experiments.bb84.continuous_job import (
        Interrupted,
        kme_gates,
        run_bb84_continuous_job,
        run_bb84_continuous_party_job,
        signalled,
    )
    from qhil.records import default_key_dir

    shown = party or "bob"
    bar = cli._Bar(total=None, unit="key", disable=as_json, leave=False)
    gates: Any = None  # the KMEs' storage bounds, read in start(): a bad file is one line

    def on_progress(p: ContinuousProgress) -> None:
        # (either party may pause: in one process Alice, who asks first, usually does)
        if as_json and p.event in ("paused", "resumed"):  # no bar: say it on stderr
            cli._say_waiting(
                f"{p.party}: paused, its KME's key store is full (max_key_count); resumes "
                "when keys are consumed"
                if p.event == "paused"
                else f"{p.party}: pause over (room again, or stopping)"
            )
        if p.party != shown and p.event not in ("paused", "resumed"):
            return
        b = bar.get()
        b.n = p.keys
        paused = " (paused: key store full)" if p.event == "paused" else ""
        b.set_description(f"{protocol} continuous{paused}")
        b.set_postfix(bits=p.bits, dropped=p.dropped, refresh=False)
        b.refresh()

    async def job(stop: StopRequest) -> Any:
        async def say_stopping() -> None:
            await stop.wait()
            cli._say_waiting(
                f"{stop.why}: stopping (a key already in confirmation is finished, one "
                "before it discarded at both nodes; a second signal cancels at once)"
            )

        watcher = asyncio.ensure_future(say_stopping())
        try:
            return await keys_until_stopped(stop)
        finally:
            watcher.cancel()

    def keys_until_stopped(stop: StopRequest) -> Any:
        common: dict[str, Any] = {
            "stop": stop,
            "duration_s": duration_s,
            "data_dir": data_dir,
            "key_dir": key_dir,
            "gates": gates,
            "on_progress": on_progress,
        }
        if protocol == "bbm92":
            from qhil.orchestrator.experiments.bbm92.continuous import run_bbm92_continuous_job

            return run_bbm92_continuous_job(profile, overrides, mode=mode, **common)
        if party is None:
            return run_bb84_continuous_job(profile, overrides, mode=mode, **common)
        assert auth_key_file is not None
        return run_bb84_continuous_party_job(
            party,
            profile,
            overrides,
            auth_key_file=auth_key_file,
            listen=listen,
            connect=connect,
            session_id=session_id,
            peer_timeout_s=peer_timeout_s,
            on_waiting=cli._say_waiting,
            **common,
        )

    # After the job, signals are noted and ignored until the summary is out (``signalled``).
    with contextlib.ExitStack() as late_signals:

        def start() -> Any:
            nonlocal gates
            keys_at = key_dir if key_dir is not None else default_key_dir(data_dir)
            gates = kme_gates(
                keys_at, max_key_count=max_key_count, key_size=kme_key_size, kms_config=kms_config
            )
            try:
                summary, _ = late_signals.enter_context(signalled(job))
            except Interrupted as exc:  # a second signal: as any command's
                raise cli._Signalled(exc.signum) from None
            return summary

        cli._run_command(
            start, data_dir=data_dir, no_plots=no_plots, as_json=as_json, close_bar=bar.close,
            shown=lambda summary: summary if as_json else _text(summary),
        )  # fmt: skip


def refuse_without_continuous(
    kms_config: str | None, max_key_count: int | None, kme_key_size: int | None
) -> None:
    """The storage bound's options make sense with ``--continuous`` only (exit 2)."""
    for name, given in (
        ("--kms-config", kms_config),
        ("--max-key-count", max_key_count),
        ("--kme-key-size", kme_key_size),
    ):
        if given is not None:
            raise click.UsageError(f"{name} is for --continuous runs only")


def _text(summary: dict[str, Any]) -> dict[str, Any]:
    """The text summary: one line per key (ids and length), never bits."""
    out = {k: v for k, v in summary.items() if k not in ("keys", "dropped")}
    out["dropped"] = ", ".join(f"{k} {v}" for k, v in summary.get("dropped", {}).items()) or None
    keys = summary.get("keys", [])
    if len(keys) > TEXT_KEYS:  # a long run: the last ones (--json and the record list all)
        out["keys"] = f"{len(keys)}, the last {TEXT_KEYS} below (--json lists all)"
    for i, key in list(enumerate(keys))[-TEXT_KEYS:]:
        ids = " / ".join(str(v) for k, v in key.items() if k.endswith("_key_id"))
        out[f"key {i}"] = f"{ids}: {key['length_bits']} bits"
    return out


#: Keys the text summary lists (the last ones).
TEXT_KEYS = 20


__all__: list[str] = [
    "continuous_options",
    "refuse_without_continuous",
    "run_continuous_command",
]
