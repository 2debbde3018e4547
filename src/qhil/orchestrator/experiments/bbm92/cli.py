"""What ``qhil run bbm92`` needs beyond cli.py's thin command: checks, progress, the job."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings

#: The post-processing's stages, in order (the bar counts them).
STAGES = ("acquire", "sift", "reconcile", "verify", "amplify", "confirm", "done")


def check_settings(profile: Any, duration_s: float | None) -> None:
    """``[experiments.bbm92]`` validated against the bench (ConfigError: FILE: FIELD)."""
    BBM92Settings.from_profile(profile, duration_s=duration_s)


def progress_bar(
    party: str | None, *, disable: bool
) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A tqdm bar over the stages (one party's events), shown from the first on; its closer."""
    from tqdm import tqdm

    bars: list[Any] = []

    def progress(event: Any) -> None:
        if event.party != (party or "bob") and event.stage != "acquire":
            return
        if not bars:
            bars.append(tqdm(total=len(STAGES), desc="bbm92", disable=disable, leave=False))
        bar = bars[0]
        if event.stage in STAGES:
            bar.n = STAGES.index(event.stage) + 1
        bar.set_description(f"bbm92 {event.stage}", refresh=False)
        bar.set_postfix(key_bits=event.sifted_bits, refresh=False)
        bar.refresh()

    def close() -> None:
        for bar in bars:
            bar.close()

    return progress, close


def job(
    profile: str | None,
    overrides: list[str],
    *,
    duration_s: float | None,
    data_dir: str | None,
    key_dir: str | None,
    mode: str | None,
    progress: Callable[[Any], None],
    party: str | None = None,
    party_options: dict[str, Any] | None = None,
) -> Coroutine[Any, Any, Any]:
    """The one-process job, or one party's (``party``, with ``party_options``: auth key
    file, listen/connect, session, peer timeout, waiting hook)."""
    from qhil.orchestrator.experiments.bbm92.job import run_bbm92_job

    if party is None:
        return run_bbm92_job(
            profile,
            overrides,
            duration_s=duration_s,
            data_dir=data_dir,
            key_dir=key_dir,
            mode=mode,
            progress=progress,
        )
    from qhil.orchestrator.experiments.bbm92.party_job import run_bbm92_party_job

    return run_bbm92_party_job(
        party,
        profile,
        overrides,
        duration_s=duration_s,
        data_dir=data_dir,
        key_dir=key_dir,
        progress=progress,
        **(party_options or {}),
    )
