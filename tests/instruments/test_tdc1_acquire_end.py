"""TDC1 acquisition end (issue 12). A timed gate's closing word (a dummy word in its last
tick, the stream's last) proves the stream whole: the acquisition ends on it without
waiting for a silence, and ``abort`` needs no drain. A unit not seen to send it is given
CLOSING_WORD_WAIT_S of silence after the gate's end before its stream counts as ended
(then FINAL_SILENCE_S from then on), so a slow peer (an emulator on a loaded host) that
pauses past the gate's end on the host clock is never cut short."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import poisson

from qhil.drivers.sfifteen import tdc1
from qhil.drivers.sfifteen.tdc1 import TDC1, encode_words
from qhil.emulators.server import EmulatorHost
from qhil.emulators.sfifteen.tdc1 import TDC1Emulator, closing_word
from qhil.emulators.world import World, load_world_file
from qhil.transport.rawio import ReadTimeout
from qhil.transport.replay import ReplayIO

START_13MS = b"INPKT;time 13;timestamp;counts?\r\n"


class _Peer(ReplayIO):
    """The scripted unit, answering each command only once it is written; replies from
    byte ``hold_from`` on are held back for ``pause_s`` after the first read (a peer that
    falls silent mid-stream); counts idle polls."""

    def __init__(self, exchanges: list[tuple[bytes, bytes]], hold_from: int = -1,
                 pause_s: float = 0.0) -> None:  # fmt: skip
        super().__init__(exchanges)
        self.hold_from, self.pause_s = hold_from, pause_s
        self.release: float | None = None
        self.idle_polls = 0
        self._ends = [(sum(len(c) for c, _ in exchanges[: i + 1]),
                       sum(len(r) for _, r in exchanges[: i + 1])) for i in range(len(exchanges))]  # fmt: skip

    def read_some(self, count: int, timeout_s: float) -> bytes:
        answered = max([r for c, r in self._ends if c <= len(self.written)], default=0)
        count = min(count, answered - self._rpos)
        if count <= 0:
            self.idle_polls += 1
            raise ReadTimeout(b"")
        now = time.monotonic()
        if self.release is None:
            self.release = now + self.pause_s
        if 0 <= self.hold_from <= self._rpos and now < self.release:
            time.sleep(min(timeout_s, self.release - now))
            self.idle_polls += 1
            raise ReadTimeout(b"")
        if self.hold_from >= 0 and now < self.release:
            count = min(count, self.hold_from - self._rpos)
        try:
            return super().read_some(count, timeout_s)
        except ReadTimeout:
            self.idle_polls += 1
            raise

    def read_exact(self, count: int, timeout_s: float) -> bytes:
        data = self.read_some(count, timeout_s)
        if len(data) < count:
            raise ReadTimeout(data)
        return data


async def _acquire(io: _Peer, duration_s: float, times: int = 1) -> list[list[int]]:
    drv = TDC1.open("REPLAY::INSTR", io=io)
    await drv.session.open()
    try:
        return [(await drv.acquire(duration_s)).timestamps_ps.tolist() for _ in range(times)]
    finally:
        await drv.close()
        io.assert_complete()


async def test_the_closing_word_ends_the_acquisition_without_a_silence() -> None:
    # Events at 2 ms and 10 ms (channel 1), then the 13 ms gate's closing word.
    words = encode_words([1_000_000, 5_000_000], [1, 1]) + closing_word(13_000_000_000)
    # abort goes out after it with nothing to drain (no poll for a silence).
    io = _Peer([(START_13MS, words), (b"abort\r\n", b"")])
    assert await _acquire(io, 0.013) == [[2_000_000_000, 10_000_000_000]]
    assert io.idle_polls == 0  # before: a silence ended the stream and the drain


async def test_a_peer_pausing_past_the_gates_end_is_not_cut_short() -> None:
    """Words past the gate's last heartbeat, then 0.15 s of silence after the gate's end on
    the host clock (a slow emulator), then the rest: before, a 20 ms silence ended the
    acquisition there and the 12 ms event was lost (and left on the line)."""
    first = encode_words([5_000_000], [1])  # 10 ms: past the half of the 13 ms gate
    rest = encode_words([6_000_000], [2]) + closing_word(13_000_000_000)
    io = _Peer([(START_13MS, first + rest), (b"abort\r\n", b"")], len(first), pause_s=0.15)
    assert await _acquire(io, 0.013) == [[10_000_000_000, 12_000_000_000]]


async def test_a_unit_without_closing_words_is_waited_for_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A unit that ends its gates without the word: the first acquisition ends after
    CLOSING_WORD_WAIT_S of silence, the next ones after FINAL_SILENCE_S (S15lib's
    ``t_acq + 0.02 s``); every event is delivered both times."""
    monkeypatch.setattr(tdc1, "CLOSING_WORD_WAIT_S", 0.1)
    words = encode_words([5_000_000], [1])
    gate = [(START_13MS, words), (b"abort\r\n", b"")]
    io = _Peer(gate + gate)
    drv = TDC1.open("REPLAY::INSTR", io=io)
    await drv.session.open()
    try:
        polls = []
        for _ in range(2):
            before = io.idle_polls
            assert (await drv.acquire(0.013)).timestamps_ps.tolist() == [10_000_000_000]
            assert drv._closes_gates is False
            polls.append(io.idle_polls - before)
    finally:
        await drv.close()
    io.assert_complete()
    # Replayed idle polls return at once: the first acquisition polls for the long wait.
    assert polls[0] > polls[1] >= 1


DARK_TOML = """
[world]
seed = 3
mode = "fast"
[world.nodes.lab.components.dark]
type = "detector"
dark_count_rate_hz = 100000.0
dead_time_ns = 0.0
tagger = "lab.tagger"
channel = 2
[world.nodes.lab.components.tagger]
type = "time_tagger"
n_channels = 4
"""


class _StallingTDC1(TDC1Emulator):
    """An emulated unit on a loaded host: it stalls 0.15 s (wall clock) in the middle of
    each chunk it sends (the emulator thread descheduled, or busy with another emulator)."""

    async def _stream_chunks(self, duration_s: float | None) -> Any:
        async for data in super()._stream_chunks(duration_s):
            half = len(data) // 8 * 4
            yield data[:half]
            await asyncio.sleep(0.15)
            yield data[half:]


async def test_an_emulator_stalling_mid_stream_still_gives_whole_gates(
    tmp_path: Path, emulator_host: EmulatorHost
) -> None:
    """Fast mode, the real emulator and pty: two 100 ms gates from an emulator that stalls
    in each chunk. Before, the driver ended the first gate on a 20 ms silence once its words
    passed 50 ms (the rest arrived after the drain and spoiled the next gate's timebase):
    how much of a gate a seeded run saw depended on the host's load."""
    path = tmp_path / "dark.toml"
    path.write_text(DARK_TOML)
    world = World(load_world_file(path), seed=3)
    ep = emulator_host.add(_StallingTDC1(name="tdc1", world=world, component="lab.tagger"))
    drv = TDC1.open(ep.address)
    try:
        blocks = [await drv.acquire(0.1) for _ in range(2)]
    finally:
        await drv.close()
    lo, hi = poisson.ppf([0.0005, 0.9995], 100_000 * 0.1)  # two-sided 99.9 %
    for block in blocks:
        t = block.timestamps_ps
        assert lo <= t.size <= hi
        # 100 events per ms: the gate's last ms is never empty (P = e^-100).
        assert 99_000_000_000 <= t[-1] < 100_000_000_000


async def test_a_peer_silent_from_the_start_is_waited_for_not_cut_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that sends nothing for 0.3 s after ``counts?`` (an emulator host busy with
    another instrument, e.g. a 16 MB pattern upload, on a loaded host), then the whole gate.
    Before, a stream that never reached the gate's last heartbeat ended after
    STREAM_GRACE_S + CLOSING_WORD_WAIT_S of silence and the acquisition returned what it had:
    nothing (a BB84 block with zero tags, not even dark counts, under load ~7)."""
    monkeypatch.setattr(tdc1, "CLOSING_WORD_WAIT_S", 0.1)  # both short: the old rule
    monkeypatch.setattr(tdc1, "STREAM_GRACE_S", 0.05)  # gave up at ~0.1 s
    words = encode_words([5_000_000], [1]) + closing_word(13_000_000_000)
    io = _Peer([(START_13MS, words), (b"abort\r\n", b"")], 0, pause_s=0.3)
    assert await _acquire(io, 0.013) == [[10_000_000_000]]


async def test_a_peer_that_never_streams_is_a_stall_not_an_empty_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tdc1, "STREAM_STALL_S", 0.2)
    io = _Peer([(START_13MS, b""), (b"abort\r\n", b"")])
    with pytest.raises(
        tdc1.TimestampStreamStalled, match=r"stalled: no data for 0.2 s.*timestamp;counts"
    ):
        await _acquire(io, 0.013)
