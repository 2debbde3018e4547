"""TDC1 acquisition end (issue 12): once the words reach the gate's last heartbeat and the
gate is over, a short silence ends the acquisition and the drain after ``abort``; the
general STREAM_POLL_S wait there cost ~0.1 s of every 13 ms BB84 block."""

from __future__ import annotations

from typing import Any

import pytest

from qhil.drivers.sfifteen import tdc1
from qhil.drivers.sfifteen.tdc1 import TDC1, encode_words
from qhil.testing import expected_protocol
from qhil.transport import session


async def test_the_end_of_a_short_gate_is_a_short_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    idle_timeouts: list[float] = []
    exact = session.Reader.exact

    def recording(self: Any, count: int) -> bytes:
        try:
            return exact(self, count)
        except Exception:
            idle_timeouts.append(self.timeout_s)  # a poll that waited its whole timeout
            raise

    monkeypatch.setattr(session.Reader, "exact", recording)
    # One event at 10 ms (tick 5e6, channel 1): past the half of the 13 ms gate.
    events = encode_words([5_000_000], [1])
    exchanges = [(b"INPKT;time 13;timestamp;counts?\r\n", events), (b"abort\r\n", b"")]
    async with expected_protocol(TDC1, exchanges) as drv:
        block = await drv.acquire(0.013)
    assert block.timestamps_ps.tolist() == [10_000_000_000]
    # The stream's partial and idle polls, then the drain's: none waits STREAM_POLL_S.
    assert idle_timeouts and max(idle_timeouts) < tdc1.STREAM_POLL_S
