"""What ``qhil run visibility`` / ``qhil run chsh`` need beyond cli.py's thin commands."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.entanglement.experiments import Progress
from qhil.orchestrator.experiments.entanglement.settings import (
    AcquisitionSettings,
    ChshSettings,
    VisibilitySettings,
)

SETTINGS: dict[str, type[AcquisitionSettings]] = {
    "visibility": VisibilitySettings,
    "chsh": ChshSettings,
}


#: Longest acquisition in total a command starts without ``--yes`` (as ``qhil run bb84``;
#: ``qhil run bbm92`` starts none longer: its ``duration_s`` is capped there).
MAX_UNCONFIRMED_ACQUISITION_S = 3600.0


def check_settings(
    kind: str, profile: Any, integration_s: float | None, confirmed: bool = False
) -> None:
    """The experiment's table, validated against the bench (ConfigError: FILE: FIELD); an
    acquisition above :data:`MAX_UNCONFIRMED_ACQUISITION_S` in total refused unless
    ``confirmed`` (``--yes``), saying how long it would be."""
    settings = SETTINGS[kind].from_profile(profile, integration_s=integration_s)
    total_s = settings.acquisition_s()
    if total_s <= MAX_UNCONFIRMED_ACQUISITION_S or confirmed:
        return
    points = round(total_s / settings.integration_s)
    raise ConfigError(
        "<command line>" if integration_s is not None else profile.source,
        "--integration" if integration_s is not None else f"{settings.TABLE}.integration_s",
        f"an acquisition of {total_s / 3600.0:.3g} h ({points} points of "
        f"{settings.integration_s:g} s); runs longer than {MAX_UNCONFIRMED_ACQUISITION_S:g} s "
        "in total start only with --yes",
    )


def progress_bar(
    kind: str, *, disable: bool
) -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """A tqdm bar over the points, shown from the first point on; and its closer."""
    from tqdm import tqdm

    bars: list[Any] = []

    def progress(event: Progress) -> None:
        if not bars:
            bars.append(tqdm(total=event.total, unit="pt", desc=kind, disable=disable, leave=False))
        bar = bars[0]
        bar.n = event.done
        bar.set_postfix(coincidences=event.coincidences, refresh=False)
        bar.refresh()

    def close() -> None:
        for bar in bars:
            bar.close()

    return progress, close


def job(
    kind: str,
    profile: str | None,
    overrides: list[str],
    integration_s: float | None,
    data_dir: str | None,
    mode: str | None,
    progress: Callable[[Progress], None],
) -> Coroutine[Any, Any, Any]:
    from qhil.orchestrator.experiments.entanglement.job import run_chsh_job, run_visibility_job

    run = run_visibility_job if kind == "visibility" else run_chsh_job
    return run(
        profile,
        overrides,
        data_dir=data_dir,
        mode=mode,
        integration_s=integration_s,
        progress=progress,
    )
