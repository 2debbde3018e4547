"""Emulator truth of what a clock-sync run measures, for its record (never for its logic).

The job that started an emulated bench (``bench.emulator_truth``: the ``EmulatedBench``)
asks here, after the run, what the world says the result should have been, in the
run's own terms (the TDC1 streams' timebases, ``qhil.emulators.sfifteen.timebase``):

* one-way: B's stream time minus A's at A's stream time ``t``, **plus** the path-delay
  difference of the pair's photons (source to bob's detector minus source to alice's,
  cables included), which is what the coincidences measure;
* two-way: the stream offset alone (the path delay is cancelled).

On a lab bench there is no truth and nothing here is called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.orchestrator.experiments.clock_sync.settings import ClockSyncSettings

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
TruthFn = Callable[[npt.ArrayLike], F64]


def _delay_ps(world: Any, source: str, tagger: str) -> float | None:
    """Mean delay (true ps) from ``source`` to the inputs of ``tagger`` it reaches."""
    truth = world.truth
    delays = []
    for det in world.tagger(tagger).wiring.values():
        if not isinstance(det, str) or "#" in det:
            continue
        try:
            d = truth.path_delay_s(source, det) * 1e12
        except Exception:  # no optical path from this source to this detector
            continue
        delays.append(d + truth._tag_offset_ps(world.detector(det)))
    return float(np.mean(delays)) if delays else None


def truth_function(
    emulated: Any,
    settings: ClockSyncSettings,
    components: dict[str, str | None],
    taggers: tuple[str, str],
) -> TruthFn | None:
    """``t_a_ps -> true offset (ps)`` in the run's terms, or None when it cannot be said.

    ``components`` maps ``"alice"``, ``"bob"`` (the taggers) and ``"source"`` (the one-way
    pair source) to their world components; ``taggers`` are the two taggers' instrument
    names on their nodes.
    """
    try:
        from qhil.emulators.sfifteen.timebase import stream_offset_ps, stream_origin
    except ImportError:  # pragma: no cover - an emulator without the stream timebase
        return None
    world = getattr(emulated, "world", None)
    if world is None:
        return None
    try:
        emu_a = emulated.emulators[(settings.alice_node, taggers[0])]
        emu_b = emulated.emulators[(settings.bob_node, taggers[1])]
        o_a, o_b = stream_origin(emu_a), stream_origin(emu_b)
    except (KeyError, ValueError, AttributeError) as exc:
        log.info("clock-sync: no emulator truth (%s)", exc)
        return None
    delay = 0.0
    if not settings.two_way:
        source, comp_a, comp_b = components["source"], components["alice"], components["bob"]
        if source is None or comp_a is None or comp_b is None:
            return None
        d_a, d_b = _delay_ps(world, source, comp_a), _delay_ps(world, source, comp_b)
        if d_a is None or d_b is None:
            return None
        # The delay runs on B's clock: it reads the later photon's time at B's rate.
        rate_b = float(world.node(settings.bob_node).clock.rate)
        delay = (d_b - d_a) * rate_b

    def at(t_a_ps: npt.ArrayLike) -> F64:
        return stream_offset_ps(world, o_a, o_b, t_a_ps) + delay

    return at
