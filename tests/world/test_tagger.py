"""Time tagger behaviour: buffers and lost tags, input delays, bins, readers, counters."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import bb84_profile, make_world

from qhil.emulators.world import WorldError, WorldSettingError


def world_with(**tagger: object) -> object:
    table = bb84_profile(mu=0.5, length_km=5.0, eta=0.2, dark_hz=500.0, dead_time_ns=20.0)
    table["nodes"]["bob"]["components"]["tagger"].update(tagger)
    return make_world(table, seed=9)


def test_output_is_sorted_int64_in_the_window() -> None:
    world = world_with()
    block = world.tagger("bob.tagger").read(0.01)  # type: ignore[attr-defined]
    ts = block.timestamps_ps
    assert ts.dtype == np.int64 and block.channels.dtype == np.int32
    assert np.all(np.diff(ts) >= 0)
    assert ts[0] >= block.t_start_ps and ts[-1] < block.t_stop_ps
    assert set(np.unique(block.channels)) == {1, 2, 3, 4}
    nxt = world.tagger("bob.tagger").read(0.01)  # type: ignore[attr-defined]
    assert nxt.t_start_ps == block.t_stop_ps and nxt.timestamps_ps[0] >= block.t_stop_ps


def test_buffer_overflow_drops_tags_and_reports_them() -> None:
    full = world_with().tagger("bob.tagger").read(0.005)  # type: ignore[attr-defined]
    assert full.lost == 0 and len(full) > 2000
    small = world_with(buffer_size=1000)
    block = small.tagger("bob.tagger").read(0.005)  # type: ignore[attr-defined]
    # Same seed, same physics: the tagger kept the first 1000 tags and lost the rest.
    assert len(block) == 1000
    assert block.lost == len(full) - 1000
    np.testing.assert_array_equal(block.timestamps_ps, full.timestamps_ps[:1000])
    # Reading empties the buffer; a short window fits again and reports no new losses.
    again = small.tagger("bob.tagger").read(0.0001)  # type: ignore[attr-defined]
    assert again.lost == 0 and 0 < len(again) < 1000


def test_input_delay_and_bin_width() -> None:
    ref = world_with().tagger("bob.tagger").read(0.002)  # type: ignore[attr-defined]
    world = world_with()
    tg = world.tagger("bob.tagger")  # type: ignore[attr-defined]
    tg.set_input_delay(1, 1234.0)
    tg.bin_width_ps = 100
    block = tg.read(0.002)
    h_ref = ref.timestamps_ps[ref.channels == 1]
    h = block.timestamps_ps[block.channels == 1]
    n = min(h.size, h_ref.size) - 5
    shifted = h_ref[:n] + 1234
    # Floored to 100 ps bins of the shifted times (the same jitter draws: same seed).
    np.testing.assert_array_equal(h[:n], (shifted // 100) * 100)
    assert np.all(block.timestamps_ps % 100 == 0)
    with pytest.raises(WorldSettingError, match="bob.tagger.bin_width_ps"):
        tg.bin_width_ps = 0


def test_independent_readers_see_the_same_tags() -> None:
    world = world_with()
    tg = world.tagger("bob.tagger")  # type: ignore[attr-defined]
    r1, r2 = tg.open_reader(), tg.open_reader()
    a = r1.read(0.003)
    b1 = r2.read(0.001)
    b2 = r2.read(0.002)
    np.testing.assert_array_equal(
        a.timestamps_ps, np.concatenate([b1.timestamps_ps, b2.timestamps_ps])
    )
    r1.close()
    with pytest.raises(WorldError, match="closed"):
        r1.read(0.001)
    late = tg.open_reader()
    assert late.cursor_ps >= r2.cursor_ps  # a new reader does not see the past


def test_counter_counts_what_the_tagger_tags() -> None:
    world = world_with()
    tg_reader = world.tagger("bob.tagger").open_reader()  # type: ignore[attr-defined]
    counter = world.counter(["bob.h", "bob.v", "bob.d", "bob.a"])  # type: ignore[attr-defined]
    block = tg_reader.read(0.004)
    counts = counter.read(0.004)
    np.testing.assert_array_equal(counts.counts, block.counts([1, 2, 3, 4]))
    assert counts.as_dict()["bob.h"] == block.counts([1])[0]
    clicks = world.click_reader(["bob.v"]).read(0.001)  # type: ignore[attr-defined]
    assert set(np.unique(clicks.channels)) == {0}


def test_no_reader_no_work_and_warm_start() -> None:
    # 50 km: photons in flight for 245 us. After an idle hour, a new reader sees the
    # steady rate from its first microsecond (in-flight photons are generated).
    world = make_world(bb84_profile(mu=0.5, length_km=50.0, eta=0.5), seed=4)
    world.advance_to(3600.0)
    reader = world.tagger("bob.tagger").open_reader()
    early = len(reader.read(200e-6))
    later = len(reader.read(200e-6))
    assert world.generated_until_s < 3600.001
    # Poisson counts of equal windows: their difference is within 3.3 sigma.
    assert abs(early - later) < 3.3 * np.sqrt(early + later)
    assert early > 250  # about 400 expected; 0 without the warm-up
