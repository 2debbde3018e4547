"""Dead time where the vectorised shortcuts stop and the carried state matters, against the
sequential rule (one event at a time, obviously correct):

- long saturated streams (rate x tau >> 1): past the leader rounds, pointer doubling over
  several segments, each starting where the previous one's last registration left off;
- afterpulses (late additions) landing inside a registered click's dead time, many at once,
  on saturated and sparse streams;
- the bank's dead time carried from one batch to the next, including for a quiet detector
  whose last click is not among the final events of a busy bank.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import Z999, bb84_profile, make_world, single_detector_profile
from test_sampling_kernels import sequential_mask

from qhil.emulators.world.bank import Arrivals, _cut
from qhil.emulators.world.deadtime import _SEGMENT, JointDeadTime, nonparalysable_mask


@pytest.mark.parametrize("rate_per_tau", [30.0, 200.0])
def test_long_saturated_stream_follows_the_sequential_rule(rate_per_tau: float) -> None:
    """3 segments of pointer doubling: each must start from the previous one's last click."""
    rng = np.random.default_rng(31)
    tau = 1.0
    n = 3 * _SEGMENT + 1234
    t = np.sort(rng.random(n) * (n / rate_per_tau))
    for last in (-np.inf, t[5] - 0.5, t[40]):
        got = nonparalysable_mask(t, tau, float(last))
        assert np.array_equal(got, sequential_mask(t, tau, float(last)))
    # Registered clicks of a saturated stream come every ~ tau (1 + 1 / rate_per_tau).
    reg = t[got]
    assert np.diff(reg).min() >= tau
    assert reg.size == pytest.approx(n / rate_per_tau / (1 + 1 / rate_per_tau), rel=0.02)


def sequential_joint(
    t: np.ndarray,
    det: np.ndarray,
    xt: np.ndarray,
    xd: np.ndarray,
    tau_of: np.ndarray,
    last_of: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per detector, the sequential rule over its base events and additions (base first
    among equal times); returns the registration of the base events and of the additions."""
    keep = np.zeros(t.size, bool)
    extra = np.zeros(xt.size, bool)
    for d in range(tau_of.size):
        base = np.flatnonzero(det == d)
        add = np.flatnonzero(xd == d)
        both = np.concatenate([t[base], xt[add]])
        order = np.argsort(both, kind="stable")
        ref = np.empty(both.size, bool)
        ref[order] = sequential_mask(both[order], tau_of[d], last_of[d])
        keep[base] = ref[: base.size]
        extra[add] = ref[base.size :]
    return keep, extra


@pytest.mark.parametrize("rate_per_tau", [0.3, 3.0, 40.0])
def test_afterpulses_inside_dead_time_follow_the_sequential_rule(rate_per_tau: float) -> None:
    """Two detectors with their own dead times and histories; three generations of
    afterpulses drawn as the bank draws them (a registered click + its dead time + an
    exponential delay, plus ones placed inside other registered clicks' dead time). Each
    generation's registrations, and the base events they block, equal the sequential rule."""
    rng = np.random.default_rng(32)
    tau_of = np.array([1.0, 2.5])
    for trial in range(12):
        n = 4000 if trial % 3 else 40_000
        length = n / rate_per_tau
        t = np.sort(rng.random(n) * length)
        det = rng.integers(0, 2, n)
        last_of = np.array([rng.random() * 2 - 1.5, -np.inf])
        jdt = JointDeadTime(t, det.copy(), tau_of, last_of, length + 6.0)
        xt, xd = np.zeros(0), np.zeros(0, np.intp)
        keep, extra = sequential_joint(t, det, xt, xd, tau_of, last_of)
        assert np.array_equal(jdt.keep, keep)
        for _ in range(3):
            reg = np.flatnonzero(keep)
            parents = rng.choice(reg, min(reg.size, 300), replace=False)
            p_d = det[parents]
            # After the parent's dead time (as the bank draws them) ...
            ap = t[parents] + tau_of[p_d] + rng.exponential(0.3, parents.size)
            # ... and inside some registered click's dead time.
            inside = t[parents] + rng.random(parents.size) * tau_of[p_d] * 0.999
            new_t = np.concatenate([ap, inside])
            new_d = np.concatenate([p_d, p_d]).astype(np.intp)
            parent_of_inside = np.concatenate([np.full(ap.size, -1), parents])
            ok = new_t < length
            new_t, new_d, parent_of_inside = new_t[ok], new_d[ok], parent_of_inside[ok]
            order = np.argsort(new_t, kind="stable")
            new_t, new_d = new_t[order], new_d[order]
            parent_of_inside = parent_of_inside[order]
            got = jdt.add(new_t, new_d)
            xt, xd = np.concatenate([xt, new_t]), np.concatenate([xd, new_d])
            keep, extra = sequential_joint(t, det, xt, xd, tau_of, last_of)
            assert np.array_equal(jdt.keep, keep)
            assert np.array_equal(jdt.extra_keep, extra)
            assert np.array_equal(got, extra[xt.size - got.size :])
            # An addition inside the dead time of a click that stays registered never does.
            blinded = parent_of_inside >= 0
            blinded[blinded] = jdt.keep[parent_of_inside[blinded]]
            assert blinded.sum() > 10 and not got[blinded].any()


def test_dead_time_carries_across_batches_of_a_saturated_detector() -> None:
    """A 20 MHz dark-count detector with 200 ns dead time (rate x tau = 4), generated in
    0.5 ms batches: no two registered clicks closer than the dead time, batch boundaries
    included, and the count follows R / (1 + R tau) (99.9 %)."""
    rate, tau_ns, duration = 20e6, 200.0, 0.01
    table = single_detector_profile(
        mu=0.0, dark_hz=rate, jitter_ps=0.0, detector={"dead_time_ns": tau_ns}
    )
    table["max_batch_s"] = 0.0005
    ts = make_world(table).tagger("bob.tagger").read(duration).timestamps_ps  # type: ignore[attr-defined]
    assert np.diff(ts).min() >= tau_ns * 1e3 - 1
    expected = rate / (1 + rate * tau_ns * 1e-9) * duration
    sigma = math.sqrt(expected) / (1 + rate * tau_ns * 1e-9)
    assert abs(ts.size - expected) < Z999 * sigma, (ts.size, expected)


def test_quiet_detector_keeps_its_dead_time_across_batches_of_a_busy_bank() -> None:
    """One tagger, two detectors: a 60 MHz one (2 ns dead time, ~5300 clicks per 0.1 ms
    batch, more than the bank's look-back window of 4096 events) fills each batch's final
    events, so the quiet one's last click (20 kHz, 300 us dead time) is far before
    them, or in an earlier batch; its dead time must still reach into the next batches."""
    table = single_detector_profile(
        mu=0.0, dark_hz=60e6, jitter_ps=0.0, detector={"dead_time_ns": 2.0}
    )
    bob = table["nodes"]["bob"]["components"]
    bob["det2"] = dict(bob["det"], channel=2, dark_count_rate_hz=20e3, dead_time_ns=300_000.0)
    # Batches of 0.1 ms: the quiet detector's dead time spans whole batches without a click.
    table["max_batch_s"] = 0.0001
    block = make_world(table).tagger("bob.tagger").read(0.015)  # type: ignore[attr-defined]
    quiet = block.timestamps_ps[block.channels == 2]
    assert quiet.size > 20
    assert np.diff(quiet).min() >= 300_000_000 - 1
    busy = block.timestamps_ps[block.channels == 1]
    assert np.diff(busy).min() >= 2_000 - 1


def test_afterpulses_respect_every_registered_clicks_dead_time_across_batches() -> None:
    """Afterpulses (p = 0.3, 30 ns after the 100 ns dead time) of a 4 MHz dark-count
    detector, in 20 us batches so that many cross into the next batch: every registered
    output pulse, afterpulses included, is at least the dead time after the previous one,
    and the afterpulses are there (the count exceeds the dead-time law without them by
    far more than its 99.9 % spread)."""
    rate, tau_ns, duration = 4e6, 100.0, 0.004
    table = single_detector_profile(
        mu=0.0,
        dark_hz=rate,
        jitter_ps=0.0,
        detector={
            "dead_time_ns": tau_ns,
            "afterpulse_probability": 0.3,
            "afterpulse_time_constant_ns": 30.0,
        },
    )
    table["max_batch_s"] = 0.00002
    ts = make_world(table).tagger("bob.tagger").read(duration).timestamps_ps  # type: ignore[attr-defined]
    assert np.diff(ts).min() >= tau_ns * 1e3 - 1
    without = rate / (1 + rate * tau_ns * 1e-9) * duration
    assert ts.size > without + Z999 * math.sqrt(without)


def test_afterpulses_of_detectors_with_their_own_probability_jitter_and_delay() -> None:
    """Two dark-count detectors on one tagger with afterpulse probabilities 0.3 and 0.1,
    50 ps jitter and a common 5 ns cable delay: each channel's count is dark / (1 - p)
    (dead time 10 ns, negligible at 20 kHz; 99.9 %), and every output pulse, afterpulses
    included, carries the delay and a finite jitter."""
    dark, duration = 2e4, 2.0
    table = single_detector_profile(
        mu=0.0,
        dark_hz=dark,
        jitter_ps=50.0,
        detector={
            "dead_time_ns": 10.0,
            "afterpulse_probability": 0.3,
            "afterpulse_time_constant_ns": 20.0,
            "delay_ns": 5.0,
        },
    )
    bob = table["nodes"]["bob"]["components"]
    bob["det2"] = dict(bob["det"], channel=2, afterpulse_probability=0.1)
    block = make_world(table).tagger("bob.tagger").read(duration)  # type: ignore[attr-defined]
    for channel, p in ((1, 0.3), (2, 0.1)):
        ts = block.timestamps_ps[block.channels == channel]
        mean = dark * duration / (1 - p)
        sigma = math.sqrt(dark * duration * (1 + p)) / (1 - p)
        assert abs(ts.size - mean) < Z999 * sigma, (channel, ts.size, mean)
        # Afterpulses follow their parent by dead time + Exp(20 ns), jitter included.
        gaps = np.diff(ts)
        assert gaps.min() >= 10_000 - 8 * 50 * 2
    assert block.timestamps_ps.min() >= 5_000 - 8 * 50
    assert block.timestamps_ps.max() <= duration * 1e12 + 5_000 + 8 * 50


def test_two_events_of_one_detector_within_its_dead_time() -> None:
    """The smallest stream that needs the dead time: the second click is lost."""
    jdt = JointDeadTime(
        np.array([0.0, 0.5]), np.array([0, 0]), np.array([1.0]), np.array([-np.inf]), 10.0
    )
    assert jdt.keep.tolist() == [True, False]


def test_a_batch_cut_keeps_single_event_parts() -> None:
    """A part with one event (e.g. the one afterpulse carried into the next batch) is kept,
    on the side of the cut it belongs to (an event at the cut goes to the next batch)."""
    parts = [
        Arrivals(np.array([5.0]), np.array([1], np.intp)),
        Arrivals(np.array([10.0]), np.array([0], np.intp), source=2),
    ]
    within, beyond = _cut(parts, 10.0)
    assert [(p.t.tolist(), p.det.tolist()) for p in within] == [([5.0], [1])]
    assert [(p.t.tolist(), p.det.tolist(), p.source) for p in beyond] == [([0.0], [0], 2)]


def test_a_switched_off_detector_is_silent_whichever_its_place_in_the_bank() -> None:
    """The last of four detectors on one tagger switched off while photons for it are still
    in the 25 km fibre (122 us): no click on its channel, not even from those (the others
    go on)."""
    world = make_world(bb84_profile(mu=0.5, length_km=25.0, eta=0.5, dark_hz=1e4))
    tagger = world.tagger("bob.tagger")  # type: ignore[attr-defined]
    assert np.bincount(tagger.read(0.0005).channels, minlength=5)[4] > 100
    world.detector("bob.a").enabled = False  # type: ignore[attr-defined]
    per_channel = np.bincount(tagger.read(0.0001).channels, minlength=5)
    assert per_channel[4] == 0 and per_channel[1:4].min() > 100
