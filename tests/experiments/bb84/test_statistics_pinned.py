"""BB84 public statistics pinned by hand: the tallies, the finite-key length with the
reconciliation leakage, the decoy bounds, and both QBER aborts (test basis and key basis).

Each number here is worked out by hand (or taken from the hand calculations of
tests/numerics_qkd) at counts where the finite-size terms are large, so a wrong
substitution (a leak dropped, a basis swapped, a bound made less conservative, an abort
disabled) moves it far outside the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qhil.emulators.world import World, load_world_config
from qhil.numerics.qkd import FiniteKeyInput, secret_key_length
from qhil.orchestrator.experiments.bb84 import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.party import PartyBase
from qhil.orchestrator.experiments.bb84.result import Party
from qhil.orchestrator.experiments.bb84.statistics import (
    BB84Statistics,
    Tally,
    decoy_bounds,
    decoy_counts,
    finite_key,
)
from qhil.records import KeyStore

from .conftest import Runner
from .support import bb84_world_table, settings

I64 = np.int64


def stats_of(
    *,
    mus: tuple[float, float, float] = (0.5, 0.1, 0.0002),
    pulses: tuple[int, int, int] = (10**7, 10**7, 10**7),
    detections: tuple[int, int, int] = (20000, 4300, 400),
    key_sifted: tuple[float, float, float] = (4.0e6, 5.0e5, 6.0e4),
    test_sifted: tuple[float, float, float] = (1.0e5, 1.25e4, 1.5e3),
    test_errors: tuple[float, float, float] = (2500, 500, 300),
    key_errors: tuple[int, int, int] | None = None,
) -> BB84Statistics:
    return BB84Statistics(
        mus,
        blocks=3,
        blocks_used=2,
        acquisition_s=0.3,
        pulses_sent=4 * 10**7,
        window_pulses=3 * 10**7 + 5,
        pulses=np.array(pulses, I64),
        detections=np.array(detections, I64),
        key_sifted=np.array(key_sifted, I64),
        test_sifted=np.array(test_sifted, I64),
        test_errors=np.array(test_errors, I64),
        key_errors=None if key_errors is None else np.array(key_errors, I64),
    )


def test_tally_sorts_each_detection_by_intensity_and_basis() -> None:
    """Two blocks tallied by hand: per detection its intensity, basis match and basis."""
    t = Tally((0.6, 0.2, 0.0))
    t.add_block(
        duration_s=0.1,
        pulses_sent=100,
        window_pulses=90,
        pulses=np.array([50, 30, 10], I64),
        detected_intensity=np.array([0, 0, 1, 2, 0, 1, 0], np.uint8),
        match=np.array([1, 1, 0, 1, 1, 1, 0], bool),
        bases=np.array([0, 1, 0, 0, 1, 1, 1], np.uint8),
        test_errors=np.array([1, 0, 0], I64),
    )
    t.discard_block(0.05, 40)
    t.add_block(
        duration_s=0.1,
        pulses_sent=100,
        window_pulses=80,
        pulses=np.array([40, 25, 15], I64),
        detected_intensity=np.array([2, 0, 0], np.uint8),
        match=np.array([1, 1, 1], bool),
        bases=np.array([1, 0, 0], np.uint8),
        test_errors=np.array([0, 0, 1], I64),
    )
    # A block whose detections are all at the signal intensity (bincount gives 1 entry).
    t.add_block(
        duration_s=0.0,
        pulses_sent=0,
        window_pulses=0,
        pulses=np.zeros(3, I64),
        detected_intensity=np.array([0, 0], np.uint8),
        match=np.array([1, 0], bool),
        bases=np.array([0, 0], np.uint8),
        test_errors=np.zeros(3, I64),
    )
    s = t.snapshot()
    assert (s.blocks, s.blocks_used, s.pulses_sent, s.window_pulses) == (4, 3, 240, 170)
    assert s.acquisition_s == pytest.approx(0.25)
    np.testing.assert_array_equal(s.pulses, [90, 55, 25])
    np.testing.assert_array_equal(s.detections, [8, 2, 2])
    # Matched Z: (0,Z) (2,Z) | (0,Z) (0,Z) | (0,Z); matched X: (0,X) (0,X) (1,X) | (2,X).
    np.testing.assert_array_equal(s.key_sifted, [4, 0, 1])
    np.testing.assert_array_equal(s.test_sifted, [2, 1, 1])
    np.testing.assert_array_equal(s.test_errors, [1, 0, 1])
    assert s.sifted_key_bits == 5 and s.key_errors is None and s.qber_key is None
    # Integer counts (they are persisted and sent as integers).
    for counts in (s.pulses, s.detections, s.key_sifted, s.test_sifted, s.test_errors):
        assert counts.dtype == np.int64
    # The snapshot is a copy: later blocks do not change it.
    t.pulses += 1
    np.testing.assert_array_equal(s.pulses, [90, 55, 25])


def test_qbers_per_basis_and_intensity() -> None:
    s = stats_of(key_errors=(80_000, 15_000, 6_000))
    np.testing.assert_allclose(s.qber_test, [0.025, 0.04, 0.2])
    assert s.test_qber_all == pytest.approx(3300 / 114_000)
    qk = s.qber_key
    assert qk is not None
    np.testing.assert_allclose(qk, [0.02, 0.03, 0.1])
    np.testing.assert_allclose(s.gains, [0.002, 0.00043, 0.00004])
    assert s.sifted_key_bits == 4_560_000
    empty = stats_of(test_sifted=(0, 0, 0), test_errors=(0, 0, 0))
    assert np.isnan(empty.qber_test).all() and math.isnan(empty.test_qber_all)


def test_finite_key_uses_the_key_basis_counts_and_the_whole_leakage() -> None:
    """The counts of tests/numerics_qkd/test_finite_key.py's PINNED point, where the length
    is 487 870 bits with 700 000 bits leaked: every leaked bit comes off the key."""
    s = stats_of()
    probs = (0.5, 0.3, 0.2)
    res = finite_key(s, probs, 700_000, 1e-9, 1e-15)
    assert res.length == 487_870
    assert res.s0_key == pytest.approx(201_437.1627, rel=1e-9)
    assert res.s1_test == pytest.approx(33_967.81388, rel=1e-9)
    for leak in (0, 1, 123_457):
        assert finite_key(s, probs, leak, 1e-9, 1e-15).length == 487_870 + 700_000 - leak
    # The two epsilons reach the formula: stricter ones cost key.
    assert finite_key(s, probs, 700_000, 1e-12, 1e-15).length < 487_870
    assert finite_key(s, probs, 700_000, 1e-9, 1e-20).length == 487_870 - math.ceil(math.log2(1e5))
    direct = secret_key_length(
        FiniteKeyInput(
            (0.5, 0.1, 0.0002),
            probs,
            np.array([4.0e6, 5.0e5, 6.0e4]),
            np.array([1.0e5, 1.25e4, 1.5e3]),
            np.array([2500.0, 500.0, 300.0]),
            700_000.0,
        )
    )
    assert res == direct


def test_decoy_bounds_from_all_detections_and_the_test_basis_errors() -> None:
    """Hand values of tests/numerics_qkd/test_decoy.py (1e7 pulses per intensity, eps 1e-10):
    gains from every detection, error rates from the disclosed test basis."""
    s = stats_of(
        mus=(0.5, 0.1, 0.0),
        test_sifted=(10000, 2150, 200),
        test_errors=(300, 150, 100),
        key_sifted=(9000, 2000, 190),
    )
    c = decoy_counts(s)
    np.testing.assert_array_equal(c.detections, [20000, 4300, 400])
    np.testing.assert_array_equal(c.compared, [10000, 2150, 200])
    np.testing.assert_array_equal(c.errors, [300, 150, 100])
    b = decoy_bounds(s, 1e-10)
    assert b is not None
    assert b.y1_lower == pytest.approx(0.00293866337, rel=1e-8)
    assert b.e1_upper == pytest.approx(0.148170287, rel=1e-8)
    assert decoy_bounds(stats_of(), 1e-10) is None  # third intensity not vacuum
    no_decoy_pulses = stats_of(mus=(0.5, 0.1, 0.0), pulses=(10**7, 0, 10**7))
    assert decoy_bounds(no_decoy_pulses, 1e-10) is None
    no_decoy_tests = stats_of(mus=(0.5, 0.1, 0.0), test_sifted=(10, 0, 5), test_errors=(0, 0, 0))
    assert decoy_bounds(no_decoy_tests, 1e-10) is None


class _Party(PartyBase):
    party: Party = "alice"


def party(max_qber: float = 0.05) -> PartyBase:
    p = _Party(
        settings(max_qber=max_qber, blocks=1, pattern_length=1 << 16),
        None,  # type: ignore[arg-type]  # the checks send nothing
        key_store=None,  # type: ignore[arg-type]
        run_id=None,
        progress=None,
        on_data=None,
        rng=np.random.default_rng(1),
    )
    return p


def fill(
    p: PartyBase, key_sifted: list[int], test_sifted: list[int], test_errors: list[int]
) -> None:
    p.tally.blocks = p.tally.blocks_used = 1
    p.tally.pulses[:] = [10**6, 10**6, 10**6]
    p.tally.detections[:] = [40_000, 9_000, 20]
    p.tally.key_sifted[:] = key_sifted
    p.tally.test_sifted[:] = test_sifted
    p.tally.test_errors[:] = test_errors


@pytest.mark.parametrize(
    ("signal_errors", "aborts"), [(0, False), (500, False), (501, True), (2_000, True)]
)
def test_key_basis_qber_of_the_signal_aborts_above_the_threshold(
    signal_errors: int, aborts: bool
) -> None:
    """Key-basis (Z) QBER of the signal from reconciliation: 500 / 10 000 = 5.00 % passes
    at max_qber 5 %, one error more aborts; the other intensities do not count."""
    p = party(0.05)
    fill(p, [10_000, 2_000, 10], [10_000, 2_000, 10], [100, 20, 5])
    assert p.check_estimates().test_qber_all == pytest.approx(125 / 12_010)
    errors = np.array([signal_errors, 1_000, 10], I64)  # decoy 50 %, vacuum 100 %: ignored
    if not aborts:
        s = p.record_key_errors(errors)
        assert s.qber_key is not None and s.qber_key[0] == pytest.approx(signal_errors / 10_000)
        return
    with pytest.raises(BB84Aborted) as err:
        p.record_key_errors(errors)
    assert err.value.reason is AbortReason.QBER_TOO_HIGH
    assert "key-basis QBER of the signal intensity" in err.value.detail
    assert f"{100 * signal_errors / 10_000:.2f} %" in err.value.detail
    result = err.value.result
    assert result is not None and result.status == "aborted"
    assert result.statistics.key_errors is not None
    np.testing.assert_array_equal(result.statistics.key_errors, errors)


@pytest.mark.parametrize(("signal_errors", "aborts"), [(500, False), (501, True)])
def test_test_basis_qber_of_the_signal_aborts_above_the_threshold(
    signal_errors: int, aborts: bool
) -> None:
    p = party(0.05)
    fill(p, [10_000, 2_000, 10], [10_000, 2_000, 10], [signal_errors, 1_000, 10])
    if not aborts:
        assert p.check_estimates().test_errors[0] == signal_errors
        return
    with pytest.raises(BB84Aborted) as err:
        p.check_estimates()
    assert err.value.reason is AbortReason.QBER_TOO_HIGH
    assert "test-basis QBER of the signal intensity 5.01 %" in err.value.detail


async def test_run_aborts_on_key_basis_errors_the_test_basis_does_not_see(
    run: Runner, key_store: KeyStore
) -> None:
    """Bob's Z analyzer turned by 12 degrees: the key basis errs ~6 % (2 % source error +
    sin^2 12 deg), the test basis only ~2 %. With max_qber 5 % the test-basis check passes,
    reconciliation corrects the key, and the key-basis check must abort; no key is stored."""
    table = bb84_world_table(e_d=0.02, seed=9)
    rx = table["nodes"]["bob"]["components"]["rx"]
    rx["bases"][0] = {"angle_deg": 12.0, "weight": 0.5, "plus": "h", "minus": "v"}
    world = World(load_world_config(table, "key-basis misalignment"), seed=9)
    with pytest.raises(BB84Aborted) as err:
        await run(world, settings(blocks=1, pattern_length=1 << 20, max_qber=0.05))
    exc = err.value
    assert exc.reason is AbortReason.QBER_TOO_HIGH, exc
    assert "key-basis QBER of the signal intensity" in exc.detail
    st = exc.result.statistics if exc.result is not None else None
    assert st is not None and st.key_errors is not None
    e_key = float(st.key_errors[0] / st.key_sifted[0])
    e_test = float(st.test_errors[0] / st.test_sifted[0])
    assert e_test < 0.05 < e_key
    assert key_store.list_keys() == []
