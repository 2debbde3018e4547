"""Clock-sync parts without a bench: settings, the timestamps' wire format, stored corrections."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qhil.errors import ConfigError
from qhil.numerics.timing import ClockModel
from qhil.numerics.timing.tracking import (
    ClockTracker,
    TrackerConfig,
    interval_wander_error_ps,
    max_interval_s,
)
from qhil.orchestrator.experiments.clock_sync import (
    ClockSyncAborted,
    ClockSyncSettings,
    SyncAbortReason,
    correction_path,
    load_correction,
    save_correction,
)
from qhil.orchestrator.experiments.clock_sync.runner import tracking_interval
from qhil.orchestrator.experiments.clock_sync.settings import (
    AUTO_MAX_INTERVAL_S,
    AUTO_MIN_INTERVAL_S,
    AUTO_MIN_PAIRS,
    AUTO_RATIO,
)
from qhil.orchestrator.experiments.clock_sync.wire import pack_timestamps, unpack_timestamps
from qhil.orchestrator.profile import load_profile

Z_PARTS = 3.29  # two-sided 99.9 %


def test_defaults_are_one_way_from_alices_source() -> None:
    s = ClockSyncSettings.from_mapping({})
    assert list(s.sources) == ["alice"] and s.method_used == "one-way"
    assert s.uncertainty_s == 0.5 and s.max_frequency_offset_ppm == 100.0


def test_a_source_at_each_end_is_two_way() -> None:
    s = ClockSyncSettings.from_mapping({"sources": {"alice": {}, "bob": {}}})
    assert s.two_way and s.method_used == "two-way"
    both = {"alice": {}, "bob": {}, "source": {}}
    assert list(ClockSyncSettings.from_mapping({"sources": both}).active_sources) == [
        "alice",
        "bob",
    ]
    one = ClockSyncSettings.from_mapping({"sources": both, "method": "one-way"})
    assert one.method_used == "one-way" and list(one.active_sources) == ["source"]


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        (
            {"tracking_interval_s": 0},
            "experiments.clock_sync.tracking_interval_s",
            "from 0.001 to 600",
        ),
        (
            # 1e-6 s effectively hung the run (a million intervals of one pair or none)
            {"tracking_interval_s": 1e-6},
            "experiments.clock_sync.tracking_interval_s",
            "from 0.001 to 600",
        ),
        (
            # an interval longer than the run extrapolated the acquisition 7 s past its data
            {"tracking_interval_s": 20, "duration_s": 3},
            "experiments.clock_sync",
            "duration_s (3) is shorter than acquisition_s (1) plus tracking_interval_s (20)",
        ),
        (
            # 0.1-0.3 s gave "success" 4-12 sigma off the truth, t_ref outside the data
            {"duration_s": 0.3, "acquisition_s": 0.3},
            "experiments.clock_sync",
            'duration_s (0.3) is shorter than acquisition_s (0.3) plus one "auto"',
        ),
        (
            {"duration_s": 1.5},
            "experiments.clock_sync",
            "give at least 2 s",
        ),
        (
            # never tracked a coincidence, yet reported success
            {"lock_significance": 3000},
            "experiments.clock_sync",
            "lock_significance (3000) exceeds min_significance (6)",
        ),
        (
            {"sources": {"alice": {"pump_current": 3}}},
            "experiments.clock_sync.sources.alice.pump_current",
            "Extra",
        ),
        (
            {"method": "two-way"},
            "experiments.clock_sync",
            "two-way needs a pair source at alice and one at bob",
        ),
        (
            {"sources": {"alice": {}, "bob": {}}, "method": "one-way"},
            "experiments.clock_sync",
            "one-way uses one pair source",
        ),
        (
            {"duration_s": 1, "acquisition_s": 2},
            "experiments.clock_sync",
            "duration_s (1) is shorter than acquisition_s (2)",
        ),
        (
            {"sources": {"alice": {"bob_channels": [0]}}},
            "experiments.clock_sync",
            "sources.alice.bob_channels",
        ),
        ({"duration_s": float("nan")}, "experiments.clock_sync.duration_s", "finite"),
    ],
)
def test_bad_settings_name_the_file_and_field(table: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClockSyncSettings.from_mapping(table, "bench.toml")
    assert info.value.source == "bench.toml"
    assert info.value.field == field
    assert words in str(info.value)


def test_profile_show_checks_the_table() -> None:
    with pytest.raises(ConfigError) as info:
        load_profile("default", ["experiments.clock_sync.max_misses=0"])
    assert info.value.field == "experiments.clock_sync.max_misses"
    prof = load_profile("default", ["experiments.clock_sync.duration_s=3"])
    assert ClockSyncSettings.from_profile(prof).duration_s == 3.0
    assert ClockSyncSettings.from_profile(prof, duration_s=2.5).duration_s == 2.5
    # a short --duration is refused, no longer run on a shrunken acquisition
    with pytest.raises(ConfigError, match=r"duration_s \(0.5\) is shorter than acquisition_s"):
        ClockSyncSettings.from_profile(prof, duration_s=0.5)


def test_timestamps_round_trip_compactly() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(-(10**12), 10**12, 100_000)).astype(np.int64)
    payload = pack_timestamps(t)
    assert np.array_equal(unpack_timestamps(payload), t)
    assert len(payload["diffs"]) < 6 * t.size  # < 8 bytes a tag
    assert unpack_timestamps(pack_timestamps(np.zeros(0, np.int64))).size == 0


@pytest.mark.parametrize(
    "payload",
    [{"first": 0, "n": 3, "diffs": b"garbage"}, {"first": 0, "n": 5}, None],
)
def test_malformed_timestamps_from_the_peer(payload: object) -> None:
    if payload is None:
        payload = pack_timestamps(np.array([5, 3, 9], dtype=np.int64))  # not sorted
    with pytest.raises(ClockSyncAborted) as info:
        unpack_timestamps(payload)  # type: ignore[arg-type]
    assert info.value.reason is SyncAbortReason.PEER_FAILED


def test_a_stored_correction_is_found_by_bench_and_taggers(tmp_path: Path) -> None:
    result = SimpleNamespace(
        model=ClockModel(49_123_456.7, 5.0e-7, 3 * 10**12),
        offset_stderr_ps=12.5,
        drift_stderr=2e-10,
        method="two-way",
        delay_ps=53_900_000.0,
    )
    path = save_correction(
        tmp_path, "my bench", ("alice.tagger", "bob.tagger"), result, run_id="r1"
    )
    assert path == correction_path(tmp_path, "my bench", ("alice.tagger", "bob.tagger"))
    assert path.name == "alice.tagger__bob.tagger.json" and path.parent.name == "my_bench"
    c = load_correction(tmp_path, "my bench", ("alice.tagger", "bob.tagger"))
    assert c is not None
    assert c.model == result.model and c.delay_ps == 53_900_000.0 and c.run_id == "r1"
    assert c.valid_for_s == pytest.approx(1000.0 / (2e-10 * 1e12))  # 1 ns from the drift error
    assert not c.expired()
    assert load_correction(tmp_path, "my bench", ("alice.tagger", "bob.other")) is None


def test_a_broken_correction_file_names_itself(tmp_path: Path) -> None:
    path = correction_path(tmp_path, "b", ("a.t", "b.t"))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"bench": "b"}))
    with pytest.raises(ConfigError) as info:
        load_correction(tmp_path, "b", ("a.t", "b.t"))
    assert str(path) in str(info.value)


def test_the_tracking_interval_is_auto_unless_given() -> None:
    auto = ClockSyncSettings.from_mapping({})
    assert auto.tracking_interval_s == "auto" and auto.chunk_s == 1.0
    short = ClockSyncSettings.from_mapping({"duration_s": 1.4, "acquisition_s": 0.4})
    assert short.chunk_s == 0.4  # the acquisition's data is read as one chunk
    given = ClockSyncSettings.from_mapping({"tracking_interval_s": 0.25})
    assert given.tracking_interval_s == 0.25 and given.chunk_s == 0.25
    for bad in ("fast", True, float("nan"), 601):
        with pytest.raises(ConfigError, match=r"tracking_interval_s: must be \"auto\""):
            ClockSyncSettings.from_mapping({"tracking_interval_s": bad}, "p.toml")


def _found(pairs: float, sigma_ps: float) -> Any:
    return SimpleNamespace(fit=SimpleNamespace(n_coincidences=pairs, sigma_rel_ps=sigma_ps))


def test_auto_picks_the_longest_interval_the_wander_allows() -> None:
    """auto = A's max_interval_s at 1.1x from the acquisition's rate and sigma_rel and the
    loop's wander (the slowest direction, the widest sigma), in whole ms, clamped; a given
    interval is used as it is."""
    s = ClockSyncSettings.from_mapping({"wander_ppb_per_sqrt_s": 1.2})
    want = max_interval_s(860.0, 4000.0, 1.2, ratio=AUTO_RATIO)
    got = tracking_interval(s, [_found(4000, 860.0)], 1.0)
    assert 0.2 < got <= want < got + 1e-3  # ~0.28 s: the entanglement bench
    two_way = tracking_interval(s, [_found(4000, 860.0), _found(1600, 900.0)], 1.0)
    assert two_way == math.floor(max_interval_s(900.0, 1600.0, 1.2, ratio=1.1) * 1e3) / 1e3
    # a 1 s interval there: the wander inside it alone is ~4x sigma_rel/sqrt(N)
    assert interval_wander_error_ps(1.2, 1.0) > 4 * 860.0 / math.sqrt(4000)
    still = ClockSyncSettings.from_mapping({"wander_ppb_per_sqrt_s": 0})
    assert tracking_interval(still, [_found(4000, 860.0)], 1.0) == AUTO_MAX_INTERVAL_S
    assert tracking_interval(s, [_found(20, 860.0)], 1.0) == AUTO_MAX_INTERVAL_S  # 25 pairs: 1.25 s
    assert tracking_interval(s, [_found(0, 860.0)], 1.0) == AUTO_MAX_INTERVAL_S
    fast = ClockSyncSettings.from_mapping({"wander_ppb_per_sqrt_s": 1e4})
    assert tracking_interval(fast, [_found(1e6, 20.0)], 1.0) == AUTO_MIN_INTERVAL_S
    assert tracking_interval(fast, [_found(1000, 860.0)], 1.0) == AUTO_MIN_PAIRS / 1000
    given = ClockSyncSettings.from_mapping({"tracking_interval_s": 1.0})
    assert tracking_interval(given, [_found(4000, 860.0)], 1.0) == 1.0


def test_shutters_are_node_dot_instrument() -> None:
    s = ClockSyncSettings.from_mapping({"shutters": ["alice.attenuator", "bob.voa"]})
    assert s.shutters_at() == [("alice", "attenuator"), ("bob", "voa")]
    assert s.shutters_at("bob") == [("bob", "voa")]
    with pytest.raises(ConfigError, match=r"shutters\[0\]: 'attenuator' is not node.instrument"):
        ClockSyncSettings.from_mapping({"shutters": ["attenuator"]}, "p.toml")


def test_the_last_partial_interval_is_quoted_inside_its_data() -> None:
    """The tracker's last interval, cut by the end of the data, is quoted at the centre of
    the data it holds (0.95 s here), not at its nominal centre beyond them (1.05 s): there
    the clocks' wander since the pairs is in no error (on the entanglement bench at ~200
    pairs/s the result, quoted 0.23 s past the data, was 2.3 sigma off the truth)."""
    rng = np.random.default_rng(5)
    pairs = np.sort(rng.uniform(0, 1.0e12, 4000)).astype(np.int64)
    a = pairs + rng.normal(0, 300, pairs.size).astype(np.int64)
    b = np.sort(pairs + 1_000_000 + rng.normal(0, 300, pairs.size).astype(np.int64))
    a.sort()
    tr = ClockTracker(
        ClockModel(1_000_000.0),
        TrackerConfig(interval_ps=300_000_000_000, wander_ppb_per_sqrt_s=0.0),
        offset_stderr_ps=10.0,
        drift_stderr=1e-10,
        start_ps=0,
    )
    points = tr.feed(a, b) + tr.flush()
    assert [p.t_ps for p in points[:3]] == [150e9, 450e9, 750e9]
    last = points[-1]
    assert 0.9e12 <= last.t_ps <= 1.0e12 and last.counts > 300
    assert abs(last.measured_offset_ps - 1_000_000) < Z_PARTS * last.measured_stderr_ps
    assert tr.model.t_ref_ps == last.t_ps  # the result's epoch: inside the data


def test_a_worse_result_never_replaces_a_valid_better_correction(tmp_path: Path) -> None:
    """Before, each run replaced the stored correction, a worse one too; now the better
    valid one stays and the newer one is kept beside it (``latest``)."""

    def result(err_ps: float, offset_ps: float) -> Any:
        return SimpleNamespace(
            model=ClockModel(offset_ps, 1e-7, 0),
            offset_stderr_ps=err_ps,
            drift_stderr=1e-11,
            method="one-way",
            delay_ps=None,
        )

    taggers = ("alice.tagger", "bob.tagger")
    main = correction_path(tmp_path, "b", taggers)
    assert save_correction(tmp_path, "b", taggers, result(20.0, 1.0), run_id="good") == main
    side = save_correction(tmp_path, "b", taggers, result(900.0, 2.0), run_id="worse")
    assert side != main and side.name == "alice.tagger__bob.tagger.latest.json"
    kept = load_correction(tmp_path, "b", taggers)
    latest = load_correction(tmp_path, "b", taggers, latest=True)
    assert kept is not None and kept.run_id == "good"
    assert latest is not None and latest.run_id == "worse"
    # a better one replaces it
    assert save_correction(tmp_path, "b", taggers, result(10.0, 3.0), run_id="better") == main
    best = load_correction(tmp_path, "b", taggers)
    assert best is not None and best.run_id == "better"


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        (
            # before: "LCURRENT {value}: ..." from the board's driver, at run time
            "sources.alice.pump_current_ma=1000",
            "sources.alice.pump_current_ma",
            "1000 mA is outside alice.pairs (sfifteen.spdc)'s range 0..97 mA",
        ),
        (
            "sources.alice.alice_channels=[9]",
            "sources.alice.alice_channels",
            "input 9: alice's tagger alice.tagger (sfifteen.tdc1) has inputs 1-4",
        ),
        ("alice_node='carol'", "alice_node", "no node 'carol' in the profile (nodes: alice, bob)"),
        ("sources.nowhere.pump_current_ma=3", "sources.nowhere", "no node 'nowhere'"),
        (
            "sources.alice.instrument='nope'",
            "sources.alice.instrument",
            "no instrument 'nope' at node 'alice'",
        ),
        ("bob_tagger='pairs'", "bob_tagger", "no instrument 'pairs' at node 'bob'"),
    ],
)
def test_the_bench_is_checked_at_load_naming_the_field(
    override: str, field: str, words: str
) -> None:
    """As `qhil profile show --set` loads it: before, these passed the load and failed
    (or ran on nothing) only once the bench was open."""
    with pytest.raises(ConfigError) as info:
        load_profile("default", [f"experiments.clock_sync.{override}"])
    assert info.value.field == f"experiments.clock_sync.{field}"
    assert info.value.source.endswith("default.toml")
    assert words in str(info.value)


async def test_a_pump_current_out_of_the_drivers_range_names_the_command_not_a_template() -> None:
    from qhil.drivers.sfifteen.spdc import SPDCSource
    from qhil.errors import ValidationError

    board = SPDCSource(SimpleNamespace(resource="emulated"), name="alice.pairs")  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        await board.set_pump_current_ma(1000.0)
    text = str(info.value)
    assert "{value}" not in text
    assert text.startswith("alice.pairs: LCURRENT (pump current, mA): 1000.0 is not allowed")


def _tdc1_pairs(seed: int, offset_ps: float, drift: float) -> tuple[Any, Any]:
    """1 s of pairs (1.4e4, 300 ps jitter) and background (1.5e5 / 9.5e4 /s), each node's
    stamps on its own 2 ns tick grid (a TDC1's), the grids out of phase."""
    rng = np.random.default_rng(seed)
    n, ps = 14_000, 1e12
    t = rng.uniform(0, ps, n)
    ta = np.concatenate([t + rng.normal(0, 300, n), rng.uniform(0, ps, 150_000)])
    tb = offset_ps + (t + rng.normal(0, 300, n)) * (1 + drift)
    tb = np.concatenate([tb, rng.uniform(0, ps, 95_000)])
    a = np.sort(np.floor(ta / 2000) * 2000).astype(np.int64)
    b = np.sort(np.floor((tb - 700) / 2000) * 2000 + 700).astype(np.int64)
    return a, b


@pytest.mark.parametrize("start_off_ps", [0.0, 800.0, -1200.0])
def test_the_acquisitions_final_fit_is_unbiased_on_2_ns_ticks(start_off_ps: float) -> None:
    """The ps fit after the centroid steps, from a start that far off the truth: within
    its stated error (two-sided 99.9 %, 3 fixed seeds). Before, its +-2 ns window cut
    the ticks' +-2 ns triangle on one side: 13-25 sigma toward the start."""
    from qhil.orchestrator.experiments.clock_sync.acquisition import refine_locally

    off, drift = 1_234_567.0, 2e-6
    for seed in (1, 2, 3):
        a, b = _tdc1_pairs(seed, off, drift)
        fit = refine_locally(a, b, ClockModel(off + start_off_ps, drift, 0), 2000.0, 6.0, (1, 1))
        truth = off + drift * fit.model.t_ref_ps
        assert abs(fit.model.offset_ps - truth) < Z_PARTS * fit.offset_stderr_ps, seed


def test_no_peak_advice_names_other_light_when_one_side_is_flooded() -> None:
    """The default bench with BB84's light on: alice 289/s, bob 1.08e7/s (a review)."""
    from qhil.orchestrator.experiments.clock_sync.acquisition import no_peak_detail

    text = no_peak_detail("acquisition", 3.1, 6.0, 289.0, 1.08e7)
    assert "other light on bob's detectors" in text and "shutters" in text
    assert "other light" not in no_peak_detail("acquisition", 3.1, 6.0, 3e4, 2.5e4)


async def test_a_channel_failure_is_reported_with_its_party_once() -> None:
    """Channel errors already name the party: the abort does not prefix it again."""
    from qhil.orchestrator.channel import ChannelError
    from qhil.orchestrator.experiments.clock_sync.runner import _aborted

    failure = await _aborted(None, "alice", ChannelError("alice: cannot send 'tags' (#3) to bob"))
    assert str(failure).count("alice:") == 1, str(failure)
    bare = await _aborted(None, "bob", ConnectionResetError("reset by peer"))
    assert "bob: reset by peer" in str(bare)
