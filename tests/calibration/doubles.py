"""Role doubles for calibration tests: Alice's generator, Bob's tagger and controller over a
small numpy model of the link (independent of the emulated world).

The model: Alice prepares H, V, D or A (Stokes +-S1, +-S2) with a preparation error
(the Stokes vector shrunk by ``1 - 2 * prep_error``); a fixed fibre rotation; Bob's
controller of four retarders (axes 0/45/0/45 deg, retardance ``pi V / V_pi + offset``,
channel 1 first); a passive receiver (half the light to each basis, ideal PBSs).
Clicks per gate are Poisson with mean ``rate_hz * t / 2`` per basis, split by the
projection probabilities. Light takes ``delay_s`` from the generator to Bob: in a gate,
the first ``delay_s`` after a pattern change still carries the previous pattern
(Bob's controller acts on arrival, at once). Time moves only with gates.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qhil.drivers.roles import TagBlock
from qhil.emulators.world.polarization import (
    QUAT_IDENTITY,
    quat_mul,
    quat_to_matrix,
    random_quaternion,
    waveplate_quat,
)
from qhil.errors import ValidationError

STOKES_IN = {0: (1.0, 0.0, 0.0), 1: (-1.0, 0.0, 0.0), 2: (0.0, 1.0, 0.0), 3: (0.0, -1.0, 0.0)}


def residual_angle(r: npt.NDArray[np.float64]) -> float:
    """Rotation angle of a 3x3 rotation matrix."""
    return float(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))


@dataclass
class LinkModel:
    rng: np.random.Generator
    fibre: npt.NDArray[np.float64]  # 3x3 Stokes rotation
    half_wave_mv: npt.NDArray[np.float64] = field(default_factory=lambda: np.full(4, 2000.0))
    offsets_rad: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    axes_rad: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.deg2rad([0.0, 45.0, 0.0, 45.0])
    )
    rate_hz: float = 1.6e6  # clicks per second at Bob, both bases, at intensity index 0
    prep_error: float = 0.004
    # Per intensity index: mean light relative to index 0 (0 = vacuum).
    mus: tuple[float, ...] = (1.0, 0.2, 0.0)
    # Per detector H, V, D, A: efficiency relative to the nominal, dark counts.
    efficiency: npt.NDArray[np.float64] = field(default_factory=lambda: np.ones(4))
    dark_hz: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    delay_s: float = 0.0
    responsive: bool = True  # False: the controller does nothing (e.g. not in the path)
    light: bool = True
    voltages: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    now_s: float = 0.0
    # (time the light of this pattern reaches Bob, symbol fractions of the pattern)
    arrivals: list[tuple[float, npt.NDArray[np.float64]]] = field(default_factory=list)

    @classmethod
    def random(cls, seed: int, **kw: object) -> LinkModel:
        rng = np.random.default_rng(seed)
        fibre = quat_to_matrix(random_quaternion(rng))
        kw.setdefault("fibre", fibre)
        return cls(rng=rng, **kw)  # type: ignore[arg-type]

    def controller_rotation(self, voltages: Sequence[float]) -> npt.NDArray[np.float64]:
        if not self.responsive:
            return np.eye(3)
        delta = math.pi * np.asarray(voltages, dtype=float) / self.half_wave_mv + self.offsets_rad
        q = QUAT_IDENTITY
        for plate in waveplate_quat(self.axes_rad, delta):
            q = quat_mul(plate, q)
        return np.asarray(quat_to_matrix(q))

    def rotation(self, voltages: Sequence[float] | None = None) -> npt.NDArray[np.float64]:
        v = self.voltages if voltages is None else voltages
        return self.controller_rotation(v) @ self.fibre

    def probabilities(self, symbol: int, voltages: Sequence[float] | None = None) -> np.ndarray:
        """Click probabilities of H, V, D, A per photon for one sent symbol."""
        s = self.rotation(voltages) @ (np.array(STOKES_IN[symbol & 3]) * (1 - 2 * self.prep_error))
        return 0.25 * np.array([1 + s[0], 1 - s[0], 1 + s[1], 1 - s[1]])

    def true_errors(self, voltages: Sequence[float] | None = None) -> tuple[float, float]:
        """(e_Z under H, e_X under D) expected at ``voltages``."""
        ph, pd = self.probabilities(0, voltages), self.probabilities(2, voltages)
        return ph[1] / (ph[0] + ph[1]), pd[3] / (pd[2] + pd[3])

    def pattern_changed(self, fractions: npt.NDArray[np.float64]) -> None:
        self.arrivals.append((self.now_s + self.delay_s, fractions))

    def gate(self, t: float) -> list[int]:
        """Counts of H, V, D, A over the next ``t`` seconds."""
        a, b = self.now_s, self.now_s + t
        self.now_s = b
        mean = np.asarray(self.dark_hz, dtype=float) * t
        if self.light and self.arrivals:
            for i, (start, frac) in enumerate(self.arrivals):
                stop = self.arrivals[i + 1][0] if i + 1 < len(self.arrivals) else math.inf
                overlap = max(0.0, min(b, stop) - max(a, start))
                if overlap > 0:
                    p = sum(
                        f * self.mus[sym >> 2] * self.probabilities(sym)
                        for sym, f in enumerate(frac)
                        if f
                    )
                    mean += 2 * self.rate_hz * overlap * p * self.efficiency
        return [int(x) for x in self.rng.poisson(mean)]


class FakeGenerator:
    """PatternGenerator double: refuses a pattern it was given before (as the 33500B does)."""

    name = "alice.patterns"

    def __init__(self, link: LinkModel, rep_rate_hz: float = 80e6) -> None:
        self.link = link
        self.rep_rate_hz = rep_rate_hz
        self.digests: set[bytes] = set()
        self.loaded: list[npt.NDArray[np.uint8]] = []
        self.refused = 0
        self.output_calls: list[bool] = []
        self.events: list[str] = []

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "fake,generator"

    async def load_pattern(self, symbols: npt.NDArray[np.uint8], symbol_rate_hz: float) -> None:
        arr = np.asarray(symbols)
        if arr.ndim != 1 or arr.size < 8:
            raise ValidationError("load_pattern", f"<{arr.size} symbols>", "8.. symbols")
        if symbol_rate_hz != self.rep_rate_hz:
            raise ValidationError("load_pattern", symbol_rate_hz, f"{self.rep_rate_hz} Hz")
        digest = hashlib.sha256(arr.astype(np.uint8).tobytes()).digest()
        if digest in self.digests:
            self.refused += 1
            raise ValueError("this pattern was already uploaded in this session")
        self.digests.add(digest)
        self.loaded.append(arr.astype(np.uint8))
        self.events.append("load")
        fractions = np.bincount(arr, minlength=32) / arr.size
        self.link.pattern_changed(fractions)

    async def set_output(self, enabled: bool) -> None:
        self.output_calls.append(enabled)


class FakeTagger:
    """TimeTagger double: ``singles`` counts channels 1..4 from the link model."""

    name = "bob.tagger"

    def __init__(
        self, link: LinkModel, channel_map: dict[str, int], events: list[str] | None = None
    ) -> None:
        self.link = link
        self.channel_map = channel_map
        self.n_channels = max(channel_map.values())
        self.gates: list[float] = []
        self.events = events if events is not None else []

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "fake,tagger"

    async def singles(self, integration_s: float) -> list[int]:
        self.gates.append(integration_s)
        self.events.append(f"gate {integration_s:g}")
        hvda = self.link.gate(integration_s)
        out = [0] * self.n_channels
        for label, n in zip("HVDA", hvda, strict=True):
            out[self.channel_map[label] - 1] = n
        return out

    async def acquire(self, duration_s: float) -> TagBlock:
        raise NotImplementedError("calibration counts singles")

    async def set_input_delay_ps(self, channel: int, delay_ps: int) -> None: ...


class FakeController:
    """PolarizationController double: four channels, +-5000 mV, integer mV."""

    name = "bob.polctrl"
    channels = 4

    def __init__(self, link: LinkModel, events: list[str] | None = None) -> None:
        self.link = link
        self.writes: list[list[int]] = []
        self.events = events if events is not None else []

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str:
        return "fake,controller"

    async def set_voltages_mv(self, mv: list[int]) -> None:
        if len(mv) != 4 or any(not isinstance(v, int) or abs(v) > 5000 for v in mv):
            raise ValidationError("V", mv, "four integers in -5000..5000 mV")
        self.writes.append(list(mv))
        self.events.append("volts")
        self.link.voltages = list(mv)

    async def voltages_mv(self) -> list[int]:
        return list(self.link.voltages)


CHANNEL_MAP = {"H": 1, "V": 2, "D": 3, "A": 4}


@dataclass
class Doubles:
    link: LinkModel
    generator: FakeGenerator
    tagger: FakeTagger
    controller: FakeController


def doubles(link: LinkModel, channel_map: dict[str, int] | None = None) -> Doubles:
    cm = channel_map or CHANNEL_MAP
    gen = FakeGenerator(link)
    return Doubles(link, gen, FakeTagger(link, cm, gen.events), FakeController(link, gen.events))
