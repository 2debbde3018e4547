"""Both parties in one process: run Alice and Bob concurrently, combine their results.

For two processes (or machines) call :func:`~.alice.run_alice` and
:func:`~.bob.run_bob` separately, each with its end of a TCP channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np

from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.orchestrator.experiments.bb84.alice import run_alice
from qhil.orchestrator.experiments.bb84.bob import run_bob
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import MessageChannel
from qhil.orchestrator.experiments.bb84.party import DataHook, ProgressHook, log
from qhil.orchestrator.experiments.bb84.result import BB84Result, PartyResult, combine
from qhil.orchestrator.experiments.bb84.settings import BB84Settings
from qhil.orchestrator.experiments.bb84.tracking import AliceTracking, BobTracking
from qhil.records import KeyStore

#: After one party stops, how long the other may take to notice (it normally
#: receives the Abort at once) before it is cancelled.
PEER_STOP_GRACE_S = 10.0

# Reasons that only echo another failure; the root cause is reported instead.
_SECONDARY = (AbortReason.CHANNEL_FAILED, AbortReason.PEER_FAILED)


def bench_roles(bench: Any, settings: BB84Settings) -> tuple[PatternGenerator, TimeTagger]:
    """Alice's pattern generator and Bob's tagger from an open ``Bench``, as the settings name them."""
    gen = bench.role(settings.alice_node, PatternGenerator, name=settings.pattern_generator)
    tagger = bench.role(settings.bob_node, TimeTagger, name=settings.tagger)
    return gen, tagger


def _root_cause(errors: list[BaseException]) -> BaseException:
    """The failure to report: a real error first, then a first-hand abort reason."""
    for e in errors:
        if not isinstance(e, BB84Aborted):
            return e
    aborts = [e for e in errors if isinstance(e, BB84Aborted)]
    for pick in (
        lambda a: not a.from_peer and a.reason not in _SECONDARY,
        lambda a: a.reason not in _SECONDARY,
        lambda a: not a.from_peer,
    ):
        for a in aborts:
            if pick(a):
                return a
    return aborts[0]


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
    alice = asyncio.create_task(
        run_alice(
            settings,
            generator,
            alice_channel,
            rng=alice_rng,
            tracking=None if tracking is None else AliceTracking(tracking.polarization),
            **common,
        ),
        name="bb84 alice",
    )
    bob = asyncio.create_task(
        run_bob(settings, tagger, bob_channel, rng=bob_rng, tracking=tracking, **common),
        name="bb84 bob",
    )
    tasks = {alice, bob}
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if pending:
            # One party stopped early; the other normally hears its Abort at once.
            _, still = await asyncio.wait(pending, timeout=PEER_STOP_GRACE_S)
            for t in still:
                log.warning("bb84: %s did not stop by itself; cancelling it", t.get_name())
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*still, return_exceptions=True)
    except BaseException:  # cancelled from outside: stop both parties
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    errors = [e for t in (alice, bob) if not t.cancelled() and (e := t.exception()) is not None]
    if not errors:
        a: PartyResult = alice.result()
        b: PartyResult = bob.result()
        return combine(a, b, settings.intensity_probabilities, settings.eps_sec, settings.eps_cor)
    # The first-hand abort carries the fuller picture (both views agree on public numbers).
    raise _root_cause(errors)
