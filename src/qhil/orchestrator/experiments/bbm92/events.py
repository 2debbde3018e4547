"""From the acquisition's coincidences to one outcome per detection event (vectorised).

The acquisition pairs each of alice's events with each of bob's within the window, so a
double click (two detectors at one tagger tick) or a second click in the window gives
several coincidences that share an event. A key must use each event once: the
coincidences sharing alice's event are merged into one, each node's outcomes OR-ed into a
click mask, and each node squashes its own mask (``numerics.qkd.bbm92.squash_masks``: a
random bit for both detectors of a basis, a random basis for clicks in both), as BB84's
receiver does; the few merged coincidences whose bob event also belongs to another are
dropped (their events would be used twice).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from qhil.numerics.qkd.bbm92 import squash_masks

I64 = NDArray[np.int64]


def click_masks(
    alice_t_ps: I64, alice_outcome: I64, bob_t_ps: I64, bob_outcome: I64
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """One (alice mask, bob mask) per alice event, bit ``d`` = detector ``d`` (H, V, D, A)."""
    at, ao = np.asarray(alice_t_ps, np.int64), np.asarray(alice_outcome, np.int64)
    bt, bo = np.asarray(bob_t_ps, np.int64), np.asarray(bob_outcome, np.int64)
    if not at.size == ao.size == bt.size == bo.size:
        raise ValueError("click_masks: one time and one outcome per coincidence at each node")
    if at.size == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    keys, group = np.unique(at, return_inverse=True)
    n = keys.size
    mask_a = np.zeros(n, np.uint8)
    mask_b = np.zeros(n, np.uint8)
    np.bitwise_or.at(mask_a, group, (1 << ao).astype(np.uint8))
    np.bitwise_or.at(mask_b, group, (1 << bo).astype(np.uint8))
    # A bob event in more than one group: drop every group it is in.
    pairs = np.unique(np.stack([group, bt]), axis=1)  # (group, bob time), each once
    bt_u, bt_count = np.unique(pairs[1], return_counts=True)
    shared = np.isin(pairs[1], bt_u[bt_count > 1])
    keep = np.ones(n, bool)
    keep[pairs[0][shared]] = False
    return mask_a[keep], mask_b[keep]


def outcomes(mask: NDArray[np.uint8], rng: np.random.Generator) -> I64:
    """A node's squashed outcome 0..3 (basis << 1 | bit) for each of its click masks."""
    basis, bit = squash_masks(mask, rng)
    return (basis.astype(np.int64) << 1) | bit.astype(np.int64)
