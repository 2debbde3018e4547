"""Bob measures how long the previous pattern's light lasts in each block (``settle_s`` unset).

The constant it replaces (2e-4 s) was shorter than the fibre delay beyond ~40 km: at 61 km
(299 us) the last 99 us of the previous pattern's photons were taken for the new pattern's,
and the vacuum pulses' yield came out several times the dark-count prediction. The pooled
change point that replaced it (session 6) missed the old light in the first block that had
it at ~1/3 of seeds (one block's ~12 revealed old clicks, diluted by the dark first block's)
and cut below the delay at some: the test passed only at its pinned seed. The rule now
(``settling.py``): per block, the upper confidence bound of the change point, floored by the
measured link delay.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted, BB84Settings
from qhil.orchestrator.experiments.bb84.detection import Clicks
from qhil.orchestrator.experiments.bb84.messages import AlignmentReveal
from qhil.orchestrator.experiments.bb84.settling import DELAY_BLOCKS, PreviousPattern
from qhil.orchestrator.experiments.bb84.statistics import BB84Statistics

from .conftest import Runner
from .support import bb84_world, settings

# 61 km: 299 us of the previous pattern in flight when a block starts.
KM = 61.0
DARK_HZ = 2000.0  # per detector: ~10 dark clicks on the vacuum pulses of each block
MUS = (0.5, 0.1, 0.0)
PROBS = (0.7, 0.2, 0.1)
RATE = 80e6
BLOCKS = 8
CONFIDENCE = 0.999


def _world() -> Any:
    return bb84_world(
        length_km=KM, eta=0.85, dark_hz=DARK_HZ, e_d=0.01, mus=MUS, probs=PROBS, seed=61
    )


def _vacuum_interval(pulses: int) -> tuple[float, float]:
    """Two-sided interval of the vacuum detections: four detectors' dark counts in one
    pulse slot (no dead time here), Bernoulli per pulse."""
    y0 = 1.0 - math.exp(-4 * DARK_HZ / RATE)
    lo, hi = stats.binom.interval(CONFIDENCE, pulses, y0)
    return float(lo), float(hi)


async def _counts(
    run: Runner, world: Any, s: BB84Settings, seed: int = 1
) -> tuple[BB84Statistics, list[dict[str, Any]]]:
    """The run's statistics, key or not (a few blocks are too few for one), and Bob's rows."""
    rows: list[dict[str, Any]] = []

    def on_data(name: str, row: dict[str, Any]) -> None:
        if name == "bob/block":
            rows.append(row)

    try:
        r = await run(world, s, on_data=on_data, seed=seed)
    except BB84Aborted as exc:
        assert exc.reason is AbortReason.NO_KEY and exc.result is not None, exc
        r = exc.result
    return r.statistics, rows


#: 61 km: the fibre delay, and the most the cut may exceed it. The cut lies ~11 revealed
#: clicks of this pattern past the old light's end, 36 with probability < 1e-4 (the
#: evidence's fall of SETTLE_LLR, simulated), and at 61 km they come every ~25 us: 0.9 ms;
#: 1.3 ms leaves room for their Poisson gaps.
DELAY_US = KM * 4.9
OVERCUT_US = 1300.0


@pytest.mark.slow
# Seeds: the former pooled detector failed this test at 7 of Runner seeds 1-10 at 2^20-pulse
# blocks (5 of them by the vacuum count: 112-149 against 51-109), these three among them,
# and at 1 of seeds 1-6 at 8 M-pulse blocks (100 ms, the default; two blocks), seed 4 (188
# against 113-194: the first lit block missed); this rule at none of seeds 1-40 (2^20) and
# 1-6 (8 M).
@pytest.mark.parametrize(
    ("pattern_length", "seed"), [(1 << 20, 1), (1 << 20, 2), (1 << 20, 4), (8_000_000, 4)]
)
async def test_vacuum_yield_at_61_km_is_the_dark_count_prediction(
    run: Runner, pattern_length: int, seed: int
) -> None:
    s = settings(
        blocks=max(2, BLOCKS * (1 << 20) // pattern_length),
        pattern_length=pattern_length,
        mus=list(MUS),
        intensity_probabilities=list(PROBS),
    )
    st, rows = await _counts(run, _world(), s, seed)
    lo, hi = _vacuum_interval(int(st.pulses[2]))
    # Two-sided, 99.9 % per seed: ~12 of the previous pattern's clicks left in a block put
    # ~1-2 on vacuum pulses, a whole block's old light ~15 (the constant 2e-4 s: 3x).
    assert lo <= st.detections[2] <= hi, (int(st.detections[2]), lo, hi)
    # What Bob cut: from the first block that has old light (block 0 starts with a dark
    # fibre) at least the fibre delay (each block fails that with probability <= 1e-3:
    # <= 0.7 % for the <= 7 here), and at most OVERCUT_US more. Block 0 loses only the
    # confidence margin (~11 revealed clicks).
    settle_us = np.array([int(row["settle_ps"][0]) for row in rows]) * 1e-6
    assert settle_us[0] < OVERCUT_US, settle_us
    lit = settle_us[1:]
    assert np.all((lit > DELAY_US) & (lit < DELAY_US + OVERCUT_US)), settle_us


async def test_little_dropped_when_no_light_is_in_flight(run: Runner) -> None:
    # 0 km: nothing in the fibre when a block starts; Bob drops only the confidence margin:
    # ~11 of this pattern's revealed, basis-matched clicks (1 in 40 clicks: alignment_fraction
    # 0.05, half of them in Bob's basis), more than 36 with probability < 1e-4: 1440 clicks
    # (~300-500 of ~22,000 here, 30 us of 1.6 ms; of a 100 ms block 0.03 %).
    world = bb84_world(length_km=0.0, dark_hz=500.0, seed=5)
    _, rows = await _counts(run, world, settings(blocks=3, pattern_length=1 << 17))
    assert len(rows) == 3
    dropped = [int(row["settle_dropped"][0]) for row in rows]
    assert all(0 < d < 36 * 40 for d in dropped), dropped


@pytest.mark.parametrize("settle_s", [6.6e-3, 1.0])
def test_a_fixed_settle_s_must_leave_most_of_a_block(settle_s: float) -> None:
    # Blocks of 2^20 pulses at 80 MHz last 13.1 ms: settling half of that or more is a typo.
    with pytest.raises(ConfigError, match=r"experiments\.bb84.*settle_s.*half a block"):
        settings(settle_s=settle_s)
    assert settings(settle_s=6.5e-3).settle_s == 6.5e-3


def _block(
    rng: np.random.Generator, n: int, old: int, e: float = 0.01
) -> tuple[Clicks, np.ndarray, AlignmentReveal]:
    """``n`` clicks 1 us apart, every one at a revealed position with Bob's basis; the first
    ``old`` carry another pattern (agree at 1/2), the rest this one's at error rate ``e``."""
    basis = rng.integers(0, 2, n).astype(np.uint8)
    bit = rng.integers(0, 2, n).astype(np.uint8)
    flip = np.where(np.arange(n) < old, rng.random(n) < 0.5, rng.random(n) < e)
    clicks = Clicks(np.arange(n, dtype=np.int64) * 1_000_000, basis, bit, np.zeros(4, np.int64))
    positions = np.arange(n, dtype=np.int64)
    rev = AlignmentReveal(0, positions, basis.copy(), (bit ^ flip).astype(np.uint8))
    return clicks, positions, rev


def test_the_cut_lies_just_past_the_previous_pattern() -> None:
    rng = np.random.default_rng(7)
    prev = PreviousPattern()
    # 40 of the previous pattern's revealed clicks (1 us apart): the cut falls after the
    # 40th, by the confidence margin (~11 clicks, 36 with probability < 1e-4).
    settle_us = prev.add(*_block(rng, 2000, old=40)) / 1e6
    assert 40 <= settle_us <= 40 + 36, settle_us
    # The measured delay: the maximum-likelihood change point (the last old clicks may
    # agree by chance: 2^-k for k of them).
    assert 30 <= prev.delay_ps / 1e6 <= 45, prev.delay_ps
    # None of it: only the margin.
    assert 0 < PreviousPattern().add(*_block(rng, 2000, old=0)) / 1e6 <= 36


def test_the_first_block_with_few_old_clicks_is_cut_past_them() -> None:
    # The former detector's miss: 12 old revealed clicks in the block (61 km), after a block
    # without any. Over 2000 such pairs of blocks the cut may fall before the 12th old
    # click in <= 1e-3 of them (Ville); the bound's binomial 99.9 % quantile is 8. The
    # former pooled change point left them in ~1/3 of runs.
    rng = np.random.default_rng(11)
    short = 0
    for _ in range(2000):
        prev = PreviousPattern()
        prev.add(*_block(rng, 400, old=0))
        short += prev.add(*_block(rng, 400, old=12)) < 12 * 1_000_000
    assert short <= stats.binom.ppf(0.999, 2000, 1e-3), short


def test_the_measured_delay_floors_a_block_without_evidence() -> None:
    # After blocks showing 40 us of old light, a block whose revealed clicks show none
    # (too few, or misleading) is still cut at the measured delay.
    rng = np.random.default_rng(3)
    prev = PreviousPattern()
    for _ in range(3):
        prev.add(*_block(rng, 2000, old=40))
    assert prev.add(*_block(rng, 2000, old=0)) >= prev.delay_ps >= 30 * 1_000_000
    # Once most recent blocks show none, the floor is gone (a false detection does not
    # persist): 4 of 7 blocks without old light.
    for _ in range(3):
        prev.add(*_block(rng, 2000, old=0))
    assert prev.delay_ps == 0
    assert prev.add(*_block(rng, 2000, old=0)) <= 36 * 1_000_000


def test_the_state_is_bounded_over_a_long_run() -> None:
    # Only the last DELAY_BLOCKS blocks' change points are kept (no pool of clicks growing
    # with the run).
    rng = np.random.default_rng(5)
    prev = PreviousPattern()
    for _ in range(3 * DELAY_BLOCKS):
        prev.add(*_block(rng, 300, old=30))
    assert len(prev._delays) == DELAY_BLOCKS
