"""Both parties of a two-party protocol in one process (BB84, BBM92): run, stop, report.

The two coroutines only talk through their channel ends. When one stops early (an abort
it tells the other), the other is given :data:`PEER_STOP_GRACE_S` to notice before it is
cancelled; the first-hand failure is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.party import log

T = TypeVar("T")

#: After one party stops, how long the other may take to notice (it normally
#: receives the Abort at once) before it is cancelled.
PEER_STOP_GRACE_S = 10.0

# Reasons that only echo another failure; the root cause is reported instead.
_SECONDARY = (AbortReason.CHANNEL_FAILED, AbortReason.PEER_FAILED)


def root_cause(errors: list[BaseException]) -> BaseException:
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


async def run_both(
    alice: Coroutine[Any, Any, T], bob: Coroutine[Any, Any, T], protocol: str
) -> tuple[T, T]:
    """Run both parties concurrently; their results, or the root-cause failure raised
    after both stopped (cancelled from outside: both are cancelled)."""
    ta = asyncio.create_task(alice, name=f"{protocol} alice")
    tb = asyncio.create_task(bob, name=f"{protocol} bob")
    tasks = {ta, tb}
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if pending:
            # One party stopped early; the other normally hears its Abort at once.
            _, still = await asyncio.wait(pending, timeout=PEER_STOP_GRACE_S)
            for t in still:
                log.warning("%s: %s did not stop by itself; cancelling it", protocol, t.get_name())
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*still, return_exceptions=True)
    except BaseException:  # cancelled from outside: stop both parties
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    errors = [e for t in (ta, tb) if not t.cancelled() and (e := t.exception()) is not None]
    if errors:
        # The first-hand abort carries the fuller picture (both views agree on public numbers).
        raise root_cause(errors)
    return ta.result(), tb.result()
