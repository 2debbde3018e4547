"""Reference light from Alice's transmitter: constant patterns, each one fresh.

A calibration block is a pattern of one repeated symbol (``bit | basis << 1 |
intensity << 2``; H = 0, D = 2 at intensity index 0). A pattern generator may
refuse a pattern it has uploaded before (the Keysight 33500B driver does, as BB84
needs a fresh random pattern per block). A constant pattern carries no key, so
freshness comes from its *length*: every upload uses a length not used before in
this run, and the transmitter plays ``pattern[k % length]`` — the same light
whatever the length. A length refused all the same (uploaded by an earlier run on
the same driver) is skipped for another; nothing is sent for a refused pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from qhil.calibration.errors import CalibrationError
from qhil.drivers.roles import PatternGenerator, TimeTagger
from qhil.errors import ValidationError

#: Symbols of the four BB84 states at intensity index ``i``: bit | basis << 1 | i << 2.
STATE_SYMBOL = {"H": 0, "V": 1, "D": 2, "A": 3}
DETECTORS = ("H", "V", "D", "A")
#: Reference lengths run from the base length over this many values.
LENGTH_SPAN = 1 << 16
#: Refused uploads tolerated per reference block before giving up.
MAX_REFUSALS = 8


def state_symbol(state: str, intensity_index: int) -> int:
    if state not in STATE_SYMBOL:
        raise ValueError(f"reference state must be one of H, V, D, A, got {state!r}")
    if not 0 <= intensity_index <= 7:
        raise ValueError(f"intensity_index must be 0..7, got {intensity_index}")
    return STATE_SYMBOL[state] | intensity_index << 2


def check_channel_map(channel_map: Mapping[str, int]) -> dict[str, int]:
    """``{H, V, D, A} -> tagger channel`` (numbered from 1), checked."""
    cm = dict(channel_map)
    if set(cm) != set(DETECTORS):
        raise ValueError(f"channel_map needs exactly H, V, D and A, got {sorted(cm)}")
    chans = list(cm.values())
    if len(set(chans)) != 4 or any(not isinstance(c, int) or c < 1 for c in chans):
        raise ValueError(f"channel_map: four distinct tagger channels >= 1 needed, got {chans}")
    return cm


class ReferenceSource:
    """Uploads fresh constant patterns and counts Bob's four detectors under each."""

    def __init__(
        self,
        generator: PatternGenerator,
        tagger: TimeTagger,
        channel_map: Mapping[str, int],
        rep_rate_hz: float,
        *,
        pattern_length: int,
        intensity_index: int = 0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not rep_rate_hz > 0:
            raise ValueError(f"rep_rate_hz must be > 0, got {rep_rate_hz}")
        if not 8 <= pattern_length <= (1 << 24) - LENGTH_SPAN:
            raise ValueError(f"pattern_length must be 8..{(1 << 24) - LENGTH_SPAN}")
        self.generator = generator
        self.tagger = tagger
        self.channel_map = check_channel_map(channel_map)
        self.rep_rate_hz = float(rep_rate_hz)
        self.intensity_index = intensity_index
        self.base_length = int(pattern_length)
        self._rng = rng if rng is not None else np.random.default_rng()
        # Where this run's lengths start: another run on the same driver most likely
        # used other lengths, and a clash is skipped anyway.
        self._offset = int(self._rng.integers(LENGTH_SPAN))
        self.uploads = 0
        self.refusals = 0
        self.settle_gates = 0

    @property
    def rng(self) -> np.random.Generator:
        """The generator of this run's lengths and random reference content (not key material)."""
        return self._rng

    def next_length(self) -> int:
        """A pattern length not used before in this run (from the base length on)."""
        length = self.base_length + self._offset % LENGTH_SPAN
        self._offset += 1
        return length

    async def load(self, state: str) -> int:
        """Upload a fresh constant pattern of ``state`` and arm it; returns its length."""
        symbol = state_symbol(state, self.intensity_index)
        return await self.load_fresh(
            lambda: np.full(self.next_length(), symbol, dtype=np.uint8), state
        )

    async def load_fresh(self, make: Callable[[], npt.NDArray[np.uint8]], what: str) -> int:
        """Upload ``make()`` and arm it; a refused pattern is replaced by another ``make()``.

        ``make`` must give a different pattern each call (a new length, new random
        content). Returns the length uploaded.
        """
        last: ValueError | None = None
        for _ in range(MAX_REFUSALS):
            pattern = make()
            try:
                await self.generator.load_pattern(pattern, self.rep_rate_hz)
            except ValidationError:
                raise  # a bad value: another pattern would not help
            except ValueError as exc:  # refused (e.g. uploaded before): nothing was sent
                self.refusals += 1
                last = exc
                self._offset += int(self._rng.integers(1, LENGTH_SPAN))
                continue
            self.uploads += 1
            return int(pattern.size)
        raise CalibrationError(
            f"the pattern generator refused {MAX_REFUSALS} fresh {what} reference patterns "
            f"in a row (last: {last})"
        ) from last

    async def settle(self, settle_s: float) -> None:
        """Let ``settle_s`` of light pass uncounted: a tagger gate whose counts are dropped.

        After a change (a new pattern; new voltages) the light still in the fibre, and
        optics still moving, belong to the old setting. A gate rather than a sleep: it
        waits on the bench's own clock, whatever that clock is.
        """
        if settle_s > 0:
            await self.tagger.singles(settle_s)
            self.settle_gates += 1

    async def count(self, integration_s: float) -> tuple[int, int, int, int]:
        """Counts of the H, V, D and A detectors over one gate of the tagger."""
        singles = await self.tagger.singles(integration_s)
        try:
            return tuple(int(singles[self.channel_map[d] - 1]) for d in DETECTORS)  # type: ignore[return-value]
        except IndexError:
            raise CalibrationError(
                f"the tagger reports {len(singles)} channels; channel_map names "
                f"{sorted(self.channel_map.values())}"
            ) from None
