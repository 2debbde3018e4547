"""From the acquisition's coincidences to one outcome per detection event (vectorised).

The acquisition pairs each of alice's events with each of bob's within the window, so a
double click (two detectors at one tagger tick) or a second click in the window gives
several coincidences that share an event. A key must use each event once: the
coincidences sharing alice's event (her tagger tick) form one group, each node's outcomes
in it OR-ed into a click mask, and each node squashes its own mask
(``numerics.qkd.bbm92.squash_masks``: a random bit for both detectors of a basis, a random
basis for clicks in both), as BB84's receiver does. The few groups whose bob event (tick)
also belongs to another group are dropped (their events would be used twice). Grouping
needs only times, so in a two-process run alice groups and tells bob his ticks per group.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd.bbm92 import squash_masks

I64 = NDArray[np.int64]
U8 = NDArray[np.uint8]


def group_pairs(alice_t_ps: I64, bob_t_ps: I64) -> tuple[I64, int]:
    """Each coincidence's group (-1: dropped) and the number of groups kept, in alice's
    time order. Coincidences at one alice tick share a group; a group whose bob tick is
    in another group too is dropped."""
    at, bt = np.asarray(alice_t_ps, np.int64), np.asarray(bob_t_ps, np.int64)
    if at.size != bt.size:
        raise ValueError("group_pairs: one alice and one bob time per coincidence")
    if at.size == 0:
        return np.zeros(0, np.int64), 0
    keys, group = np.unique(at, return_inverse=True)
    pairs = np.unique(np.stack([group, bt]), axis=1)  # (group, bob tick), each once
    ticks, count = np.unique(pairs[1], return_counts=True)
    keep = np.ones(keys.size, bool)
    keep[pairs[0][np.isin(pairs[1], ticks[count > 1])]] = False
    renumber = np.cumsum(keep) - 1
    return np.where(keep[group], renumber[group], -1).astype(np.int64), int(keep.sum())


def group_masks(group: I64, outcome: I64, n_groups: int) -> U8:
    """One node's click mask per group (bit ``d`` = detector ``d``: H, V, D, A)."""
    g, o = np.asarray(group, np.int64), np.asarray(outcome, np.int64)
    mask = np.zeros(n_groups, np.uint8)
    sel = g >= 0
    np.bitwise_or.at(mask, g[sel], (1 << o[sel]).astype(np.uint8))
    return mask


def click_masks(
    alice_t_ps: I64, alice_outcome: I64, bob_t_ps: I64, bob_outcome: I64
) -> tuple[U8, U8]:
    """(alice's, bob's) click mask per group, both nodes' outcomes known (one process)."""
    if not len(alice_t_ps) == len(alice_outcome) == len(bob_t_ps) == len(bob_outcome):
        raise ValueError("click_masks: one time and one outcome per coincidence at each node")
    group, n = group_pairs(alice_t_ps, bob_t_ps)
    return group_masks(group, alice_outcome, n), group_masks(group, bob_outcome, n)


def masks_at_ticks(t_ps: I64, outcome: I64, group: I64, tick_ps: I64, n_groups: int) -> U8:
    """A node's mask per group from its own stream (``t_ps`` sorted, ``outcome`` 0..3):
    every event at ``tick_ps[i]`` belongs to group ``group[i]`` (a double click included)."""
    t = np.asarray(t_ps, np.int64)
    lo = np.searchsorted(t, tick_ps, side="left")
    hi = np.searchsorted(t, tick_ps, side="right")
    if np.any(hi == lo):
        raise ValueError("masks_at_ticks: a tick named for a group is not in the stream")
    n = hi - lo
    idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
    return group_masks(
        np.repeat(np.asarray(group, np.int64), n), np.asarray(outcome)[idx], n_groups
    )


def outcomes(mask: U8, rng: np.random.Generator) -> I64:
    """A node's squashed outcome 0..3 (basis << 1 | bit) for each of its click masks."""
    basis, bit = squash_masks(mask, rng)
    return (basis.astype(np.int64) << 1) | bit.astype(np.int64)
