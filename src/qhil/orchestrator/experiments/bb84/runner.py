"""Both parties in one process: run Alice and Bob concurrently, combine their results.

For two processes (or machines) call :func:`~.alice.run_alice` and
:func:`~.bob.run_bob` separately, each with its end of a TCP channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.orchestrator.experiments.bb84.alice import run_alice
from qhil.orchestrator.experiments.bb84.bob import run_bob
from qhil.orchestrator.experiments.bb84.both import run_both
from qhil.orchestrator.experiments.bb84.link import MessageChannel
from qhil.orchestrator.experiments.bb84.party import DataHook, ProgressHook
from qhil.orchestrator.experiments.bb84.result import BB84Result, combine
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.tracking import AliceTracking, BobTracking
from qhil.records import KeyStore


def bench_roles(bench: Any, settings: BB84Settings) -> tuple[PatternGenerator, TimeTagger]:
    """Alice's pattern generator and Bob's tagger from an open ``Bench``, as the settings name them."""
    gen = bench.role(settings.alice_node, PatternGenerator, name=settings.pattern_generator)
    tagger = bench.role(settings.bob_node, TimeTagger, name=settings.tagger)
    return gen, tagger


async def run_bb84(
    settings: BB84Settings,
    generator: PatternGenerator,
    tagger: TimeTagger,
    alice_channel: MessageChannel,
    bob_channel: MessageChannel,
    *,
    key_store: KeyStore,
    run_id: str | None = None,
    progress: ProgressHook | None = None,
    on_data: DataHook | None = None,
    alice_rng: np.random.Generator | None = None,
    bob_rng: np.random.Generator | None = None,
    tracking: BobTracking | None = None,
) -> BB84Result:
    """Run both parties over two opened channel ends; return the combined result.

    Raises :class:`BB84Aborted` (with ``.result``, status ``"aborted"``) when the
    protocol aborts; any other error (an instrument fault, say) propagates as is
    after both parties have stopped. ``progress`` and ``on_data`` receive both
    parties' events and rows (``alice/...``, ``bob/...``). The rngs are for
    reproducing tests only (default: CSPRNG-seeded). ``tracking`` (Bob's controller and
    the compensation's settings): track the polarization drift during the run
    (``tracking.py``; ``settings.track_polarization``).
    """
    common: dict[str, Any] = {
        "key_store": key_store,
        "run_id": run_id,
        "progress": progress,
        "on_data": on_data,
    }
    a, b = await run_both(
        run_alice(
            settings,
            generator,
            alice_channel,
            rng=alice_rng,
            tracking=None if tracking is None else AliceTracking(tracking.polarization),
            **common,
        ),
        run_bob(settings, tagger, bob_channel, rng=bob_rng, tracking=tracking, **common),
        "bb84",
    )
    return combine(a, b, settings.intensity_probabilities, settings.eps_sec, settings.eps_cor)
