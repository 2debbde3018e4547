"""``qhil run teleport``: teleportation from one end node to the other over the repeater
bench's delivered pairs, recorded as a ``teleport`` run.

The run holds the ``shots`` rows (``protocol.SHOT_DTYPE``, appended as measured) and the
results of :meth:`TeleportAnalysis.to_results` (per input the fidelity with its error and
the receiver's Bloch vector; over the inputs the mean fidelity against ``(2F + 1) / 3``).
A request the network cannot meet (its typed error) or too few measured shots end the run
``failed`` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qhil.calibration.jobs import CalibrationSummary as RunSummary
from qhil.errors import ConfigError, QhilError
from qhil.numerics.tomography import TomographyError, bloch_vector
from qhil.orchestrator.experiments.teleport.analysis import analyse
from qhil.orchestrator.experiments.teleport.protocol import (
    INPUTS,
    TeleportLink,
    classical_channel,
    teleport_inputs,
)
from qhil.records import RunStore

KIND = "teleport"
#: Most shots per input one run takes (each costs a delivered pair).
MAX_SHOTS = 100_000


def parse_states(text: str | None) -> tuple[str, ...]:
    """``--state``: ``all`` (default: the six Pauli eigenstates), a comma-separated list of
    H/V/D/A/R/L, or Bloch angles ``theta;phi`` in radians (polar from H in [0, pi], azimuth
    from D towards R, taken modulo 2 pi): ``cos(theta/2)|H> + exp(i phi) sin(theta/2)|V>``."""
    if text is None or text.strip().lower() == "all":
        return INPUTS
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if ";" in part:
            try:
                theta, phi = (float(v) for v in part.split(";"))
                bloch_vector((theta, phi))
                if not 0.0 <= theta <= math.pi:
                    raise ValueError
            except (ValueError, TomographyError):
                raise ConfigError(
                    "<command line>",
                    "--state",
                    f"{part!r}: Bloch angles are 'theta;phi' in rad, theta in [0, pi]",
                ) from None
            # the azimuth as the controller takes it, in [0, 2 pi)
            out.append(f"{theta:.6g};{math.fmod(phi, 2 * math.pi) % (2 * math.pi):.6g}")
        elif part.upper() in INPUTS:
            out.append(part.upper())
        else:
            raise ConfigError(
                "<command line>",
                "--state",
                f"{part!r}: one of all, {', '.join(INPUTS)} or Bloch angles 'theta;phi'",
            )
    if len(set(out)) != len(out):
        raise ConfigError("<command line>", "--state", f"{text!r} names an input twice")
    return tuple(out)


def check_shots(shots: int) -> int:
    if not 3 <= shots <= MAX_SHOTS:
        raise ConfigError(
            "<command line>", "--shots", f"{shots}: 3 .. {MAX_SHOTS} per input (one per basis)"
        )
    return shots


async def _set_input(memory: Any, state: str) -> None:
    """Prepare the sender's input: a named state, or Bloch angles when the controller can."""
    if ";" not in state:
        await memory.set_input(state)
        return
    prepare = getattr(memory, "set_input_bloch", None)
    if prepare is None:
        raise ConfigError(
            "<command line>",
            "--state",
            f"the sender's memory controller {type(memory).__name__} prepares only "
            f"{', '.join(INPUTS)}, not Bloch angles",
        )
    theta, phi = (float(v) for v in state.split(";"))
    await prepare(theta, phi)


class _Sender:
    """The sender's memory with ``set_input`` taking angles too."""

    def __init__(self, memory: Any) -> None:
        self._m = memory

    async def set_input(self, state: str) -> None:
        await _set_input(self._m, state)

    async def teleport(self, mode: int) -> str | None:
        return await self._m.teleport(mode)


async def run_teleport_job(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
    states: Sequence[str] = INPUTS,
    shots: int = 90,
    sender: str = "alice",
    receiver: str = "bob",
    min_fidelity: float = 0.5,
    on_shots: Callable[[np.ndarray], None] | None = None,
) -> RunSummary:
    """Teleport each of ``states`` ``shots`` times from ``sender`` to ``receiver``."""
    from qhil.orchestrator.experiments.network import EntanglementRequest, open_network
    from qhil.orchestrator.experiments.network.ping import check_min_fidelity, check_nodes
    from qhil.orchestrator.experiments.network.settings import NetworkSettings
    from qhil.orchestrator.profile import load_profile

    states = tuple(states)
    check_shots(shots)
    # the same checks as qhil ping's, before anything opens or is recorded
    check_min_fidelity(min_fidelity)
    prof = load_profile("repeater" if profile is None else str(profile), list(overrides))
    check_nodes(NetworkSettings.from_profile(prof), sender, receiver, ("--from", "--to"))
    async with open_network(prof, mode=mode, data_dir=data_dir) as network:
        run = RunStore(data_dir).start_run(
            "teleport",  # KIND, spelt out: tests/plots find every recorded kind by its literal
            profile=prof,
            profile_source=prof.source,
            seed=prof.bench.seed,
            parameters={
                "states": list(states),
                "shots": shots,
                "sender": sender,
                "receiver": receiver,
                "min_fidelity": min_fidelity,
            },
        )
        with run:
            run.set_identities(await network.bench.identities())
            request = EntanglementRequest(
                remote=receiver, local=sender, pairs=1, min_fidelity=min_fidelity, frame="track"
            )

            async def deliver() -> Any:
                return (await network.create(request))[0]

            async def record(rows: np.ndarray) -> None:
                await run.aappend("shots", rows)
                if on_shots is not None:
                    on_shots(rows)

            async with classical_channel(sender, receiver, run.run_id) as (to_rx, at_rx):
                link = TeleportLink(
                    deliver,
                    network.release,
                    _Sender(network.memory(sender)),
                    network.memory(receiver),
                    to_rx,
                    at_rx,
                )
                try:
                    rows = await teleport_inputs(link, states, shots, record)
                    results = analyse(rows, states).to_results()
                except (QhilError, TomographyError) as exc:
                    if isinstance(exc, ConfigError):
                        raise
                    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                    run.fail(reason)
                    return RunSummary(run.run_id, KIND, "failed", reason)
            run.log_results({k: v for k, v in results.items() if v is not None})
            run.finish("success")
    return RunSummary(run.run_id, KIND, "success", None, results)
