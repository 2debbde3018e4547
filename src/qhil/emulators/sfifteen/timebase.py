"""Emulator truth of the offset between two TDC1 timestamp streams, in the client's terms.

A TDC1 resets its 27-bit, 2 ns counter when ``counts?`` starts timestamp mode, and
counts on its own oscillator (here: the node's clock, with offset, drift and wander);
docs/protocols/s-fifteen-tdc1.md, "Stream timebase". A client holding two streams can
therefore measure only the **stream offset**: at one true instant, B's stream time minus
A's, each counted from its own counter reset (a coincidence search on the streams sees
it plus the path-delay difference of the pair's two photons). The nodes' clock offset
itself shows only with a time reference from the hosts (S-Fifteen's stack adds the host
clock read at the stream start, ``readevents -A``): `clock_offset_ps` gives that.

These functions read the world: they are for tests and for reporting an emulated run's
error against the truth, never for a driver or an experiment's own decisions.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from qhil.emulators.sfifteen.tdc1 import StreamOrigin, TDC1Emulator

__all__ = ["StreamOrigin", "clock_offset_ps", "stream_offset_ps", "stream_origin"]

F64 = npt.NDArray[np.float64]


def stream_origin(emulator: TDC1Emulator) -> StreamOrigin:
    """The counter reset of the emulator's running (or latest) timestamp stream."""
    origin = emulator.stream_origin
    if origin is None:
        raise ValueError(f"{emulator.name}: no timestamp stream has been started")
    return origin


def _origin(x: StreamOrigin | TDC1Emulator) -> StreamOrigin:
    return x if isinstance(x, StreamOrigin) else stream_origin(x)


def _offsets(
    world: Any,
    a: StreamOrigin | TDC1Emulator,
    b: StreamOrigin | TDC1Emulator,
    t_a_ps: npt.ArrayLike,
    *,
    from_resets: bool,
) -> F64:
    oa, ob = _origin(a), _origin(b)
    clock_a, clock_b = world.node(oa.node).clock, world.node(ob.node).clock
    t = np.asarray(t_a_ps, dtype=np.float64)
    out = np.empty(t.shape)
    # Exact (Fraction) per instant: these are sample times of a report, not photons.
    for i, ti in np.ndenumerate(t):
        node_a = Fraction(oa.node_ps) + Fraction(float(ti))
        true = clock_a.true_of_node(node_a)
        diff = clock_b.node_of_true(true) - node_a
        if from_resets:
            diff -= ob.node_ps - oa.node_ps
        out[i] = float(diff)
    return out


def stream_offset_ps(
    world: Any,
    a: StreamOrigin | TDC1Emulator,
    b: StreamOrigin | TDC1Emulator,
    t_a_ps: npt.ArrayLike,
) -> F64:
    """B's stream time minus A's (ps) at the true instants where A's stream reads ``t_a_ps``.

    Both streams' times count from their own counter resets; this is the offset a client
    measures from the two streams alone (before the path-delay difference).
    """
    return _offsets(world, a, b, t_a_ps, from_resets=True)


def clock_offset_ps(
    world: Any,
    a: StreamOrigin | TDC1Emulator,
    b: StreamOrigin | TDC1Emulator,
    t_a_ps: npt.ArrayLike,
) -> F64:
    """B's node clock minus A's (ps) at the true instants where A's stream reads ``t_a_ps``:
    the stream offset plus the difference of the clocks' readings at the two resets (what
    a host time reference at each stream start would add)."""
    return _offsets(world, a, b, t_a_ps, from_resets=False)
