"""Drift tracking's pieces (bb84/tracking.py): the revealed subset's counts per basis, the
one-sided test's false-alarm rate and power, and the BlockTally flag on the wire."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, binom

from qhil.orchestrator.experiments.bb84.detection import Clicks
from qhil.orchestrator.experiments.bb84.messages import (
    AlignmentReveal,
    BlockTally,
    from_payload,
    to_payload,
)
from qhil.orchestrator.experiments.bb84.tracking import (
    QberWatch,
    drift_p_value,
    revealed_errors,
)


def _clicks(basis: list[int], bit: list[int]) -> Clicks:
    n = len(basis)
    return Clicks(
        np.arange(n, dtype=np.int64) * 1000,
        np.asarray(basis, dtype=np.uint8),
        np.asarray(bit, dtype=np.uint8),
        np.zeros(4, dtype=np.int64),
    )


def test_revealed_errors_counts_basis_matched_revealed_clicks_per_basis() -> None:
    rev = AlignmentReveal(
        0,
        np.asarray([2, 5, 7, 9], dtype=np.int64),
        np.asarray([0, 1, 0, 1], dtype=np.uint8),
        np.asarray([1, 0, 0, 1], dtype=np.uint8),
    )
    # positions: 2 (Z, agrees), 5 (X, wrong), 7 (X: basis differs, not counted), 9 (X, agrees),
    # 3 (not revealed), -1 (cut as the previous pattern's light), 2 again (Z, wrong)
    clicks = _clicks([0, 1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 1, 0])
    positions = np.asarray([2, 5, 7, 9, 3, -1, 2], dtype=np.int64)
    n, k = revealed_errors(clicks, positions, rev)
    assert n.tolist() == [2, 2]
    assert k.tolist() == [1, 1]


def test_watch_sets_its_expectation_from_the_first_block_without_a_compensation() -> None:
    watch = QberWatch(significance=1e-3, confidence=0.95)
    v = watch.check(0, np.asarray([400, 400]), np.asarray([4, 8]))
    assert not v.triggered and math.isnan(v.expected[0])
    assert watch.expected is not None
    # The one-sided 95 % Clopper-Pearson upper bounds of 4/400 and 8/400.
    assert watch.expected[0] == pytest.approx(0.02273, abs=2e-4)
    assert watch.expected[1] == pytest.approx(0.03575, abs=2e-4)


def test_false_alarm_rate_is_at_most_the_significance_and_drift_is_caught() -> None:
    """Blocks at exactly the expected error fraction trigger at most ``significance`` of the
    time (the exact test is conservative); blocks at 5x it are caught nearly always.

    20000 simulated blocks of 200 revealed clicks per basis at e0 = 1 %, significance 1e-2
    (large, so the count is informative): the trigger count must not exceed the 99.9 %
    upper quantile of Binomial(20000, 1e-2) (one-sided: too few triggers is fine; the
    exact count is ~2e-3 here). Power: at 5 % per basis (about where BB84's QBER is
    clearly degraded) a block of 200 triggers with probability > 0.99; checked over 2000
    blocks against the 0.1 % lower quantile of Binomial(2000, 0.99).
    """
    rng = np.random.default_rng(15)
    significance, e0, n = 1e-2, np.asarray([0.01, 0.01]), np.asarray([200, 200])
    blocks = 20000
    errors = rng.binomial(200, 0.01, size=(blocks, 2))
    fired = int(np.count_nonzero(drift_p_value(n, errors, e0) < significance))
    assert fired <= binom.ppf(0.999, blocks, significance)

    drifted = rng.binomial(200, 0.05, size=(2000, 2))
    caught = int(np.count_nonzero(drift_p_value(n, drifted, e0) < significance))
    assert caught >= binom.ppf(0.001, 2000, 0.99)
    # The watch decides with the same p-value.
    watch = QberWatch(significance=significance, confidence=0.95)
    watch.expected = (0.01, 0.01)
    for b in range(5):
        v = watch.check(b, n, drifted[b])
        assert v.p_value == pytest.approx(float(drift_p_value(n, drifted[b], e0)))
        assert v.triggered == (v.p_value < significance)


def test_block_tally_carries_the_recompensation_flag() -> None:
    msg = BlockTally(3, np.asarray([1, 2, 0], dtype=np.int64), 1)
    back = from_payload(*to_payload(msg))
    assert isinstance(back, BlockTally)
    assert back.recompensate == 1 and back.block == 3
    assert back.test_errors.tolist() == [1, 2, 0]


class _Controller:
    """A PolarizationController that must not be driven (the peer refuses first)."""

    name = "bob.polctrl"
    channels = 4

    async def set_voltages_mv(self, mv: list[int]) -> None:
        raise AssertionError("the controller was driven")

    async def voltages_mv(self) -> list[int]:
        return [0, 0, 0, 0]


async def test_a_refused_recompensation_is_recorded_and_the_run_goes_on() -> None:
    """Alice without compensation settings refuses Bob's request: both return (no abort),
    Bob's row says ok = 0 with the QBER that triggered it, and he expects that level now."""
    import asyncio

    from qhil.calibration.settings import PolarizationSettings
    from qhil.orchestrator.experiments.bb84.tracking import (
        BobTracking,
        Verdict,
        recompensate_alice,
        recompensate_bob,
    )

    from .support import open_channels

    a, b = await open_channels()
    ps = PolarizationSettings(channel_map={"H": 1, "V": 2, "D": 3, "A": 4}, rep_rate_hz=1e5)
    watch = QberWatch(1e-3, 0.95)
    watch.expected = (0.01, 0.01)
    verdict = Verdict(7, (200, 200), (12, 3), (0.01, 0.01), 1e-5, True)
    try:
        bob_row, alice_row = await asyncio.gather(
            recompensate_bob(BobTracking(ps, _Controller()), watch, verdict, b, None, 5.0),  # type: ignore[arg-type]
            recompensate_alice(None, 7, a, None, 5.0),  # type: ignore[arg-type]
        )
    finally:
        await asyncio.gather(a.close(), b.close())
    assert bob_row["ok"] == 0 and bob_row["block"] == 7
    assert bob_row["qber_z"] == pytest.approx(0.06) and bob_row["p_value"] == 1e-5
    assert alice_row == {"block": 7, "references": 0}
    # No retry every block: the triggering block's level (95 % upper bounds) is now expected.
    assert watch.expected == (
        pytest.approx(float(beta.ppf(0.95, 12 + 1, 200 - 12))),  # 9.5 %
        pytest.approx(float(beta.ppf(0.95, 3 + 1, 200 - 3))),  # 3.8 %
    )


async def test_a_channel_failure_during_a_recompensation_aborts() -> None:
    import asyncio

    from qhil.calibration.settings import PolarizationSettings
    from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
    from qhil.orchestrator.experiments.bb84.tracking import (
        BobTracking,
        Verdict,
        recompensate_bob,
    )

    from .support import open_channels

    a, b = await open_channels()
    await a.close()
    ps = PolarizationSettings(channel_map={"H": 1, "V": 2, "D": 3, "A": 4}, rep_rate_hz=1e5)
    verdict = Verdict(2, (200, 200), (12, 3), (0.01, 0.01), 1e-5, True)
    try:
        with pytest.raises(BB84Aborted) as err:
            await recompensate_bob(
                BobTracking(ps, _Controller()),  # type: ignore[arg-type]
                QberWatch(1e-3, 0.95),
                verdict,
                b,
                None,  # type: ignore[arg-type]
                5.0,
            )
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
    assert err.value.reason is AbortReason.CHANNEL_FAILED
    assert "re-compensation" in err.value.detail
