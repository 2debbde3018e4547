"""Emulator truth of what a clock-sync run measures, for its record (never for its logic).

The job that started an emulated bench (``bench.emulator_truth``: the ``EmulatedBench``)
asks here, after the run, what the world says the result should have been, in the
run's own terms (the TDC1 streams' timebases, ``qhil.emulators.sfifteen.timebase``):

* one-way: B's stream time minus A's at A's stream time ``t``, **plus** the path-delay
  difference of the pair's photons (source to bob's detector minus source to alice's,
  cables included), which is what the coincidences measure;
* two-way: the result is the stream offset alone (the path delay is cancelled), but each
  tracked direction measures its own peak: ``theta + d_AB`` (alice's source, partner to
  bob) and ``theta - d_BA`` (bob's source), each with its own source's delay difference;
  the path delay the method reports is ``(d_AB + d_BA) / 2``.

On a lab bench there is no truth and nothing here is called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ClockSyncTruth:
    """The world's answer to a run, in the run's own terms.

    ``offset``: what the result's offset means (one-way: stream offset + delay difference;
    two-way: the stream offset). ``directions``: what each tracked direction's peak
    measures (``"one-way"``, or ``"a_to_b"`` and ``"b_to_a"``). ``path_delay_ps``: the
    two-way method's path delay ``(d_AB + d_BA) / 2`` (None one-way).
    """

    offset: TruthFn
    directions: dict[str, TruthFn]
    path_delay_ps: float | None = None


def _delay_difference_ps(
    world: Any, settings: ClockSyncSettings, source: str | None, comp_a: str, comp_b: str
) -> float | None:
    """Source to bob's inputs minus source to alice's (ps of B's clock), or None."""
    if source is None:
        return None
    d_a, d_b = _delay_ps(world, source, comp_a), _delay_ps(world, source, comp_b)
    if d_a is None or d_b is None:
        return None
    # The delay runs on B's clock: it reads the later photon's time at B's rate.
    rate_b = float(world.node(settings.bob_node).clock.rate)
    return (d_b - d_a) * rate_b


def truth_function(
    emulated: Any,
    settings: ClockSyncSettings,
    components: dict[str, str | None],
    taggers: tuple[str, str],
) -> ClockSyncTruth | None:
    """The true offsets (``t_a_ps -> ps``) in the run's terms, or None when they cannot be
    said.

    ``components`` maps ``"alice"``, ``"bob"`` (the taggers) and ``"source.<node>"`` for
    each active pair source (``settings.active_sources``) to their world components; ``taggers`` are the two
    taggers' instrument names on their nodes.
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
    comp_a, comp_b = components["alice"], components["bob"]
    if comp_a is None or comp_b is None:
        return None

    def shifted(delay_ps: float) -> TruthFn:
        def at(t_a_ps: npt.ArrayLike) -> F64:
            return stream_offset_ps(world, o_a, o_b, t_a_ps) + delay_ps

        return at

    if not settings.two_way:
        node = next(iter(settings.active_sources))
        delay = _delay_difference_ps(
            world, settings, components.get(f"source.{node}"), comp_a, comp_b
        )
        if delay is None:
            return None
        one = shifted(delay)
        return ClockSyncTruth(one, {"one-way": one})
    d_ab = _delay_difference_ps(
        world, settings, components.get(f"source.{settings.alice_node}"), comp_a, comp_b
    )
    minus_d_ba = _delay_difference_ps(
        world, settings, components.get(f"source.{settings.bob_node}"), comp_a, comp_b
    )
    if d_ab is None or minus_d_ba is None:
        return None
    return ClockSyncTruth(
        shifted(0.0),
        {"a_to_b": shifted(d_ab), "b_to_a": shifted(minus_d_ba)},
        path_delay_ps=0.5 * (d_ab - minus_d_ba),
    )
